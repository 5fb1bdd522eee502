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
//!
//! This file holds the driver itself: its turn loop and its commits. A turn's decision
//! is in `turn` (then `branches` or `map`, and `ending`), attempts in flight in
//! `inflight`, the judging of finished attempts in `settle` (of attempts an engine's end
//! interrupted in `interrupted`), and what the driver keeps
//! between turns in `handover`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::engine::queues::DurableAck;
use crate::engine::wake::DriverSlot;
use crate::engine::Core;
use crate::error::FlowError;
use crate::machine::Machine;
use crate::store::{Applied, Change, Journal, RunWrite, Snapshot, StoredStatus};
use tracing::Instrument;

mod branches;
mod ending;
mod handover;
mod inflight;
mod interrupted;
mod map;
mod settle;
mod turn;

use branches::open_children;
use handover::cacheable;
pub(crate) use handover::{project, CachedMachine, Handover};
use inflight::{
    inline_finished, spawned_finished, AttemptKey, AttemptOutcome, Inflight, InlineAttempt,
    ResultsChannel,
};
pub(crate) use interrupted::DurableStarts;
use settle::{TaskCall, TaskProgress};
use turn::Turn;

/// A transition to commit, and the machine to keep if it succeeds.
struct Proposal {
    write: RunWrite,
    machine: Option<Machine>,
}

/// What a turn decided.
enum Decision {
    Commit(Box<Proposal>),
    /// Nothing to commit now: wait for an attempt or a wake-up.
    Wait,
    /// The journal could not be read; the run is left as it is (recovered on reopen).
    Abandon,
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
    let mut driver = RunDriver {
        core,
        run_id,
        slot,
        machine,
        inflight: HashMap::new(),
        inline: None,
        outcomes: BTreeMap::new(),
        unacked: Vec::new(),
        results: None,
        left: false,
        fault: None,
        cache,
    };
    // One span per driven run: every event of its steps and attempts carries the run's
    // ID, workflow and version (recorded once the run is read).
    let span = tracing::info_span!(
        "run",
        run_id = %driver.run_id,
        workflow = tracing::field::Empty,
        version = tracing::field::Empty
    );
    // Every driver of the run, in any process, under one trace (see `otel`).
    #[cfg(feature = "otel")]
    crate::otel::adopt(&span, &driver.run_id);
    tokio::spawn(async move { driver.run().await }.instrument(span));
}
struct RunDriver {
    core: Arc<Core>,
    run_id: String,
    slot: Arc<DriverSlot>,
    machine: Option<CachedMachine>,
    /// Attempts running now; dropping one aborts it.
    inflight: HashMap<AttemptKey, Inflight>,
    /// The running attempt this driver polls itself, if any (also in `inflight`).
    inline: Option<InlineAttempt>,
    /// Finished attempts not yet judged.
    outcomes: BTreeMap<AttemptKey, AttemptOutcome>,
    /// Workers' reports waiting for their outcome's commit: each is acknowledged once a
    /// commit succeeds after its outcome was judged (no longer in `outcomes`); dropped
    /// unsent if the driver ends first, which the report's answer tells the worker.
    unacked: Vec<(AttemptKey, DurableAck)>,
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

impl Drop for RunDriver {
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
impl RunDriver {
    async fn run(&mut self) {
        let mut stop = self.core.stop_receiver();
        // Whether the span has its workflow and version (recorded once: a record appends).
        let mut named = false;
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
            if !named {
                let span = tracing::Span::current();
                span.record("workflow", snap.header.workflow.as_str());
                span.record("version", snap.header.version);
                named = true;
            }
            let entry = match self.core.registry.driver_for(&snap.header) {
                Ok(entry) => *entry,
                Err(reason) => {
                    tracing::info!(run = %self.run_id, %reason, "run is blocked");
                    return;
                }
            };
            match self.decide(&snap, &entry) {
                Decision::Commit(proposal) => {
                    if !self.commit(*proposal, snap).await {
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

    fn received(&mut self, branch: u32, mut outcome: AttemptOutcome) {
        if let Some(ack) = outcome.ack.take() {
            let key = AttemptKey {
                step: outcome.step,
                branch,
            };
            self.unacked.push((key, ack));
        }
        if let Some(took) = outcome.took {
            self.core.metrics.attempt_finished(outcome.task.name, took);
        }
        let key = AttemptKey {
            step: outcome.step,
            branch,
        };
        self.inflight.remove(&key);
        self.outcomes.insert(key, outcome);
    }

    /// Commits `proposal`; false if the driver must stop.
    async fn commit(&mut self, proposal: Proposal, snap: Snapshot) -> bool {
        let Proposal { mut write, machine } = proposal;
        let settled = write.header.status.is_settled();
        let blocked = write.blocked.clone();
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
                self.acknowledge_judged();
                for run in &effects.wake {
                    self.core.wake(run);
                }
                if let Some(deadline) = first_deadline {
                    self.core.timers.added(deadline);
                }
                if settled {
                    trace_run_end(&write.header.status, steps);
                    // Leave first: a waiter that finds the run's driver live relies on
                    // being told when it ends.
                    self.core.drivers.leave(&self.run_id);
                    self.left = true;
                    let end = (write.header.status, write.output);
                    self.core.waiters.notify(&self.run_id, Some(end));
                }
                if let Some(reason) = blocked {
                    tracing::warn!(run = %self.run_id, %reason, "run is blocked");
                    // Parked before the driver leaves, so a waiter woken by its leaving
                    // sees why.
                    self.core.blocked.park(&self.run_id, reason);
                    self.abort_attempts();
                    return false;
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
}

impl RunDriver {
    /// Acknowledges the workers' reports whose outcomes were judged: the commit that
    /// just succeeded holds them (a turn judges every outcome it has before it commits).
    fn acknowledge_judged(&mut self) {
        if self.unacked.is_empty() {
            return;
        }
        let outcomes = &self.outcomes;
        let (judged, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unacked)
            .into_iter()
            .partition(|(key, _)| !outcomes.contains_key(key));
        self.unacked = waiting;
        for (_, ack) in judged {
            let _ = ack.send(());
        }
    }
}

/// The event of a run that ended, once its end is durable: at the level a user expects
/// (a failure is a warning, a fault an error).
fn trace_run_end(status: &StoredStatus, steps: u64) {
    match status {
        StoredStatus::Completed => tracing::info!(steps, "run completed"),
        StoredStatus::Failed(error) => tracing::warn!(steps, %error, "run failed"),
        StoredStatus::Faulted(error) => tracing::error!(steps, %error, "run faulted"),
        StoredStatus::Cancelled => tracing::info!(steps, "run cancelled"),
        other => tracing::debug!(steps, status = ?other, "run settled"),
    }
}
