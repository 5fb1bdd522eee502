//! Requests one process leaves in `flow_requests` for the owner of a shard, and the
//! answers the owner writes back, as bytes (postcard).

use flow_runtime::{
    Completed, Delivery, FlowError, HistoryEvent, LeasedTask, RunDescription, RunSummary,
    TaskHeartbeat,
};
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
    /// Up to `max` tasks of `queue` waiting in any engine of the owner's process, without
    /// waiting.
    Poll {
        queue: String,
        worker: String,
        max: u32,
    },
    /// A worker's heartbeat for a task this shard's engine leased.
    TaskHeartbeat { queue: String, token: String },
    /// A worker's report of a task this shard's engine leased: its encoded output, or
    /// its failure.
    TaskReport {
        queue: String,
        token: String,
        report: TaskReport,
    },
}

/// What a worker reports of a task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum TaskReport {
    Completed(Vec<u8>),
    Failed {
        error: String,
        retryable: bool,
        retry_after_ms: Option<u64>,
    },
}

/// The owner's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Answer {
    Done,
    Described(Description),
    History(Vec<HistoryEvent>),
    Tasks(Vec<LeasedTask>),
    Heartbeat(TaskHeartbeat),
    Report(Completed),
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

/// Declares [`WireError`]: the errors an owner refuses a request with, each rebuilt as
/// the same [`FlowError`] on the caller's side (others travel as their message). A
/// field is `text` (a `String`) or `fixed` (a `&'static str` of the error).
macro_rules! wire_errors {
    ($($variant:ident { $($field:ident: $kind:ident),* }),* $(,)?) => {
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub(crate) enum WireError {
            $($variant { $($field: String),* },)*
            Other(String),
        }

        impl From<&FlowError> for WireError {
            fn from(e: &FlowError) -> Self {
                match e.clone() {
                    $(FlowError::$variant { $($field),* } => WireError::$variant {
                        $($field: $kind::send($field)),*
                    },)*
                    other => WireError::Other(other.to_string()),
                }
            }
        }

        impl From<WireError> for FlowError {
            fn from(e: WireError) -> Self {
                match e {
                    $(WireError::$variant { $($field),* } => FlowError::$variant {
                        $($field: $kind::receive($field)),*
                    },)*
                    WireError::Other(message) => storage(format!(
                        "the process that drives the run refused the request: {message}"
                    )),
                }
            }
        }
    };
}

wire_errors! {
    UnknownRun { run_id: text },
    UnknownWorkflow { workflow: text },
    RunFinished { run_id: text, status: text, what: fixed },
    InvalidCallbackToken { reason: text },
    SignalTypeMismatch { run_id: text, signal: text, sent: text, expected: text },
    UnknownSignal { run_id: text, workflow: text, signal: text, known: text },
    CallbackTypeMismatch { token: text, sent: text, awaited: text, reason: text },
    RunIdConflict { run_id: text, difference: text },
    InputTypeMismatch { workflow: text, expected: text, message: text },
    UnknownQueue { queue: text, known: text },
    InvalidTaskToken { reason: text },
    StaleTaskToken { reason: text },
    TaskTokenGone { reason: text },
    WrongQueue { queue: text, token_queue: text },
    TaskOutputMismatch { task: text, message: text },
    QueuesRecovering {},
    TaskAlreadyReported { how: fixed },
    TaskReportNotDurable { how: fixed },
}

/// A `String` field, as it is.
mod text {
    pub(super) fn send(value: String) -> String {
        value
    }
    pub(super) fn receive(value: String) -> String {
        value
    }
}

/// A `&'static str` field: one of the texts the engine refuses with, else a neutral one.
mod fixed {
    const KNOWN: &[&str] = &["signals", "cancellation", "completed", "failed"];

    pub(super) fn send(value: &'static str) -> String {
        value.to_string()
    }
    pub(super) fn receive(value: String) -> &'static str {
        KNOWN
            .iter()
            .find(|known| **known == value)
            .copied()
            .unwrap_or("this request")
    }
}

/// Encodes a request or an answer.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("requests and answers always encode")
}

/// Decodes a request or an answer; a row that does not decode was written by another
/// version of flow-postgres.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    what: &str,
) -> Result<T, FlowError> {
    postcard::from_bytes(bytes).map_err(|e| {
        storage(format!(
            "a {what} in flow_requests does not decode ({e}): it was written by another \
             version of flow-postgres; run one version in all processes"
        ))
    })
}
