//! A step and the transition it yields: running a run's machine from the output of the
//! operation it awaited to its next suspension (or its end), and turning that into one
//! `RunWrite` (new slots, events, the next pending operation and what it needs: timers,
//! child runs, callback tokens); or ending the run (failed, faulted, cancelled).

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::codec::CodecError;
use crate::engine::registry::{Registry, WorkflowEntry};
use crate::error::panic_message;
use crate::history::EventKind;
use crate::machine::{Machine, StepFault, Transition};
use crate::op::OpRequest;
use crate::store::{
    flatten, join_layout, BatchSpec, Branch, BranchPut, BranchRecord, ChildStart, MapProgress,
    MapSpec, ParentLink, PendingChange, PendingOp, RunWrite, Shape, StoredStatus, TokenRecord,
    MAP_PROGRESS,
};

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
            // A callback completed from outside (`Engine::complete`) still has its
            // timeout in the timers table: counting it lets the transition that takes
            // the result delete it, instead of leaving it to fire for a finished run.
            if let Branch::Callback { deadline_ms, .. } = branch {
                needs.deadlines.extend(*deadline_ms);
            }
            continue;
        }
        open += 1;
        match (branch, record) {
            (
                Branch::Task { .. },
                Some(
                    BranchRecord::Retrying { retry_at_ms, .. }
                    | BranchRecord::RetryingAfterInterrupted { retry_at_ms, .. }
                    | BranchRecord::Started {
                        at_ms: retry_at_ms, ..
                    },
                ),
            ) => {
                needs.deadlines.insert(*retry_at_ms);
            }
            (Branch::Task { .. }, _) => needs.active = true,
            (Branch::Sleep { until_ms }, _) => {
                needs.deadlines.insert(*until_ms);
            }
            (Branch::Signal { deadline_ms, .. }, _) => needs.deadlines.extend(*deadline_ms),
            // A finishing child writes the result and marks this run active itself.
            (Branch::Child { .. }, _) => {}
            (Branch::Callback { deadline_ms, .. }, record) => {
                needs.deadlines.extend(*deadline_ms);
                match record {
                    // `Engine::complete` marks the run active itself.
                    Some(BranchRecord::Awaiting {
                        heartbeat_deadline_ms,
                    }) => needs.deadlines.extend(*heartbeat_deadline_ms),
                    Some(
                        BranchRecord::Retrying { retry_at_ms, .. }
                        | BranchRecord::RetryingAfterInterrupted { retry_at_ms, .. }
                        | BranchRecord::Started {
                            at_ms: retry_at_ms, ..
                        },
                    ) => {
                        needs.deadlines.insert(*retry_at_ms);
                    }
                    _ => needs.active = true,
                }
            }
        }
    }
    needs.active |= open == 0;
    needs
}

/// What a pending map needs: only its open items count (the rest are not started or
/// done), so this is O(max_in_flight).
pub(crate) fn map_needs(
    items: &BTreeMap<u32, OpRequest>,
    records: &BTreeMap<u32, BranchRecord>,
    open: &[u32],
) -> Needs {
    let mut needs = Needs::default();
    for i in open {
        let record = records.get(i);
        if record.is_some_and(BranchRecord::is_finished) {
            needs.active = true;
            continue;
        }
        match (items.get(i), record) {
            (
                Some(OpRequest::Task { .. }),
                Some(
                    BranchRecord::Retrying { retry_at_ms, .. }
                    | BranchRecord::RetryingAfterInterrupted { retry_at_ms, .. }
                    | BranchRecord::Started {
                        at_ms: retry_at_ms, ..
                    },
                ),
            ) => {
                needs.deadlines.insert(*retry_at_ms);
            }
            (Some(OpRequest::Sleep { until_ms }), _) => {
                needs.deadlines.insert(*until_ms);
            }
            (Some(OpRequest::Child { .. }), _) => {}
            _ => needs.active = true,
        }
    }
    needs.active |= open.is_empty();
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

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepOutcome {
    /// The run awaits its next operation; the machine is valid for the new state.
    Suspended,
    /// The run is settled (completed, failed or faulted).
    Settled,
    /// The run continues as new: it starts over from its first step on the next turn.
    Restarted,
    /// The run waits for code this engine lacks (see `Ending::Blocked`).
    Blocked,
}

/// True when `fault` says the stored state needs other code than this program's (a type
/// or body that changed), so the run must wait for that code rather than be faulted.
fn fault_is_missing_code(fault: &StepFault) -> bool {
    matches!(
        fault,
        StepFault::Codec(CodecError::Decode { .. })
            | StepFault::UnknownState { .. }
            | StepFault::MissingLocal { .. }
    )
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
            let ending = if fault_is_missing_code(&fault) {
                Ending::Blocked(error)
            } else {
                Ending::Faulted(error)
            };
            let outcome = match ending {
                Ending::Blocked(_) => StepOutcome::Blocked,
                _ => StepOutcome::Settled,
            };
            return (end_run(write, finished, ending), outcome);
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
        Transition::Suspend {
            request: OpRequest::ContinueAsNew { input },
            ..
        } => {
            // Slot writes of this step are dropped with the rest of the generation.
            write.events = vec![EventKind::ContinuedAsNew {
                input: input.clone(),
                steps_before: write.header.steps,
            }];
            write.header.pc = 0;
            write.header.started = false;
            write.header.status = StoredStatus::Running;
            write.pending = PendingChange::Remove;
            write.branch_puts.clear();
            write.timers_remove = old_deadlines.into_iter().collect();
            write.timers_add.clear();
            write.active = true;
            write.continue_as_new = Some(input);
            (write, StepOutcome::Restarted)
        }
        Transition::Suspend { request, state } => {
            let step = write.header.steps;
            let Some(next_step) = step.checked_add(1) else {
                // Only a damaged journal gets here: never wrap onto step 0's records.
                let error = format!(
                    "the run's step counter is exhausted (step {step}): the journal is damaged"
                );
                return (
                    end_run(write, finished, Ending::Faulted(error)),
                    StepOutcome::Settled,
                );
            };
            let names;
            let op = match schedule(registry, &write.run_id, step, state, &request, now_ms) {
                Ok(scheduled) => {
                    write.children = scheduled.children;
                    write.tokens = scheduled.tokens;
                    names = scheduled.names;
                    write.token_types = scheduled.token_types;
                    if let Some(items) = scheduled.map_items {
                        write.map_items = Some((step, items));
                        write.branch_puts.push(BranchPut::new(
                            step,
                            MAP_PROGRESS,
                            BranchRecord::MapProgress(MapProgress::default()),
                        ));
                    }
                    scheduled.op
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
            write.header.steps = next_step;
            write.header.started = true;
            // A map's items are journaled once, in their own table (`MAP_ITEMS`, kept
            // until the run is deleted): the event holds the map without them, and a
            // history read puts them back (`store::read::history`).
            write.events.push(EventKind::StepScheduled {
                step,
                state,
                name: op.name.clone(),
                request: without_items(request),
            });
            write.events.extend(
                names
                    .into_iter()
                    .map(|(branch, name)| EventKind::BranchNamed { step, branch, name }),
            );
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

/// A map's (or batch's) request as its `StepScheduled` event stores it: its items are
/// journaled once, in their own table, and their names in `BranchNamed` events; reading
/// the history puts both back into the request.
pub(crate) fn without_items(request: OpRequest) -> OpRequest {
    match request {
        OpRequest::Map {
            max_in_flight,
            tolerance,
            ..
        } => OpRequest::Map {
            items: Vec::new(),
            max_in_flight,
            tolerance,
        },
        OpRequest::Batch {
            max_in_flight,
            policy,
            ..
        } => OpRequest::Batch {
            items: Vec::new(),
            max_in_flight,
            policy,
        },
        OpRequest::Named { name, op } => OpRequest::Named {
            name,
            op: Box::new(without_items(*op)),
        },
        other => other,
    }
}

/// The operation inside any names, and the outermost name.
pub(crate) fn peel(request: &OpRequest) -> (&OpRequest, Option<&str>) {
    match request {
        OpRequest::Named { name, op } => (peel(op).0, Some(name)),
        other => (other, None),
    }
}

/// A scheduled operation: the pending record and what it creates with it.
pub(crate) struct Scheduled {
    pub op: PendingOp,
    pub children: Vec<ChildStart>,
    pub tokens: Vec<(String, TokenRecord)>,
    /// The type each token's step awaits, by name, where the request says.
    pub token_types: Vec<(String, String)>,
    /// A map's encoded items.
    pub map_items: Option<Vec<Vec<u8>>>,
    /// The names of named branches (or map items), by index.
    pub names: Vec<(u32, String)>,
}

/// The items of a map or batch, encoded for their table (without their names, which go
/// to `names`), and how many there are.
fn map_items(
    registry: &Registry,
    items: &[OpRequest],
    names: &mut Vec<(u32, String)>,
) -> Result<(Vec<Vec<u8>>, u32), String> {
    let mut encoded = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let (item, name) = map_item(i, item)?;
        if let OpRequest::Child { workflow, .. } = item {
            check_child(registry, workflow)?;
        }
        if let Some(name) = name {
            names.push((i as u32, name.to_string()));
        }
        encoded.push(crate::store::encode_map_item(item).map_err(|e| e.to_string())?);
    }
    let len =
        u32::try_from(items.len()).map_err(|_| "a map has more than u32::MAX items".to_string())?;
    Ok((encoded, len))
}

/// Map (or batch) item `i` without its name, and the name; an error if the item is not
/// something a map can run (a task call, a child workflow or a sleep).
pub(crate) fn map_item(i: usize, item: &OpRequest) -> Result<(&OpRequest, Option<&str>), String> {
    let (item, name) = peel(item);
    match item {
        OpRequest::Task { .. } | OpRequest::Sleep { .. } | OpRequest::Child { .. } => {
            Ok((item, name))
        }
        other => Err(format!(
            "map item {i} is `{}`: a map item must be a task call, a child workflow or a \
             sleep (so must a branch of `flow::all` or of a join with `max_in_flight`)",
            other.label()
        )),
    }
}

/// Why `leaf` (unnamed) cannot be a branch of `parent` (a join, race or `first_ok`, or a
/// single operation), if it cannot: only task calls, child workflows, sleeps, signals and
/// callbacks around a task call can.
pub(crate) fn branch_error(leaf: &OpRequest, parent: &OpRequest) -> Option<String> {
    match leaf {
        OpRequest::Task { .. }
        | OpRequest::Sleep { .. }
        | OpRequest::Signal { .. }
        | OpRequest::Child { .. } => None,
        OpRequest::Callback { task, .. } => match peel(task).0 {
            OpRequest::Task { .. } => None,
            _ => Some(callback_needs_task(task)),
        },
        other => Some(not_a_branch(other, parent)),
    }
}

/// The error for a callback around `task`, which is not a task call.
fn callback_needs_task(task: &OpRequest) -> String {
    format!(
        "`wait_for_callback` needs a #[task] call, not `{}`",
        task.label()
    )
}

/// The error for `leaf`, which cannot be a branch of `parent`.
fn not_a_branch(leaf: &OpRequest, parent: &OpRequest) -> String {
    format!(
        "`{}` cannot be a branch of `{}`: race and join branches must be task calls, child \
         workflows, sleeps, signals or callbacks",
        leaf.label(),
        parent.label()
    )
}

/// The pending operation for `request`, and the child runs and tokens it creates.
pub(crate) fn schedule(
    registry: &Registry,
    run_id: &str,
    step: u64,
    state: u32,
    request: &OpRequest,
    now_ms: u64,
) -> Result<Scheduled, String> {
    let (request, name) = peel(request);
    let mut scheduled = Scheduled {
        op: PendingOp {
            step,
            state,
            name: name.map_or_else(|| request.label(), str::to_string),
            scheduled_at_ms: now_ms,
            shape: Shape::Single,
            branches: Vec::new(),
        },
        children: Vec::new(),
        tokens: Vec::new(),
        token_types: Vec::new(),
        map_items: None,
        names: Vec::new(),
    };
    let leaves = match request {
        OpRequest::All(branches) => {
            scheduled.op.shape = if branches
                .iter()
                .any(|b| matches!(peel(b).0, OpRequest::All(_)))
            {
                let mut layout = Vec::new();
                join_layout(request, &mut layout);
                Shape::NestedJoin(layout)
            } else {
                Shape::Join
            };
            let mut leaves = Vec::new();
            flatten(request, &mut leaves);
            leaves
        }
        OpRequest::Race(arms) => {
            scheduled.op.shape = Shape::Race;
            if arms.is_empty() {
                return Err("a race needs at least one operation".into());
            }
            arms.clone()
        }
        OpRequest::FirstOk(arms) => {
            scheduled.op.shape = Shape::FirstOk;
            if arms.is_empty() {
                return Err("first_ok needs at least one operation".into());
            }
            arms.clone()
        }
        OpRequest::Map {
            items,
            max_in_flight,
            tolerance,
        } => {
            let (encoded, len) = map_items(registry, items, &mut scheduled.names)?;
            scheduled.op.shape = Shape::Map(MapSpec {
                len,
                max_in_flight: (*max_in_flight).max(1),
                tolerance: *tolerance,
            });
            scheduled.map_items = Some(encoded);
            return Ok(scheduled);
        }
        OpRequest::Batch {
            items,
            max_in_flight,
            policy,
        } => {
            let (encoded, len) = map_items(registry, items, &mut scheduled.names)?;
            scheduled.op.shape = Shape::Batch(BatchSpec {
                map: MapSpec {
                    len,
                    max_in_flight: (*max_in_flight).max(1),
                    // Every item is judged (a task's `Err` is a failure), as in a
                    // tolerant map; the policy decides what a failure does.
                    tolerance: Some(policy.tolerance),
                },
                policy: *policy,
            });
            scheduled.map_items = Some(encoded);
            return Ok(scheduled);
        }
        other => vec![other.clone()],
    };
    let multi = scheduled.op.is_multi();
    for (i, leaf) in leaves.into_iter().enumerate() {
        let (leaf, name) = leaf.unnamed();
        if let Some(name) = name {
            scheduled.names.push((i as u32, name));
        }
        let branch = match leaf {
            OpRequest::Task { name, args, policy } => Branch::Task { name, args, policy },
            OpRequest::Sleep { until_ms } => Branch::Sleep { until_ms },
            OpRequest::Signal { name, timeout } => Branch::Signal {
                name,
                deadline_ms: timeout.map(|t| now_ms.saturating_add(crate::time::millis(t))),
                timeout,
            },
            OpRequest::Child { workflow, input } => {
                let (child, branch) =
                    child_start(registry, run_id, step, i as u32, multi, workflow, input)?;
                scheduled.children.push(child);
                branch
            }
            OpRequest::Callback {
                task,
                timeout,
                heartbeat,
                awaited,
            } => {
                // A name on the task names the callback's step or branch already (see
                // `OpRequest::label`).
                let error = callback_needs_task(&task);
                let OpRequest::Task { name, args, policy } = task.unnamed().0 else {
                    return Err(error);
                };
                let token = crate::callback::new_token(run_id)?;
                if let Some(awaited) = awaited {
                    scheduled.token_types.push((token.clone(), awaited));
                }
                scheduled.tokens.push((
                    token.clone(),
                    TokenRecord {
                        run_id: run_id.to_string(),
                        step,
                        branch: i as u32,
                        used: false,
                    },
                ));
                Branch::Callback {
                    name,
                    args,
                    policy,
                    token,
                    deadline_ms: timeout.map(|t| now_ms.saturating_add(crate::time::millis(t))),
                    timeout,
                    heartbeat,
                }
            }
            other => return Err(not_a_branch(&other, request)),
        };
        scheduled.op.branches.push(branch);
    }
    Ok(scheduled)
}

fn check_child(registry: &Registry, workflow: &str) -> Result<(), String> {
    match registry.get(workflow) {
        Some(_) => Ok(()),
        None => Err(format!(
            "child workflow `{workflow}` is not registered in this engine; add \
             `.register::<{workflow}>()` to the EngineBuilder"
        )),
    }
}

/// The child run of branch (or map item) `branch` of step `step`, and its branch.
pub(crate) fn child_start(
    registry: &Registry,
    run_id: &str,
    step: u64,
    branch: u32,
    multi: bool,
    workflow: String,
    input: Vec<u8>,
) -> Result<(ChildStart, Branch), String> {
    check_child(registry, &workflow)?;
    // A child starts on the newest version its name has here (`check_child` made sure
    // there is one).
    let (version, fingerprint) = registry
        .get(&workflow)
        .map_or((1, 0), |e| (e.version, e.fingerprint));
    let child_id = child_id(run_id, step, branch, multi);
    Ok((
        ChildStart {
            run_id: child_id.clone(),
            workflow: workflow.clone(),
            fingerprint,
            input,
            parent: ParentLink {
                run_id: run_id.to_string(),
                step,
                branch,
            },
            version,
        },
        Branch::Child {
            run_id: child_id,
            workflow,
        },
    ))
}

/// The run ID of a child started by branch `branch` of step `step`.
pub(crate) fn child_id(run_id: &str, step: u64, branch: u32, multi: bool) -> String {
    if multi {
        format!("{run_id}/{step}.{branch}")
    } else {
        format!("{run_id}/{step}")
    }
}

/// How a run ends abnormally.
pub(crate) enum Ending {
    Failed(String),
    Faulted(String),
    Cancelled,
    /// Not an end: this engine lacks code the run needs (a task not linked, a type its
    /// stored state no longer decodes as). The transition keeps what it learned (branch
    /// outputs), leaves the run pending and active, and parks it until an engine with that
    /// code opens the journal.
    Blocked(String),
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
            write.branch_puts.push(BranchPut::new(
                done.op.step,
                branch,
                BranchRecord::Done(output),
            ));
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
        Ending::Blocked(reason) => {
            // Its deadlines stay: a timer that fires for nothing only wakes the run.
            write.timers_remove.clear();
            write.active = true;
            write.header.status = StoredStatus::Running;
            write.blocked = Some(reason);
            return write;
        }
    };
    write.header.status = status;
    write.events.push(event);
    write
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_tracks_deadlines_and_active_work() {
        let op = PendingOp {
            step: 3,
            state: 0,
            name: "join(3)".into(),
            scheduled_at_ms: 0,
            shape: Shape::Join,
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
