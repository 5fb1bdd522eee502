//! Moving an in-flight run to another version of its workflow (`Engine::upgrade`).
//!
//! The new version's state for the run is not guessed from the old version's slots (their
//! indices and types are the compiler's business): it is computed by the new version's
//! own code. The run's recording (its input and each completed step's output, as the
//! history holds them), after an optional user mapping, is replayed on the new version's
//! machine; each step it awaits must be the operation the run awaited there, and after
//! the last completed step it must await the operation the run waits for now. That is the
//! step where both versions agree; the machine's program counter and slots there become
//! the run's. Anything else is refused before a byte is written.

use std::collections::BTreeMap;

use crate::engine::step;
use crate::engine::Engine;
use crate::error::FlowError;
use crate::history::EventKind;
use crate::machine::{Machine, Transition};
use crate::op::OpRequest;
use crate::store::{Change, Journal, RunRecord, UpgradeWrite};
use crate::task::TaskPolicy;
use crate::testing::{RecordedRun, RecordedStep};
use crate::workflow::Workflow;

/// How long an upgrade waits for this engine's driver of the run to leave.
const DRIVER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Maps a run's recording from the old version's terms to the new one's.
type RecordingMap = Box<dyn FnOnce(RecordedRun) -> Result<RecordedRun, String> + Send>;

/// How [`Engine::upgrade`] carries a run over to the new version.
///
/// By default the run's recording (its input and its completed steps' outputs) is
/// replayed on the new version as it is. When the new version's code differs before the
/// run's current step (a step added or dropped, an input with a new field),
/// [`map_recording`](Self::map_recording) rewrites the recording first.
#[derive(Default)]
pub struct Upgrade {
    map: Option<RecordingMap>,
}

impl std::fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrade")
            .field("maps_recording", &self.map.is_some())
            .finish()
    }
}

impl Upgrade {
    /// Replays the run's recording on the new version as it is.
    pub fn new() -> Self {
        Upgrade::default()
    }

    /// Rewrites the recording before it is replayed: `map` gets the old version's
    /// recording (its `output` is `None`: the run has not finished) and returns the one
    /// the new version must accept, or an error that refuses the upgrade. Its result is
    /// checked like an unmapped recording, so a mapping that does not fit is refused too.
    ///
    /// ```
    /// # use flow_runtime::{codec, testing::RecordedStep, Upgrade};
    /// // Version 2 looks up a discount (a new step) before the step the run waits at.
    /// let upgrade = Upgrade::new().map_recording(|mut run| {
    ///     let output = codec::encode(&0u32, || "discount".into()).map_err(|e| e.to_string())?;
    ///     run.steps.push(RecordedStep { name: "discount".into(), request: None, output });
    ///     Ok(run)
    /// });
    /// ```
    pub fn map_recording(
        mut self,
        map: impl FnOnce(RecordedRun) -> Result<RecordedRun, String> + Send + 'static,
    ) -> Self {
        self.map = Some(Box::new(map));
        self
    }
}

/// What [`Engine::upgrade`] did (or, from [`Engine::check_upgrade`], would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradePlan {
    /// The run.
    pub run_id: String,
    /// Its workflow.
    pub workflow: String,
    /// The version it is on.
    pub from: u32,
    /// The version it moves to.
    pub to: u32,
    /// The step the run waits for, which both versions await (`None` for a run that has
    /// not taken its first step).
    pub step: Option<u64>,
    /// What it awaits there (`charge`, `signal:approval`, ...).
    pub awaits: Option<String>,
    /// Completed steps replayed on the new version.
    pub replayed_steps: usize,
    /// Saved locals the new version keeps at that step.
    pub slots: usize,
}

/// The new state an upgrade writes, and its description.
struct Prepared {
    plan: UpgradePlan,
    write: UpgradeWrite,
}

impl Engine {
    /// Checks whether run `run_id` can move to `W`'s version of its workflow, as
    /// [`upgrade`](Self::upgrade) would, and writes nothing: a dry run.
    pub async fn check_upgrade<W: Workflow>(
        &self,
        run_id: &str,
        upgrade: Upgrade,
    ) -> Result<UpgradePlan, FlowError> {
        Ok(self.prepare_upgrade::<W>(run_id, upgrade)?.plan)
    }

    /// Moves in-flight run `run_id` to `W`'s version of its workflow (`W` must be
    /// registered), at the step it waits for; returns once the move is durable. The run
    /// then goes on with `W`'s code, and its history records `RunUpgraded`.
    ///
    /// The move is computed by replaying the run's recording (see [`Upgrade`]) on `W`:
    /// `W` must await the same operations for the completed steps (same tasks with the
    /// same arguments, same signals, the same items in a map, ...; sleeps compare by
    /// kind) and then await the operation the run waits for. The pending operation, its
    /// attempts and its timers are kept. Code between steps runs during the replay.
    ///
    /// Refused with [`FlowError::UpgradeRefused`], writing nothing, when the recording
    /// does not fit `W`, the run is on `W`'s version already, has finished or faulted,
    /// or is still being driven by this engine after 5 s (a task attempt in flight:
    /// upgrade it while it waits, or from an engine that does not register its old
    /// version).
    ///
    /// ```no_run
    /// # async fn demo<V2: flow_runtime::Workflow>(engine: flow_runtime::Engine) -> Result<(), flow_runtime::FlowError> {
    /// use flow_runtime::Upgrade;
    /// let plan = engine.check_upgrade::<V2>("order-42", Upgrade::new()).await?;
    /// println!("order-42 can move to version {} at `{:?}`", plan.to, plan.awaits);
    /// engine.upgrade::<V2>("order-42", Upgrade::new()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn upgrade<W: Workflow>(
        &self,
        run_id: &str,
        upgrade: Upgrade,
    ) -> Result<UpgradePlan, FlowError> {
        let core = self.core();
        // No driver of this engine may start on the run while it moves: one computing a
        // step with the old code could commit it over the new state.
        let Some(parked) = core.blocked.park_for_upgrade(run_id) else {
            let header = core.store.header(run_id)?;
            return Err(FlowError::UpgradeRefused {
                run_id: run_id.to_string(),
                workflow: W::NAME.to_string(),
                from: header.map_or(0, |h| h.version),
                to: W::VERSION,
                reason: "another upgrade of the run is in progress".to_string(),
            });
        };
        let result = self.upgrade_parked::<W>(run_id, upgrade).await;
        // After a move, whatever parked the run was about the old code: try it again.
        let before = if result.is_ok() { None } else { parked };
        core.blocked.unpark(run_id, before);
        if result.is_ok() {
            core.wake(run_id);
        }
        result
    }

    async fn upgrade_parked<W: Workflow>(
        &self,
        run_id: &str,
        upgrade: Upgrade,
    ) -> Result<UpgradePlan, FlowError> {
        let core = self.core();
        if !self.driver_left(run_id).await {
            let header = core.store.header(run_id)?;
            return Err(FlowError::UpgradeRefused {
                run_id: run_id.to_string(),
                workflow: W::NAME.to_string(),
                from: header.map_or(0, |h| h.version),
                to: W::VERSION,
                reason: format!(
                    "this engine has been driving the run for the last {} s (a task attempt \
                     is in progress); upgrade it while it waits, or from an engine that does \
                     not register its version",
                    DRIVER_WAIT.as_secs()
                ),
            });
        }
        let Prepared { plan, write } = self.prepare_upgrade::<W>(run_id, upgrade)?;
        core.commits.submit(Change::Upgrade(write)).await?;
        Ok(plan)
    }

    /// Waits (up to [`DRIVER_WAIT`]) until this engine has no driver for the parked run:
    /// one that just committed the run's wait leaves at once; one running a task attempt
    /// stays until the attempt ends. True once it left.
    async fn driver_left(&self, run_id: &str) -> bool {
        let drivers = &self.core().drivers;
        let deadline = tokio::time::Instant::now() + DRIVER_WAIT;
        loop {
            let left = drivers.left.notified();
            tokio::pin!(left);
            // Registered before the check, so a driver leaving in between is not missed.
            left.as_mut().enable();
            if !drivers.is_live(run_id) {
                return true;
            }
            if tokio::time::timeout_at(deadline, left).await.is_err() {
                return false;
            }
        }
    }

    fn prepare_upgrade<W: Workflow>(
        &self,
        run_id: &str,
        upgrade: Upgrade,
    ) -> Result<Prepared, FlowError> {
        let core = self.core();
        let snap = core
            .store
            .snapshot(run_id)?
            .ok_or_else(|| FlowError::UnknownRun {
                run_id: run_id.to_string(),
            })?;
        let header = &snap.header;
        if header.workflow != W::NAME {
            return Err(FlowError::WrongWorkflow {
                run_id: run_id.to_string(),
                stored: header.workflow.clone(),
                requested: W::NAME.to_string(),
            });
        }
        let refuse = |reason: String| FlowError::UpgradeRefused {
            run_id: run_id.to_string(),
            workflow: W::NAME.to_string(),
            from: header.version,
            to: W::VERSION,
            reason,
        };
        match core.registry.get_version(W::NAME, W::VERSION) {
            Some(entry) if entry.fingerprint == W::FINGERPRINT => {}
            _ => {
                return Err(refuse(format!(
                    "version {} is not registered in this engine (register it with \
                     `.register::<{}>()`: the run needs its code to go on)",
                    W::VERSION,
                    std::any::type_name::<W>()
                )))
            }
        }
        if header.version == W::VERSION {
            return Err(refuse(format!(
                "the run is on version {} already",
                W::VERSION
            )));
        }
        if header.status.is_settled() {
            return Err(refuse(format!(
                "the run is {}: only a run that is still going can move",
                header.status.to_public()
            )));
        }
        let input = core.store.generation_input(run_id)?.ok_or_else(|| {
            FlowError::storage(format!("internal: run `{run_id}` has no stored input"))
        })?;
        let history = core.store.history(run_id)?;
        let (recorded, pending) = recording(input, &history, snap.pending.as_ref().map(|p| p.step));
        if header.started && pending.is_none() {
            return Err(refuse("the run waits for no operation".to_string()));
        }
        let recorded = match upgrade.map {
            Some(map) => map(recorded)
                .map_err(|e| refuse(format!("the recording's mapping refused it: {e}")))?,
            None => recorded,
        };
        let state = replay::<W>(&recorded, pending.as_ref()).map_err(refuse)?;
        let plan = UpgradePlan {
            run_id: run_id.to_string(),
            workflow: W::NAME.to_string(),
            from: header.version,
            to: W::VERSION,
            step: snap.pending.as_ref().map(|p| p.step),
            awaits: pending.as_ref().map(OpRequest::label),
            replayed_steps: recorded.steps.len(),
            slots: state.slots.len(),
        };
        let write = UpgradeWrite {
            run_id: run_id.to_string(),
            expect: RunRecord::clone(header),
            version: W::VERSION,
            fingerprint: W::FINGERPRINT,
            pc: state.pc,
            slots: state.slots.into_iter().collect(),
            pending_state: state.pending_state,
        };
        Ok(Prepared { plan, write })
    }
}

/// The run's current generation as a recording (input, completed steps), and the
/// request of the step it waits for (`pending_step`).
fn recording(
    input: Vec<u8>,
    history: &[crate::HistoryEvent],
    pending_step: Option<u64>,
) -> (RecordedRun, Option<OpRequest>) {
    let mut scheduled: BTreeMap<u64, (String, OpRequest)> = BTreeMap::new();
    let mut run = RecordedRun {
        input,
        ..RecordedRun::default()
    };
    for event in history {
        match &event.kind {
            EventKind::StepScheduled {
                step,
                name,
                request,
                ..
            } => {
                scheduled.insert(*step, (name.clone(), request.clone()));
            }
            EventKind::StepCompleted { step, output } => {
                if let Some((name, request)) = scheduled.remove(step) {
                    run.steps.push(RecordedStep {
                        name,
                        request: Some(request),
                        output: output.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    let pending = pending_step.and_then(|step| scheduled.remove(&step).map(|(_, request)| request));
    (run, pending)
}

/// The new version's machine at the step where it agrees with the run.
struct NewState {
    pc: u32,
    slots: BTreeMap<u32, Vec<u8>>,
    /// The pending operation's state index in the new version's graph.
    pending_state: Option<u32>,
}

/// Replays `recorded` on `W`, then checks that `W` awaits `pending` next; the machine's
/// state there, or why it does not fit.
fn replay<W: Workflow>(
    recorded: &RecordedRun,
    pending: Option<&OpRequest>,
) -> Result<NewState, String> {
    let mut machine = Machine::start(W::NAME, recorded.input.clone());
    let mut slots = BTreeMap::new();
    let Some(pending) = pending else {
        // Not started: its first step runs with the new code; check that it takes the
        // input, and keep nothing of the trial.
        W::step(&mut machine)
            .map_err(|e| format!("version {} cannot take the run's input: {e}", W::VERSION))?;
        return Ok(NewState {
            pc: 0,
            slots,
            pending_state: None,
        });
    };
    let mut index = 0;
    loop {
        let transition = W::step(&mut machine).map_err(|e| {
            format!(
                "version {} cannot take the recorded values at step {index}: {e}",
                W::VERSION
            )
        })?;
        slots.extend(machine.take_writes());
        let (request, state) = match transition {
            Transition::Complete { .. } => {
                return Err(format!(
                    "version {} returns after {index} steps, where the run goes on to `{}`",
                    W::VERSION,
                    recorded
                        .steps
                        .get(index)
                        .map_or(pending.label(), |s| s.name.clone())
                ))
            }
            Transition::Suspend { request, state } => (request, state),
        };
        let Some(step) = recorded.steps.get(index) else {
            if !same_operation(&request, pending) {
                return Err(format!(
                    "the run waits for `{}` at step {index}, but version {} awaits `{}` there",
                    pending.label(),
                    W::VERSION,
                    request.label()
                ));
            }
            return Ok(NewState {
                pc: machine.pc(),
                slots,
                pending_state: Some(state),
            });
        };
        let agrees = match &step.request {
            Some(recorded) => same_operation(&request, recorded),
            None => step.name == request.label(),
        };
        if !agrees {
            return Err(format!(
                "at step {index} the run awaited `{}`, but version {} awaits `{}`{}",
                step.name,
                W::VERSION,
                request.label(),
                if step.name == request.label() {
                    " with other arguments"
                } else {
                    ""
                }
            ));
        }
        machine.set_resume(step.output.clone());
        index += 1;
    }
}

/// The same operation for an upgrade: `current` (the new version's) equals `recorded`
/// (the history's) once the parts that need not agree are left out: a sleep's deadline,
/// which the clock decides; a task's policy, which the new version may change; the
/// names inside an item's outermost one, which the journal does not keep. A map's or
/// batch's items are compared one by one, unless the history lacks them (a map run by a
/// flow version that deleted its items when it ended).
fn same_operation(current: &OpRequest, recorded: &OpRequest) -> bool {
    let recorded = comparable(recorded);
    let current = comparable(current);
    if step::without_items(recorded.clone()) == recorded {
        step::without_items(current) == recorded
    } else {
        current == recorded
    }
}

/// A map's or batch's item as the journal keeps it: its outermost name only.
fn comparable_item(item: &OpRequest) -> OpRequest {
    match step::peel(item) {
        (op, Some(name)) => OpRequest::Named {
            name: name.to_string(),
            op: Box::new(comparable(op)),
        },
        (op, None) => comparable(op),
    }
}

fn comparable(request: &OpRequest) -> OpRequest {
    match request {
        OpRequest::Sleep { .. } => OpRequest::Sleep { until_ms: 0 },
        OpRequest::Task { name, args, .. } => OpRequest::Task {
            name: name.clone(),
            args: args.clone(),
            policy: TaskPolicy::default(),
        },
        OpRequest::All(branches) => OpRequest::All(branches.iter().map(comparable).collect()),
        OpRequest::Race(branches) => OpRequest::Race(branches.iter().map(comparable).collect()),
        OpRequest::FirstOk(branches) => {
            OpRequest::FirstOk(branches.iter().map(comparable).collect())
        }
        OpRequest::Batch {
            items,
            max_in_flight,
            policy,
        } => OpRequest::Batch {
            items: items.iter().map(comparable_item).collect(),
            max_in_flight: *max_in_flight,
            policy: *policy,
        },
        OpRequest::Named { name, op } => OpRequest::Named {
            name: name.clone(),
            op: Box::new(comparable(op)),
        },
        OpRequest::Map {
            items,
            max_in_flight,
            tolerance,
        } => OpRequest::Map {
            items: items.iter().map(comparable_item).collect(),
            max_in_flight: *max_in_flight,
            tolerance: *tolerance,
        },
        // The awaited type is not in the history's recording: it is not compared.
        OpRequest::Callback {
            task,
            timeout,
            heartbeat,
            ..
        } => OpRequest::Callback {
            task: Box::new(comparable(task)),
            timeout: *timeout,
            heartbeat: *heartbeat,
            awaited: None,
        },
        other => other.clone(),
    }
}
