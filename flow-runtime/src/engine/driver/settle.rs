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
use crate::task::{is_at_most_once, AttemptClass, RetryPolicy, TaskFailure, TaskPolicy};
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
            let retry = RetryAs::Plain;
            return self.judged(op, i, name, policy, outcome, retry, records, write, now);
        }
        if self.inflight.contains_key(&key) {
            return TaskProgress::Pending { changed: false };
        }
        let starts = &self.core.drivers.starts;
        let at_most_once = is_at_most_once(name);
        let (attempt, recorded) = match records.get(&i) {
            Some(BranchRecord::Started { attempt, .. }) => {
                let attempt = *attempt;
                if starts.is_recorded(&self.run_id, key, attempt) {
                    starts.begun(&self.run_id, key, attempt);
                    (attempt, true)
                } else {
                    // Written right before the attempt began, by an engine that ended.
                    let Some(task) = self.core.registry.find_task(name) else {
                        return TaskProgress::End(Ending::Blocked(unregistered(name)));
                    };
                    let outcome = AttemptOutcome {
                        step: op.step,
                        attempt,
                        task,
                        end: AttemptEnd::Failed(TaskFailure::Interrupted {
                            task: name.to_string(),
                            attempt,
                        }),
                        took: None,
                        ack: None,
                    };
                    let retry = if at_most_once {
                        RetryAs::Never
                    } else {
                        RetryAs::Recorded
                    };
                    return self.judged(op, i, name, policy, outcome, retry, records, write, now);
                }
            }
            Some(
                record @ (BranchRecord::Retrying {
                    failed_attempts,
                    retry_at_ms,
                }
                | BranchRecord::RetryingAfterInterrupted {
                    failed_attempts,
                    retry_at_ms,
                }),
            ) => {
                if *retry_at_ms > now {
                    return TaskProgress::Pending { changed: false };
                }
                let Some(attempt) = next_attempt(*failed_attempts) else {
                    let failed = *failed_attempts;
                    return TaskProgress::End(Ending::Faulted(exhausted(name, op.step, i, failed)));
                };
                let after_interrupted =
                    matches!(record, BranchRecord::RetryingAfterInterrupted { .. });
                let unsure = starts.due_before_open(*retry_at_ms);
                (attempt, !(at_most_once || after_interrupted || unsure))
            }
            _ => (
                1,
                !(at_most_once || starts.due_before_open(op.scheduled_at_ms)),
            ),
        };
        if !recorded {
            // A start is recorded only for an attempt that can begin: a missing task's
            // record would later read as an interruption.
            if self.core.registry.find_task(name).is_none() {
                return TaskProgress::End(Ending::Blocked(unregistered(name)));
            }
            // Durable before it runs: the next turn starts it.
            let record = BranchRecord::Started {
                attempt,
                at_ms: now,
            };
            starts.recorded(&self.run_id, key, attempt);
            records.insert(i, record.clone());
            write.branch_puts.push(BranchPut::new(op.step, i, record));
            return TaskProgress::Pending { changed: true };
        }
        if let Err(error) = self.start_attempt(op, i, call, attempt, token) {
            return TaskProgress::End(Ending::Blocked(error));
        }
        TaskProgress::Pending { changed: false }
    }

    /// Judges a finished (or interrupted) attempt and records what follows.
    #[allow(clippy::too_many_arguments)]
    fn judged(
        &mut self,
        op: &PendingOp,
        i: u32,
        name: &str,
        policy: &TaskPolicy,
        outcome: AttemptOutcome,
        retry: RetryAs,
        records: &mut BTreeMap<u32, BranchRecord>,
        write: &mut RunWrite,
        now: u64,
    ) -> TaskProgress {
        let final_attempt;
        let policy = match retry {
            RetryAs::Never => {
                final_attempt = TaskPolicy {
                    retry: RetryPolicy {
                        max_attempts: 1,
                        ..policy.retry.clone()
                    },
                    ..policy.clone()
                };
                &final_attempt
            }
            _ => policy,
        };
        match settle_attempt(op, i, name, policy, outcome, &mut write.events, now) {
            Verdict::Done(output, failure) => TaskProgress::Finished { output, failure },
            Verdict::Retry(record) => {
                self.core.metrics.retry_scheduled(name);
                let record = match (retry, record) {
                    // The attempt after an interrupted one starts with a record.
                    (
                        RetryAs::Recorded,
                        BranchRecord::Retrying {
                            failed_attempts,
                            retry_at_ms,
                        },
                    ) => BranchRecord::RetryingAfterInterrupted {
                        failed_attempts,
                        retry_at_ms,
                    },
                    (_, record) => record,
                };
                records.insert(i, record.clone());
                write.branch_puts.push(BranchPut::new(op.step, i, record));
                TaskProgress::Pending { changed: true }
            }
            Verdict::End(ending) => TaskProgress::End(ending),
        }
    }
}

/// How the attempt after a failed one is scheduled.
#[derive(Clone, Copy)]
enum RetryAs {
    /// As the policy says, without a start record.
    Plain,
    /// As the policy says, with its start recorded (the failed one was interrupted).
    Recorded,
    /// Not at all (an interrupted at-most-once attempt).
    Never,
}

/// The number of the attempt after `failed` failed ones; `None` only in a damaged journal.
fn next_attempt(failed: u32) -> Option<u32> {
    failed.checked_add(1)
}

fn exhausted(name: &str, step: u64, branch: u32, failed: u32) -> String {
    format!(
        "task `{name}` (step {step}, branch {branch}): the attempt counter is exhausted \
         ({failed} failed attempts): the journal is damaged"
    )
}

fn unregistered(name: &str) -> String {
    format!(
        "task `{name}` is not registered: no #[task] with this name is linked into this \
         program; the run waits, unchanged, until an engine whose program links the task \
         opens the journal"
    )
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
    // The least delay before a retry the attempt's output asked for (`Task::retry_delay`).
    let requested = match &outcome.end {
        AttemptEnd::Returned { retry_after, .. } => *retry_after,
        _ => None,
    };
    let mut failed = |error: String, retry: bool| -> Option<u64> {
        let retry_at_ms = retry.then(|| {
            let delay = policy
                .retry
                .delay_with_request(attempt, random_unit(), requested);
            now.saturating_add(crate::time::millis(delay))
        });
        match retry_at_ms {
            Some(at) => tracing::info!(
                step, branch, task = name, attempt, %error,
                retry_in_ms = at.saturating_sub(now),
                "task attempt failed; retrying"
            ),
            None => tracing::warn!(
                step, branch, task = name, attempt, %error,
                "task attempt failed; no retry left"
            ),
        }
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
    let end = match outcome.end {
        // An output that cannot be stored (over the payload limit, or its serde impl
        // failed) is the attempt's failure, which the workflow can handle like any other.
        AttemptEnd::Returned { output: Err(e), .. } => {
            AttemptEnd::Failed(TaskFailure::OutputNotStored {
                task: name.to_string(),
                reason: e.to_string(),
            })
        }
        end => end,
    };
    match end {
        // Arguments stored by other code: wait for that code, as for a missing task.
        AttemptEnd::BadArguments(e) => Verdict::End(Ending::Blocked(e.to_string())),
        AttemptEnd::Returned {
            class: AttemptClass::Success,
            output: out,
            ..
        } => {
            tracing::debug!(step, branch, task = name, attempt, "task attempt succeeded");
            output(out, None)
        }
        AttemptEnd::Returned {
            class: AttemptClass::NonRetryable(error),
            output: out,
            ..
        } => {
            failed(error.clone(), false);
            output(out, Some(error))
        }
        AttemptEnd::Returned {
            class: AttemptClass::Retryable(error),
            output: out,
            ..
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
