//! Task attempts in a test environment: the mock's answer or the body's output, judged by
//! the task's retry policy as the engine judges it. Back-offs are the policy's delays
//! without jitter (so a test knows when the next attempt runs), counted on the virtual
//! clock.

use tokio::sync::watch;

use super::mocks::{Answer, Mocks};
use super::run::{TaskBranch, TaskState};
use super::TestError;
use crate::codec::CodecError;
use crate::history::EventKind;
use crate::task::{find_task, find_unique_task, AttemptClass, TaskContext, TaskFailure};

/// How one attempt ended.
pub(super) enum AttemptEnd {
    Returned {
        class: AttemptClass,
        output: Result<Vec<u8>, CodecError>,
        /// The least delay before a retry the output asked for.
        retry_after: Option<std::time::Duration>,
    },
    /// The environment observed a timeout, a panic or a cancellation.
    Failed(TaskFailure),
}

/// Where a task branch stands after a turn.
pub(super) enum TaskProgress {
    /// Still running or waiting to retry; `changed` if its state moved.
    Pending { changed: bool },
    /// Finished with this output; `failure` when its last attempt was not a success.
    Finished {
        output: Vec<u8>,
        failure: Option<String>,
    },
    /// The run cannot go on: it fails with this error.
    Fail(String),
}

/// Who is calling: for the task's context and idempotency key.
pub(super) struct Caller<'a> {
    pub run_id: &'a str,
    pub step: u64,
    pub branch: u32,
    pub multi: bool,
    pub token: Option<&'a str>,
}

/// Runs one attempt: the mock's answer, or the linked body (`None`: the attempt hangs).
pub(super) async fn attempt(
    mocks: &Mocks,
    task: &TaskBranch,
    attempt: u32,
    caller: &Caller<'_>,
) -> Result<Option<AttemptEnd>, TestError> {
    let name = task.name.as_str();
    if let Some(answer) = mocks.call(name, &task.args) {
        return match answer {
            Ok(Answer::Output { bytes, class }) => Ok(Some(AttemptEnd::Returned {
                class,
                output: Ok(bytes),
                retry_after: None,
            })),
            Ok(Answer::Hang) => Ok(None),
            Err(message) => Err(TestError::Mock {
                task: name.to_string(),
                message,
            }),
        };
    }
    let registration = find_unique_task(name)?.ok_or_else(|| TestError::UnknownTask {
        name: name.to_string(),
    })?;
    let body = (registration.run)(&task.args)?;
    let key = super::world::child_id(caller.run_id, caller.step, caller.branch, caller.multi);
    // Nobody cancels a body the environment awaits to its end.
    let (_cancel, cancelled) = watch::channel(false);
    let mut ctx = TaskContext::new(caller.run_id.to_string(), key, attempt, cancelled);
    if let Some(token) = caller.token {
        ctx = ctx.with_callback_token(token.to_string());
    }
    // The body runs for real: its timeout is real time, as in an engine.
    let timeout = task.policy.effective_timeout();
    let handle = tokio::spawn(tokio::time::timeout(timeout, ctx.scope(body)));
    Ok(Some(match handle.await {
        Ok(Ok(result)) => AttemptEnd::Returned {
            class: result.class,
            output: result.output,
            retry_after: result.retry_after,
        },
        Ok(Err(_elapsed)) => AttemptEnd::Failed(TaskFailure::TimedOut {
            task: name.to_string(),
            after: timeout,
        }),
        Err(join) => AttemptEnd::Failed(TaskFailure::Panicked {
            task: name.to_string(),
            message: match join.try_into_panic() {
                Ok(panic) => crate::error::panic_message(&*panic),
                Err(e) => e.to_string(),
            },
        }),
    }))
}

/// Encodes the output `failure` turns into for task `name`, if its output type can
/// carry one.
pub(super) fn failure_output(
    mocks: &Mocks,
    name: &str,
    failure: TaskFailure,
) -> Option<Result<Vec<u8>, CodecError>> {
    match mocks.failure_output(name) {
        Some(encode) => encode(failure),
        None => find_task(name).and_then(|t| (t.failure_output)(failure)),
    }
}

/// Judges attempt `attempt`'s end by the task's policy: done, retry at a virtual instant,
/// or the run fails. Appends the attempt's events.
pub(super) fn judge(
    mocks: &Mocks,
    task: &mut TaskBranch,
    at: (u64, u32),
    attempt: u32,
    end: AttemptEnd,
    events: &mut Vec<EventKind>,
    now: u64,
) -> TaskProgress {
    let (step, branch) = at;
    events.push(EventKind::AttemptStarted {
        step,
        branch,
        attempt,
    });
    let retries_left = attempt < task.policy.retry.max_attempts.max(1);
    // The least delay before a retry the attempt's output asked for (`Task::retry_delay`).
    let requested = match &end {
        AttemptEnd::Returned { retry_after, .. } => *retry_after,
        AttemptEnd::Failed(_) => None,
    };
    let mut failed = |error: String, retry: bool| -> Option<u64> {
        let retry_at_ms = retry.then(|| {
            // No jitter here: a test knows when it retries. A requested delay counts as in
            // an engine (`RetryPolicy::delay_with_request`).
            let policy = &task.policy.retry;
            let delay = policy.delay_after(attempt);
            let delay = requested.map_or(delay, |r| delay.max(r.min(policy.max_interval)));
            now.saturating_add(crate::time::millis(delay))
        });
        events.push(EventKind::AttemptFailed {
            step,
            branch,
            attempt,
            error,
            retry_at_ms,
        });
        retry_at_ms
    };
    let end = match end {
        AttemptEnd::Returned { output: Err(e), .. } => {
            AttemptEnd::Failed(TaskFailure::OutputNotStored {
                task: task.name.clone(),
                reason: e.to_string(),
            })
        }
        end => end,
    };
    let (output, failure, retry_at) = match end {
        AttemptEnd::Returned {
            class: AttemptClass::Success,
            output,
            ..
        } => (output, None, None),
        AttemptEnd::Returned {
            class: AttemptClass::NonRetryable(error),
            output,
            ..
        } => {
            failed(error.clone(), false);
            (output, Some(error), None)
        }
        AttemptEnd::Returned {
            class: AttemptClass::Retryable(error),
            output,
            ..
        } => {
            let retry_at = failed(error.clone(), retries_left);
            (output, Some(error), retry_at)
        }
        AttemptEnd::Failed(failure) => {
            let text = failure.to_string();
            if let Some(retry_at) = failed(text.clone(), retries_left) {
                task.failed = attempt;
                task.state = TaskState::RetryAt(retry_at);
                return TaskProgress::Pending { changed: true };
            }
            match failure_output(mocks, &task.name, failure) {
                Some(output) => (output, Some(text), None),
                None => {
                    return TaskProgress::Fail(format!(
                        "{text} (task `{}` has no error type to report it to the workflow)",
                        task.name
                    ))
                }
            }
        }
    };
    if let Some(retry_at) = retry_at {
        task.failed = attempt;
        task.state = TaskState::RetryAt(retry_at);
        return TaskProgress::Pending { changed: true };
    }
    match output {
        Ok(output) => TaskProgress::Finished { output, failure },
        Err(e) => TaskProgress::Fail(e.to_string()),
    }
}
