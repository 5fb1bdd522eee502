//! Map bookkeeping: a turn of a pending map (fan-out with a concurrency limit) judges
//! finished items, starts items while there is room, and resumes the workflow when all are
//! done; it reads and writes only the open items. A batch (`flow::all`, a map with a
//! completion policy) is a map whose policy may complete it early: it then cancels the
//! items still running and resumes the workflow with a `Batch` of every item's status.

use std::collections::BTreeMap;

use super::{Decision, Proposal, RunDriver, TaskCall, TaskProgress, Turn};
use crate::batch::{self, Completion, RawStatus};
use crate::engine::step::{self, end_run, map_needs, set_needs, Ending, Finished, Needs};
use crate::history::EventKind;
use crate::map::MapFailed;
use crate::op::{CompletionPolicy, OpRequest};
use crate::output;
use crate::store::{
    BranchPut, BranchRecord, Journal, MapProgress, MapSpec, RunWrite, MAP_PROGRESS,
};

impl RunDriver {
    /// One turn of a pending map: judge finished items, start items while there is room,
    /// resume the workflow when all are done (or, for a batch, when its `policy` says it
    /// is complete). Reads and writes only the open items.
    pub(super) fn decide_map(
        &mut self,
        turn: &Turn<'_>,
        spec: &MapSpec,
        policy: Option<&CompletionPolicy>,
        mut write: RunWrite,
    ) -> Decision {
        let Turn { snap, op, now, .. } = *turn;
        let view = snap.map.clone().unwrap_or_default();
        let mut progress = view.progress;
        let mut items = view.items;
        let mut records = snap.branches.clone();
        let before = map_needs(&items, &records, &progress.open);
        if snap.cancel_requested {
            return self.cancel(turn, write, &before);
        }
        macro_rules! end {
            ($ending:expr) => {{
                let finished = Finished {
                    op,
                    deadlines: &before.deadlines,
                    resolved: Vec::new(),
                };
                return self.settle(end_run(write, Some(finished), $ending));
            }};
        }
        let tolerant = spec.tolerance.is_some();
        let mut changed = false;
        loop {
            let mut finished: Vec<(u32, BranchRecord)> = Vec::new();
            for &i in &progress.open {
                if let Some(record) = records.get(&i).filter(|r| r.is_finished()) {
                    let record = match (record, items.get(&i)) {
                        // A child run that returned `Err` is a failed item, as a task's is.
                        (BranchRecord::Done(bytes), Some(OpRequest::Child { workflow, .. }))
                            if tolerant && self.returned_err(workflow, bytes) =>
                        {
                            let child = step::child_id(&self.run_id, op.step, i, true);
                            let error = format!("child run `{child}` returned Err");
                            BranchRecord::Erred(bytes.clone(), error)
                        }
                        (record, _) => record.clone(),
                    };
                    finished.push((i, record));
                    continue;
                }
                match items.get(&i) {
                    Some(OpRequest::Task { name, args, policy }) => {
                        let (name, args, policy) = (name.clone(), args.clone(), policy.clone());
                        let progress = self.drive_task(
                            turn,
                            i,
                            TaskCall {
                                name: &name,
                                args: &args,
                                policy: &policy,
                            },
                            None,
                            &mut records,
                            &mut write,
                        );
                        match progress {
                            TaskProgress::Pending { changed: c } => changed |= c,
                            TaskProgress::Finished { output, failure } => finished.push((
                                i,
                                match failure {
                                    Some(error) if tolerant => BranchRecord::Erred(output, error),
                                    _ => BranchRecord::Done(output),
                                },
                            )),
                            TaskProgress::End(ending) => end!(ending),
                        }
                    }
                    Some(OpRequest::Sleep { until_ms }) if *until_ms <= now => {
                        write.events.push(EventKind::TimerFired {
                            step: op.step,
                            branch: i,
                            deadline_ms: *until_ms,
                        });
                        let unit = output::unit();
                        finished.push((i, BranchRecord::Done(unit)));
                    }
                    Some(_) => {}
                    None => end!(Ending::Faulted(format!(
                        "item {i} of the map in step {} is missing from the journal",
                        op.step
                    ))),
                }
            }
            let mut child_failed = None;
            for (i, record) in finished {
                changed = true;
                progress.open.retain(|x| *x != i);
                progress.done += 1;
                items.remove(&i);
                let failure = match &record {
                    BranchRecord::Erred(_, error) => Some(error.clone()),
                    BranchRecord::Failed(error) => {
                        child_failed = Some(error.clone());
                        Some(error.clone())
                    }
                    _ => None,
                };
                if let Some(error) = &failure {
                    progress.failed += 1;
                    progress.first_error.get_or_insert_with(|| error.clone());
                }
                write.events.push(EventKind::MapItemCompleted {
                    step: op.step,
                    item: i,
                    failure,
                });
                records.insert(i, record.clone());
                write.branch_puts.push(BranchPut::new(op.step, i, record));
            }
            if let Some(policy) = policy {
                let succeeded = progress.done - progress.failed;
                if let Some(completion) =
                    batch::verdict(policy, spec.len, succeeded, progress.failed)
                {
                    write.cancel_runs = self.open_child_runs(op.step, &progress, &items);
                    return self
                        .complete_batch(turn, write, &before, spec.len, &progress, completion);
                }
            }
            let tolerated = spec.tolerance.map(|t| t.allowed(spec.len));
            match (tolerated, child_failed) {
                // A batch's policy judged above; a failed child run is a failed item.
                _ if policy.is_some() => {}
                // Without a tolerance a failed child run fails the run, as in a join.
                (None, Some(error)) => end!(Ending::Failed(error)),
                (Some(tolerated), child_failed)
                    if progress.failed > tolerated || child_failed.is_some() =>
                {
                    write.events.push(EventKind::MapFailed {
                        step: op.step,
                        failed: progress.failed,
                        tolerated,
                    });
                    self.cancel_attempts(op.step, None);
                    write.cancel_runs = self.open_child_runs(op.step, &progress, &items);
                    let failed = MapFailed {
                        failed: progress.failed,
                        total: spec.len,
                        tolerated,
                        first_error: progress.first_error.clone().unwrap_or_default(),
                    };
                    let output = match output::err(&failed, "an error outcome") {
                        Ok(output) => output,
                        Err(e) => end!(Ending::Faulted(e.to_string())),
                    };
                    return self.resume(turn, write, &before, output, Vec::new());
                }
                _ => {}
            }
            if progress.done == spec.len {
                break;
            }
            // Start items while there is room; newly started tasks are started at once
            // by another pass of the loop.
            let room = spec
                .max_in_flight
                .saturating_sub(progress.open.len() as u32);
            if room == 0 || progress.next >= spec.len {
                break;
            }
            let count = room.min(spec.len - progress.next);
            let new = match self
                .core
                .store
                .map_items(&self.run_id, op.step, progress.next, count)
            {
                Ok(new) => new,
                Err(_) => return Decision::Abandon,
            };
            if new.len() as u32 != count {
                end!(Ending::Faulted(format!(
                    "items of the map in step {} are missing from the journal",
                    op.step
                )));
            }
            for (i, item) in new {
                if let OpRequest::Child { workflow, input } = &item {
                    match step::child_start(
                        &self.core.registry,
                        &self.run_id,
                        op.step,
                        i,
                        true,
                        workflow.clone(),
                        input.clone(),
                    ) {
                        Ok((child, _)) => write.children.push(child),
                        Err(error) => end!(Ending::Faulted(error)),
                    }
                }
                progress.open.push(i);
                items.insert(i, item);
            }
            progress.next += count;
            changed = true;
        }

        if progress.done == spec.len {
            // Every item is done: read their records once and resume with the Vec.
            let stored = match self.core.store.map_records(&self.run_id, op.step) {
                Ok(stored) => stored,
                Err(_) => return Decision::Abandon,
            };
            let mut all: BTreeMap<u32, BranchRecord> = stored.into_iter().collect();
            for put in write.branch_puts.drain(..) {
                all.insert(put.branch, put.record);
            }
            let mut outputs = Vec::with_capacity(spec.len as usize);
            for i in 0..spec.len {
                match all.get(&i) {
                    Some(BranchRecord::Done(bytes) | BranchRecord::Erred(bytes, _)) => {
                        outputs.push(bytes.as_slice())
                    }
                    _ => end!(Ending::Faulted(format!(
                        "the result of item {i} of the map in step {} is missing",
                        op.step
                    ))),
                }
            }
            let output = output::map(tolerant, spec.len, outputs);
            return self.resume(turn, write, &before, output, Vec::new());
        }
        if !changed {
            return Decision::Wait;
        }
        write.branch_puts.push(BranchPut::new(
            op.step,
            MAP_PROGRESS,
            BranchRecord::MapProgress(progress.clone()),
        ));
        set_needs(
            &mut write,
            &before,
            &map_needs(&items, &records, &progress.open),
        );
        Decision::Commit(Box::new(Proposal {
            write,
            machine: self.machine.take().map(|c| c.machine),
        }))
    }
}

impl RunDriver {
    /// The child runs of the map's open items, to cancel when it stops early.
    fn open_child_runs(
        &self,
        step: u64,
        progress: &MapProgress,
        items: &BTreeMap<u32, OpRequest>,
    ) -> Vec<String> {
        progress
            .open
            .iter()
            .filter(|i| matches!(items.get(i), Some(OpRequest::Child { .. })))
            .map(|i| step::child_id(&self.run_id, step, *i, true))
            .collect()
    }

    /// Completes a batch: cancels the attempts of the items still running (`write`
    /// cancels their child runs, in the transition that resumes the workflow, so nothing
    /// of them runs again after a crash) and resumes the workflow with the `Batch` of
    /// every item's status.
    fn complete_batch(
        &mut self,
        turn: &Turn<'_>,
        mut write: RunWrite,
        before: &Needs,
        len: u32,
        progress: &MapProgress,
        completion: Completion,
    ) -> Decision {
        let op = turn.op;
        write.events.push(EventKind::BatchCompleted {
            step: op.step,
            completion,
            succeeded: progress.done - progress.failed,
            failed: progress.failed,
        });
        self.cancel_attempts(op.step, None);
        let mut all: BTreeMap<u32, BranchRecord> =
            match self.core.store.map_records(&self.run_id, op.step) {
                Ok(stored) => stored.into_iter().collect(),
                Err(_) => return Decision::Abandon,
            };
        for put in write.branch_puts.drain(..) {
            all.insert(put.branch, put.record);
        }
        let statuses: Vec<RawStatus<'_>> = (0..len)
            .map(|i| match all.get(&i) {
                Some(BranchRecord::Done(output)) => RawStatus::Succeeded(output),
                Some(BranchRecord::Erred(output, error)) => RawStatus::Failed {
                    error,
                    output: Some(output),
                },
                Some(BranchRecord::Failed(error)) => RawStatus::Failed {
                    error,
                    output: None,
                },
                _ if i < progress.next => RawStatus::Cancelled,
                _ => RawStatus::NotStarted,
            })
            .collect();
        let output = batch::encode(completion, &statuses);
        match output {
            Ok(output) => self.resume(turn, write, before, output, Vec::new()),
            Err(e) => {
                let finished = Finished {
                    op,
                    deadlines: &before.deadlines,
                    resolved: Vec::new(),
                };
                self.settle(end_run(
                    write,
                    Some(finished),
                    Ending::Faulted(e.to_string()),
                ))
            }
        }
    }

    /// Whether a child run of `workflow` that delivered `output` returned `Err`.
    fn returned_err(&self, workflow: &str, output: &[u8]) -> bool {
        self.core
            .registry
            .get(workflow)
            .is_some_and(|entry| (entry.returned_err)(output) == Some(true))
    }
}
