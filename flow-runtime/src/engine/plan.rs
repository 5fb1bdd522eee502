//! Turning what happened to a run into one `RunWrite`: stepping the machine after an
//! operation finished, scheduling the next operation, failing or faulting the run.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::codec;
use crate::durable::SignalTimeout;
use crate::engine::registry::{Registry, WorkflowEntry};
use crate::error::panic_message;
use crate::history::EventKind;
use crate::machine::{Machine, Transition};
use crate::op::OpRequest;
use crate::store::records::{
    flatten, Branch, BranchRecord, ChildStart, ParentLink, PendingOp, StoredStatus,
};
use crate::store::{PendingChange, RunWrite};

/// What a pending operation needs from the engine in a given state of its branches.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Needs {
    /// Deadlines to keep in the timers table.
    pub deadlines: BTreeSet<u64>,
    /// Work without a deadline: a task attempt to run, or every branch done.
    pub active: bool,
}

pub(crate) fn needs(op: &PendingOp, records: &BTreeMap<u32, BranchRecord>) -> Needs {
    let mut needs = Needs::default();
    let mut open = 0;
    for (i, branch) in op.branches.iter().enumerate() {
        let record = records.get(&(i as u32));
        if matches!(
            record,
            Some(BranchRecord::Done(_) | BranchRecord::Failed(_))
        ) {
            continue;
        }
        open += 1;
        match (branch, record) {
            (Branch::Task { .. }, Some(BranchRecord::Retrying { retry_at_ms, .. })) => {
                needs.deadlines.insert(*retry_at_ms);
            }
            (Branch::Task { .. }, _) => needs.active = true,
            (Branch::Sleep { until_ms }, _) => {
                needs.deadlines.insert(*until_ms);
            }
            (Branch::Signal { deadline_ms, .. }, _) => needs.deadlines.extend(*deadline_ms),
            // A finishing child writes the result and marks this run active itself.
            (Branch::Child { .. }, _) => {}
        }
    }
    needs.active |= open == 0;
    needs
}

/// Sets the timer and active changes of `write` for going from `before` to `after`.
pub(crate) fn set_needs(write: &mut RunWrite, before: &Needs, after: &Needs) {
    write.timers_remove = before
        .deadlines
        .difference(&after.deadlines)
        .copied()
        .collect();
    write.timers_add = after
        .deadlines
        .difference(&before.deadlines)
        .copied()
        .collect();
    write.active = after.active;
    write.header.status = if after.active {
        StoredStatus::Running
    } else {
        StoredStatus::Waiting
    };
}

/// The output of a signal wait that received `payload`.
///
/// A wait with a timeout outputs a `Result<T, SignalTimeout>`, which postcard encodes as
/// the variant index (a varint: one byte 0 for `Ok`) followed by the value, so the payload
/// bytes are reused as they are.
pub(crate) fn signal_received(payload: Vec<u8>, with_timeout: bool) -> Vec<u8> {
    if !with_timeout {
        return payload;
    }
    let mut out = Vec::with_capacity(payload.len() + 1);
    out.push(0);
    out.extend_from_slice(&payload);
    out
}

/// The output of a signal wait whose timeout expired: `Err(SignalTimeout)`.
pub(crate) fn signal_timed_out(
    signal: &str,
    after: Duration,
) -> Result<Vec<u8>, codec::CodecError> {
    let timeout = SignalTimeout {
        signal: signal.to_string(),
        after,
    };
    let mut out = vec![1];
    out.extend(codec::encode(&timeout, || "signal timeout".to_string())?);
    Ok(out)
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepOutcome {
    /// The run awaits its next operation; the machine is valid for the new state.
    Suspended,
    /// The run is settled (completed, failed or faulted).
    Settled,
}

/// The run's pending operation before the step, with the deadlines it had.
pub(crate) struct Finished<'a> {
    pub op: &'a PendingOp,
    pub deadlines: &'a BTreeSet<u64>,
    /// Branch outputs first known in this transition; kept if the step fails.
    pub resolved: Vec<(u32, Vec<u8>)>,
}

/// Steps `machine` (resumed with `resume`, the finished operation's output) and completes
/// `write` with the result: the next operation, the run's end, or its failure.
pub(crate) fn step_run(
    registry: &Registry,
    entry: &WorkflowEntry,
    machine: &mut Machine,
    resume: Option<Vec<u8>>,
    mut write: RunWrite,
    finished: Option<Finished<'_>>,
    now_ms: u64,
) -> (RunWrite, StepOutcome) {
    if let (Some(done), Some(output)) = (&finished, &resume) {
        write.events.push(EventKind::StepCompleted {
            step: done.op.step,
            output: output.clone(),
        });
    }
    if let Some(output) = resume {
        machine.set_resume(output);
    }
    let result = catch_unwind(AssertUnwindSafe(|| (entry.step)(machine)));
    let slot_writes = machine.take_writes();
    let transition = match result {
        Ok(Ok(transition)) => transition,
        Ok(Err(fault)) => {
            let error = format!("workflow `{}`: {fault}", entry.name);
            return (
                end_run(write, finished, Ending::Faulted(error)),
                StepOutcome::Settled,
            );
        }
        Err(panic) => {
            let error = format!(
                "workflow `{}` panicked: {}",
                entry.name,
                panic_message(&*panic)
            );
            return (
                end_run(write, finished, Ending::Failed(error)),
                StepOutcome::Settled,
            );
        }
    };
    let old_deadlines = finished
        .as_ref()
        .map(|f| f.deadlines.clone())
        .unwrap_or_default();
    if let Some(done) = &finished {
        write.clear_branches = Some(done.op.step);
    }
    match transition {
        Transition::Complete { output } => {
            write.slots = slot_writes;
            write.header.pc = machine.pc();
            write.header.started = true;
            write.header.status = StoredStatus::Completed;
            write.events.push(EventKind::RunCompleted {
                output: output.clone(),
            });
            write.pending = PendingChange::Remove;
            write.timers_remove = old_deadlines.into_iter().collect();
            write.timers_add.clear();
            write.active = false;
            write.output = Some(output);
            (write, StepOutcome::Settled)
        }
        Transition::Suspend { request, state } => {
            let step = write.header.steps;
            let op = match schedule(registry, &write.run_id, step, state, &request, now_ms) {
                Ok((op, children)) => {
                    write.children = children;
                    op
                }
                Err(error) => {
                    write.clear_branches = None;
                    return (
                        end_run(write, finished, Ending::Faulted(error)),
                        StepOutcome::Settled,
                    );
                }
            };
            write.slots = slot_writes;
            write.header.pc = machine.pc();
            write.header.steps = step + 1;
            write.header.started = true;
            write.events.push(EventKind::StepScheduled {
                step,
                state,
                name: op.name.clone(),
                request,
            });
            let before = Needs {
                deadlines: old_deadlines,
                active: false,
            };
            set_needs(&mut write, &before, &needs(&op, &BTreeMap::new()));
            write.pending = PendingChange::Set(op);
            (write, StepOutcome::Suspended)
        }
    }
}

/// The pending operation for `request`, and the child runs it starts.
fn schedule(
    registry: &Registry,
    run_id: &str,
    step: u64,
    state: u32,
    request: &OpRequest,
    now_ms: u64,
) -> Result<(PendingOp, Vec<ChildStart>), String> {
    let join = matches!(request, OpRequest::All(_));
    let mut leaves = Vec::new();
    flatten(request, &mut leaves);
    let mut children = Vec::new();
    let mut branches = Vec::with_capacity(leaves.len());
    for (i, leaf) in leaves.into_iter().enumerate() {
        branches.push(match leaf {
            OpRequest::Task { name, args, policy } => Branch::Task { name, args, policy },
            OpRequest::Sleep { until_ms } => Branch::Sleep { until_ms },
            OpRequest::Signal { name, timeout } => Branch::Signal {
                name,
                deadline_ms: timeout.map(|t| now_ms.saturating_add(t.as_millis() as u64)),
                timeout,
            },
            OpRequest::Child { workflow, input } => {
                let Some(entry) = registry.get(&workflow) else {
                    return Err(format!(
                        "child workflow `{workflow}` is not registered in this engine; add \
                         `.register::<{workflow}>()` to the EngineBuilder"
                    ));
                };
                let child_id = if join {
                    format!("{run_id}/{step}.{i}")
                } else {
                    format!("{run_id}/{step}")
                };
                children.push(ChildStart {
                    run_id: child_id.clone(),
                    workflow: workflow.clone(),
                    fingerprint: entry.fingerprint,
                    input,
                    parent: ParentLink {
                        run_id: run_id.to_string(),
                        step,
                        branch: i as u32,
                    },
                });
                Branch::Child {
                    run_id: child_id,
                    workflow,
                }
            }
            OpRequest::All(_) => unreachable!("flatten removes joins"),
        });
    }
    let op = PendingOp {
        step,
        state,
        name: request.label(),
        scheduled_at_ms: now_ms,
        join,
        branches,
    };
    Ok((op, children))
}

/// How a run ends abnormally.
pub(crate) enum Ending {
    Failed(String),
    Faulted(String),
    Cancelled,
}

/// Ends the run without completing it. Nothing is deleted: the pending operation stays,
/// and branch outputs first known now are stored, so no committed result is lost.
pub(crate) fn end_run(
    mut write: RunWrite,
    finished: Option<Finished<'_>>,
    ending: Ending,
) -> RunWrite {
    write.slots.clear();
    write.children.clear();
    write.pending = PendingChange::Keep;
    write.clear_branches = None;
    write.timers_add.clear();
    write.active = false;
    if let Some(done) = finished {
        write.timers_remove = done.deadlines.iter().copied().collect();
        for (branch, output) in done.resolved {
            write
                .branch_puts
                .push((done.op.step, branch, BranchRecord::Done(output)));
        }
    }
    let (status, event) = match ending {
        Ending::Failed(error) => (
            StoredStatus::Failed(error.clone()),
            EventKind::RunFailed { error },
        ),
        Ending::Faulted(error) => (
            StoredStatus::Faulted(error.clone()),
            EventKind::RunFaulted { error },
        ),
        Ending::Cancelled => (StoredStatus::Cancelled, EventKind::RunCancelled),
    };
    write.header.status = status;
    write.events.push(event);
    write
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_outputs_match_postcard_results() {
        let payload = codec::encode(&42u32, String::new).unwrap();
        let ok: Result<u32, SignalTimeout> = Ok(42);
        assert_eq!(
            signal_received(payload.clone(), true),
            postcard::to_stdvec(&ok).unwrap()
        );
        assert_eq!(signal_received(payload.clone(), false), payload);

        let after = Duration::from_millis(1500);
        let err: Result<u32, SignalTimeout> = Err(SignalTimeout {
            signal: "approval".into(),
            after,
        });
        assert_eq!(
            signal_timed_out("approval", after).unwrap(),
            postcard::to_stdvec(&err).unwrap()
        );

        let back: Result<String, SignalTimeout> = codec::decode(
            &signal_received(codec::encode("yes", String::new).unwrap(), true),
            String::new,
        )
        .unwrap();
        assert_eq!(back, Ok("yes".to_string()));
    }

    #[test]
    fn needs_tracks_deadlines_and_active_work() {
        let op = PendingOp {
            step: 3,
            state: 0,
            name: "join(3)".into(),
            scheduled_at_ms: 0,
            join: true,
            branches: vec![
                Branch::Task {
                    name: "t".into(),
                    args: vec![],
                    policy: Default::default(),
                },
                Branch::Sleep { until_ms: 50 },
                Branch::Signal {
                    name: "s".into(),
                    timeout: None,
                    deadline_ms: None,
                },
            ],
        };
        let mut records = BTreeMap::new();
        let n = needs(&op, &records);
        assert!(n.active);
        assert_eq!(n.deadlines, BTreeSet::from([50]));
        records.insert(
            0,
            BranchRecord::Retrying {
                failed_attempts: 1,
                retry_at_ms: 70,
            },
        );
        let n = needs(&op, &records);
        assert!(!n.active);
        assert_eq!(n.deadlines, BTreeSet::from([50, 70]));
        records.insert(0, BranchRecord::Done(vec![]));
        records.insert(1, BranchRecord::Done(vec![]));
        records.insert(2, BranchRecord::Done(vec![]));
        let n = needs(&op, &records);
        assert!(n.active, "a join with every branch done is ready to resume");
        assert!(n.deadlines.is_empty());
    }
}
