//! The engine: starts runs, drives them through their durable operations, and answers
//! questions about them.
//!
//! Parts, one per file: `commit` (group commit: who writes the journal), `driver` (moves
//! one run forward, turn by turn), `step` (runs one step of a run's machine and turns it
//! into one transition), `attempt` (runs one task attempt), `timers` (wakes runs whose
//! deadline came), `wake` (which runs have a driver, who waits for which result),
//! `registry` (workflows by name and version, and the tasks linked into the program),
//! `blocked` (runs parked for lack of code), `listing` (pages of runs), `metrics` (counters
//! for `Engine::metrics`), `upgrade` (a run
//! moved to another version of its workflow), `retention` (deleting finished runs),
//! `redrive` (resuming a run that ended at the step it ended in), `fork` (a new run from
//! another's state before a step), `deliver` (requests from outside a run as data:
//! signals, cancellations, callback completions and heartbeats, applied once per request
//! ID by `Engine::deliver`), `builder`, `handle` (also the waiting and judging that
//! `Engine::wait` and `RunDescription::into_result` share with it).
//!
//! Terms, as the code uses them: a *step* is one run of the machine's step function, from
//! one suspension point to the next; what it awaits is a durable *operation*; a *turn* is
//! one iteration of a run's driver (read, decide, commit at most one *transition*).
//! ARCHITECTURE.md at the repository's root has the whole glossary.
//!
//! The engine uses the store only through `store::Journal`.

mod attempt;
mod blocked;
mod builder;
mod by_name;
mod commit;
mod deliver;
mod driver;
mod export;
mod fork;
mod handle;
mod listing;
mod locals;
mod metrics;
mod queues;
mod redrive;
mod registry;
mod retention;
pub(crate) mod step;
mod timers;
mod upgrade;
mod wake;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::watch;

pub use builder::EngineBuilder;
pub use by_name::{RegisteredWorkflow, RunDescription};
pub use deliver::Delivery;
pub use handle::RunHandle;
pub use listing::{ListQuery, RunCounts, RunPage, StatusKind, DEFAULT_PAGE_RUNS, MAX_PAGE_RUNS};
pub use locals::StepLocals;
pub use metrics::{
    CommitMetrics, Histogram, Metrics, TaskMetrics, WorkflowMetrics, ATTEMPT_SECONDS_BUCKETS,
    BATCH_SIZE_BUCKETS, COMMIT_SECONDS_BUCKETS,
};
pub(crate) use queues::task_token_run;
pub use queues::{Completed, LeasedTask, QueueInfo, TaskHeartbeat, MAX_POLL_TASKS, MAX_POLL_WAIT};
pub use upgrade::{Upgrade, UpgradePlan};

use crate::codec;
use crate::error::FlowError;
use crate::history::{AttemptInProgress, EventKind, HistoryEvent, RunStatus, RunSummary};
use crate::machine::Machine;
use crate::store::{
    Applied, Change, Journal, RunRecord, RunWrite, Seen, Snapshot, StartOutcome, StartWrite, Store,
    StoredStatus,
};
use crate::time::{millis, now_ms};
use crate::workflow::Workflow;
use blocked::BlockedRuns;
use commit::{CommitHooks, CommitPipeline};
use driver::{CachedMachine, Handover};
use metrics::EngineMetrics;
use registry::Registry;
use step::{step_run, StepOutcome};
use timers::Timers;
use wake::{Drivers, Waiters};

/// Why an engine opened with `EngineBuilder::inspect_only` refuses writes.
const INSPECT_ONLY: &str = "it was opened with `EngineBuilder::inspect_only` to look at the \
    journal, and writes nothing; open the journal with an engine that drives its runs (or \
    send the request to a server that has it open)";

/// Longest accepted run ID, in bytes.
const MAX_RUN_ID_BYTES: usize = 1024;

/// A durable workflow engine over one journal file.
///
/// Cloning is cheap and shares the engine. The engine stops when [`shutdown`](Self::shutdown)
/// is called or the last clone (including those held by [`RunHandle`]s) is dropped.
///
/// ```no_run
/// # async fn demo<W: flow_runtime::Workflow>(call: W) -> Result<(), flow_runtime::FlowError> {
/// use flow_runtime::Engine;
///
/// let engine = Engine::builder().register::<W>().open("orders.redb").await?;
/// let run = engine.start("order-42", call).await?; // durable when this returns
/// let output = run.result().await?;
/// engine.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

/// Owned by the user-facing handles: dropping the last one shuts the engine down.
struct Shared {
    core: Arc<Core>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(thread) = self.core.begin_shutdown("the engine was dropped") {
            let _ = thread.join();
        }
        self.core.store.close();
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// The engine's state, shared with its background tasks.
pub(crate) struct Core {
    pub store: Arc<Store>,
    pub commits: CommitPipeline,
    pub registry: Registry,
    pub drivers: Drivers,
    pub waiters: Waiters,
    pub timers: Timers,
    pub blocked: BlockedRuns,
    /// Counters for `Engine::metrics`, shared with the commit pipeline.
    pub metrics: Arc<EngineMetrics>,
    /// Opened with `EngineBuilder::inspect_only`: drives nothing, writes nothing.
    pub inspect_only: bool,
    /// The attempts of remote tasks waiting for (or held by) workers.
    pub queues: Arc<queues::TaskQueues>,
    stop: Arc<watch::Sender<Option<String>>>,
}

impl Core {
    /// Makes sure the run is being driven (spawning its driver if it has none).
    pub(crate) fn wake(self: &Arc<Self>, run_id: &str) {
        self.wake_with(run_id, None);
    }

    fn wake_with(self: &Arc<Self>, run_id: &str, handover: Option<Handover>) {
        if self.is_stopped() || self.blocked.is_parked(run_id) {
            return;
        }
        if let Some(slot) = self.drivers.wake(run_id) {
            driver::spawn(self.clone(), run_id.to_string(), slot, handover);
        }
    }

    /// Why this engine cannot drive the run stored with `header`, if it cannot: its
    /// workflow is missing or changed, or the run was parked for lack of code.
    pub(crate) fn blocked_reason(&self, run_id: &str, header: &RunRecord) -> Option<String> {
        if header.status.is_settled() || self.inspect_only {
            return None;
        }
        match self.registry.driver_for(header) {
            Err(reason) => Some(reason),
            Ok(_) => self.blocked.reason(run_id),
        }
    }

    /// Resolves to `Some(reason)` once the engine stops.
    pub(crate) fn stop_receiver(&self) -> watch::Receiver<Option<String>> {
        self.stop.subscribe()
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stop.borrow().is_some()
    }

    /// Stops background work and closes the commit channel; returns the commit thread to
    /// join (after which the journal can be closed).
    fn begin_shutdown(&self, reason: &str) -> Option<std::thread::JoinHandle<()>> {
        self.queues.release_polls();
        self.stop.send_if_modified(|state| {
            if state.is_none() {
                *state = Some(reason.to_string());
                true
            } else {
                false
            }
        });
        self.commits.close()
    }
}

impl Engine {
    /// Deletes the journal at `path`: the file and its write-ahead log (the file beside
    /// it, its name with `-wal` appended), whichever exist. For starting over. Deleting the
    /// file alone would leave a log that a new journal at the same path refuses
    /// ([`FlowError::LogMismatch`]) if a crash left changes in it.
    ///
    /// A path through a symbolic link deletes the files the link leads to (as
    /// [`open`](EngineBuilder::open) resolves it); the link stays. A journal an engine has
    /// open is refused with [`std::io::ErrorKind::ResourceBusy`] and left untouched.
    ///
    /// ```no_run
    /// # fn demo() -> std::io::Result<()> {
    /// flow_runtime::Engine::remove_journal("orders.redb")?;
    /// # Ok(()) }
    /// ```
    pub fn remove_journal(path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        crate::store::remove_journal_files(path.as_ref())
    }

    /// Starts configuring an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.shared.core
    }

    pub(crate) async fn launch(
        store: Store,
        mut builder: EngineBuilder,
    ) -> Result<Engine, FlowError> {
        let retention = std::mem::take(&mut builder.retention);
        let store = Arc::new(store);
        let stop = Arc::new(watch::channel(None).0);
        let inspect_only = builder.inspect_only;
        let hooks = CommitHooks {
            halt_after: builder.halt_after,
            on_commit: builder.on_commit,
        };
        let halted = Arc::new(AtomicBool::new(false));
        let metrics = Arc::new(EngineMetrics::new(&builder.registry));
        let commits = CommitPipeline::start(
            store.clone(),
            hooks,
            halted,
            stop.clone(),
            metrics.clone(),
            builder.compact_when_idle,
            builder.commit_on_drivers,
        )?;
        // The key that seals remote-task tokens lives in the journal, so that a token
        // outlives the engine that issued it. Only a program with remote tasks needs
        // one (no token is issued without a queue); an inspecting engine writes nothing.
        let worker_key = if inspect_only || crate::remote::declared_queues().is_empty() {
            [0; 32]
        } else {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.worker_key())
                .await
                .map_err(|e| FlowError::storage(format!("reading the worker key failed: {e}")))??
        };
        let core = Arc::new(Core {
            queues: Arc::new(queues::TaskQueues::new(worker_key)),
            store,
            commits,
            registry: builder.registry,
            drivers: Drivers::default(),
            waiters: Waiters::default(),
            timers: Timers::new(),
            blocked: BlockedRuns::default(),
            metrics,
            inspect_only,
            stop,
        });
        let engine = Engine {
            shared: Arc::new(Shared { core: core.clone() }),
        };
        if inspect_only {
            // No driver, timer or retention service: the journal is only read. Closing
            // the commit channel makes every write fail unwritten.
            if let Some(thread) = core.begin_shutdown(INSPECT_ONLY) {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
            return Ok(engine);
        }
        retention::start(&core, retention).await?;
        // Recovery: runs with deadline-free work get a driver now; runs with deadlines
        // (including ones that passed while no engine ran) are woken by the timer service.
        for run_id in core.store.active_runs()? {
            core.wake(&run_id);
        }
        tokio::spawn(timers::run(core));
        Ok(engine)
    }

    /// Starts a run of workflow `W` with ID `run_id`; returns once the start is durable.
    ///
    /// The run is on `W`'s version (`#[workflow(version = N)]`) for its whole life. New
    /// runs start on the newest registered version: a call of an older one is refused
    /// ([`FlowError::NotNewestVersion`]) unless picked with
    /// [`start_version`](Self::start_version).
    ///
    /// Idempotent: starting an existing run ID with the same workflow and input returns a
    /// handle to the existing run. A different workflow or input is a
    /// [`FlowError::RunIdConflict`].
    ///
    /// ```no_run
    /// # async fn demo<W: flow_runtime::Workflow>(engine: flow_runtime::Engine, call: W) -> Result<(), flow_runtime::FlowError> {
    /// let run = engine.start("order-42", call).await?;
    /// println!("started {}", run.run_id());
    /// # Ok(()) }
    /// ```
    pub async fn start<W: Workflow>(
        &self,
        run_id: impl Into<String>,
        workflow: W,
    ) -> Result<RunHandle<W>, FlowError> {
        self.start_inner(run_id.into(), workflow, None, VersionPick::Newest)
            .await
    }

    /// Starts a run like [`start`](Self::start) on `W`'s version even if a newer one is
    /// registered: for a caller that must stay on an older version on purpose (its runs
    /// count against draining it, see [`count_runs`](Self::count_runs)).
    ///
    /// ```no_run
    /// # async fn demo<W: flow_runtime::Workflow>(engine: flow_runtime::Engine, call: W) -> Result<(), flow_runtime::FlowError> {
    /// let run = engine.start_version("order-42", call).await?;
    /// # Ok(()) }
    /// ```
    pub async fn start_version<W: Workflow>(
        &self,
        run_id: impl Into<String>,
        workflow: W,
    ) -> Result<RunHandle<W>, FlowError> {
        self.start_inner(run_id.into(), workflow, None, VersionPick::Exactly)
            .await
    }

    /// Starts a run like [`start`](Self::start) with a run-level timeout: if the run has
    /// not finished `timeout` after its start, it is cancelled as by
    /// [`cancel`](Self::cancel) (its pending task gets `Err(TaskFailure::Cancelled)` and
    /// may compensate; child runs it waits for are cancelled). The deadline is stored as
    /// wall-clock time in the journal, so it holds across restarts, and it stays with the
    /// run through continue-as-new. History: `RunTimedOut`, then `CancelRequested`.
    ///
    /// Idempotent like `start`: for an existing run the timeout is not changed.
    ///
    /// ```no_run
    /// # async fn demo<W: flow_runtime::Workflow>(engine: flow_runtime::Engine, call: W) -> Result<(), flow_runtime::FlowError> {
    /// use std::time::Duration;
    /// let run = engine.start_with_timeout("order-42", call, Duration::from_secs(3600)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn start_with_timeout<W: Workflow>(
        &self,
        run_id: impl Into<String>,
        workflow: W,
        timeout: std::time::Duration,
    ) -> Result<RunHandle<W>, FlowError> {
        let deadline = now_ms().saturating_add(millis(timeout));
        self.start_inner(run_id.into(), workflow, Some(deadline), VersionPick::Newest)
            .await
    }

    /// The registered versions of workflow `name`, oldest first (empty if it is not
    /// registered). New runs start on the last.
    pub fn versions(&self, name: &str) -> Vec<u32> {
        self.core().registry.versions(name)
    }

    async fn start_inner<W: Workflow>(
        &self,
        run_id: String,
        workflow: W,
        deadline: Option<u64>,
        pick: VersionPick,
    ) -> Result<RunHandle<W>, FlowError> {
        check_run_id(&run_id)?;
        let core = self.core();
        let entry = *core
            .registry
            .get_version(W::NAME, W::VERSION)
            .ok_or_else(|| FlowError::UnknownWorkflow {
                workflow: match core.registry.versions(W::NAME).is_empty() {
                    true => W::NAME.to_string(),
                    false => format!("{} version {}", W::NAME, W::VERSION),
                },
            })?;
        let newest = core.registry.get(W::NAME).map_or(W::VERSION, |e| e.version);
        if pick == VersionPick::Newest && newest != W::VERSION {
            return Err(FlowError::NotNewestVersion {
                workflow: W::NAME.to_string(),
                version: W::VERSION,
                newest,
            });
        }
        let input = codec::encode(&workflow.into_input(), || {
            format!("input of workflow `{}`", W::NAME)
        })?;
        // An existing run with this ID is found by the commit thread (which has to look
        // anyway, atomically with the write): a repeated start costs one first step.
        // The first step runs before the start is committed, so that the start and the
        // first transition are one transaction; nothing it schedules runs before that.
        let now = now_ms();
        let header = RunRecord {
            workflow: W::NAME.to_string(),
            fingerprint: W::FINGERPRINT,
            status: StoredStatus::Running,
            pc: 0,
            steps: 0,
            started: false,
            created_at_ms: now,
            updated_at_ms: now,
            parent: None,
            next_seq: Some(0),
            version: W::VERSION,
        };
        let mut write = RunWrite::new(&run_id, &header);
        // The input is journaled once, in the start's own record; the event leaves it
        // out (`store::read::history` puts it back), or a large input would be stored
        // twice and copied again with every history page redb rewrites.
        write.events = crate::history::started_events(
            EventKind::RunStarted {
                workflow: W::NAME.to_string(),
                input: Vec::new(),
                parent: None,
            },
            W::VERSION,
        );
        let mut machine = Machine::start(W::NAME, input.clone());
        let (mut write, outcome) =
            step_run(&core.registry, &entry, &mut machine, None, write, None, now);
        if !write.header.status.is_settled() {
            write.run_deadline = deadline;
        }
        let settled = write.header.status.is_settled();
        let blocked = write.blocked.clone();
        let steps = write.header.steps;
        let active = write.active;
        let first_deadline = write
            .timers_add
            .iter()
            .chain(write.run_deadline.iter())
            .min()
            .copied();
        let snapshot = driver::project(Snapshot::new_run(header), &write);
        let _ = write.encode(); // see `RunDriver::commit`
        let start = StartWrite { input, write };
        let (started, _start) = core.commits.submit(Change::Start(start)).await?;
        if let Applied::Started(StartOutcome::Created(effects)) = started {
            tracing::info!(
                run_id = %run_id,
                workflow = W::NAME,
                version = W::VERSION,
                "run started"
            );
            for run in &effects.wake {
                core.wake(run);
            }
            if let Some(deadline) = first_deadline {
                core.timers.added(deadline);
            }
            if let Some(reason) = blocked {
                core.blocked.park(&run_id, reason);
            } else if settled {
                core.waiters.notify(&run_id, None);
            } else if active {
                let handover = (outcome == StepOutcome::Suspended).then_some(Handover {
                    machine: CachedMachine { machine, steps },
                    snapshot,
                });
                core.wake_with(&run_id, handover);
            }
        }
        Ok(RunHandle::new(self.clone(), run_id))
    }

    /// A handle to the existing run `run_id` of workflow `W`.
    pub fn handle<W: Workflow>(&self, run_id: &str) -> Result<RunHandle<W>, FlowError> {
        let header = self
            .core()
            .store
            .header(run_id)?
            .ok_or_else(|| FlowError::UnknownRun {
                run_id: run_id.to_string(),
            })?;
        if header.workflow != W::NAME {
            return Err(FlowError::WrongWorkflow {
                run_id: run_id.to_string(),
                stored: header.workflow,
                requested: W::NAME.to_string(),
            });
        }
        Ok(RunHandle::new(self.clone(), run_id.to_string()))
    }

    /// Every run in the journal, in run ID order, read page by page with
    /// [`list_page`](Self::list_page). Its result grows with the journal: for large
    /// journals use `list_page` and go on from its cursor.
    pub async fn list(&self) -> Result<Vec<RunSummary>, FlowError> {
        let mut query = ListQuery {
            limit: Some(MAX_PAGE_RUNS),
            ..ListQuery::default()
        };
        let mut runs = Vec::new();
        loop {
            let page = self.list_page(&query).await?;
            runs.extend(page.runs);
            match page.next {
                Some(cursor) => query.after = Some(cursor),
                None => return Ok(runs),
            }
        }
    }

    /// Where run `run_id` stands.
    pub async fn status(&self, run_id: &str) -> Result<RunStatus, FlowError> {
        let (header, output) = self
            .core()
            .store
            .header_and_output(run_id)?
            .ok_or_else(|| FlowError::UnknownRun {
                run_id: run_id.to_string(),
            })?;
        Ok(self.status_of(run_id, &header, output.as_deref()))
    }

    /// The public status of a run stored with `header` (and `output`, if it completed):
    /// what the journal holds, and what this engine can do about it.
    pub(crate) fn status_of(
        &self,
        run_id: &str,
        header: &RunRecord,
        output: Option<&[u8]>,
    ) -> RunStatus {
        let core = self.core();
        if let Some(reason) = core.blocked_reason(run_id, header) {
            return RunStatus::Blocked { reason };
        }
        if header.status == StoredStatus::Completed {
            let entry = core.registry.get_version(&header.workflow, header.version);
            if let (Some(entry), Some(output)) = (entry, output) {
                if (entry.returned_err)(output) == Some(true) {
                    return RunStatus::ReturnedErr;
                }
            }
        }
        header.status.to_public()
    }

    /// The history of run `run_id`, oldest event first.
    ///
    /// ```no_run
    /// # async fn demo(engine: flow_runtime::Engine) -> Result<(), flow_runtime::FlowError> {
    /// for event in engine.history("order-42").await? {
    ///     println!("{:>3} {:?}", event.seq, event.kind);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn history(&self, run_id: &str) -> Result<Vec<HistoryEvent>, FlowError> {
        let store = &self.core().store;
        if store.header(run_id)?.is_none() {
            return Err(FlowError::UnknownRun {
                run_id: run_id.to_string(),
            });
        }
        store.history(run_id)
    }

    /// The task attempts of run `run_id` running in this engine now: step, branch, task,
    /// attempt number and when it began. An attempt writes nothing before it ends (the
    /// history's `AttemptStarted` comes with its outcome), so a long or hanging attempt is
    /// seen here, from this engine's memory; another engine, or this one after a crash,
    /// shows none. Fails if the run is unknown.
    pub async fn attempts_in_progress(
        &self,
        run_id: &str,
    ) -> Result<Vec<AttemptInProgress>, FlowError> {
        let core = self.core();
        if core.store.header(run_id)?.is_none() {
            return Err(FlowError::UnknownRun {
                run_id: run_id.to_string(),
            });
        }
        Ok(core.drivers.running.of(run_id))
    }

    /// Sends signal `name` with `value` to run `run_id`; returns once it is durable.
    ///
    /// The signal waits in the run's inbox until the workflow awaits `flow::signal(name)`;
    /// each is delivered once, in order. Fails if the run is unknown or has finished.
    ///
    /// ```no_run
    /// # async fn demo(engine: flow_runtime::Engine) -> Result<(), flow_runtime::FlowError> {
    /// engine.signal("order-42", "approval", &true).await?;
    /// # Ok(()) }
    /// ```
    pub async fn signal<T: Serialize + ?Sized>(
        &self,
        run_id: &str,
        name: &str,
        value: &T,
    ) -> Result<(), FlowError> {
        self.apply_delivery(None, Delivery::signal(run_id, name, value)?)
            .await
    }

    /// Refuses a signal the run's workflow cannot take (see `signal_types`); runs that
    /// are unknown, or whose workflow is not registered here as stored, are left to the
    /// journal and the driver.
    fn check_signal(
        &self,
        run_id: &str,
        name: &str,
        payload: &[u8],
        sent: &str,
    ) -> Result<(), FlowError> {
        let Some(header) = self.core().store.header(run_id)? else {
            return Ok(());
        };
        match self.core().registry.driver_for(&header) {
            Ok(entry) => {
                crate::signal_types::check(entry.signals, entry.name, run_id, name, payload, sent)
            }
            Err(_) => Ok(()),
        }
    }

    /// Completes the callback that issued `token` (see
    /// [`WaitForCallback`](crate::WaitForCallback)): the waiting step resumes with
    /// `Ok(value)`, or with `Err(CallbackError::Rejected(error))`. Returns once durable.
    ///
    /// Tokens are single-use: an unknown token, one completed already, or one whose step
    /// is over (timed out, cancelled, lost a race) is a
    /// [`FlowError::InvalidCallbackToken`].
    ///
    /// A value that does not decode as the type the step awaits (its
    /// `wait_for_callback::<T>`) is refused with [`FlowError::CallbackTypeMismatch`]
    /// naming both types; nothing is stored and the token stays open. (A token issued
    /// before the engine's process started is checked once a run of this process has
    /// awaited a callback of the same type; until then a mismatch faults the run when
    /// its step decodes the value, as before.)
    ///
    /// ```no_run
    /// # async fn demo(engine: flow_runtime::Engine, token: String) -> Result<(), flow_runtime::FlowError> {
    /// engine.complete(&token, Ok::<_, String>("approved")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn complete<T: Serialize>(
        &self,
        token: &str,
        result: Result<T, String>,
    ) -> Result<(), FlowError> {
        self.apply_delivery(None, Delivery::complete(token, result)?)
            .await
    }

    /// Records a sign of life for the callback that issued `token` (see
    /// [`Callback::heartbeat`](crate::Callback::heartbeat)): its heartbeat deadline moves to
    /// one interval from now. Returns once durable. Refused like
    /// [`complete`](Self::complete) for unknown, used or expired tokens.
    pub async fn heartbeat(&self, token: &str) -> Result<(), FlowError> {
        let delivery = Delivery::Heartbeat {
            token: token.to_string(),
        };
        self.apply_delivery(None, delivery).await
    }

    /// Cancels run `run_id`; returns once the request is durable.
    ///
    /// A task the run awaits is stopped and, if its output type can carry it, the
    /// workflow receives `Err(TaskFailure::Cancelled)` and may compensate; otherwise the
    /// run ends as cancelled. Child runs it waits for are cancelled too. Fails if the run
    /// is unknown or has finished.
    pub async fn cancel(&self, run_id: &str) -> Result<(), FlowError> {
        let delivery = Delivery::Cancel {
            run_id: run_id.to_string(),
        };
        self.apply_delivery(None, delivery).await
    }

    /// Sets faulted run `run_id` going again: it resumes its pending operation (a task
    /// runs again, a sleep or a signal is waited for again) or its first step, as it
    /// stood when it faulted; the history records `FaultRetried` with the fault. For a
    /// run whose fault's cause was dealt with (runs faulted by older versions for lack
    /// of code, which now block instead; a child run ID freed). A run-level timeout the
    /// run had is not restored. Returns once durable.
    ///
    /// Errors: [`FlowError::UnknownRun`]; [`FlowError::NotFaulted`] for a run in any
    /// other state (nothing is written).
    ///
    /// ```no_run
    /// # async fn demo(engine: flow_runtime::Engine) -> Result<(), flow_runtime::FlowError> {
    /// engine.retry_faulted("order-42").await?;
    /// # Ok(()) }
    /// ```
    pub async fn retry_faulted(&self, run_id: &str) -> Result<(), FlowError> {
        let core = self.core();
        let snap = core
            .store
            .snapshot(run_id)?
            .ok_or_else(|| FlowError::UnknownRun {
                run_id: run_id.to_string(),
            })?;
        let StoredStatus::Faulted(error) = &snap.header.status else {
            return Err(FlowError::NotFaulted {
                run_id: run_id.to_string(),
                status: self.status(run_id).await?.to_string(),
            });
        };
        let mut write = RunWrite::new(run_id, &snap.header);
        write.header.status = StoredStatus::Running;
        write.active = true;
        // Ending the run dropped its deadlines: the pending operation gets them back.
        write.timers_add = match (&snap.pending, &snap.map) {
            (Some(_), Some(map)) => {
                step::map_needs(&map.items, &snap.branches, &map.progress.open).deadlines
            }
            (Some(op), None) => step::needs(op, &snap.branches).deadlines,
            (None, _) => Default::default(),
        }
        .into_iter()
        .collect();
        write.events.push(EventKind::FaultRetried {
            error: error.clone(),
        });
        write.seen = Some(Seen {
            nudges: snap.nudges,
            run_deadline: snap.run_deadline.is_some(),
            cancel: snap.cancel_requested,
        });
        let first_deadline = write.timers_add.iter().min().copied();
        core.commits.submit(Change::RetryFaulted(write)).await?;
        if let Some(deadline) = first_deadline {
            core.timers.added(deadline);
        }
        core.wake(run_id);
        Ok(())
    }

    /// Deletes run `run_id` with everything stored for it (history, locals, inbox,
    /// callback tokens, map items); returns once the deletion is durable. For runs the
    /// retention period ([`EngineBuilder::retention`]) would keep, or faulted runs.
    ///
    /// Errors: [`FlowError::UnknownRun`]; [`FlowError::RunNotSettled`] for a run that is
    /// still running or waiting (nothing is deleted).
    ///
    /// ```no_run
    /// # async fn demo(engine: flow_runtime::Engine) -> Result<(), flow_runtime::FlowError> {
    /// engine.purge("order-42").await?;
    /// # Ok(()) }
    /// ```
    pub async fn purge(&self, run_id: &str) -> Result<(), FlowError> {
        // Checked here first so that a refusal writes nothing, not even to the log; the
        // store checks again as it deletes.
        let header = self
            .core()
            .store
            .header(run_id)?
            .ok_or_else(|| FlowError::UnknownRun {
                run_id: run_id.to_string(),
            })?;
        if !header.status.is_settled() {
            return Err(FlowError::RunNotSettled {
                run_id: run_id.to_string(),
                status: self.status_of(run_id, &header, None).to_string(),
            });
        }
        let change = Change::Purge {
            run: run_id.to_string(),
        };
        self.core().commits.submit(change).await?;
        Ok(())
    }

    /// Stops the engine: running task attempts are aborted (they run again when the
    /// journal is next opened), and the journal is closed once the last commit is done,
    /// so the file can be opened again in this process right after.
    pub async fn shutdown(&self) {
        let core = self.core().clone();
        if let Some(thread) = core.begin_shutdown("the engine was shut down") {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        let store = core.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
    }
}

/// Which version a start may use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum VersionPick {
    /// The call's version, which must be the newest registered.
    Newest,
    /// The call's version, whichever it is.
    Exactly,
}

fn check_run_id(run_id: &str) -> Result<(), FlowError> {
    let reason = if run_id.is_empty() {
        "it is empty"
    } else if run_id.len() > MAX_RUN_ID_BYTES {
        "it is longer than 1024 bytes"
    } else if run_id.chars().any(char::is_control) {
        "it contains a control character (newline, tab, NUL, ...), which would corrupt \
         listings and logs"
    } else if run_id.chars().any(is_bidi_control) {
        "it contains a bidirectional-text control character (U+061C, U+200E/F, \
         U+202A-U+202E, U+2066-U+2069), which makes it display as a different ID"
    } else {
        return Ok(());
    };
    Err(FlowError::InvalidRunId {
        run_id: run_id.to_string(),
        reason,
    })
}

/// Unicode's bidirectional formatting characters: invisible, they reorder how the text
/// around them is shown.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}
