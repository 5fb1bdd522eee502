//! Following one run: its result, status and history.

use std::marker::PhantomData;

use serde::Serialize;

use crate::codec;
use crate::engine::Engine;
use crate::error::FlowError;
use crate::history::{HistoryEvent, RunStatus};
use crate::store::{Journal, StoredStatus};
use crate::workflow::Workflow;

/// A run of workflow `W`, returned by [`Engine::start`] and [`Engine::handle`].
///
/// ```no_run
/// # async fn demo<W: flow_runtime::Workflow>(engine: flow_runtime::Engine) -> Result<(), flow_runtime::FlowError> {
/// let run = engine.handle::<W>("order-42")?;
/// let output: W::Output = run.result().await?;
/// # Ok(()) }
/// ```
pub struct RunHandle<W: Workflow> {
    engine: Engine,
    run_id: String,
    _workflow: PhantomData<fn() -> W>,
}

impl<W: Workflow> Clone for RunHandle<W> {
    fn clone(&self) -> Self {
        RunHandle {
            engine: self.engine.clone(),
            run_id: self.run_id.clone(),
            _workflow: PhantomData,
        }
    }
}

impl<W: Workflow> std::fmt::Debug for RunHandle<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHandle")
            .field("workflow", &W::NAME)
            .field("run_id", &self.run_id)
            .finish()
    }
}

impl<W: Workflow> RunHandle<W> {
    pub(crate) fn new(engine: Engine, run_id: String) -> Self {
        RunHandle {
            engine,
            run_id,
            _workflow: PhantomData,
        }
    }

    /// The run's ID.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Waits until the run ends and returns the workflow's output; returns at once for a
    /// run that ended earlier (even before the engine was restarted).
    ///
    /// Errors: the run failed, was cancelled or is faulted; it is blocked
    /// ([`FlowError::RunBlocked`], as [`status`](Self::status) says
    /// [`RunStatus::Blocked`]: its workflow is not registered here or has different code,
    /// a task it calls is not linked, or its stored state no longer decodes); its stored
    /// output no longer decodes as `W::Output`; the engine stopped.
    pub async fn result(&self) -> Result<W::Output, FlowError> {
        let core = self.engine.core();
        let waiter = core.waiters.subscribe(&self.run_id);
        let mut stop = core.stop_receiver();
        loop {
            let notified = waiter.waiting.notify.notified();
            tokio::pin!(notified);
            // Registered before reading, so an end committed in between is not missed.
            notified.as_mut().enable();
            let outcome = match waiter.waiting.ended() {
                Some((status, output)) => self.judge(status, output),
                // A run with a live driver has not ended: it leaves before it notifies.
                None if core.drivers.is_live(&self.run_id) => Ok(None),
                None => self.outcome(),
            };
            if let Some(result) = outcome? {
                return result;
            }
            if let Some(reason) = stop.borrow().clone() {
                return Err(FlowError::stopped(reason));
            }
            tokio::select! {
                _ = notified => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// The run's result if it has one now, read from the journal.
    fn outcome(&self) -> Result<Option<Result<W::Output, FlowError>>, FlowError> {
        let core = self.engine.core();
        let (header, output) =
            core.store
                .header_and_output(&self.run_id)?
                .ok_or_else(|| FlowError::UnknownRun {
                    run_id: self.run_id.clone(),
                })?;
        match header.status {
            // Says what `status` says ([`RunStatus::Blocked`]): waiting in this engine
            // would be forever.
            StoredStatus::Running | StoredStatus::Waiting => {
                Ok(core.blocked_reason(&self.run_id, &header).map(|reason| {
                    Err(FlowError::RunBlocked {
                        run_id: self.run_id.clone(),
                        reason,
                    })
                }))
            }
            status => self.judge(status, output),
        }
    }

    /// The result of a run that ended with `status` (and `output`, if it completed).
    fn judge(
        &self,
        status: StoredStatus,
        output: Option<Vec<u8>>,
    ) -> Result<Option<Result<W::Output, FlowError>>, FlowError> {
        let run_id = self.run_id.clone();
        Ok(Some(match status {
            StoredStatus::Completed => {
                let bytes = output.ok_or_else(|| FlowError::Corrupt {
                    path: "journal".into(),
                    message: format!("the output of completed run `{run_id}` is missing"),
                })?;
                codec::decode(&bytes, || {
                    format!("output of run `{run_id}` (workflow `{}`)", W::NAME)
                })
                .map_err(FlowError::from)
            }
            StoredStatus::Failed(error) => Err(FlowError::RunFailed { run_id, error }),
            StoredStatus::Faulted(error) => Err(FlowError::RunFaulted { run_id, error }),
            StoredStatus::Cancelled => Err(FlowError::RunCancelled { run_id }),
            StoredStatus::Running | StoredStatus::Waiting => return Ok(None),
        }))
    }

    /// Where the run stands now.
    pub async fn status(&self) -> Result<RunStatus, FlowError> {
        self.engine.status(&self.run_id).await
    }

    /// The run's history so far.
    pub async fn history(&self) -> Result<Vec<HistoryEvent>, FlowError> {
        self.engine.history(&self.run_id).await
    }

    /// Sends the run a signal; see [`Engine::signal`].
    pub async fn signal<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<(), FlowError> {
        self.engine.signal(&self.run_id, name, value).await
    }

    /// Cancels the run; see [`Engine::cancel`].
    pub async fn cancel(&self) -> Result<(), FlowError> {
        self.engine.cancel(&self.run_id).await
    }
}
