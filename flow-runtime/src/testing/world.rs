//! The in-memory engine of a test environment: every run, moved turn by turn until none
//! can go on without time passing or the test sending something; deadlines on the
//! virtual clock. It follows the engine's rules for each primitive (the output of each
//! operation, retries, cancellation, races, `first_ok`, maps and batches with their
//! completion policies, names, continue-as-new), with a deterministic order: branches
//! are tried in branch order, runs in run ID order; a race is won by the first branch
//! (in branch order) that has a result, a `first_ok` by the first with an `Ok` once every
//! open branch was tried in the turn. Scheduling reuses the engine's helpers
//! (`engine::step::{peel, map_item, branch_error}`, `store::{flatten, join_layout}`),
//! and a batch is judged by `batch::verdict` and encoded by `batch::encode`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use super::attempts::{self, AttemptEnd, Caller, TaskProgress};
use super::clock::Clock;
use super::driver::Restore;
use super::mocks::Mocks;
use super::run::{Branch, Entry, MapState, Pending, Run, RunEnd, Shape, TaskBranch, TaskState};
use super::TestError;
use crate::batch::{self, Completion, RawStatus};
use crate::callback::CallbackError;
use crate::codec::CodecError;
use crate::engine::step;
use crate::history::EventKind;
use crate::machine::{Machine, Transition};
use crate::map::MapFailed;
use crate::op::{CompletionPolicy, OpRequest, Tolerance};
use crate::output;
use crate::store;
use crate::task::TaskFailure;

/// Every run of one environment, and what they share.
pub(super) struct World {
    pub clock: Clock,
    pub mocks: Mocks,
    pub registry: Registry,
    pub runs: BTreeMap<String, Run>,
    /// Open callback tokens: the run whose pending operation issued each.
    pub tokens: HashMap<String, String>,
    pub restore: Restore,
}

/// The workflows an environment can start as child runs, by name; shared with the
/// environment's handle so that registering needs no lock on the runs.
pub(super) type Registry = Arc<Mutex<HashMap<&'static str, Entry>>>;

/// The run ID of a child started by branch (or map item) `branch` of step `step`, as the
/// engine names it; also the task's idempotency key.
pub(super) fn child_id(run_id: &str, step: u64, branch: u32, multi: bool) -> String {
    if multi {
        format!("{run_id}/{step}.{branch}")
    } else {
        format!("{run_id}/{step}")
    }
}

/// What a turn made of a run's pending operation.
enum Outcome {
    /// Not finished; `changed` if something moved.
    Wait { changed: bool },
    /// Finished: the workflow resumes with this output.
    Resume(Vec<u8>),
    /// The run cannot go on.
    End(RunEnd),
}

impl World {
    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    fn run(&mut self, run_id: &str) -> Result<&mut Run, TestError> {
        self.runs
            .get_mut(run_id)
            .ok_or_else(|| TestError::UnknownRun {
                run_id: run_id.to_string(),
            })
    }

    /// Creates run `run_id` and runs its first step.
    pub(super) fn start(
        &mut self,
        run_id: String,
        entry: Entry,
        input: Vec<u8>,
        parent: Option<String>,
        timeout_ms: Option<u64>,
    ) -> Result<(), TestError> {
        let now = self.now();
        let mut run = Run::new(entry, input.clone());
        run.run_deadline = timeout_ms.map(|t| now.saturating_add(t));
        run.event(
            now,
            EventKind::RunStarted {
                workflow: entry.name.to_string(),
                input,
                parent,
            },
        );
        self.runs.insert(run_id.clone(), run);
        self.step(&run_id)
    }

    /// Moves every run on until none can without time passing or the test acting.
    pub(super) async fn settle(&mut self) -> Result<(), TestError> {
        loop {
            let mut moved = false;
            let ids: Vec<String> = self.runs.keys().cloned().collect();
            for id in ids {
                moved |= self.turn(&id).await?;
            }
            if !moved {
                return Ok(());
            }
        }
    }

    /// The earliest deadline any run waits for (all earlier ones were handled).
    pub(super) fn next_deadline(&self) -> Option<u64> {
        let task_deadline = |task: &TaskBranch| match task.state {
            TaskState::RetryAt(at) => Some(at),
            TaskState::Hung { until, .. } => Some(until),
            TaskState::Due => None,
        };
        let mut deadlines = Vec::new();
        for run in self.runs.values().filter(|r| r.end.is_none()) {
            deadlines.extend(run.run_deadline);
            let Some(pending) = &run.pending else {
                continue;
            };
            for branch in &pending.branches {
                match branch {
                    Branch::Task(task) => deadlines.extend(task_deadline(task)),
                    Branch::Sleep { until } => deadlines.push(*until),
                    Branch::Signal { deadline, .. } => deadlines.extend(*deadline),
                    Branch::Callback {
                        task,
                        deadline,
                        awaiting,
                        heartbeat_due,
                        ..
                    } => {
                        deadlines.extend(*deadline);
                        if *awaiting {
                            deadlines.extend(*heartbeat_due);
                        } else {
                            deadlines.extend(task_deadline(task));
                        }
                    }
                    _ => {}
                }
            }
        }
        deadlines.into_iter().min()
    }

    /// One turn of run `run_id`; true if it moved.
    async fn turn(&mut self, run_id: &str) -> Result<bool, TestError> {
        let now = self.now();
        let run = self.run(run_id)?;
        if run.end.is_some() {
            return Ok(false);
        }
        if let Some(deadline) = run.run_deadline.filter(|d| *d <= now) {
            // The run-level timeout: from here on an ordinary cancellation.
            run.run_deadline = None;
            run.event(
                now,
                EventKind::RunTimedOut {
                    deadline_ms: deadline,
                },
            );
            run.event(now, EventKind::CancelRequested);
            run.cancel_requested = true;
        }
        if run.cancel_requested {
            run.cancel_requested = false;
            self.cancel_pending(run_id)?;
            return Ok(true);
        }
        let Some(mut pending) = run.pending.take() else {
            return Ok(false);
        };
        let mut events = Vec::new();
        let outcome = match &pending.shape {
            Shape::Map(_) => self.drive_map(run_id, &mut pending, &mut events).await,
            _ => self.drive_branches(run_id, &mut pending, &mut events).await,
        };
        let run = self.run(run_id)?;
        for kind in events {
            run.event(now, kind);
        }
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                run.pending = Some(pending);
                return Err(e);
            }
        };
        match outcome {
            Outcome::Wait { changed } => {
                run.pending = Some(pending);
                Ok(changed)
            }
            Outcome::Resume(output) => {
                self.forget_tokens(&pending);
                self.resume(run_id, &pending, output)?;
                Ok(true)
            }
            Outcome::End(end) => {
                self.forget_tokens(&pending);
                self.run(run_id)?.finish(now, end);
                Ok(true)
            }
        }
    }

    fn forget_tokens(&mut self, pending: &Pending) {
        for branch in &pending.branches {
            if let Branch::Callback { token, .. } = branch {
                self.tokens.remove(token);
            }
        }
    }

    /// A turn of a single operation, a join, a race or a `first_ok`.
    async fn drive_branches(
        &mut self,
        run_id: &str,
        pending: &mut Pending,
        events: &mut Vec<EventKind>,
    ) -> Result<Outcome, TestError> {
        let race = matches!(pending.shape, Shape::Race);
        let first_ok = matches!(pending.shape, Shape::FirstOk);
        let join = matches!(pending.shape, Shape::Join | Shape::NestedJoin(_));
        let step = pending.step;
        let mut changed = false;
        let mut winner = None;
        // A `first_ok` takes signals as the engine does: only the winner's is consumed
        // in the turn it wins (see `first_ok_outcome`).
        let inbox_before = first_ok.then(|| self.runs.get(run_id).map(|r| r.inbox.clone()));
        let mut signals_taken = Vec::new();
        for i in 0..pending.branches.len() {
            if let Branch::Failed(error) = &pending.branches[i] {
                return Ok(Outcome::End(RunEnd::Failed(error.clone())));
            }
            if pending.branches[i].is_finished() {
                continue;
            }
            let multi = pending.is_multi();
            let signal = match &pending.branches[i] {
                Branch::Signal { name, .. } => Some((name.clone(), self.inbox_len(run_id))),
                _ => None,
            };
            // A child run delivers its output to the engine's parent without a
            // `BranchCompleted` event in the parent's history.
            let child = matches!(pending.branches[i], Branch::Child { .. });
            let progress = self
                .drive_branch(
                    run_id,
                    step,
                    i as u32,
                    multi,
                    &mut pending.branches[i],
                    events,
                )
                .await?;
            match progress {
                BranchProgress::Open { changed: c } => changed |= c,
                BranchProgress::Fail(error) => {
                    return Ok(Outcome::End(RunEnd::Failed(error)));
                }
                BranchProgress::Finished => {
                    changed = true;
                    // (A signal wait that timed out took nothing.)
                    if let Some((name, len)) = signal {
                        if self.inbox_len(run_id) < len {
                            signals_taken.push((i, name));
                        }
                    }
                    let output = match &pending.branches[i] {
                        Branch::Done { output, .. } => output,
                        // A child run that failed fails the run (a join's at the end of
                        // the turn, as the engine does at its next one).
                        Branch::Failed(error) if race || first_ok => {
                            return Ok(Outcome::End(RunEnd::Failed(error.clone())));
                        }
                        _ => continue,
                    };
                    if (join || first_ok) && !child {
                        events.push(EventKind::BranchCompleted {
                            step,
                            branch: i as u32,
                            output: output.clone(),
                        });
                    }
                    // A race is won by the first branch with a result: branches after
                    // it are not tried. Every branch of a `first_ok` is (each task
                    // attempted, as the engine starts them all), and the first `Ok` in
                    // branch order wins.
                    if race {
                        winner = Some(i);
                        break;
                    }
                }
            }
        }
        if first_ok {
            let outcome = self.first_ok_outcome(pending, changed, events)?;
            let winner = pending.branches.iter().position(is_ok);
            if let (Outcome::Resume(_), Some(Some(inbox)), Some(winner)) =
                (&outcome, inbox_before, winner)
            {
                // Signals taken by losing branches in the turn a branch wins go back to
                // the inbox; the winner's stays taken. (Once every branch failed, each
                // keeps what it took.)
                self.return_losing_signals(run_id, inbox, &signals_taken, winner)?;
            }
            return Ok(outcome);
        }
        if race {
            let Some(winner) = winner else {
                return Ok(Outcome::Wait { changed });
            };
            return Ok(match &pending.branches[winner] {
                Branch::Done { output, .. } => {
                    events.push(EventKind::RaceWon {
                        step,
                        winner: winner as u32,
                    });
                    let output = output::race(winner as u32, output);
                    self.cancel_open_children(pending);
                    Outcome::Resume(output)
                }
                Branch::Failed(error) => Outcome::End(RunEnd::Failed(error.clone())),
                _ => Outcome::Wait { changed },
            });
        }
        if let Some(Branch::Failed(error)) = pending
            .branches
            .iter()
            .find(|b| matches!(b, Branch::Failed(_)))
        {
            return Ok(Outcome::End(RunEnd::Failed(error.clone())));
        }
        let outputs: Option<Vec<&[u8]>> = pending
            .branches
            .iter()
            .map(|b| match b {
                Branch::Done { output, .. } => Some(output.as_slice()),
                _ => None,
            })
            .collect();
        let Some(outputs) = outputs else {
            return Ok(Outcome::Wait { changed });
        };
        Ok(Outcome::Resume(match &pending.shape {
            Shape::Join => output::join(outputs),
            Shape::NestedJoin(layout) => output::nested_join(layout, outputs),
            _ => outputs.first().map(|o| o.to_vec()).unwrap_or_default(),
        }))
    }

    /// What a turn of a `first_ok` comes to, as the engine judges it: a branch that did
    /// not output a `Result` faults the run; the first `Ok` in branch order wins and the
    /// branches still open are cancelled; once every branch failed, the output is `Err`
    /// of their errors in branch order.
    fn first_ok_outcome(
        &mut self,
        pending: &Pending,
        changed: bool,
        events: &mut Vec<EventKind>,
    ) -> Result<Outcome, TestError> {
        let winner = pending
            .branches
            .iter()
            .enumerate()
            .find_map(|(i, branch)| match branch {
                Branch::Done { output, .. } => output::ok_value(output).map(|value| (i, value)),
                _ => None,
            });
        let step = pending.step;
        let mut errors = Vec::with_capacity(pending.branches.len());
        let mut open = false;
        for (i, branch) in pending.branches.iter().enumerate() {
            match branch {
                Branch::Done { output, .. } => {
                    match (output::ok_value(output), output::err_value(output)) {
                        (None, None) => {
                            let error = format!(
                                "branch {i} of `first_ok` in step {step} did not output a \
                                 Result"
                            );
                            return Ok(Outcome::End(RunEnd::Faulted(error)));
                        }
                        (None, Some(error)) => errors.push(error),
                        (Some(_), _) => {}
                    }
                }
                Branch::Failed(error) => return Ok(Outcome::End(RunEnd::Failed(error.clone()))),
                _ => open = true,
            }
        }
        if let Some((winner, value)) = winner {
            events.push(EventKind::RaceWon {
                step,
                winner: winner as u32,
            });
            let output = output::first_ok(winner as u32, value);
            self.cancel_open_children(pending);
            return Ok(Outcome::Resume(output));
        }
        if open {
            return Ok(Outcome::Wait { changed });
        }
        Ok(Outcome::Resume(output::all_failed(errors)))
    }

    /// How many signals run `run_id` holds, not yet taken.
    fn inbox_len(&self, run_id: &str) -> usize {
        self.runs.get(run_id).map_or(0, |r| r.inbox.len())
    }

    /// Puts the inbox back as it was before a `first_ok`'s turn (`inbox`), except for the
    /// signal its winner took: `taken` are the signal branches that finished in the
    /// turn, in branch order, each having taken the oldest signal of its name left.
    fn return_losing_signals(
        &mut self,
        run_id: &str,
        mut inbox: VecDeque<(String, Vec<u8>)>,
        taken: &[(usize, String)],
        winner: usize,
    ) -> Result<(), TestError> {
        if let Some((_, name)) = taken.iter().find(|(i, _)| *i == winner) {
            // Same-named signals taken before the winner's in the turn were older.
            let before = taken
                .iter()
                .take_while(|(i, _)| *i != winner)
                .filter(|(_, n)| n == name)
                .count();
            let position = inbox
                .iter()
                .enumerate()
                .filter(|(_, (n, _))| n == name)
                .nth(before)
                .map(|(p, _)| p);
            if let Some(position) = position {
                inbox.remove(position);
            }
        }
        self.run(run_id)?.inbox = inbox;
        Ok(())
    }

    /// A turn of a map: finished items are counted, items start while there is room, and
    /// the map resumes the workflow once all are done or too many failed.
    async fn drive_map(
        &mut self,
        run_id: &str,
        pending: &mut Pending,
        events: &mut Vec<EventKind>,
    ) -> Result<Outcome, TestError> {
        let step = pending.step;
        let len = pending.branches.len() as u32;
        let Shape::Map(mut map) = pending.shape.clone() else {
            return Ok(Outcome::Wait { changed: false });
        };
        let tolerant = map.tolerance.is_some();
        let mut changed = false;
        let outcome = loop {
            map.open.retain(|i| !pending.branches[*i].is_finished());
            let room = (map.max_in_flight as usize).saturating_sub(map.open.len());
            let start = map.next;
            let end = (start + room).min(pending.branches.len());
            for i in start..end {
                let Branch::Waiting(item) = pending.branches[i].clone() else {
                    continue;
                };
                pending.branches[i] = self.start_branch(run_id, step, i as u32, true, item)?;
                map.open.push(i);
                changed = true;
            }
            map.next = end;
            let mut finished_now = false;
            for i in map.open.clone() {
                if pending.branches[i].is_finished() {
                    continue;
                }
                let progress = self
                    .drive_branch(
                        run_id,
                        step,
                        i as u32,
                        true,
                        &mut pending.branches[i],
                        events,
                    )
                    .await?;
                let failure = match progress {
                    BranchProgress::Open { changed: c } => {
                        changed |= c;
                        continue;
                    }
                    BranchProgress::Fail(error) => return Ok(Outcome::End(RunEnd::Failed(error))),
                    BranchProgress::Finished => match &mut pending.branches[i] {
                        Branch::Done { failure, .. } if !tolerant => {
                            *failure = None;
                            None
                        }
                        Branch::Done { failure, .. } => failure.clone(),
                        Branch::Failed(error) if !tolerant => {
                            return Ok(Outcome::End(RunEnd::Failed(error.clone())));
                        }
                        Branch::Failed(error) => Some(error.clone()),
                        _ => None,
                    },
                };
                changed = true;
                finished_now = true;
                events.push(EventKind::MapItemCompleted {
                    step,
                    item: i as u32,
                    failure: failure.clone(),
                });
                if let Some(error) = failure {
                    map.failed += 1;
                    map.first_error.get_or_insert(error);
                }
            }
            if let Some(policy) = &map.policy {
                // A batch: its policy judges the items finished so far.
                let finished = pending.branches.iter().filter(|b| b.is_finished()).count();
                let failed = map.failed;
                let succeeded = (finished as u32).saturating_sub(failed);
                if let Some(completion) = batch::verdict(policy, len, succeeded, failed) {
                    events.push(EventKind::BatchCompleted {
                        step,
                        completion,
                        succeeded,
                        failed,
                    });
                    self.cancel_open_children(pending);
                    break match batch_output(completion, &pending.branches, map.next) {
                        Ok(output) => Outcome::Resume(output),
                        Err(e) => Outcome::End(RunEnd::Faulted(e.to_string())),
                    };
                }
            } else if let Some(tolerance) = map.tolerance {
                let tolerated = tolerance.allowed(len);
                let child_failed = pending
                    .branches
                    .iter()
                    .any(|b| matches!(b, Branch::Failed(_)));
                if map.failed > tolerated || child_failed {
                    events.push(EventKind::MapFailed {
                        step,
                        failed: map.failed,
                        tolerated,
                    });
                    self.cancel_open_children(pending);
                    let failed = MapFailed {
                        failed: map.failed,
                        total: len,
                        tolerated,
                        first_error: map.first_error.clone().unwrap_or_default(),
                    };
                    break Outcome::Resume(output::err(&failed, "map failure")?);
                }
            }
            if pending.branches.iter().all(Branch::is_finished) {
                let outputs = pending.branches.iter().map(|b| match b {
                    Branch::Done { output, .. } => output.as_slice(),
                    _ => &[],
                });
                break Outcome::Resume(output::map(tolerant, len, outputs));
            }
            if !finished_now {
                break Outcome::Wait { changed };
            }
        };
        pending.shape = Shape::Map(map);
        Ok(outcome)
    }

    /// Moves one open branch on.
    async fn drive_branch(
        &mut self,
        run_id: &str,
        step: u64,
        i: u32,
        multi: bool,
        branch: &mut Branch,
        events: &mut Vec<EventKind>,
    ) -> Result<BranchProgress, TestError> {
        let now = self.now();
        let done = |output: Vec<u8>, failure: Option<String>| Branch::Done { output, failure };
        let next = match branch {
            Branch::Task(task) => {
                let caller = Caller {
                    run_id,
                    step,
                    branch: i,
                    multi,
                    token: None,
                };
                match self.drive_task(task, &caller, events).await? {
                    TaskProgress::Pending { changed } => {
                        return Ok(BranchProgress::Open { changed })
                    }
                    TaskProgress::Finished { output, failure } => done(output, failure),
                    TaskProgress::Fail(error) => return Ok(BranchProgress::Fail(error)),
                }
            }
            Branch::Sleep { until } if *until <= now => {
                events.push(EventKind::TimerFired {
                    step,
                    branch: i,
                    deadline_ms: *until,
                });
                done(output::unit(), None)
            }
            Branch::Sleep { .. } | Branch::Waiting(_) => {
                return Ok(BranchProgress::Open { changed: false })
            }
            Branch::Signal {
                name,
                timeout,
                deadline,
            } => {
                let run = self.run(run_id)?;
                if let Some(pos) = run.inbox.iter().position(|(n, _)| n == name) {
                    let (_, payload) = run.inbox.remove(pos).unwrap_or_default();
                    done(output::signal_received(payload, timeout.is_some()), None)
                } else {
                    match (deadline, timeout) {
                        (Some(deadline), Some(timeout)) if *deadline <= now => {
                            events.push(EventKind::TimerFired {
                                step,
                                branch: i,
                                deadline_ms: *deadline,
                            });
                            done(output::signal_timed_out(name, *timeout)?, None)
                        }
                        _ => return Ok(BranchProgress::Open { changed: false }),
                    }
                }
            }
            Branch::Child { run_id: child } => {
                let Some(child_run) = self.runs.get(child.as_str()) else {
                    return Err(TestError::UnknownRun {
                        run_id: child.clone(),
                    });
                };
                match &child_run.end {
                    None => return Ok(BranchProgress::Open { changed: false }),
                    Some(RunEnd::Completed(output)) => {
                        let failure = ((child_run.entry.returned_err)(output) == Some(true))
                            .then(|| format!("child run `{child}` returned Err"));
                        done(output.clone(), failure)
                    }
                    Some(RunEnd::Failed(error)) | Some(RunEnd::Faulted(error)) => {
                        Branch::Failed(format!("child run `{child}` failed: {error}"))
                    }
                    Some(RunEnd::Cancelled) => {
                        Branch::Failed(format!("child run `{child}` was cancelled"))
                    }
                }
            }
            Branch::Callback {
                task,
                token,
                timeout,
                deadline,
                heartbeat,
                awaiting,
                heartbeat_due,
            } => {
                let expired = match (*deadline, heartbeat_due.filter(|_| *awaiting)) {
                    (Some(at), _) if at <= now => Some((
                        at,
                        CallbackError::TimedOut {
                            after: timeout.unwrap_or_default(),
                        },
                    )),
                    (_, Some(due)) if due <= now => Some((
                        due,
                        CallbackError::HeartbeatTimedOut {
                            after: heartbeat.unwrap_or_default(),
                        },
                    )),
                    _ => None,
                };
                if let Some((deadline_ms, error)) = expired {
                    events.push(EventKind::TimerFired {
                        step,
                        branch: i,
                        deadline_ms,
                    });
                    done(output::err(&error, "an error outcome")?, None)
                } else if *awaiting {
                    return Ok(BranchProgress::Open { changed: false });
                } else {
                    let caller = Caller {
                        run_id,
                        step,
                        branch: i,
                        multi,
                        token: Some(token),
                    };
                    match self.drive_task(task, &caller, events).await? {
                        TaskProgress::Pending { changed } => {
                            return Ok(BranchProgress::Open { changed })
                        }
                        TaskProgress::Finished { failure: None, .. } => {
                            *awaiting = true;
                            *heartbeat_due =
                                heartbeat.map(|h| now.saturating_add(crate::time::millis(h)));
                            events.push(EventKind::CallbackWaiting { step, branch: i });
                            return Ok(BranchProgress::Open { changed: true });
                        }
                        TaskProgress::Finished {
                            failure: Some(error),
                            ..
                        } => done(
                            output::err(&CallbackError::TaskFailed(error), "an error outcome")?,
                            None,
                        ),
                        TaskProgress::Fail(error) => return Ok(BranchProgress::Fail(error)),
                    }
                }
            }
            Branch::Done { .. } | Branch::Failed(_) => {
                return Ok(BranchProgress::Open { changed: false })
            }
        };
        *branch = next;
        Ok(BranchProgress::Finished)
    }

    /// Runs the task's next attempt if it is due, or ends a hung one at its timeout.
    async fn drive_task(
        &mut self,
        task: &mut TaskBranch,
        caller: &Caller<'_>,
        events: &mut Vec<EventKind>,
    ) -> Result<TaskProgress, TestError> {
        let now = self.now();
        let at = (caller.step, caller.branch);
        let (attempt, end) = match task.state {
            TaskState::RetryAt(at) if at > now => {
                return Ok(TaskProgress::Pending { changed: false })
            }
            TaskState::Hung { until, .. } if until > now => {
                return Ok(TaskProgress::Pending { changed: false })
            }
            TaskState::Hung { attempt, .. } => {
                let failure = TaskFailure::TimedOut {
                    task: task.name.clone(),
                    after: task.policy.effective_timeout(),
                };
                (attempt, AttemptEnd::Failed(failure))
            }
            TaskState::Due | TaskState::RetryAt(_) => {
                let attempt = task.failed.saturating_add(1);
                match attempts::attempt(&self.mocks, task, attempt, caller).await? {
                    Some(end) => (attempt, end),
                    None => {
                        let timeout = crate::time::millis(task.policy.effective_timeout());
                        task.state = TaskState::Hung {
                            attempt,
                            until: now.saturating_add(timeout),
                        };
                        return Ok(TaskProgress::Pending { changed: true });
                    }
                }
            }
        };
        Ok(attempts::judge(
            &self.mocks,
            task,
            at,
            attempt,
            end,
            events,
            now,
        ))
    }

    /// The branch for leaf `request` of step `step`; starts a child run.
    fn start_branch(
        &mut self,
        run_id: &str,
        step: u64,
        i: u32,
        multi: bool,
        request: OpRequest,
    ) -> Result<Branch, TestError> {
        let now = self.now();
        let after = |timeout: Option<std::time::Duration>| {
            timeout.map(|t| now.saturating_add(crate::time::millis(t)))
        };
        Ok(match request {
            OpRequest::Task { name, args, policy } => {
                Branch::Task(TaskBranch::new(name, args, policy))
            }
            OpRequest::Sleep { until_ms } => Branch::Sleep { until: until_ms },
            OpRequest::Signal { name, timeout } => Branch::Signal {
                name,
                timeout,
                deadline: after(timeout),
            },
            OpRequest::Child { workflow, input } => {
                let registered = self
                    .registry
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner())
                    .get(workflow.as_str())
                    .copied();
                let entry = registered.ok_or_else(|| TestError::UnknownWorkflow {
                    name: workflow.clone(),
                })?;
                let child = child_id(run_id, step, i, multi);
                self.start(child.clone(), entry, input, Some(run_id.to_string()), None)?;
                Branch::Child { run_id: child }
            }
            OpRequest::Callback {
                task,
                timeout,
                heartbeat,
                ..
            } => {
                // A name on the task names the step or branch already.
                let OpRequest::Task { name, args, policy } = task.clone().unnamed().0 else {
                    return Ok(Branch::Failed(format!(
                        "`wait_for_callback` needs a #[task] call, not `{}`",
                        task.label()
                    )));
                };
                let token = format!("testcb-{}", child_id(run_id, step, i, multi));
                self.tokens.insert(token.clone(), run_id.to_string());
                Branch::Callback {
                    task: TaskBranch::new(name, args, policy),
                    token,
                    timeout,
                    deadline: after(timeout),
                    heartbeat,
                    awaiting: false,
                    heartbeat_due: None,
                }
            }
            other => Branch::Failed(format!(
                "`{}` cannot be a branch: race and join branches must be task calls, child \
                 workflows, sleeps, signals or callbacks",
                other.label()
            )),
        })
    }

    /// Resumes the run's workflow with `output`, the pending operation's result.
    fn resume(
        &mut self,
        run_id: &str,
        pending: &Pending,
        output: Vec<u8>,
    ) -> Result<(), TestError> {
        let now = self.now();
        let restore = self.restore;
        let run = self.run(run_id)?;
        run.event(
            now,
            EventKind::StepCompleted {
                step: pending.step,
                output: output.clone(),
            },
        );
        run.completed.push((pending.label.clone(), output.clone()));
        let rebuild = match restore {
            Restore::Never => false,
            Restore::EveryStep => true,
            Restore::AtStep(k) => k == run.resumptions,
        };
        run.resumptions += 1;
        if rebuild {
            // What a restart does: the machine from its program counter and slots only.
            let slots = run.slots.iter().map(|(k, v)| (*k, v.clone())).collect();
            run.machine = Machine::restore(run.entry.name, run.machine.pc(), slots);
        }
        run.machine.set_resume(output);
        self.step(run_id)
    }

    /// Runs the machine's next step (on the virtual clock) and acts on its transition.
    fn step(&mut self, run_id: &str) -> Result<(), TestError> {
        loop {
            let now = self.now();
            let run = self.run(run_id)?;
            let step = run.entry.step;
            let machine = &mut run.machine;
            let result = crate::time::with_virtual_now(now, || {
                catch_unwind(AssertUnwindSafe(|| step(machine)))
            });
            for (index, bytes) in run.machine.take_writes() {
                run.slots.insert(index, bytes);
            }
            let name = run.entry.name;
            let transition = match result {
                Ok(Ok(transition)) => transition,
                Ok(Err(fault)) => {
                    run.finish(now, RunEnd::Faulted(fault.to_string()));
                    return Ok(());
                }
                Err(panic) => {
                    let message = crate::error::panic_message(&*panic);
                    let error = format!("workflow `{name}` panicked: {message}");
                    run.finish(now, RunEnd::Failed(error));
                    return Ok(());
                }
            };
            match transition {
                Transition::Complete { output } => {
                    run.finish(now, RunEnd::Completed(output));
                    return Ok(());
                }
                Transition::Suspend {
                    request: OpRequest::ContinueAsNew { input },
                    ..
                } => {
                    // A new generation: its history starts over; the inbox and run-level
                    // deadline stay; step numbers keep counting.
                    run.history.clear();
                    run.event(
                        now,
                        EventKind::ContinuedAsNew {
                            input: input.clone(),
                            steps_before: run.steps,
                        },
                    );
                    run.machine = Machine::start(name, input);
                    run.slots.clear();
                    run.completed.clear();
                    run.resumptions = 0;
                }
                Transition::Suspend { request, state } => {
                    return self.schedule(run_id, request, state);
                }
            }
        }
    }

    /// Makes `request` the run's pending operation (starting its child runs), as the
    /// engine schedules it: names peeled off (the step's name is the outermost one; named
    /// branches and map items get `BranchNamed` events), every branch or item checked
    /// first (a request the engine cannot schedule faults the run, nothing started).
    fn schedule(&mut self, run_id: &str, request: OpRequest, state: u32) -> Result<(), TestError> {
        let now = self.now();
        let label = request.label();
        let plan = plan(&request);
        let run = self.run(run_id)?;
        let Plan {
            shape,
            leaves: branches,
            names,
        } = match plan {
            Ok(plan) => plan,
            Err(error) => {
                run.finish(now, RunEnd::Faulted(error));
                return Ok(());
            }
        };
        let step = run.steps;
        run.steps += 1;
        // A map's items stay in its `StepScheduled`, as an engine's history shows them
        // (it reads them back from its map items table).
        run.event(
            now,
            EventKind::StepScheduled {
                step,
                state,
                name: label.clone(),
                request,
            },
        );
        for (branch, name) in names {
            run.event(now, EventKind::BranchNamed { step, branch, name });
        }
        let branches = match shape {
            // A map's items start as it has room for them.
            Shape::Map(_) => branches.into_iter().map(Branch::Waiting).collect(),
            _ => {
                let multi = !matches!(shape, Shape::Single);
                let mut started = Vec::with_capacity(branches.len());
                for (i, leaf) in branches.into_iter().enumerate() {
                    started.push(self.start_branch(run_id, step, i as u32, multi, leaf)?);
                }
                started
            }
        };
        self.run(run_id)?.pending = Some(Pending {
            step,
            label,
            shape,
            branches,
        });
        Ok(())
    }

    /// Cancels the run's pending operation as the engine does: a single task call gets
    /// `Err(TaskFailure::Cancelled)` when its output type can carry it (the workflow may
    /// compensate); otherwise the run ends cancelled, with the child runs it waits for.
    fn cancel_pending(&mut self, run_id: &str) -> Result<(), TestError> {
        let now = self.now();
        let run = self.run(run_id)?;
        let Some(pending) = run.pending.take() else {
            run.finish(now, RunEnd::Cancelled);
            return Ok(());
        };
        self.forget_tokens(&pending);
        if let (Shape::Single, [Branch::Task(task)]) = (&pending.shape, pending.branches.as_slice())
        {
            let failure = TaskFailure::Cancelled {
                task: task.name.clone(),
            };
            match attempts::failure_output(&self.mocks, &task.name, failure) {
                Some(Ok(output)) => return self.resume(run_id, &pending, output),
                Some(Err(e)) => {
                    self.run(run_id)?
                        .finish(now, RunEnd::Faulted(e.to_string()));
                    return Ok(());
                }
                None => {}
            }
        }
        self.cancel_open_children(&pending);
        self.run(run_id)?.finish(now, RunEnd::Cancelled);
        Ok(())
    }

    /// Requests cancellation of the child runs `pending` waits for.
    fn cancel_open_children(&mut self, pending: &Pending) {
        let now = self.now();
        for branch in &pending.branches {
            if let Branch::Child { run_id } = branch {
                if let Some(child) = self.runs.get_mut(run_id) {
                    if child.end.is_none() {
                        child.event(now, EventKind::CancelRequested);
                        child.cancel_requested = true;
                    }
                }
            }
        }
    }

    /// Requests cancellation of run `run_id` (handled at its next turn).
    pub(super) fn request_cancel(&mut self, run_id: &str) -> Result<(), TestError> {
        let now = self.now();
        let run = self.run(run_id)?;
        if run.end.is_some() {
            return Err(TestError::RunFinished {
                run_id: run_id.to_string(),
                what: "cancellation",
            });
        }
        run.event(now, EventKind::CancelRequested);
        run.cancel_requested = true;
        Ok(())
    }

    /// Puts signal `name` in the run's inbox.
    pub(super) fn signal(
        &mut self,
        run_id: &str,
        name: &str,
        payload: Vec<u8>,
        sent: &str,
    ) -> Result<(), TestError> {
        let now = self.now();
        let run = self.run(run_id)?;
        if run.end.is_some() {
            return Err(TestError::RunFinished {
                run_id: run_id.to_string(),
                what: "signals",
            });
        }
        crate::signal_types::check(
            run.entry.signals,
            run.entry.name,
            run_id,
            name,
            &payload,
            sent,
        )?;
        let seq = run.signals_received;
        run.signals_received += 1;
        run.inbox.push_back((name.to_string(), payload));
        run.event(
            now,
            EventKind::SignalReceived {
                name: name.to_string(),
                seq,
            },
        );
        Ok(())
    }

    /// The callback branch that issued `token`, in the pending operation of its run.
    fn callback_branch(
        &mut self,
        token: &str,
    ) -> Result<(String, u64, u32, &mut Branch), TestError> {
        let invalid = || TestError::InvalidCallbackToken {
            token: token.to_string(),
        };
        let run_id = self.tokens.get(token).cloned().ok_or_else(invalid)?;
        let run = self.runs.get_mut(&run_id).ok_or_else(invalid)?;
        let pending = run.pending.as_mut().ok_or_else(invalid)?;
        let step = pending.step;
        let (i, branch) = pending
            .branches
            .iter_mut()
            .enumerate()
            .find(|(_, b)| matches!(b, Branch::Callback { token: t, .. } if t == token))
            .ok_or_else(invalid)?;
        Ok((run_id, step, i as u32, branch))
    }

    /// Completes the callback that issued `token` with an encoded `Result`.
    pub(super) fn complete(
        &mut self,
        token: &str,
        output: Vec<u8>,
        ok: bool,
    ) -> Result<(), TestError> {
        let now = self.now();
        let (run_id, step, i, branch) = self.callback_branch(token)?;
        *branch = Branch::Done {
            output,
            failure: None,
        };
        self.tokens.remove(token);
        self.run(&run_id)?.event(
            now,
            EventKind::CallbackCompleted {
                step,
                branch: i,
                ok,
            },
        );
        Ok(())
    }

    /// Moves the heartbeat deadline of the callback that issued `token`.
    pub(super) fn heartbeat(&mut self, token: &str) -> Result<(), TestError> {
        let now = self.now();
        let (_, _, _, branch) = self.callback_branch(token)?;
        if let Branch::Callback {
            heartbeat,
            heartbeat_due,
            awaiting: true,
            ..
        } = branch
        {
            *heartbeat_due = heartbeat.map(|h| now.saturating_add(crate::time::millis(h)));
        }
        Ok(())
    }

    /// The tokens of the callbacks run `run_id` waits for.
    pub(super) fn open_tokens(&self, run_id: &str) -> Vec<String> {
        let Some(pending) = self.runs.get(run_id).and_then(|r| r.pending.as_ref()) else {
            return Vec::new();
        };
        pending
            .branches
            .iter()
            .filter_map(|b| match b {
                Branch::Callback {
                    token,
                    awaiting: true,
                    ..
                } => Some(token.clone()),
                _ => None,
            })
            .collect()
    }
}

/// How a branch stands after a turn.
enum BranchProgress {
    Open {
        changed: bool,
    },
    /// The branch is now `Done` or `Failed`.
    Finished,
    Fail(String),
}

/// Whether a branch finished with an `Ok` output.
fn is_ok(branch: &Branch) -> bool {
    matches!(branch, Branch::Done { output, .. } if output::ok_value(output).is_some())
}

/// A completed batch's output: `completion` and each item's status, as the engine
/// encodes them (items not finished and started before `next` were cancelled).
fn batch_output(
    completion: Completion,
    branches: &[Branch],
    next: usize,
) -> Result<Vec<u8>, CodecError> {
    let statuses: Vec<RawStatus<'_>> = branches
        .iter()
        .enumerate()
        .map(|(i, branch)| match branch {
            Branch::Done {
                output,
                failure: None,
            } => RawStatus::Succeeded(output),
            Branch::Done {
                output,
                failure: Some(error),
            } => RawStatus::Failed {
                error,
                output: Some(output),
            },
            Branch::Failed(error) => RawStatus::Failed {
                error,
                output: None,
            },
            _ if i < next => RawStatus::Cancelled,
            _ => RawStatus::NotStarted,
        })
        .collect();
    batch::encode(completion, &statuses)
}

/// How a request is scheduled: see [`plan`].
struct Plan {
    shape: Shape,
    /// The branches (or a map's items), without their names.
    leaves: Vec<OpRequest>,
    /// The names of named branches (or items), by index.
    names: Vec<(u32, String)>,
}

/// The pending operation's shape for `request`, its leaves (branches, or a map's items)
/// without their names, and those names by index; or why the engine would fault the run
/// instead of scheduling it (see `engine::step::schedule`).
fn plan(request: &OpRequest) -> Result<Plan, String> {
    let (request, _) = step::peel(request);
    let mut names = Vec::new();
    let map = |items: &[OpRequest],
               max_in_flight: u32,
               tolerance: Option<Tolerance>,
               policy: Option<CompletionPolicy>,
               names: &mut Vec<(u32, String)>| {
        let mut unnamed = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let (item, name) = step::map_item(i, item)?;
            if let Some(name) = name {
                names.push((i as u32, name.to_string()));
            }
            unnamed.push(item.clone());
        }
        let map = MapState {
            max_in_flight: max_in_flight.max(1),
            tolerance,
            policy,
            next: 0,
            open: Vec::new(),
            failed: 0,
            first_error: None,
        };
        Ok::<_, String>((Shape::Map(map), unnamed))
    };
    let (shape, leaves) = match request {
        OpRequest::All(parts) => {
            let shape = if parts
                .iter()
                .any(|p| matches!(step::peel(p).0, OpRequest::All(_)))
            {
                let mut layout = Vec::new();
                store::join_layout(request, &mut layout);
                Shape::NestedJoin(layout)
            } else {
                Shape::Join
            };
            let mut leaves = Vec::new();
            store::flatten(request, &mut leaves);
            (shape, leaves)
        }
        OpRequest::Race(arms) if arms.is_empty() => {
            return Err("a race needs at least one operation".into())
        }
        OpRequest::Race(arms) => (Shape::Race, arms.clone()),
        OpRequest::FirstOk(arms) if arms.is_empty() => {
            return Err("first_ok needs at least one operation".into())
        }
        OpRequest::FirstOk(arms) => (Shape::FirstOk, arms.clone()),
        OpRequest::Map {
            items,
            max_in_flight,
            tolerance,
        } => {
            let (shape, leaves) = map(items, *max_in_flight, *tolerance, None, &mut names)?;
            return Ok(Plan {
                shape,
                leaves,
                names,
            });
        }
        OpRequest::Batch {
            items,
            max_in_flight,
            policy,
        } => {
            // Every item is judged (a task's `Err` is a failure), as in a tolerant map;
            // the policy decides what a failure does.
            let tolerance = Some(policy.tolerance);
            let (shape, items) = map(items, *max_in_flight, tolerance, Some(*policy), &mut names)?;
            return Ok(Plan {
                shape,
                leaves: items,
                names,
            });
        }
        other => (Shape::Single, vec![other.clone()]),
    };
    let mut unnamed = Vec::with_capacity(leaves.len());
    for (i, leaf) in leaves.into_iter().enumerate() {
        let (leaf, name) = leaf.unnamed();
        if let Some(error) = step::branch_error(&leaf, request) {
            return Err(error);
        }
        if let Some(name) = name {
            names.push((i as u32, name));
        }
        unnamed.push(leaf);
    }
    Ok(Plan {
        shape,
        leaves: unnamed,
        names,
    })
}
