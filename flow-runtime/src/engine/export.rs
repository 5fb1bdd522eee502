//! Exporting a run: its history as a recording file, for replay in a test against
//! changed code (`flow::testing::RecordedRun::from_file`).

use std::path::Path;

use super::Engine;
use crate::error::FlowError;
use crate::testing::RecordedRun;

impl Engine {
    /// Writes run `run_id`'s recording (its input, each step's operation and output, and
    /// its output if it completed) to the file `path`, and returns it. In a test,
    /// `RecordedRun::from_file(path)?.replay::<W>()` checks that the current code of the
    /// workflow would have taken the same steps.
    ///
    /// The recording holds the run's current generation (since its last
    /// continue-as-new). A map's or batch's items are recorded with it (the engine keeps
    /// them until the run is deleted) and compared item by item on replay; only a map
    /// run by a flow version that deleted its items when the map ended is recorded, and
    /// compared, by its item count and limits.
    ///
    /// Errors: [`FlowError::UnknownRun`], or [`FlowError::ExportFailed`] when the file
    /// cannot be written.
    ///
    /// ```no_run
    /// # async fn demo(engine: flow_runtime::Engine) -> Result<(), flow_runtime::FlowError> {
    /// engine.export("order-42", "order-42.flowrun").await?;
    /// # Ok(()) }
    /// ```
    pub async fn export(
        &self,
        run_id: &str,
        path: impl AsRef<Path>,
    ) -> Result<RecordedRun, FlowError> {
        let recorded = RecordedRun::from_history(&self.history(run_id).await?);
        let path = path.as_ref().to_path_buf();
        let writing = recorded.clone();
        let written = tokio::task::spawn_blocking(move || writing.to_file(&path))
            .await
            .map_err(|e| e.to_string())
            .and_then(|result| result.map_err(|e| e.to_string()));
        match written {
            Ok(()) => Ok(recorded),
            Err(reason) => Err(FlowError::ExportFailed {
                run_id: run_id.to_string(),
                reason,
            }),
        }
    }
}
