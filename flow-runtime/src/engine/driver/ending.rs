//! How a turn leaves its step: resuming the workflow with the step's output, cancelling
//! the run, or settling it; and the machine to resume (cached, or rebuilt from its slots).

use super::{open_children, Decision, Proposal, RunDriver, Turn};
use crate::engine::registry::WorkflowEntry;
use crate::engine::step::{self, end_run, step_run, Ending, Finished, StepOutcome};
use crate::machine::Machine;
use crate::op::OpRequest;
use crate::store::{Branch, Journal, PendingOp, RunWrite, Shape, Snapshot};
use crate::task::TaskFailure;
use crate::time::now_ms;

impl RunDriver {
    /// Resumes the workflow with `output`, the pending operation's result; `resolved` are the
    /// branch outputs first known in this turn (kept if the step fails).
    pub(super) fn resume(
        &mut self,
        turn: &Turn<'_>,
        mut write: RunWrite,
        before: &step::Needs,
        output: Vec<u8>,
        resolved: Vec<(u32, Vec<u8>)>,
    ) -> Decision {
        let Turn {
            snap,
            op,
            entry,
            now,
        } = *turn;
        let Some(mut machine) = self.take_machine(snap, entry) else {
            return Decision::Abandon;
        };
        write.branch_puts.clear();
        let finished = Finished {
            op,
            deadlines: &before.deadlines,
            resolved,
        };
        let (mut write, outcome) = step_run(
            &self.core.registry,
            entry,
            &mut machine,
            Some(output),
            write,
            Some(finished),
            now,
        );
        keep_empty_records(snap, op, &mut write);
        Decision::Commit(Box::new(Proposal {
            write,
            machine: (outcome == StepOutcome::Suspended).then_some(machine),
        }))
    }

    /// Ends the run (or delivers `TaskFailure::Cancelled` to its pending task); child
    /// runs it waits for are cancelled too.
    pub(super) fn cancel(
        &mut self,
        turn: &Turn<'_>,
        mut write: RunWrite,
        before: &step::Needs,
    ) -> Decision {
        let Turn {
            snap, op, entry, ..
        } = *turn;
        self.abort_attempts();
        self.outcomes.clear();
        write.consume_cancel = true;
        write.cancel_runs = match (&op.shape, &snap.map) {
            (shape, Some(view)) if shape.map_spec().is_some() => view
                .progress
                .open
                .iter()
                .filter(|i| matches!(view.items.get(i), Some(OpRequest::Child { .. })))
                .map(|i| step::child_id(&self.run_id, op.step, *i, true))
                .collect(),
            _ => open_children(op, &snap.branches),
        };
        let finished = || Finished {
            op,
            deadlines: &before.deadlines,
            resolved: Vec::new(),
        };
        if let ([Branch::Task { name, .. }], Shape::Single) = (op.branches.as_slice(), &op.shape) {
            let failure = TaskFailure::Cancelled { task: name.clone() };
            match self
                .core
                .registry
                .find_task(name)
                .and_then(|task| (task.failure_output)(failure))
            {
                Some(Ok(output)) => {
                    // The workflow gets `Err(Cancelled)` and may compensate; tasks it
                    // calls from here on run normally.
                    let Some(mut machine) = self.take_machine(snap, entry) else {
                        return Decision::Abandon;
                    };
                    let (write, outcome) = step_run(
                        &self.core.registry,
                        entry,
                        &mut machine,
                        Some(output),
                        write,
                        Some(finished()),
                        now_ms(),
                    );
                    return Decision::Commit(Box::new(Proposal {
                        write,
                        machine: (outcome == StepOutcome::Suspended).then_some(machine),
                    }));
                }
                Some(Err(e)) => {
                    return self.settle(end_run(
                        write,
                        Some(finished()),
                        Ending::Faulted(e.to_string()),
                    ))
                }
                None => {}
            }
        }
        self.settle(end_run(write, Some(finished()), Ending::Cancelled))
    }

    pub(super) fn settle(&mut self, write: RunWrite) -> Decision {
        self.abort_attempts();
        Decision::Commit(Box::new(Proposal {
            write,
            machine: None,
        }))
    }

    /// The machine for the run's current state: the cached one, or rebuilt from its slots.
    pub(super) fn take_machine(
        &mut self,
        snap: &Snapshot,
        entry: &WorkflowEntry,
    ) -> Option<Machine> {
        match self.machine.take() {
            Some(cached) if cached.steps == snap.header.steps => Some(cached.machine),
            _ => match self.core.store.slots(&self.run_id) {
                Ok(slots) => Some(Machine::restore(entry.name, snap.header.pc, slots)),
                Err(e) => {
                    tracing::warn!(run = %self.run_id, error = %e, "could not read run slots");
                    None
                }
            },
        }
    }
}

/// Drops the deletion of a finished step's branch records when it has none: only the
/// run's driver writes the records of a step made of task calls, and it wrote none (a
/// range delete is not free for the commit thread, and this is every plain task step).
pub(super) fn keep_empty_records(snap: &Snapshot, op: &PendingOp, write: &mut RunWrite) {
    let tasks_only = op.shape.map_spec().is_none()
        && op.branches.iter().all(|b| matches!(b, Branch::Task { .. }));
    if tasks_only && snap.branches.is_empty() && write.clear_branches == Some(op.step) {
        write.clear_branches = None;
    }
}
