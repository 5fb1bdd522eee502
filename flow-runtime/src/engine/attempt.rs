//! One task attempt: the body runs in a tokio task of its own, a panic is a failed attempt
//! (not a crash of the engine), and a timeout aborts it.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::codec::CodecError;
use crate::error::panic_message;
use crate::history::AttemptInProgress;
use crate::task::{AttemptClass, TaskContext, TaskFailure, TaskRegistration};

/// How an attempt ended.
#[derive(Debug)]
pub(crate) enum AttemptEnd {
    /// The body returned.
    Returned {
        class: AttemptClass,
        output: Result<Vec<u8>, CodecError>,
        /// The least delay before a retry the output asked for.
        retry_after: Option<Duration>,
    },
    /// The engine observed a timeout or a panic.
    Failed(TaskFailure),
    /// The stored arguments no longer decode as the task's argument type.
    BadArguments(CodecError),
}

/// The attempts running in this engine, by run and `(step, branch)`: what
/// `Engine::attempts_in_progress` shows. Memory only: an attempt writes nothing to the
/// journal before it ends, and this view costs one lock per attempt's start and end.
#[derive(Default)]
pub(crate) struct RunningAttempts(Mutex<AttemptsByRun>);

/// Run ID -> `(step, branch)` -> the attempt running there.
type AttemptsByRun = HashMap<String, BTreeMap<(u64, u32), AttemptInProgress>>;

impl RunningAttempts {
    /// Shows `attempt` of run `run` until the returned guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>, run: &str, attempt: AttemptInProgress) -> Running {
        let slot = (attempt.step, attempt.branch);
        self.lock()
            .entry(run.to_string())
            .or_default()
            .insert(slot, attempt);
        Running {
            attempts: self.clone(),
            run: run.to_string(),
            slot,
        }
    }

    /// The attempts of run `run` running now, by step and branch.
    pub(crate) fn of(&self, run: &str) -> Vec<AttemptInProgress> {
        self.lock()
            .get(run)
            .map(|attempts| attempts.values().cloned().collect())
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AttemptsByRun> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An attempt shown in [`RunningAttempts`]; dropping it (the attempt ended, was cancelled
/// or aborted) takes it out.
pub(crate) struct Running {
    attempts: Arc<RunningAttempts>,
    run: String,
    slot: (u64, u32),
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = self.attempts.lock();
        if let Some(attempts) = running.get_mut(&self.run) {
            attempts.remove(&self.slot);
            if attempts.is_empty() {
                running.remove(&self.run);
            }
        }
    }
}

/// Aborts the task when dropped (on timeout, or when the driver drops the attempt),
/// unless it was detached.
pub(crate) struct AbortOnDrop<T>(pub JoinHandle<T>, bool);

impl<T> AbortOnDrop<T> {
    pub(crate) fn new(handle: JoinHandle<T>) -> Self {
        AbortOnDrop(handle, true)
    }

    /// Lets the task run on (e.g. a race loser told to stop through its context).
    pub(crate) fn detach(mut self) {
        self.1 = false;
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if self.1 {
            self.0.abort();
        }
    }
}

/// Runs one attempt of `task` with `args` in `ctx`.
///
/// The body is polled right here, inside the attempt's own tokio task (one spawn per
/// attempt, not two): a panic while polling is caught and becomes a failed attempt, and
/// the timeout drops the body. Dropping this future (the driver aborting the attempt)
/// drops the body with it.
pub(crate) async fn run_attempt(
    task: &'static TaskRegistration,
    args: &[u8],
    timeout: Option<Duration>,
    ctx: TaskContext,
) -> AttemptEnd {
    let body = match (task.run)(args) {
        Ok(body) => body,
        Err(e) => return AttemptEnd::BadArguments(e),
    };
    let guarded = CatchPanic(Box::pin(ctx.scope(body)));
    let finished = match timeout {
        Some(after) => match tokio::time::timeout(after, guarded).await {
            Ok(finished) => finished,
            Err(_) => {
                return AttemptEnd::Failed(TaskFailure::TimedOut {
                    task: task.name.to_string(),
                    after,
                })
            }
        },
        None => guarded.await,
    };
    match finished {
        Ok(result) => AttemptEnd::Returned {
            class: result.class,
            output: result.output,
            retry_after: result.retry_after,
        },
        Err(panic) => AttemptEnd::Failed(TaskFailure::Panicked {
            task: task.name.to_string(),
            message: panic_message(&*panic),
        }),
    }
}

/// Polls a future, turning a panic inside `poll` into `Err` with the panic's payload.
struct CatchPanic<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let body = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| body.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}
