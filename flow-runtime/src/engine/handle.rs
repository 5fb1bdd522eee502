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
        let (status, output) = wait_final(&self.engine, &self.run_id).await?;
        judge::<W>(&self.run_id, status, output)?.ok_or_else(|| {
            FlowError::storage(format!(
                "internal: run `{}` was found running after it ended",
                self.run_id
            ))
        })
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

/// A run's status and output (once it completed), as [`RunHandle::result`] and
/// [`Engine::wait`] return at.
pub(super) type FinalState = (RunStatus, Option<Vec<u8>>);

/// Waits until run `run_id` stops moving in this engine: it ended (completed, failed,
/// cancelled), faulted, or is blocked here (waiting would be forever; its status says
/// [`RunStatus::Blocked`]). Returns at once for a run in such a state already (even one
/// that got there before the engine was restarted). Errors: an unknown run, a storage
/// error, the engine stopped.
pub(super) async fn wait_final(engine: &Engine, run_id: &str) -> Result<FinalState, FlowError> {
    let core = engine.core();
    let waiter = core.waiters.subscribe(run_id);
    let mut stop = core.stop_receiver();
    loop {
        let notified = waiter.waiting.notify.notified();
        tokio::pin!(notified);
        // Registered before reading, so an end committed in between is not missed.
        notified.as_mut().enable();
        let done = match waiter.waiting.ended() {
            Some((StoredStatus::Running | StoredStatus::Waiting, _)) => None,
            Some((status, output)) => Some((status.to_public(), output)),
            // A run with a live driver has not ended: it leaves before it notifies.
            None if core.drivers.is_live(run_id) => None,
            None => final_state(engine, run_id)?,
        };
        if let Some(done) = done {
            return Ok(done);
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

/// The run's final state if it is in one now (see [`wait_final`]), read from the journal.
fn final_state(engine: &Engine, run_id: &str) -> Result<Option<FinalState>, FlowError> {
    let core = engine.core();
    let (header, output) =
        core.store
            .header_and_output(run_id)?
            .ok_or_else(|| FlowError::UnknownRun {
                run_id: run_id.to_string(),
            })?;
    let status = match header.status {
        StoredStatus::Running | StoredStatus::Waiting => {
            match core.blocked_reason(run_id, &header) {
                Some(reason) => RunStatus::Blocked { reason },
                None => return Ok(None),
            }
        }
        status => status.to_public(),
    };
    Ok(Some((status, output)))
}

/// The result of run `run_id` of workflow `W` with `status` (and `output`, if it
/// completed): `Ok(None)` while it runs or waits, the decoded output once it completed,
/// and for a run that failed, was cancelled, faulted or is blocked, the error
/// [`RunHandle::result`] gives.
pub(super) fn judge<W: Workflow>(
    run_id: &str,
    status: RunStatus,
    output: Option<Vec<u8>>,
) -> Result<Option<W::Output>, FlowError> {
    let run_id = run_id.to_string();
    match status {
        RunStatus::Completed | RunStatus::ReturnedErr => {
            let bytes = output.ok_or_else(|| FlowError::Corrupt {
                path: "journal".into(),
                message: format!("the output of completed run `{run_id}` is missing"),
            })?;
            codec::decode(&bytes, || {
                format!("output of run `{run_id}` (workflow `{}`)", W::NAME)
            })
            .map(Some)
            .map_err(FlowError::from)
        }
        RunStatus::Failed { error } => Err(FlowError::RunFailed { run_id, error }),
        RunStatus::Faulted { error } => Err(FlowError::RunFaulted { run_id, error }),
        RunStatus::Cancelled => Err(FlowError::RunCancelled { run_id }),
        RunStatus::Blocked { reason } => Err(FlowError::RunBlocked { run_id, reason }),
        RunStatus::Running | RunStatus::Waiting => Ok(None),
    }
}
