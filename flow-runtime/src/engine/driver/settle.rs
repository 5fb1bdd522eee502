//! Attempt settling: moving a task branch on, and judging a finished attempt by its
//! task's retry policy (done, retry later, or the run cannot go on).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{AttemptKey, AttemptOutcome, RunDriver, Turn};
use crate::codec;
use crate::engine::attempt::AttemptEnd;
use crate::engine::step::Ending;
use crate::history::EventKind;
use crate::store::{BranchPut, BranchRecord, PendingOp, RunWrite};
use crate::task::{AttemptClass, TaskPolicy};
use crate::time::now_ms;

/// A task call as a branch or a map item names it.
#[derive(Clone, Copy)]
pub(super) struct TaskCall<'a> {
    pub name: &'a str,
    pub args: &'a [u8],
    pub policy: &'a TaskPolicy,
}

impl RunDriver {
    /// Moves the task of branch `i` on: judges its finished attempt, or starts the next
    /// one when it is due.
    pub(super) fn drive_task(
        &mut self,
        turn: &Turn<'_>,
        i: u32,
        call: TaskCall<'_>,
        token: Option<&str>,
        records: &mut BTreeMap<u32, BranchRecord>,
        write: &mut RunWrite,
    ) -> TaskProgress {
        let Turn { op, now, .. } = *turn;
        let TaskCall { name, policy, .. } = call;
        let key = AttemptKey {
            step: op.step,
            branch: i,
        };
        if let Some(outcome) = self.outcomes.remove(&key) {
            return match settle_attempt(op, i, name, policy, outcome, &mut write.events, now) {
                Verdict::Done(output, failure) => TaskProgress::Finished { output, failure },
                Verdict::Retry(record) => {
                    records.insert(i, record.clone());
                    write.branch_puts.push(BranchPut::new(op.step, i, record));
                    TaskProgress::Pending { changed: true }
                }
                Verdict::End(ending) => TaskProgress::End(ending),
            };
        }
        if !self.inflight.contains_key(&key) {
            let (failed, due) = match records.get(&i) {
                Some(BranchRecord::Retrying {
                    failed_attempts,
                    retry_at_ms,
                }) => (*failed_attempts, *retry_at_ms <= now),
                _ => (0, true),
            };
            if due {
                // Only a damaged journal holds `u32::MAX` failed attempts: never wrap to 0.
                let Some(attempt) = failed.checked_add(1) else {
                    return TaskProgress::End(Ending::Faulted(format!(
                        "task `{name}` (step {}, branch {i}): the attempt counter is exhausted \
                         ({failed} failed attempts): the journal is damaged",
                        op.step
                    )));
                };
                if let Err(error) = self.start_attempt(op, i, call, attempt, token) {
                    return TaskProgress::End(Ending::Faulted(error));
                }
            }
        }
        TaskProgress::Pending { changed: false }
    }
}

/// Where a task branch stands after a turn.
pub(super) enum TaskProgress {
    /// Still running or waiting to retry; `changed` if a record was written.
    Pending { changed: bool },
    /// Finished with this output; `failure` when its last attempt was not a success.
    Finished {
        output: Vec<u8>,
        failure: Option<String>,
    },
    /// The run cannot go on.
    End(Ending),
}

pub(super) enum Verdict {
    /// The output, and the failure when the last attempt was not a success.
    Done(Vec<u8>, Option<String>),
    Retry(BranchRecord),
    End(Ending),
}

/// Judges a finished attempt by the task's policy; appends its events.
pub(super) fn settle_attempt(
    op: &PendingOp,
    branch: u32,
    name: &str,
    policy: &TaskPolicy,
    outcome: AttemptOutcome,
    events: &mut Vec<EventKind>,
    now: u64,
) -> Verdict {
    let step = op.step;
    let attempt = outcome.attempt;
    events.push(EventKind::AttemptStarted {
        step,
        branch,
        attempt,
    });
    let retries_left = attempt < policy.retry.max_attempts.max(1);
    let mut failed = |error: String, retry: bool| -> Option<u64> {
        let retry_at_ms = retry.then(|| {
            let delay = policy.retry.jittered_delay_after(attempt, random_unit());
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
    let output = |output: Result<Vec<u8>, codec::CodecError>, failure: Option<String>| match output
    {
        Ok(bytes) => Verdict::Done(bytes, failure),
        Err(e) => Verdict::End(Ending::Faulted(e.to_string())),
    };
    match outcome.end {
        AttemptEnd::BadArguments(e) => Verdict::End(Ending::Faulted(e.to_string())),
        AttemptEnd::Returned {
            class: AttemptClass::Success,
            output: out,
        } => output(out, None),
        AttemptEnd::Returned {
            class: AttemptClass::NonRetryable(error),
            output: out,
        } => {
            failed(error.clone(), false);
            output(out, Some(error))
        }
        AttemptEnd::Returned {
            class: AttemptClass::Retryable(error),
            output: out,
        } => match failed(error.clone(), retries_left) {
            Some(retry_at_ms) => Verdict::Retry(BranchRecord::Retrying {
                failed_attempts: attempt,
                retry_at_ms,
            }),
            // Exhausted: the last attempt's `Err` reaches the workflow.
            None => output(out, Some(error)),
        },
        AttemptEnd::Failed(failure) => match failed(failure.to_string(), retries_left) {
            Some(retry_at_ms) => Verdict::Retry(BranchRecord::Retrying {
                failed_attempts: attempt,
                retry_at_ms,
            }),
            None => match (outcome.task.failure_output)(failure.clone()) {
                Some(out) => output(out, Some(failure.to_string())),
                None => Verdict::End(Ending::Failed(format!(
                    "{failure} (task `{name}` has no error type to report it to the workflow)"
                ))),
            },
        },
    }
}

/// A random number in `[0, 1)` for retry jitter (std's per-process random hash keys).
fn random_unit() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u64(now_ms());
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}
