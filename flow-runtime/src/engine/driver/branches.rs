//! A turn of a pending operation made of branches (a single operation, a join or a race): new
//! results, retries and attempts to start, branch by branch; then the step's output once
//! it has one.

use std::collections::BTreeMap;

use super::{Decision, Proposal, RunDriver, TaskCall, TaskProgress, Turn};
use crate::callback::CallbackError;
use crate::engine::step::{end_run, needs, set_needs, Ending, Finished};
use crate::history::EventKind;
use crate::output;
use crate::store::{Branch, BranchPut, BranchRecord, Journal, PendingOp, RunWrite, Shape};

impl RunDriver {
    /// Sorts out each open branch of the pending operation; resumes the workflow once the step
    /// has its output.
    pub(super) fn decide_branches(&mut self, turn: &Turn<'_>, mut write: RunWrite) -> Decision {
        let Turn { snap, op, now, .. } = *turn;

        let before = needs(op, &snap.branches);
        if snap.cancel_requested {
            return self.cancel(turn, write, &before);
        }

        // Sort out each open branch: new results, retries, attempts to start.
        let mut records = snap.branches.clone();
        let mut resolved: Vec<(u32, Vec<u8>)> = Vec::new();
        let mut consumed: Vec<u64> = Vec::new();
        let mut changed = false;
        macro_rules! end {
            ($ending:expr) => {{
                let finished = Finished {
                    op,
                    deadlines: &before.deadlines,
                    resolved,
                };
                return self.settle(end_run(write, Some(finished), $ending));
            }};
        }
        for (i, branch) in op.branches.iter().enumerate() {
            let i = i as u32;
            match records.get(&i) {
                Some(BranchRecord::Done(_)) => continue,
                Some(BranchRecord::Failed(error)) => {
                    let error = error.clone();
                    end!(Ending::Failed(error))
                }
                _ => {}
            }
            let output = match branch {
                Branch::Task { name, args, policy } => {
                    let progress = self.drive_task(
                        turn,
                        i,
                        TaskCall { name, args, policy },
                        None,
                        &mut records,
                        &mut write,
                    );
                    match progress {
                        TaskProgress::Pending { changed: c } => {
                            changed |= c;
                            None
                        }
                        TaskProgress::Finished { output, .. } => Some(output),
                        TaskProgress::End(ending) => end!(ending),
                    }
                }
                Branch::Sleep { until_ms } if *until_ms <= now => {
                    write.events.push(EventKind::TimerFired {
                        step: op.step,
                        branch: i,
                        deadline_ms: *until_ms,
                    });
                    Some(output::unit())
                }
                Branch::Sleep { .. } => None,
                Branch::Signal {
                    name,
                    timeout,
                    deadline_ms,
                } => match self.core.store.oldest_signal(&self.run_id, name, &consumed) {
                    Err(_) => return Decision::Abandon,
                    Ok(Some((seq, payload))) => {
                        consumed.push(seq);
                        Some(output::signal_received(payload, timeout.is_some()))
                    }
                    Ok(None) => match (deadline_ms, timeout) {
                        (Some(deadline), Some(timeout)) if *deadline <= now => {
                            write.events.push(EventKind::TimerFired {
                                step: op.step,
                                branch: i,
                                deadline_ms: *deadline,
                            });
                            match output::signal_timed_out(name, *timeout) {
                                Ok(output) => Some(output),
                                Err(e) => end!(Ending::Faulted(e.to_string())),
                            }
                        }
                        _ => None,
                    },
                },
                Branch::Child { .. } => None,
                Branch::Callback {
                    name,
                    args,
                    policy,
                    token,
                    timeout,
                    deadline_ms,
                    heartbeat,
                } => {
                    let heartbeat_due = match records.get(&i) {
                        Some(BranchRecord::Awaiting {
                            heartbeat_deadline_ms: Some(due),
                        }) if *due <= now => Some(*due),
                        _ => None,
                    };
                    let expired = match (deadline_ms, heartbeat_due) {
                        (Some(deadline), _) if *deadline <= now => Some((
                            *deadline,
                            CallbackError::TimedOut {
                                after: timeout.unwrap_or_default(),
                            },
                        )),
                        (_, Some(due)) => Some((
                            due,
                            CallbackError::HeartbeatTimedOut {
                                after: heartbeat.unwrap_or_default(),
                            },
                        )),
                        _ => None,
                    };
                    if let Some((deadline_ms, error)) = expired {
                        write.events.push(EventKind::TimerFired {
                            step: op.step,
                            branch: i,
                            deadline_ms,
                        });
                        match output::err(&error, "an error outcome") {
                            Ok(output) => Some(output),
                            Err(e) => end!(Ending::Faulted(e.to_string())),
                        }
                    } else if matches!(records.get(&i), Some(BranchRecord::Awaiting { .. })) {
                        None
                    } else {
                        let progress = self.drive_task(
                            turn,
                            i,
                            TaskCall { name, args, policy },
                            Some(token),
                            &mut records,
                            &mut write,
                        );
                        match progress {
                            TaskProgress::Pending { changed: c } => {
                                changed |= c;
                                None
                            }
                            TaskProgress::Finished { failure: None, .. } => {
                                changed = true;
                                let record = BranchRecord::Awaiting {
                                    heartbeat_deadline_ms: heartbeat
                                        .map(|h| now.saturating_add(crate::time::millis(h))),
                                };
                                records.insert(i, record.clone());
                                write.branch_puts.push(BranchPut::new(op.step, i, record));
                                write.events.push(EventKind::CallbackWaiting {
                                    step: op.step,
                                    branch: i,
                                });
                                None
                            }
                            TaskProgress::Finished {
                                failure: Some(error),
                                ..
                            } => match output::err(
                                &CallbackError::TaskFailed(error),
                                "an error outcome",
                            ) {
                                Ok(output) => Some(output),
                                Err(e) => end!(Ending::Faulted(e.to_string())),
                            },
                            TaskProgress::End(ending) => end!(ending),
                        }
                    }
                }
            };
            if let Some(output) = output {
                changed = true;
                records.insert(i, BranchRecord::Done(output.clone()));
                resolved.push((i, output));
            }
        }
        write.inbox_consume = consumed;

        if op.shape.is_join() || op.shape == Shape::FirstOk {
            for (branch, output) in &resolved {
                write.events.push(EventKind::BranchCompleted {
                    step: op.step,
                    branch: *branch,
                    output: output.clone(),
                });
            }
        }
        let first_ok = op.shape == Shape::FirstOk;
        if first_ok {
            for (i, record) in &records {
                if let BranchRecord::Done(bytes) = record {
                    if output::ok_value(bytes).is_none() && output::err_value(bytes).is_none() {
                        end!(Ending::Faulted(format!(
                            "branch {i} of `first_ok` in step {} did not output a Result",
                            op.step
                        )))
                    }
                }
            }
        }
        let all_done = (0..op.branches.len() as u32)
            .all(|i| matches!(records.get(&i), Some(BranchRecord::Done(_))));
        let output = if first_ok && all_done && !records.values().any(is_ok) {
            // Every branch failed: `Err` of their errors, in branch order.
            let errors = (0..op.branches.len() as u32).filter_map(|i| match records.get(&i) {
                Some(BranchRecord::Done(bytes)) => output::err_value(bytes),
                _ => None,
            });
            Some(output::all_failed(errors))
        } else if op.shape == Shape::Race || first_ok {
            // The first branch (in branch order) with a result wins; for `first_ok`, the
            // first with an `Ok`.
            let winner = (0..op.branches.len() as u32).find_map(|i| match records.get(&i) {
                Some(record @ BranchRecord::Done(bytes)) if !first_ok || is_ok(record) => {
                    Some((i, bytes.clone()))
                }
                _ => None,
            });
            winner.map(|(winner, bytes)| {
                write.events.push(EventKind::RaceWon {
                    step: op.step,
                    winner,
                });
                self.cancel_attempts(op.step, Some(winner));
                write.cancel_runs = open_children(op, &records);
                // Only the winner's result is consumed: a losing signal stays in the inbox.
                let winner_seq = resolved.iter().position(|(b, _)| *b == winner);
                if !matches!(op.branches[winner as usize], Branch::Signal { .. }) {
                    write.inbox_consume.clear();
                } else if let Some(pos) = winner_seq {
                    // Signals were consumed in branch order; keep only the winner's.
                    let signal_index = resolved[..pos]
                        .iter()
                        .filter(|(b, _)| matches!(op.branches[*b as usize], Branch::Signal { .. }))
                        .count();
                    let seq = write.inbox_consume.get(signal_index).copied();
                    write.inbox_consume = seq.into_iter().collect();
                }
                match output::ok_value(&bytes) {
                    Some(value) if first_ok => output::first_ok(winner, value),
                    _ => output::race(winner, &bytes),
                }
            })
        } else {
            all_done.then(|| {
                let outputs = (0..op.branches.len() as u32).filter_map(|i| match records.get(&i) {
                    Some(BranchRecord::Done(bytes)) => Some(bytes.as_slice()),
                    _ => None,
                });
                // A join's output is the array of its branches' outputs; a single
                // operation's is its output as it is.
                match &op.shape {
                    Shape::Join => output::join(outputs),
                    Shape::NestedJoin(layout) => output::nested_join(layout, outputs),
                    _ => outputs.map(<[u8]>::to_vec).next().unwrap_or_default(),
                }
            })
        };
        if let Some(output) = output {
            // Attempts still running for this step (a callback's task after its token was
            // completed or timed out) are told to stop.
            self.cancel_attempts(op.step, None);
            return self.resume(turn, write, &before, output, resolved);
        }
        if !changed {
            return Decision::Wait;
        }
        for (branch, output) in resolved {
            write
                .branch_puts
                .push(BranchPut::new(op.step, branch, BranchRecord::Done(output)));
        }
        set_needs(&mut write, &before, &needs(op, &records));
        Decision::Commit(Box::new(Proposal {
            write,
            machine: self.machine.take().map(|c| c.machine),
        }))
    }
}

/// Whether a branch finished with an `Ok` output.
fn is_ok(record: &BranchRecord) -> bool {
    matches!(record, BranchRecord::Done(bytes) if output::ok_value(bytes).is_some())
}

/// The child runs of `op` that have not finished.
pub(super) fn open_children(op: &PendingOp, records: &BTreeMap<u32, BranchRecord>) -> Vec<String> {
    op.branches
        .iter()
        .enumerate()
        .filter(|(i, _)| !records.get(&(*i as u32)).is_some_and(|r| r.is_finished()))
        .filter_map(|(_, b)| match b {
            Branch::Child { run_id, .. } => Some(run_id.clone()),
            _ => None,
        })
        .collect()
}
