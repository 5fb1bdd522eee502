//! Requests one process leaves in `flow_requests` for the owner of a shard, and the
//! answers the owner writes back, as bytes (postcard).

use flow_runtime::{Delivery, FlowError, HistoryEvent, RunDescription, RunSummary};
use serde::{Deserialize, Serialize};

use crate::error::storage;

/// What a request asks of the shard's owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Start run `run_id` of the newest version of `workflow` with the encoded input
    /// (idempotent by run ID, as `Engine::start` is).
    Start {
        run_id: String,
        workflow: String,
        input: Vec<u8>,
    },
    /// A signal, cancellation or callback completion, applied once per request ID.
    Deliver(Delivery),
    /// The run's description once it has ended (or is blocked).
    Wait { run_id: String },
    /// The run's description now.
    Describe { run_id: String },
    /// The run's history.
    History { run_id: String },
}

/// The owner's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Answer {
    Done,
    Described(Description),
    History(Vec<HistoryEvent>),
    Refused(WireError),
}

/// A [`RunDescription`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Description {
    summary: RunSummary,
    input: Option<Vec<u8>>,
    output: Option<Vec<u8>>,
}

impl From<RunDescription> for Description {
    fn from(d: RunDescription) -> Self {
        Description {
            summary: d.summary,
            input: d.input,
            output: d.output,
        }
    }
}

impl From<Description> for RunDescription {
    fn from(d: Description) -> Self {
        RunDescription {
            summary: d.summary,
            input: d.input,
            output: d.output,
        }
    }
}

/// The errors an owner refuses a request with, rebuilt as the same [`FlowError`] on
/// the caller's side; others travel as their message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WireError {
    UnknownRun { run_id: String },
    UnknownWorkflow { workflow: String },
    RunFinished { run_id: String, status: String, what: String },
    InvalidCallbackToken { reason: String },
    SignalTypeMismatch { run_id: String, signal: String, sent: String, expected: String },
    UnknownSignal { run_id: String, workflow: String, signal: String, known: String },
    CallbackTypeMismatch { token: String, sent: String, awaited: String, reason: String },
    RunIdConflict { run_id: String, difference: String },
    InputTypeMismatch { workflow: String, expected: String, message: String },
    Other(String),
}

impl From<&FlowError> for WireError {
    fn from(e: &FlowError) -> Self {
        match e.clone() {
            FlowError::UnknownRun { run_id } => WireError::UnknownRun { run_id },
            FlowError::UnknownWorkflow { workflow } => WireError::UnknownWorkflow { workflow },
            FlowError::RunFinished {
                run_id,
                status,
                what,
            } => WireError::RunFinished {
                run_id,
                status,
                what: what.to_string(),
            },
            FlowError::InvalidCallbackToken { reason } => {
                WireError::InvalidCallbackToken { reason }
            }
            FlowError::SignalTypeMismatch {
                run_id,
                signal,
                sent,
                expected,
            } => WireError::SignalTypeMismatch {
                run_id,
                signal,
                sent,
                expected,
            },
            FlowError::UnknownSignal {
                run_id,
                workflow,
                signal,
                known,
            } => WireError::UnknownSignal {
                run_id,
                workflow,
                signal,
                known,
            },
            FlowError::CallbackTypeMismatch {
                token,
                sent,
                awaited,
                reason,
            } => WireError::CallbackTypeMismatch {
                token,
                sent,
                awaited,
                reason,
            },
            FlowError::RunIdConflict { run_id, difference } => {
                WireError::RunIdConflict { run_id, difference }
            }
            FlowError::InputTypeMismatch {
                workflow,
                expected,
                message,
            } => WireError::InputTypeMismatch {
                workflow,
                expected,
                message,
            },
            other => WireError::Other(other.to_string()),
        }
    }
}

impl From<WireError> for FlowError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::UnknownRun { run_id } => FlowError::UnknownRun { run_id },
            WireError::UnknownWorkflow { workflow } => FlowError::UnknownWorkflow { workflow },
            WireError::RunFinished {
                run_id,
                status,
                what,
            } => FlowError::RunFinished {
                run_id,
                status,
                what: static_what(&what),
            },
            WireError::InvalidCallbackToken { reason } => {
                FlowError::InvalidCallbackToken { reason }
            }
            WireError::SignalTypeMismatch {
                run_id,
                signal,
                sent,
                expected,
            } => FlowError::SignalTypeMismatch {
                run_id,
                signal,
                sent,
                expected,
            },
            WireError::UnknownSignal {
                run_id,
                workflow,
                signal,
                known,
            } => FlowError::UnknownSignal {
                run_id,
                workflow,
                signal,
                known,
            },
            WireError::CallbackTypeMismatch {
                token,
                sent,
                awaited,
                reason,
            } => FlowError::CallbackTypeMismatch {
                token,
                sent,
                awaited,
                reason,
            },
            WireError::RunIdConflict { run_id, difference } => {
                FlowError::RunIdConflict { run_id, difference }
            }
            WireError::InputTypeMismatch {
                workflow,
                expected,
                message,
            } => FlowError::InputTypeMismatch {
                workflow,
                expected,
                message,
            },
            WireError::Other(message) => storage(format!(
                "the process that drives the run refused the request: {message}"
            )),
        }
    }
}

/// `RunFinished::what` holds a static text: the ones the store refuses with, else a
/// neutral one.
fn static_what(what: &str) -> &'static str {
    const KNOWN: &[&str] = &["signals", "cancellation", "a signal", "a cancellation"];
    KNOWN
        .iter()
        .find(|known| **known == what)
        .copied()
        .unwrap_or("this request")
}

/// Encodes a request or an answer.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("requests and answers always encode")
}

/// Decodes a request or an answer; a row that does not decode was written by another
/// version of flow-postgres.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, FlowError> {
    postcard::from_bytes(bytes).map_err(|e| {
        storage(format!(
            "a {what} in flow_requests does not decode ({e}): it was written by another \
             version of flow-postgres; run one version in all processes"
        ))
    })
}
