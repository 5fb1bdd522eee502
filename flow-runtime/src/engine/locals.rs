//! Time travel: a run's saved locals as they were when one of its steps was scheduled.

use crate::engine::Engine;
use crate::error::FlowError;
use crate::store::Journal;

/// A run's state as the transition that scheduled one of its steps left it
/// ([`Engine::step_locals`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepLocals {
    /// The machine's program counter then: the point its next step resumes at (the
    /// history's `StepScheduled` event names the graph state the step was scheduled at).
    pub pc: u32,
    /// Every saved local slot, by slot index, encoded like any stored user value
    /// (`codec::to_json` renders one).
    pub slots: Vec<(u32, Vec<u8>)>,
}

impl Engine {
    /// Run `run_id`'s saved locals as they were when its step `step` was scheduled
    /// (numbered from 0, as the history's `StepScheduled` events number them): what a
    /// replay engine could show only by re-running the code. `Ok(None)` when the journal
    /// does not hold that state: a step not scheduled yet, one before the run's last
    /// continue-as-new, or one recorded by a flow version that did not keep step states.
    ///
    /// Errors: [`FlowError::UnknownRun`]; a storage error.
    ///
    /// ```no_run
    /// # async fn demo(engine: flow_runtime::Engine) -> Result<(), flow_runtime::FlowError> {
    /// if let Some(at) = engine.step_locals("order-42", 3).await? {
    ///     for (slot, bytes) in &at.slots {
    ///         println!("slot {slot}: {}", flow_runtime::codec::to_json(bytes)?);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn step_locals(
        &self,
        run_id: &str,
        step: u64,
    ) -> Result<Option<StepLocals>, FlowError> {
        let store = &self.core().store;
        let header = store.header(run_id)?.ok_or_else(|| FlowError::UnknownRun {
            run_id: run_id.to_string(),
        })?;
        if step >= header.steps {
            return Ok(None);
        }
        Ok(store
            .step_state(run_id, step)?
            .map(|(pc, slots)| StepLocals { pc, slots }))
    }

    /// [`step_locals`](Self::step_locals) for each step in `steps` that the journal holds
    /// a state of, in step order, read in one pass (a listing of many steps costs one
    /// read, not one per step).
    ///
    /// Errors: [`FlowError::UnknownRun`]; a storage error.
    pub async fn step_locals_range(
        &self,
        run_id: &str,
        steps: std::ops::Range<u64>,
    ) -> Result<Vec<(u64, StepLocals)>, FlowError> {
        let store = &self.core().store;
        let header = store.header(run_id)?.ok_or_else(|| FlowError::UnknownRun {
            run_id: run_id.to_string(),
        })?;
        let steps = steps.start..steps.end.min(header.steps);
        Ok(store
            .step_states(run_id, steps)?
            .into_iter()
            .map(|(step, (pc, slots))| (step, StepLocals { pc, slots }))
            .collect())
    }
}
