//! A run's driver: the in-memory worker that moves one run forward.
//!
//! It exists only while the run has something to do now (a task attempt, a step to
//! take); a run that waits for a deadline, a signal or a child has no driver and lives in
//! the journal only. Each turn the driver reads the run from the journal, decides, and
//! commits one transition; so whatever woke it (a timer, a signal, a child, recovery), it
//! acts on durable state only.
//!
//! The read is skipped when nothing but the driver itself changed the run since: after
//! its own commit of a simple transition (task steps) it keeps the snapshot the journal
//! now holds (`project`), and a new run's driver gets the one its start committed
//! (`Handover`). Anything else that changes a run wakes it (`Core::wake`), and a wake-up
//! always makes the next turn read the journal.
//!
//! The attempt of a step that awaits one task call is polled by the driver itself while
//! it waits (`InlineAttempt`); attempts of joins, races and maps run in tasks of their own
//! so that they run in parallel.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use tokio::sync::{mpsc, watch};

use crate::callback::CallbackError;
use crate::codec;
use crate::engine::attempt::{run_attempt, AbortOnDrop, AttemptEnd};
use crate::engine::plan::{
    self, end_run, map_needs, needs, push_varint, set_needs, step_run, Ending, Finished,
    StepOutcome,
};
use crate::engine::registry::WorkflowEntry;
use crate::engine::wake::DriverSlot;
use crate::engine::{random_unit, Core};
use crate::error::FlowError;
use crate::history::EventKind;
use crate::machine::Machine;
use crate::map::MapFailed;
use crate::op::OpRequest;
use crate::store::records::{Branch, BranchRecord, MapSpec, PendingOp, Shape, MAP_PROGRESS};
use crate::store::{Applied, Change, PendingChange, RunWrite, Seen, Snapshot};
use crate::task::{
    find_task, AttemptClass, TaskContext, TaskFailure, TaskPolicy, TaskRegistration,
};
use crate::time::now_ms;

/// A machine kept in memory between steps, valid while the run's header has `steps`.
pub(crate) struct CachedMachine {
    pub machine: Machine,
    pub steps: u64,
}

/// A finished attempt, waiting to be committed.
struct AttemptOutcome {
    step: u64,
    attempt: u32,
    task: &'static TaskRegistration,
    end: AttemptEnd,
}

/// A transition to commit, and the machine to keep if it succeeds.
struct Plan {
    write: RunWrite,
    machine: Option<Machine>,
}

enum Decision {
    Commit(Box<Plan>),
    /// Nothing to commit now: wait for an attempt or a wake-up.
    Wait,
    /// The journal could not be read; the run is left as it is (recovered on reopen).
    Abandon,
}

/// Whether a snapshot is simple enough to keep between turns: a pending step made of task
/// calls only (no map, callback, signal, sleep or child: their records are also changed by
/// others, e.g. a heartbeat), no cancellation asked for.
fn cacheable(snap: &Snapshot) -> bool {
    snap.map.is_none()
        && !snap.cancel_requested
        && !snap.header.status.is_settled()
        && snap.pending.as_ref().is_some_and(|op| {
            !matches!(op.shape, Shape::Map(_))
                && op.branches.iter().all(|b| matches!(b, Branch::Task { .. }))
        })
}

/// The run as the journal holds it once `write`, computed from `snap`, has committed (and
/// nothing else changed the run: whatever else changes it wakes it, which makes the next
/// turn read the journal); `None` when that is not simple to know.
pub(crate) fn project(mut snap: Snapshot, write: &RunWrite) -> Option<Snapshot> {
    if write.continue_as_new.is_some()
        || write.map_items.is_some()
        || !write.children.is_empty()
        || !write.tokens.is_empty()
        || !write.cancel_runs.is_empty()
        || write.run_deadline.is_some()
        || write.run_timed_out
        || write.consume_cancel
        || write.header.status.is_settled()
        || snap.map.is_some()
    {
        return None;
    }
    match &write.pending {
        PendingChange::Keep => {}
        PendingChange::Set(op) => {
            if snap.pending.as_ref().map(|p| p.step) != Some(op.step) {
                snap.branches.clear();
            }
            snap.pending = Some(op.clone());
        }
        PendingChange::Remove => return None,
    }
    let step = snap.pending.as_ref()?.step;
    if write.clear_branches == Some(step) {
        snap.branches.clear();
    }
    // As `Tables::apply_unchecked` does: a finished branch stays finished.
    for (at, branch, record) in &write.branch_puts {
        if *at != step {
            continue;
        }
        if !record.is_finished() && snap.branches.get(branch).is_some_and(|r| r.is_finished()) {
            continue;
        }
        snap.branches.insert(*branch, record.clone());
    }
    snap.header = write.header.clone();
    cacheable(&snap).then_some(snap)
}

/// What the committer of a run's first transition hands its new driver, so that the
/// driver's first turn neither reads the run nor rebuilds its machine.
pub(crate) struct Handover {
    pub machine: CachedMachine,
    /// The run as the journal holds it after that transition (see [`project`]).
    pub snapshot: Option<Snapshot>,
}

/// Spawns the driver of `run_id`; `slot` is how it is woken, from `Drivers::wake`.
pub(crate) fn spawn(
    core: Arc<Core>,
    run_id: String,
    slot: Arc<DriverSlot>,
    handover: Option<Handover>,
) {
    let (machine, cache) = match handover {
        Some(h) => (Some(h.machine), h.snapshot),
        None => (None, None),
    };
    let mut driver = Driver {
        core,
        run_id,
        slot,
        machine,
        inflight: HashMap::new(),
        inline: None,
        outcomes: BTreeMap::new(),
        results: None,
        left: false,
        fault: None,
        cache,
    };
    tokio::spawn(async move { driver.run().await });
}

/// A running attempt.
struct Inflight {
    /// The attempt's own tokio task; `None` for the attempt in [`Driver::inline`].
    handle: Option<AbortOnDrop<()>>,
    /// Tells the task body (`TaskContext::is_cancelled`) that it should stop.
    cancel: watch::Sender<bool>,
}

/// An attempt the driver polls itself, while it waits: the task of a step that awaits a
/// single task call (most steps). It needs no tokio task of its own and no channel, and
/// its result is judged in the same poll that finishes it; the attempts of joins, races
/// and maps get tasks of their own so that they run in parallel.
struct InlineAttempt {
    key: (u64, u32),
    body: Pin<Box<dyn Future<Output = AttemptOutcome> + Send>>,
}

/// Results of attempts with tasks of their own, by branch.
type ResultsChannel = (
    mpsc::UnboundedSender<(u32, AttemptOutcome)>,
    mpsc::UnboundedReceiver<(u32, AttemptOutcome)>,
);

/// The next result of an attempt with a task of its own; never if none was started.
async fn spawned_finished(results: &mut Option<ResultsChannel>) -> Option<(u32, AttemptOutcome)> {
    match results {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the inline attempt finishes (taking it out); never while there is none.
fn inline_finished(
    inline: &mut Option<InlineAttempt>,
) -> impl Future<Output = (u32, AttemptOutcome)> + '_ {
    std::future::poll_fn(move |cx| {
        let Some(attempt) = inline.as_mut() else {
            return Poll::Pending;
        };
        match attempt.body.as_mut().poll(cx) {
            Poll::Ready(outcome) => {
                let branch = attempt.key.1;
                *inline = None;
                Poll::Ready((branch, outcome))
            }
            Poll::Pending => Poll::Pending,
        }
    })
}

struct Driver {
    core: Arc<Core>,
    run_id: String,
    slot: Arc<DriverSlot>,
    machine: Option<CachedMachine>,
    /// Attempts running now, by (step, branch); dropping one aborts it.
    inflight: HashMap<(u64, u32), Inflight>,
    /// The running attempt this driver polls itself, if any (also in `inflight`).
    inline: Option<InlineAttempt>,
    /// Finished attempts not yet judged, by (step, branch).
    outcomes: BTreeMap<(u64, u32), AttemptOutcome>,
    /// Where attempts with tasks of their own report; made for the first such attempt
    /// (most runs never need one).
    results: Option<ResultsChannel>,
    left: bool,
    /// A fault found while committing, to record on the next turn.
    fault: Option<String>,
    /// The run as the journal holds it, when only this driver changed it since it was
    /// read (or written); used instead of a read unless the run was woken.
    cache: Option<Snapshot>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Also reached when the driver stops early (engine stopped, journal error, or a
        // bug): the slot must go, or the run could never be woken again.
        if !self.left {
            self.core.drivers.leave(&self.run_id);
        }
        // Waiters skip reading a run while it has a driver (see `RunHandle::result`):
        // they must look again once it is gone.
        self.core.waiters.notify(&self.run_id, None);
    }
}

impl Driver {
    async fn run(&mut self) {
        let mut stop = self.core.stop_receiver();
        loop {
            if stop.borrow().is_some() {
                return;
            }
            let woken = self.slot.take_woken();
            let snap = match self.cache.take() {
                Some(snap) if !woken => snap,
                _ => match self.core.store.snapshot(&self.run_id) {
                    Ok(Some(snap)) => snap,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(run = %self.run_id, error = %e, "could not read run");
                        return;
                    }
                },
            };
            if snap.header.status.is_settled() {
                return;
            }
            let entry = match self.core.registry.driver_for(&snap.header) {
                Ok(entry) => *entry,
                Err(reason) => {
                    tracing::info!(run = %self.run_id, %reason, "run is blocked");
                    return;
                }
            };
            match self.decide(&snap, &entry) {
                Decision::Commit(plan) => {
                    if !self.commit(*plan, snap).await {
                        return;
                    }
                }
                Decision::Abandon => return,
                Decision::Wait if self.inflight.is_empty() => {
                    if self.core.drivers.try_leave(&self.run_id) {
                        self.left = true;
                        return;
                    }
                }
                Decision::Wait => {
                    if cacheable(&snap) {
                        self.cache = Some(snap);
                    }
                    tokio::select! {
                        (branch, outcome) = inline_finished(&mut self.inline) => {
                            self.received(branch, outcome);
                        }
                        Some((branch, outcome)) = spawned_finished(&mut self.results) => {
                            self.received(branch, outcome);
                            // Judge every attempt that finished meanwhile in one turn.
                            while let Some((branch, outcome)) =
                                self.results.as_mut().and_then(|(_, rx)| rx.try_recv().ok())
                            {
                                self.received(branch, outcome);
                            }
                        }
                        _ = self.slot.notified() => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }

    fn received(&mut self, branch: u32, outcome: AttemptOutcome) {
        let key = (outcome.step, branch);
        self.inflight.remove(&key);
        self.outcomes.insert(key, outcome);
    }

    /// Cancels the attempts of step `step` (except branch `keep`): told through their
    /// context, then left to finish on their own.
    fn cancel_attempts(&mut self, step: u64, keep: Option<u32>) {
        let losers: Vec<_> = self
            .inflight
            .keys()
            .filter(|(s, b)| *s == step && Some(*b) != keep)
            .copied()
            .collect();
        for key in losers {
            if let Some(inflight) = self.inflight.remove(&key) {
                self.cancel_and_detach(key, inflight);
            }
        }
    }

    /// Tells an attempt's body to stop and lets it finish on its own; its result is
    /// ignored. An inline attempt gets a task of its own for that.
    fn cancel_and_detach(&mut self, key: (u64, u32), inflight: Inflight) {
        inflight.cancel.send_replace(true);
        match inflight.handle {
            Some(handle) => handle.detach(),
            None => {
                if let Some(attempt) = self.inline.take_if(|a| a.key == key) {
                    tokio::spawn(async move {
                        attempt.body.await;
                    });
                }
            }
        }
    }

    /// Aborts every running attempt, after telling their bodies to stop.
    fn abort_attempts(&mut self) {
        for (_, inflight) in self.inflight.drain() {
            inflight.cancel.send_replace(true);
        }
        self.inline = None;
    }

    /// Commits `plan`; false if the driver must stop.
    async fn commit(&mut self, plan: Plan, snap: Snapshot) -> bool {
        let Plan { mut write, machine } = plan;
        let settled = write.header.status.is_settled();
        let steps = write.header.steps;
        let first_deadline = write.timers_add.iter().min().copied();
        let projected = project(snap, &write);
        // Encoding fails only if a serde impl does; the commit thread then tries again and
        // reports the error through the usual path.
        let _ = write.encode();
        // The write comes back to be dropped here: freeing memory on the thread that
        // allocated it is cheaper, and it keeps that work off the commit thread.
        let result = self.core.commits.submit_here(Change::Run(write)).await;
        match result {
            Ok((Applied::Ran(effects), Change::Run(write))) => {
                for run in &effects.wake {
                    self.core.wake(run);
                }
                if let Some(deadline) = first_deadline {
                    self.core.timers.added(deadline);
                }
                if settled {
                    // Leave first: a waiter that finds the run's driver live relies on
                    // being told when it ends.
                    self.core.drivers.leave(&self.run_id);
                    self.left = true;
                    let end = (write.header.status, write.output);
                    self.core.waiters.notify(&self.run_id, Some(end));
                }
                self.machine = machine.map(|machine| CachedMachine { machine, steps });
                self.cache = projected;
                !settled
            }
            Err(e @ FlowError::RunIdConflict { .. }) => {
                // A child run could not be created under its ID: the run cannot go on.
                self.machine = None;
                self.fault = Some(e.to_string());
                true
            }
            Err(e) => {
                if !self.core.is_stopped() {
                    tracing::warn!(run = %self.run_id, error = %e, "could not commit transition");
                }
                self.machine = None;
                false
            }
            Ok(_) => unreachable!("a run's write is applied as one"),
        }
    }

    fn decide(&mut self, snap: &Snapshot, entry: &WorkflowEntry) -> Decision {
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
                return Decision::Commit(Box::new(Plan {
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
            return Decision::Commit(Box::new(Plan {
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
        self.outcomes.retain(|(step, _), _| *step == op.step);
        if let Shape::Map(spec) = &op.shape {
            return self.decide_map(snap, op, spec, entry, write, now);
        }
        let before = needs(op, &snap.branches);
        if snap.cancel_requested {
            return self.cancel(snap, op, entry, write, &before);
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
                        op,
                        i,
                        (name, args, policy),
                        None,
                        &mut records,
                        &mut write,
                        now,
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
                    Some(codec::encode(&(), String::new).unwrap_or_default())
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
                        Some(plan::signal_received(payload, timeout.is_some()))
                    }
                    Ok(None) => match (deadline_ms, timeout) {
                        (Some(deadline), Some(timeout)) if *deadline <= now => {
                            write.events.push(EventKind::TimerFired {
                                step: op.step,
                                branch: i,
                                deadline_ms: *deadline,
                            });
                            match plan::signal_timed_out(name, *timeout) {
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
                        match plan::encoded_err(&error) {
                            Ok(output) => Some(output),
                            Err(e) => end!(Ending::Faulted(e.to_string())),
                        }
                    } else if matches!(records.get(&i), Some(BranchRecord::Awaiting { .. })) {
                        None
                    } else {
                        let progress = self.drive_task(
                            op,
                            i,
                            (name, args, policy),
                            Some(token),
                            &mut records,
                            &mut write,
                            now,
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
                                write.branch_puts.push((op.step, i, record));
                                write.events.push(EventKind::CallbackWaiting {
                                    step: op.step,
                                    branch: i,
                                });
                                None
                            }
                            TaskProgress::Finished {
                                failure: Some(error),
                                ..
                            } => match plan::encoded_err(&CallbackError::TaskFailed(error)) {
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

        if op.shape == Shape::Join {
            for (branch, output) in &resolved {
                write.events.push(EventKind::BranchCompleted {
                    step: op.step,
                    branch: *branch,
                    output: output.clone(),
                });
            }
        }
        let output = if op.shape == Shape::Race {
            // The first branch (in branch order) with a result wins.
            let winner = (0..op.branches.len() as u32).find_map(|i| match records.get(&i) {
                Some(BranchRecord::Done(bytes)) => Some((i, bytes.clone())),
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
                let mut output = Vec::with_capacity(bytes.len() + 1);
                push_varint(winner as u64, &mut output);
                output.extend_from_slice(&bytes);
                output
            })
        } else {
            let all_done = (0..op.branches.len() as u32)
                .all(|i| matches!(records.get(&i), Some(BranchRecord::Done(_))));
            all_done.then(|| {
                // The outputs in branch order (a join's output is their concatenation).
                let mut output = Vec::new();
                for i in 0..op.branches.len() as u32 {
                    if let Some(BranchRecord::Done(bytes)) = records.get(&i) {
                        output.extend_from_slice(bytes);
                    }
                }
                output
            })
        };
        if let Some(output) = output {
            // Attempts still running for this step (a callback's task after its token was
            // completed or timed out) are told to stop.
            self.cancel_attempts(op.step, None);
            return self.resume(snap, op, entry, write, &before, output, resolved, now);
        }
        if !changed {
            return Decision::Wait;
        }
        for (branch, output) in resolved {
            write
                .branch_puts
                .push((op.step, branch, BranchRecord::Done(output)));
        }
        set_needs(&mut write, &before, &needs(op, &records));
        Decision::Commit(Box::new(Plan {
            write,
            machine: self.machine.take().map(|c| c.machine),
        }))
    }

    /// One turn of a pending map: judge finished items, start items while there is room,
    /// resume the workflow when all are done. Reads and writes only the open items.
    fn decide_map(
        &mut self,
        snap: &Snapshot,
        op: &PendingOp,
        spec: &MapSpec,
        entry: &WorkflowEntry,
        mut write: RunWrite,
        now: u64,
    ) -> Decision {
        let view = snap.map.clone().unwrap_or_default();
        let mut progress = view.progress;
        let mut items = view.items;
        let mut records = snap.branches.clone();
        let before = map_needs(&items, &records, &progress.open);
        if snap.cancel_requested {
            return self.cancel(snap, op, entry, write, &before);
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
                    finished.push((i, record.clone()));
                    continue;
                }
                match items.get(&i) {
                    Some(OpRequest::Task { name, args, policy }) => {
                        let (name, args, policy) = (name.clone(), args.clone(), policy.clone());
                        let progress = self.drive_task(
                            op,
                            i,
                            (&name, &args, &policy),
                            None,
                            &mut records,
                            &mut write,
                            now,
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
                        let unit = codec::encode(&(), String::new).unwrap_or_default();
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
                write.branch_puts.push((op.step, i, record));
            }
            let tolerated = spec.tolerance.map(|t| t.allowed(spec.len));
            match (tolerated, child_failed) {
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
                    write.cancel_runs = progress
                        .open
                        .iter()
                        .filter(|i| matches!(items.get(i), Some(OpRequest::Child { .. })))
                        .map(|i| plan::child_id(&self.run_id, op.step, *i, true))
                        .collect();
                    let failed = MapFailed {
                        failed: progress.failed,
                        total: spec.len,
                        tolerated,
                        first_error: progress.first_error.clone().unwrap_or_default(),
                    };
                    let output = match plan::encoded_err(&failed) {
                        Ok(output) => output,
                        Err(e) => end!(Ending::Faulted(e.to_string())),
                    };
                    return self.resume(snap, op, entry, write, &before, output, Vec::new(), now);
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
                    match plan::child_start(
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
            for (_, i, record) in write.branch_puts.drain(..) {
                all.insert(i, record);
            }
            let mut output = Vec::new();
            if tolerant {
                output.push(0); // Ok
            }
            push_varint(spec.len as u64, &mut output);
            for i in 0..spec.len {
                match all.get(&i) {
                    Some(BranchRecord::Done(bytes) | BranchRecord::Erred(bytes, _)) => {
                        output.extend_from_slice(bytes)
                    }
                    _ => end!(Ending::Faulted(format!(
                        "the result of item {i} of the map in step {} is missing",
                        op.step
                    ))),
                }
            }
            return self.resume(snap, op, entry, write, &before, output, Vec::new(), now);
        }
        if !changed {
            return Decision::Wait;
        }
        write.branch_puts.push((
            op.step,
            MAP_PROGRESS,
            BranchRecord::MapProgress(progress.clone()),
        ));
        set_needs(
            &mut write,
            &before,
            &map_needs(&items, &records, &progress.open),
        );
        Decision::Commit(Box::new(Plan {
            write,
            machine: self.machine.take().map(|c| c.machine),
        }))
    }

    /// Resumes the workflow with `output`, the pending step's result; `resolved` are the
    /// branch outputs first known in this turn (kept if the step fails).
    #[allow(clippy::too_many_arguments)]
    fn resume(
        &mut self,
        snap: &Snapshot,
        op: &PendingOp,
        entry: &WorkflowEntry,
        mut write: RunWrite,
        before: &plan::Needs,
        output: Vec<u8>,
        resolved: Vec<(u32, Vec<u8>)>,
        now: u64,
    ) -> Decision {
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
        Decision::Commit(Box::new(Plan {
            write,
            machine: (outcome == StepOutcome::Suspended).then_some(machine),
        }))
    }

    /// Moves the task of branch `i` on: judges its finished attempt, or starts the next
    /// one when it is due.
    #[allow(clippy::too_many_arguments)]
    fn drive_task(
        &mut self,
        op: &PendingOp,
        i: u32,
        (name, args, policy): (&str, &[u8], &TaskPolicy),
        token: Option<&str>,
        records: &mut BTreeMap<u32, BranchRecord>,
        write: &mut RunWrite,
        now: u64,
    ) -> TaskProgress {
        if let Some(outcome) = self.outcomes.remove(&(op.step, i)) {
            return match settle_attempt(op, i, name, policy, outcome, &mut write.events, now) {
                Verdict::Done(output, failure) => TaskProgress::Finished { output, failure },
                Verdict::Retry(record) => {
                    records.insert(i, record.clone());
                    write.branch_puts.push((op.step, i, record));
                    TaskProgress::Pending { changed: true }
                }
                Verdict::End(ending) => TaskProgress::End(ending),
            };
        }
        if !self.inflight.contains_key(&(op.step, i)) {
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
                if let Err(error) = self.start_attempt(op, i, name, args, policy, attempt, token) {
                    return TaskProgress::End(Ending::Faulted(error));
                }
            }
        }
        TaskProgress::Pending { changed: false }
    }

    /// Ends the run (or delivers `TaskFailure::Cancelled` to its pending task); child
    /// runs it waits for are cancelled too.
    fn cancel(
        &mut self,
        snap: &Snapshot,
        op: &PendingOp,
        entry: &WorkflowEntry,
        mut write: RunWrite,
        before: &plan::Needs,
    ) -> Decision {
        self.abort_attempts();
        self.outcomes.clear();
        write.consume_cancel = true;
        write.cancel_runs = match (&op.shape, &snap.map) {
            (Shape::Map(_), Some(view)) => view
                .progress
                .open
                .iter()
                .filter(|i| matches!(view.items.get(i), Some(OpRequest::Child { .. })))
                .map(|i| plan::child_id(&self.run_id, op.step, *i, true))
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
            match find_task(name).and_then(|task| (task.failure_output)(failure)) {
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
                    return Decision::Commit(Box::new(Plan {
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

    fn settle(&mut self, write: RunWrite) -> Decision {
        self.abort_attempts();
        Decision::Commit(Box::new(Plan {
            write,
            machine: None,
        }))
    }

    /// The machine for the run's current state: the cached one, or rebuilt from its slots.
    fn take_machine(&mut self, snap: &Snapshot, entry: &WorkflowEntry) -> Option<Machine> {
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

    /// Starts attempt `attempt` of the task in branch `branch`; `Err` if the task is unknown.
    #[allow(clippy::too_many_arguments)]
    fn start_attempt(
        &mut self,
        op: &PendingOp,
        branch: u32,
        name: &str,
        args: &[u8],
        policy: &TaskPolicy,
        attempt: u32,
        token: Option<&str>,
    ) -> Result<(), String> {
        if self.core.is_stopped() {
            return Ok(());
        }
        let Some(task) = find_task(name) else {
            return Err(format!(
                "task `{name}` is not registered: no #[task] with this name is linked into this \
                 program; the run is kept and can go on once the task exists again"
            ));
        };
        let key = plan::child_id(&self.run_id, op.step, branch, op.is_multi());
        let cancel = watch::channel(false).0;
        let mut ctx = TaskContext::new(self.run_id.clone(), key, attempt, cancel.subscribe());
        if let Some(token) = token {
            ctx = ctx.with_callback_token(token.to_string());
        }
        let args = args.to_vec();
        let timeout = policy.timeout;
        let step = op.step;
        let body = async move {
            let end = run_attempt(task, &args, timeout, ctx).await;
            AttemptOutcome {
                step,
                attempt,
                task,
                end,
            }
        };
        let handle = if op.shape == Shape::Single && op.branches.len() == 1 && self.inline.is_none()
        {
            self.inline = Some(InlineAttempt {
                key: (step, branch),
                body: Box::pin(body),
            });
            None
        } else {
            let results = self
                .results
                .get_or_insert_with(mpsc::unbounded_channel)
                .0
                .clone();
            Some(AbortOnDrop::new(tokio::spawn(async move {
                let _ = results.send((branch, body.await));
            })))
        };
        self.inflight
            .insert((step, branch), Inflight { handle, cancel });
        Ok(())
    }
}

/// Drops the deletion of a finished step's branch records when it has none: only the
/// run's driver writes the records of a step made of task calls, and it wrote none (a
/// range delete is not free for the commit thread, and this is every plain task step).
fn keep_empty_records(snap: &Snapshot, op: &PendingOp, write: &mut RunWrite) {
    let tasks_only = !matches!(op.shape, Shape::Map(_))
        && op.branches.iter().all(|b| matches!(b, Branch::Task { .. }));
    if tasks_only && snap.branches.is_empty() && write.clear_branches == Some(op.step) {
        write.clear_branches = None;
    }
}

/// The child runs of `op` that have not finished.
fn open_children(op: &PendingOp, records: &BTreeMap<u32, BranchRecord>) -> Vec<String> {
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

/// Where a task branch stands after a turn.
enum TaskProgress {
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

enum Verdict {
    /// The output, and the failure when the last attempt was not a success.
    Done(Vec<u8>, Option<String>),
    Retry(BranchRecord),
    End(Ending),
}

/// Judges a finished attempt by the task's policy; appends its events.
fn settle_attempt(
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
