//! Drive a workflow's state machine in-process, without an engine or a file: for unit
//! tests of workflows and of the compiler itself.
//!
//! [`Driver`] runs each awaited task directly (no retries), journals the slot writes of
//! every step in memory, and can rebuild the machine from that journal before every
//! step ([`Restore::EveryStep`]) or once at a chosen step ([`Restore::AtStep`]): the same
//! thing a restart does, so a test can check that a run resumed at any step boundary
//! ends exactly like an uninterrupted one.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::codec;
use crate::machine::{Machine, StepFault, Transition};
use crate::op::OpRequest;
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
    pub async fn run<W: Workflow>(&mut self, call: W, restore: Restore) -> Result<W::Output, DriveError> {
        let input = codec::encode(&call.into_input(), || "input".into()).map_err(StepFault::from)?;
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
                    return Ok(codec::decode(&output, || "workflow output".into()).map_err(StepFault::from)?);
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
                machine = Machine::restore(W::NAME, pc, slots.iter().map(|(k, v)| (*k, v.clone())).collect());
            }
            machine.set_resume(output);
            resumptions += 1;
        }
    }

    async fn perform(request: &OpRequest) -> Result<Vec<u8>, DriveError> {
        match request {
            OpRequest::Task { name, args, .. } => {
                let task = find_task(name).ok_or_else(|| DriveError::UnknownTask(name.clone()))?;
                let attempt = (task.run)(args).map_err(StepFault::from)?;
                let result = tokio::spawn(attempt)
                    .await
                    .map_err(|_| DriveError::TaskPanicked(name.clone()))?;
                Ok(result.output.map_err(StepFault::from)?)
            }
            OpRequest::Sleep { until_ms } => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
                tokio::time::sleep(std::time::Duration::from_millis(until_ms.saturating_sub(now))).await;
                Ok(codec::encode(&(), || "sleep".into()).map_err(StepFault::from)?)
            }
            OpRequest::All(branches) => {
                // Branches one after another: their outputs concatenated are the tuple.
                let mut out = Vec::new();
                for b in branches {
                    out.extend(Box::pin(Self::perform(b)).await?);
                }
                Ok(out)
            }
            other => Err(DriveError::Unsupported(other.label())),
        }
    }
}
