//! Drive a workflow's state machine in-process, without an engine or a file: for unit
//! tests of workflows and of the compiler itself.
//!
//! [`Driver`] runs each awaited task directly (no retries), journals the slot writes of
//! every step in memory, and can rebuild the machine from that journal before every
//! step ([`Restore::EveryStep`]) or once at a chosen step ([`Restore::AtStep`]): the same
//! thing a restart does, so a test can check that a run resumed at any step boundary
//! ends exactly like an uninterrupted one.
//!
//! [`RecordedRun`] replays a recorded run (captured in a test, or taken from an engine's
//! history) against the current code and reports the first [`Divergence`]: a different
//! operation awaited, different arguments, a different result. Use it to check that a
//! new version of a workflow still fits the runs already in flight.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::codec;
use crate::machine::{Machine, StepFault, Transition};
use crate::op::OpRequest;
use crate::output;
use crate::task::find_task;
use crate::workflow::Workflow;

/// When the driver rebuilds the machine from its journal, as a restart would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restore {
    /// Keep the machine in memory for the whole run.
    Never,
    /// Rebuild it before every resumption.
    EveryStep,
    /// Rebuild it once, before resumption number `k` (0-based).
    AtStep(usize),
}

/// One durable operation the run awaited, and what it produced.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// The operation as journaled (task name and encoded arguments, sleep deadline, ...).
    pub request: OpRequest,
    /// Its encoded output, as handed back to the workflow.
    pub output: Vec<u8>,
}

/// Runs workflows in-process; see the module docs.
#[derive(Debug, Default)]
pub struct Driver {
    /// Every step performed so far, in order.
    pub steps: Vec<StepRecord>,
    /// Bytes of slot writes journaled so far.
    pub slot_bytes_written: usize,
}

/// What can stop a driven run.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// The compiled code faulted (e.g. a stored value did not decode).
    #[error(transparent)]
    Fault(#[from] StepFault),
    /// An operation the driver does not perform (signals, children, joins).
    #[error("the test driver cannot perform `{0}`; run this workflow on an Engine")]
    Unsupported(String),
    /// A task is not registered.
    #[error("task `{0}` is not registered")]
    UnknownTask(String),
    /// The task body panicked.
    #[error("task `{0}` panicked")]
    TaskPanicked(String),
}

impl Driver {
    /// A driver with an empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `call` to completion.
    pub async fn run<W: Workflow>(
        &mut self,
        call: W,
        restore: Restore,
    ) -> Result<W::Output, DriveError> {
        let input =
            codec::encode(&call.into_input(), || "input".into()).map_err(StepFault::from)?;
        let mut machine = Machine::start(W::NAME, input);
        let mut slots: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        let mut resumptions = 0usize;
        loop {
            let transition = W::step(&mut machine)?;
            for (index, bytes) in machine.take_writes() {
                self.slot_bytes_written += bytes.len();
                slots.insert(index, bytes);
            }
            let request = match transition {
                Transition::Complete { output } => {
                    return Ok(codec::decode(&output, || "workflow output".into())
                        .map_err(StepFault::from)?);
                }
                Transition::Suspend { request, .. } => request,
            };
            let output = Self::perform(&request).await?;
            self.steps.push(StepRecord {
                request,
                output: output.clone(),
            });
            let rebuild = match restore {
                Restore::Never => false,
                Restore::EveryStep => true,
                Restore::AtStep(k) => k == resumptions,
            };
            if rebuild {
                let pc = machine.pc();
                machine = Machine::restore(
                    W::NAME,
                    pc,
                    slots.iter().map(|(k, v)| (*k, v.clone())).collect(),
                );
            }
            machine.set_resume(output);
            resumptions += 1;
        }
    }

    async fn perform(request: &OpRequest) -> Result<Vec<u8>, DriveError> {
        match request {
            OpRequest::Task { name, args, .. } => Ok(Self::run_task(name, args)
                .await?
                .output
                .map_err(StepFault::from)?),
            OpRequest::Sleep { until_ms } => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    .unwrap_or(0);
                tokio::time::sleep(std::time::Duration::from_millis(
                    until_ms.saturating_sub(now),
                ))
                .await;
                Ok(codec::encode(&(), || "sleep".into()).map_err(StepFault::from)?)
            }
            OpRequest::All(branches) => {
                // Branches one after another.
                let mut outputs = Vec::with_capacity(branches.len());
                for b in branches {
                    outputs.push(Box::pin(Self::perform(b)).await?);
                }
                Ok(output::join(outputs.iter().map(Vec::as_slice)))
            }
            OpRequest::Map {
                items, tolerance, ..
            } => {
                // Items one after another.
                if let Some(tolerance) = tolerance {
                    let total = items.len() as u32;
                    let mut failures = Vec::new();
                    let mut outputs = Vec::new();
                    for item in items {
                        let (bytes, failure) = Box::pin(Self::perform_classified(item)).await?;
                        failures.extend(failure);
                        outputs.push(bytes);
                    }
                    let tolerated = tolerance.allowed(total);
                    if failures.len() as u32 > tolerated {
                        let failed = crate::map::MapFailed {
                            failed: failures.len() as u32,
                            total,
                            tolerated,
                            first_error: failures.into_iter().next().unwrap_or_default(),
                        };
                        return Ok(output::err(&failed, "map failure").map_err(StepFault::from)?);
                    }
                    return Ok(output::map(true, total, outputs.iter().map(Vec::as_slice)));
                }
                let mut outputs = Vec::with_capacity(items.len());
                for item in items {
                    outputs.push(Box::pin(Self::perform(item)).await?);
                }
                let len = items.len() as u32;
                Ok(output::map(false, len, outputs.iter().map(Vec::as_slice)))
            }
            OpRequest::Named { op, .. } => Box::pin(Self::perform(op)).await,
            OpRequest::FirstOk(branches) => {
                // Branches one after another: the first `Ok` wins.
                let mut errors = Vec::with_capacity(branches.len());
                for (i, branch) in branches.iter().enumerate() {
                    let bytes = Box::pin(Self::perform(branch)).await?;
                    if let Some(value) = output::ok_value(&bytes) {
                        return Ok(output::first_ok(i as u32, value));
                    }
                    errors.push(bytes);
                }
                let errors = errors.iter().filter_map(|e| output::err_value(e));
                Ok(output::all_failed(errors))
            }
            OpRequest::Batch { items, policy, .. } => {
                // Items one after another, until the policy says the batch is complete.
                let len = items.len() as u32;
                let mut ended: Vec<(Vec<u8>, Option<String>)> = Vec::new();
                let (mut succeeded, mut failed) = (0, 0);
                let completion = loop {
                    if let Some(completion) = crate::batch::verdict(policy, len, succeeded, failed)
                    {
                        break completion;
                    }
                    let item = &items[ended.len()];
                    let (bytes, failure) = Box::pin(Self::perform_classified(item)).await?;
                    match failure {
                        Some(_) => failed += 1,
                        None => succeeded += 1,
                    }
                    ended.push((bytes, failure));
                };
                let statuses: Vec<_> = (0..items.len())
                    .map(|i| match ended.get(i) {
                        Some((bytes, None)) => crate::batch::RawStatus::Succeeded(bytes),
                        Some((bytes, Some(error))) => crate::batch::RawStatus::Failed {
                            error,
                            output: Some(bytes),
                        },
                        None => crate::batch::RawStatus::NotStarted,
                    })
                    .collect();
                Ok(crate::batch::encode(completion, &statuses).map_err(StepFault::from)?)
            }
            other => Err(DriveError::Unsupported(other.label())),
        }
    }

    /// Performs `request`; for a task, also says whether its output is a failure.
    async fn perform_classified(
        request: &OpRequest,
    ) -> Result<(Vec<u8>, Option<String>), DriveError> {
        if let OpRequest::Named { op, .. } = request {
            return Box::pin(Self::perform_classified(op)).await;
        }
        let OpRequest::Task { name, args, .. } = request else {
            return Ok((Self::perform(request).await?, None));
        };
        let result = Self::run_task(name, args).await?;
        let failure = match result.class {
            crate::task::AttemptClass::Success => None,
            crate::task::AttemptClass::Retryable(t)
            | crate::task::AttemptClass::NonRetryable(t) => Some(t),
        };
        Ok((result.output.map_err(StepFault::from)?, failure))
    }
}

impl Driver {
    /// Runs one attempt of the registered task `name` (no retries).
    async fn run_task(name: &str, args: &[u8]) -> Result<crate::task::AttemptResult, DriveError> {
        let task = find_task(name).ok_or_else(|| DriveError::UnknownTask(name.to_string()))?;
        let attempt = (task.run)(args).map_err(StepFault::from)?;
        tokio::spawn(attempt)
            .await
            .map_err(|_| DriveError::TaskPanicked(name.to_string()))
    }
}

/// One recorded step of a run: what was awaited and what it produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedStep {
    /// The operation's label (`charge`, `sleep`, `signal:approval`, `join(2)`, ...).
    pub name: String,
    /// The operation with its encoded arguments, when the recording has them.
    pub request: Option<OpRequest>,
    /// The encoded output the workflow received.
    pub output: Vec<u8>,
}

/// A run as recorded: its input, its steps and, if it finished, its output.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordedRun {
    /// The encoded input.
    pub input: Vec<u8>,
    /// Completed steps in order.
    pub steps: Vec<RecordedStep>,
    /// The encoded output, if the run completed.
    pub output: Option<Vec<u8>>,
}

/// Where a replay of a recorded run against the current code first differs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Divergence {
    /// The code awaits a different operation at this step.
    #[error(
        "step {index}: the recording awaited `{recorded}`, the current code awaits `{current}`"
    )]
    DifferentStep {
        /// 0-based step index.
        index: usize,
        /// What the recording awaited.
        recorded: String,
        /// What the current code awaits.
        current: String,
    },
    /// Same operation, different arguments.
    #[error("step {index} (`{name}`): called with different arguments than recorded")]
    DifferentArguments {
        /// 0-based step index.
        index: usize,
        /// The operation.
        name: String,
        /// Recorded request.
        recorded: Box<OpRequest>,
        /// Current request.
        current: Box<OpRequest>,
    },
    /// The current code awaits more steps than were recorded before the run ended.
    #[error("step {index}: the current code awaits `{current}` but the recorded run had ended")]
    ExtraStep {
        /// 0-based step index.
        index: usize,
        /// What the current code awaits.
        current: String,
    },
    /// The current code returns where the recording had more steps.
    #[error(
        "the current code returns after {index} steps; the recording continued with `{recorded}`"
    )]
    EndedEarly {
        /// Steps performed.
        index: usize,
        /// The recorded next step.
        recorded: String,
    },
    /// The run's result differs from the recorded one.
    #[error("the current code returns a different result than the recorded run")]
    DifferentOutcome,
    /// The code cannot even take the recorded values (input or outputs no longer decode).
    #[error("the current code cannot resume the recording: {0}")]
    Incompatible(String),
}

impl RecordedRun {
    /// Records `call` by running it with a [`Driver`].
    pub async fn capture<W: Workflow>(call: W) -> Result<RecordedRun, DriveError> {
        let input =
            codec::encode(&call.into_input(), || "input".into()).map_err(StepFault::from)?;
        let mut driver = Driver::new();
        let output = driver
            .run(
                W::from_input(codec::decode(&input, || "input".into()).map_err(StepFault::from)?),
                Restore::Never,
            )
            .await?;
        Ok(RecordedRun {
            input,
            steps: driver
                .steps
                .into_iter()
                .map(|s| RecordedStep {
                    name: s.request.label(),
                    request: Some(s.request),
                    output: s.output,
                })
                .collect(),
            output: Some(codec::encode(&output, || "output".into()).map_err(StepFault::from)?),
        })
    }

    /// Extracts a run from its engine history (`Engine::history`), e.g. one exported
    /// from a production file.
    pub fn from_history(events: &[crate::HistoryEvent]) -> RecordedRun {
        use crate::EventKind;
        let mut run = RecordedRun::default();
        let mut scheduled: BTreeMap<u64, (String, Option<OpRequest>)> = BTreeMap::new();
        for e in events {
            match &e.kind {
                EventKind::RunStarted { input, .. } => run.input = input.clone(),
                EventKind::StepScheduled {
                    step,
                    name,
                    request,
                    ..
                } => {
                    scheduled.insert(*step, (name.clone(), Some(request.clone())));
                }
                EventKind::StepCompleted { step, output } => {
                    let (name, request) = scheduled.remove(step).unwrap_or_default();
                    run.steps.push(RecordedStep {
                        name,
                        request,
                        output: output.clone(),
                    });
                }
                EventKind::RunCompleted { output } => run.output = Some(output.clone()),
                _ => {}
            }
        }
        run
    }

    /// Replays the recording against the current code of `W`: feeds it the recorded
    /// input and step outputs and reports the first divergence, if any. Code between
    /// steps runs for real (it may differ from the recording's; only what it awaits and
    /// returns is compared).
    pub fn replay<W: Workflow>(&self) -> Result<(), Divergence> {
        let mut machine = Machine::start(W::NAME, self.input.clone());
        let mut index = 0;
        loop {
            let transition =
                W::step(&mut machine).map_err(|e| Divergence::Incompatible(e.to_string()))?;
            machine.take_writes();
            match transition {
                Transition::Complete { output } => {
                    if let Some(next) = self.steps.get(index) {
                        return Err(Divergence::EndedEarly {
                            index,
                            recorded: next.name.clone(),
                        });
                    }
                    return match &self.output {
                        Some(recorded) if *recorded != output => Err(Divergence::DifferentOutcome),
                        _ => Ok(()),
                    };
                }
                Transition::Suspend { request, .. } => {
                    let Some(step) = self.steps.get(index) else {
                        if self.output.is_none() {
                            // The recording stopped while this step was in flight.
                            return Ok(());
                        }
                        return Err(Divergence::ExtraStep {
                            index,
                            current: request.label(),
                        });
                    };
                    if step.name != request.label() {
                        return Err(Divergence::DifferentStep {
                            index,
                            recorded: step.name.clone(),
                            current: request.label(),
                        });
                    }
                    if let Some(recorded) = &step.request {
                        if !same_call(recorded, &request) {
                            return Err(Divergence::DifferentArguments {
                                index,
                                name: step.name.clone(),
                                recorded: Box::new(recorded.clone()),
                                current: Box::new(request),
                            });
                        }
                    }
                    machine.set_resume(step.output.clone());
                    index += 1;
                }
            }
        }
    }
}

/// Same operation and arguments; a sleep's deadline is computed from the clock, so only
/// its kind is compared.
fn same_call(a: &OpRequest, b: &OpRequest) -> bool {
    match (a, b) {
        (OpRequest::Sleep { .. }, OpRequest::Sleep { .. }) => true,
        (
            OpRequest::Task {
                name: n1, args: a1, ..
            },
            OpRequest::Task {
                name: n2, args: a2, ..
            },
        ) => n1 == n2 && a1 == a2,
        (OpRequest::Named { name: n1, op: a }, OpRequest::Named { name: n2, op: b }) => {
            n1 == n2 && same_call(a, b)
        }
        (OpRequest::All(x), OpRequest::All(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_call(a, b))
        }
        _ => a == b,
    }
}
