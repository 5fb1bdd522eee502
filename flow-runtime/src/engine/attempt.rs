//! One task attempt: the body runs in its own tokio task, so a panic is a failed attempt
//! (not a crash of the engine), and a timeout aborts it.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::codec::CodecError;
use crate::error::panic_message;
use crate::task::{AttemptClass, TaskContext, TaskFailure, TaskRegistration};

/// How an attempt ended.
#[derive(Debug)]
pub(crate) enum AttemptEnd {
    /// The body returned.
    Returned {
        class: AttemptClass,
        output: Result<Vec<u8>, CodecError>,
    },
    /// The engine observed a timeout or a panic.
    Failed(TaskFailure),
    /// The stored arguments no longer decode as the task's argument type.
    BadArguments(CodecError),
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
    let mut handle = AbortOnDrop::new(tokio::spawn(ctx.scope(body)));
    let joined = match timeout {
        Some(after) => match tokio::time::timeout(after, &mut handle.0).await {
            Ok(joined) => joined,
            Err(_) => {
                return AttemptEnd::Failed(TaskFailure::TimedOut {
                    task: task.name.to_string(),
                    after,
                })
            }
        },
        None => (&mut handle.0).await,
    };
    match joined {
        Ok(result) => AttemptEnd::Returned {
            class: result.class,
            output: result.output,
        },
        Err(e) if e.is_panic() => AttemptEnd::Failed(TaskFailure::Panicked {
            task: task.name.to_string(),
            message: panic_message(&*e.into_panic()),
        }),
        Err(_) => AttemptEnd::Failed(TaskFailure::Cancelled {
            task: task.name.to_string(),
        }),
    }
}
