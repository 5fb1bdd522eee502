//! A turn: what the driver decides from the run as the journal holds it. The parts common
//! to every turn (a fault to record, the run-level deadline, the first step, a missing
//! pending operation) are here; a pending operation is then sorted out branch by branch
//! (`branches`) or item by item (`map`).

use super::{Decision, Proposal, RunDriver};
use crate::engine::registry::WorkflowEntry;
use crate::engine::step::{end_run, needs, step_run, Ending, Finished, StepOutcome};
use crate::history::EventKind;
use crate::machine::Machine;
use crate::store::{Journal, PendingOp, RunWrite, Seen, Shape, Snapshot};
use crate::time::now_ms;

/// What a turn works from once the run has a pending operation: the run as read, that
/// operation, the run's workflow, and the time the turn started (every deadline is judged
/// by it).
#[derive(Clone, Copy)]
pub(super) struct Turn<'a> {
    pub snap: &'a Snapshot,
    pub op: &'a PendingOp,
    pub entry: &'a WorkflowEntry,
    pub now: u64,
}

impl RunDriver {
    pub(super) fn decide(&mut self, snap: &Snapshot, entry: &WorkflowEntry) -> Decision {
        let now = now_ms();
        let header = &snap.header;
        let mut write = RunWrite::new(&self.run_id, header);
        write.seen = Some(Seen {
            nudges: snap.nudges,
            run_deadline: snap.run_deadline.is_some(),
            cancel: snap.cancel_requested,
        });
        if let Some(error) = self.fault.take() {
            let before = snap
                .pending
                .as_ref()
                .map(|op| (op, needs(op, &snap.branches)));
            let finished = before.as_ref().map(|(op, before)| Finished {
                op,
                deadlines: &before.deadlines,
                resolved: Vec::new(),
            });
            return self.settle(end_run(write, finished, Ending::Faulted(error)));
        }
        if let Some(deadline) = snap.run_deadline {
            if deadline <= now && !snap.cancel_requested {
                // The run-level timeout: from here on it is an ordinary cancellation.
                write.run_timed_out = true;
                write.active = true;
                write.events.push(EventKind::RunTimedOut {
                    deadline_ms: deadline,
                });
                write.events.push(EventKind::CancelRequested);
                return Decision::Commit(Box::new(Proposal {
                    write,
                    machine: self.machine.take().map(|c| c.machine),
                }));
            }
        }
        if !header.started {
            if snap.cancel_requested {
                write.consume_cancel = true;
                return self.settle(end_run(write, None, Ending::Cancelled));
            }
            let input = match self.core.store.generation_input(&self.run_id) {
                Ok(Some(input)) => input,
                Ok(None) => {
                    let error = "the run's input is missing from the journal".to_string();
                    return self.settle(end_run(write, None, Ending::Faulted(error)));
                }
                Err(_) => return Decision::Abandon,
            };
            let mut machine = Machine::start(entry.name, input);
            let (write, outcome) = step_run(
                &self.core.registry,
                entry,
                &mut machine,
                None,
                write,
                None,
                now,
            );
            return Decision::Commit(Box::new(Proposal {
                write,
                machine: (outcome == StepOutcome::Suspended).then_some(machine),
            }));
        }
        let Some(op) = &snap.pending else {
            let error = "the run has no pending step in the journal".to_string();
            return self.settle(end_run(write, None, Ending::Faulted(error)));
        };
        // Attempts of earlier steps (race losers, callbacks completed before their task
        // returned) are of no use any more.
        self.outcomes.retain(|key, _| key.step == op.step);

        let turn = Turn {
            snap,
            op,
            entry,
            now,
        };
        match &op.shape {
            Shape::Map(spec) => return self.decide_map(&turn, spec, None, write),
            Shape::Batch(batch) => {
                return self.decide_map(&turn, &batch.map, Some(&batch.policy), write)
            }
            _ => {}
        }
        self.decide_branches(&turn, write)
    }
}
