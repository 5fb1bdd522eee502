//! [`Driver`]: a workflow's state machine driven step by step in-process, performing
//! tasks, sleeps, joins and maps one after another, and rebuilding the machine from its
//! journaled slots at chosen steps as a restart would. The corpus and benchmarks use it;
//! [`TestEnv`](super::TestEnv) runs every primitive, with virtual time and mocks.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::codec;
use crate::machine::{Machine, StepFault, Transition};
use crate::op::OpRequest;
use crate::output;
use crate::task::find_unique_task;
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
    /// The program cannot be driven as it is (two tasks linked under one name).
    #[error("{0}")]
    Refused(String),
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
        let task = find_unique_task(name)
            .map_err(|e| DriveError::Refused(e.to_string()))?
            .ok_or_else(|| DriveError::UnknownTask(name.to_string()))?;
        let attempt = (task.run)(args).map_err(StepFault::from)?;
        tokio::spawn(attempt)
            .await
            .map_err(|_| DriveError::TaskPanicked(name.to_string()))
    }
}
