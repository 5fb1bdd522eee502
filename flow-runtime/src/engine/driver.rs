//! A run's driver: the in-memory worker that moves one run forward.
//!
//! It exists only while the run has something to do now (a task attempt, a step to
//! take); a run that waits for a deadline, a signal or a child has no driver and lives in
//! the journal only. Each turn the driver reads the run from the journal, decides, and
//! commits one transition; so whatever woke it (a timer, a signal, a child, recovery), it
//! acts on durable state only.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::{mpsc, watch, Notify};

use crate::codec;
use crate::engine::attempt::{run_attempt, AbortOnDrop, AttemptEnd};
use crate::engine::plan::{
    self, end_run, needs, set_needs, step_run, Ending, Finished, StepOutcome,
};
use crate::engine::registry::WorkflowEntry;
use crate::engine::{now_ms, random_unit, Core};
use crate::error::FlowError;
use crate::history::EventKind;
use crate::machine::Machine;
use crate::store::records::{Branch, BranchRecord, PendingOp};
use crate::store::{RunWrite, Snapshot};
use crate::task::{
    find_task, AttemptClass, TaskContext, TaskFailure, TaskPolicy, TaskRegistration,
};

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

/// Spawns the driver of `run_id`; `notify` is its slot's notifier from `Drivers::wake`.
pub(crate) fn spawn(
    core: Arc<Core>,
    run_id: String,
    notify: Arc<Notify>,
    machine: Option<CachedMachine>,
) {
    let (results_tx, results_rx) = mpsc::unbounded_channel();
    let mut driver = Driver {
        core,
        run_id,
        notify,
        machine,
        inflight: HashMap::new(),
        outcomes: BTreeMap::new(),
        results_tx,
        results_rx,
        cancel: watch::channel(false).0,
        left: false,
        fault: None,
    };
    tokio::spawn(async move { driver.run().await });
}

struct Driver {
    core: Arc<Core>,
    run_id: String,
    notify: Arc<Notify>,
    machine: Option<CachedMachine>,
    /// Attempts running now, by branch; dropping one aborts it.
    inflight: HashMap<u32, AbortOnDrop<()>>,
    outcomes: BTreeMap<u32, AttemptOutcome>,
    results_tx: mpsc::UnboundedSender<(u32, AttemptOutcome)>,
    results_rx: mpsc::UnboundedReceiver<(u32, AttemptOutcome)>,
    /// Tells running task bodies (`TaskContext::is_cancelled`) that the run was cancelled.
    cancel: watch::Sender<bool>,
    left: bool,
    /// A fault found while committing, to record on the next turn.
    fault: Option<String>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Also reached when the driver stops early (engine stopped, journal error, or a
        // bug): the slot must go, or the run could never be woken again.
        if !self.left {
            self.core.drivers.leave(&self.run_id);
        }
    }
}

impl Driver {
    async fn run(&mut self) {
        let mut stop = self.core.stop_receiver();
        loop {
            if stop.borrow().is_some() {
                return;
            }
            self.core.drivers.clear_woken(&self.run_id);
            let snap = match self.core.store.snapshot(&self.run_id) {
                Ok(Some(snap)) => snap,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(run = %self.run_id, error = %e, "could not read run");
                    return;
                }
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
                    if !self.commit(*plan).await {
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
                    tokio::select! {
                        Some((branch, outcome)) = self.results_rx.recv() => {
                            self.inflight.remove(&branch);
                            self.outcomes.insert(branch, outcome);
                        }
                        _ = self.notify.notified() => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }

    /// Commits `plan`; false if the driver must stop.
    async fn commit(&mut self, plan: Plan) -> bool {
        let Plan { write, machine } = plan;
        let settled = write.header.status.is_settled();
        let steps = write.header.steps;
        let first_deadline = write.timers_add.iter().min().copied();
        let result = self
            .core
            .commits
            .submit(move |tables, now| tables.apply_run_write(write, now))
            .await;
        match result {
            Ok(effects) => {
                for run in &effects.wake {
                    self.core.wake(run);
                }
                if let Some(deadline) = first_deadline {
                    self.core.timers.added(deadline);
                }
                if settled {
                    self.core.waiters.notify(&self.run_id);
                }
                self.machine = machine.map(|machine| CachedMachine { machine, steps });
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
        }
    }

    fn decide(&mut self, snap: &Snapshot, entry: &WorkflowEntry) -> Decision {
        let now = now_ms();
        let header = &snap.header;
        let mut write = RunWrite::new(&self.run_id, header);
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
        if !header.started {
            if snap.cancel_requested {
                write.consume_cancel = true;
                return self.settle(end_run(write, None, Ending::Cancelled));
            }
            let input = match self.core.store.input(&self.run_id) {
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
        let before = needs(op, &snap.branches);
        if snap.cancel_requested {
            return self.cancel(snap, op, entry, write, &before);
        }

        // Sort out each open branch: new results, retries, attempts to start.
        let mut records = snap.branches.clone();
        let mut resolved: Vec<(u32, Vec<u8>)> = Vec::new();
        let mut consumed: Vec<u64> = Vec::new();
        let mut changed = false;
        for (i, branch) in op.branches.iter().enumerate() {
            let i = i as u32;
            match records.get(&i) {
                Some(BranchRecord::Done(_)) => continue,
                Some(BranchRecord::Failed(error)) => {
                    let finished = Finished {
                        op,
                        deadlines: &before.deadlines,
                        resolved,
                    };
                    return self.settle(end_run(
                        write,
                        Some(finished),
                        Ending::Failed(error.clone()),
                    ));
                }
                _ => {}
            }
            let output = match branch {
                Branch::Task { name, args, policy } => {
                    if let Some(outcome) = self.outcomes.remove(&i) {
                        if outcome.step != op.step {
                            continue;
                        }
                        changed = true;
                        match settle_attempt(op, i, name, policy, outcome, &mut write.events, now) {
                            Verdict::Done(output) => Some(output),
                            Verdict::Retry(record) => {
                                records.insert(i, record.clone());
                                write.branch_puts.push((op.step, i, record));
                                None
                            }
                            Verdict::End(ending) => {
                                let finished = Finished {
                                    op,
                                    deadlines: &before.deadlines,
                                    resolved,
                                };
                                return self.settle(end_run(write, Some(finished), ending));
                            }
                        }
                    } else {
                        if !self.inflight.contains_key(&i) {
                            let (failed, due) = match records.get(&i) {
                                Some(BranchRecord::Retrying {
                                    failed_attempts,
                                    retry_at_ms,
                                }) => (*failed_attempts, *retry_at_ms <= now),
                                _ => (0, true),
                            };
                            if due {
                                if let Err(error) =
                                    self.start_attempt(op, i, name, args, policy, failed + 1)
                                {
                                    let finished = Finished {
                                        op,
                                        deadlines: &before.deadlines,
                                        resolved,
                                    };
                                    return self.settle(end_run(
                                        write,
                                        Some(finished),
                                        Ending::Faulted(error),
                                    ));
                                }
                            }
                        }
                        None
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
                                Err(e) => {
                                    let finished = Finished {
                                        op,
                                        deadlines: &before.deadlines,
                                        resolved,
                                    };
                                    return self.settle(end_run(
                                        write,
                                        Some(finished),
                                        Ending::Faulted(e.to_string()),
                                    ));
                                }
                            }
                        }
                        _ => None,
                    },
                },
                Branch::Child { .. } => None,
            };
            if let Some(output) = output {
                changed = true;
                records.insert(i, BranchRecord::Done(output.clone()));
                resolved.push((i, output));
            }
        }
        write.inbox_consume = consumed;

        if op.join {
            for (branch, output) in &resolved {
                write.events.push(EventKind::BranchCompleted {
                    step: op.step,
                    branch: *branch,
                    output: output.clone(),
                });
            }
        }
        let all_done = (0..op.branches.len() as u32)
            .all(|i| matches!(records.get(&i), Some(BranchRecord::Done(_))));
        if all_done {
            // Resume the workflow with the outputs in branch order (a join's output is
            // their concatenation).
            let mut output = Vec::new();
            for i in 0..op.branches.len() as u32 {
                if let Some(BranchRecord::Done(bytes)) = records.get(&i) {
                    output.extend_from_slice(bytes);
                }
            }
            let mut machine = match self.take_machine(snap, entry) {
                Some(machine) => machine,
                None => return Decision::Abandon,
            };
            write.branch_puts.clear();
            let finished = Finished {
                op,
                deadlines: &before.deadlines,
                resolved,
            };
            let (write, outcome) = step_run(
                &self.core.registry,
                entry,
                &mut machine,
                Some(output),
                write,
                Some(finished),
                now,
            );
            return Decision::Commit(Box::new(Plan {
                write,
                machine: (outcome == StepOutcome::Suspended).then_some(machine),
            }));
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

    /// Ends the run (or delivers `TaskFailure::Cancelled` to its pending task).
    fn cancel(
        &mut self,
        snap: &Snapshot,
        op: &PendingOp,
        entry: &WorkflowEntry,
        mut write: RunWrite,
        before: &plan::Needs,
    ) -> Decision {
        self.cancel.send_replace(true);
        self.inflight.clear();
        self.outcomes.clear();
        write.consume_cancel = true;
        let finished = || Finished {
            op,
            deadlines: &before.deadlines,
            resolved: Vec::new(),
        };
        if let ([Branch::Task { name, .. }], false) = (op.branches.as_slice(), op.join) {
            let failure = TaskFailure::Cancelled { task: name.clone() };
            match find_task(name).and_then(|task| (task.failure_output)(failure)) {
                Some(Ok(output)) => {
                    // The workflow gets `Err(Cancelled)` and may compensate; tasks it
                    // calls from here on run normally.
                    self.cancel.send_replace(false);
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
        self.inflight.clear();
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
    fn start_attempt(
        &mut self,
        op: &PendingOp,
        branch: u32,
        name: &str,
        args: &[u8],
        policy: &TaskPolicy,
        attempt: u32,
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
        let key = if op.join {
            format!("{}/{}.{}", self.run_id, op.step, branch)
        } else {
            format!("{}/{}", self.run_id, op.step)
        };
        let ctx = TaskContext::new(self.run_id.clone(), key, attempt, self.cancel.subscribe());
        let results = self.results_tx.clone();
        let args = args.to_vec();
        let timeout = policy.timeout;
        let step = op.step;
        let handle = tokio::spawn(async move {
            let end = run_attempt(task, &args, timeout, ctx).await;
            let _ = results.send((
                branch,
                AttemptOutcome {
                    step,
                    attempt,
                    task,
                    end,
                },
            ));
        });
        self.inflight.insert(branch, AbortOnDrop(handle));
        Ok(())
    }
}

enum Verdict {
    Done(Vec<u8>),
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
            now.saturating_add(delay.as_millis() as u64)
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
    let output = |output: Result<Vec<u8>, codec::CodecError>| match output {
        Ok(bytes) => Verdict::Done(bytes),
        Err(e) => Verdict::End(Ending::Faulted(e.to_string())),
    };
    match outcome.end {
        AttemptEnd::BadArguments(e) => Verdict::End(Ending::Faulted(e.to_string())),
        AttemptEnd::Returned {
            class: AttemptClass::Success,
            output: out,
        } => output(out),
        AttemptEnd::Returned {
            class: AttemptClass::NonRetryable(error),
            output: out,
        } => {
            failed(error, false);
            output(out)
        }
        AttemptEnd::Returned {
            class: AttemptClass::Retryable(error),
            output: out,
        } => match failed(error, retries_left) {
            Some(retry_at_ms) => Verdict::Retry(BranchRecord::Retrying {
                failed_attempts: attempt,
                retry_at_ms,
            }),
            // Exhausted: the last attempt's `Err` reaches the workflow.
            None => output(out),
        },
        AttemptEnd::Failed(failure) => match failed(failure.to_string(), retries_left) {
            Some(retry_at_ms) => Verdict::Retry(BranchRecord::Retrying {
                failed_attempts: attempt,
                retry_at_ms,
            }),
            None => match (outcome.task.failure_output)(failure.clone()) {
                Some(out) => output(out),
                None => Verdict::End(Ending::Failed(format!(
                    "{failure} (task `{name}` has no error type to report it to the workflow)"
                ))),
            },
        },
    }
}
