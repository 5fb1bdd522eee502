//! Durable operations: what a workflow may `.await`.

use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use crate::codec::CodecError;
use crate::task::TaskPolicy;

/// Something a `#[workflow]` may `.await`: a task call, a child workflow, a durable sleep,
/// a signal, or a join of these.
///
/// Awaiting one inside a workflow suspends the run; the engine commits the suspension,
/// performs the operation and resumes the run with its [`Output`](DurableOp::Output).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a durable operation, so a #[workflow] cannot `.await` it",
    label = "not a #[task] call, child #[workflow], flow::sleep, flow::signal or flow::join!",
    note = "move this I/O into a #[task] function and await that task instead"
)]
pub trait DurableOp: Send + 'static {
    /// What the await evaluates to; journaled, so it must be serde.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Describes the operation so the engine can journal and perform it.
    fn into_request(self) -> Result<OpRequest, CodecError>;
}

/// A serialized description of a durable operation, as journaled.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum OpRequest {
    /// Run the registered task `name` with postcard-encoded `args`.
    Task {
        /// Registered task name.
        name: String,
        /// postcard-encoded task struct (its arguments).
        args: Vec<u8>,
        /// Retry and timeout policy in force for this call.
        policy: TaskPolicy,
    },
    /// Resume at the wall-clock instant `until_ms` (milliseconds since the Unix epoch).
    Sleep {
        /// Deadline, milliseconds since the Unix epoch.
        until_ms: u64,
    },
    /// Wait for the next signal called `name`; with a timeout, the output is a `Result`.
    Signal {
        /// Signal name.
        name: String,
        /// How long to wait before resuming with a timeout outcome.
        timeout: Option<Duration>,
    },
    /// Start workflow `workflow` as a child run and wait for its output.
    Child {
        /// Registered workflow name.
        workflow: String,
        /// postcard-encoded workflow input.
        input: Vec<u8>,
    },
    /// Run every branch concurrently; the output is the branches' outputs in order
    /// (postcard encodes a tuple as its fields back to back, so it is their concatenation).
    All(Vec<OpRequest>),
}

impl OpRequest {
    /// A short human name: the task or workflow name, `sleep`, `signal:NAME` or `join`.
    pub fn label(&self) -> String {
        match self {
            OpRequest::Task { name, .. } => short_name(name).to_string(),
            OpRequest::Sleep { .. } => "sleep".into(),
            OpRequest::Signal { name, .. } => format!("signal:{name}"),
            OpRequest::Child { workflow, .. } => short_name(workflow).to_string(),
            OpRequest::All(branches) => format!("join({})", branches.len()),
        }
    }
}

/// The last `::` segment of a qualified name.
pub fn short_name(name: &str) -> &str {
    name.rsplit("::").next().unwrap_or(name)
}
