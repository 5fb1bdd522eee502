//! The records stored in the journal's tables, and their encoding.

use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::codec;
use crate::error::FlowError;
use crate::history::RunStatus;
use crate::op::OpRequest;
use crate::task::TaskPolicy;

/// A run's header: rewritten by every transition, so it stays small.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunRecord {
    pub workflow: String,
    pub fingerprint: u64,
    pub status: StoredStatus,
    /// The block the next step starts at.
    pub pc: u32,
    /// Durable operations scheduled so far; the pending one is number `steps - 1`.
    pub steps: u64,
    /// False until the first step ran (child runs are created before they are stepped).
    pub started: bool,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub parent: Option<ParentLink>,
}

/// The status as stored; `Blocked` is derived when reading (it depends on the engine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum StoredStatus {
    Running,
    Waiting,
    Completed,
    Failed(String),
    Faulted(String),
    Cancelled,
}

impl StoredStatus {
    /// Completed, failed or cancelled: nothing will happen to the run any more.
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            StoredStatus::Completed | StoredStatus::Failed(_) | StoredStatus::Cancelled
        )
    }

    /// Finished or faulted: no driver works on the run.
    pub fn is_settled(&self) -> bool {
        self.is_finished() || matches!(self, StoredStatus::Faulted(_))
    }

    pub fn to_public(&self) -> RunStatus {
        match self {
            StoredStatus::Running => RunStatus::Running,
            StoredStatus::Waiting => RunStatus::Waiting,
            StoredStatus::Completed => RunStatus::Completed,
            StoredStatus::Failed(error) => RunStatus::Failed {
                error: error.clone(),
            },
            StoredStatus::Faulted(error) => RunStatus::Faulted {
                error: error.clone(),
            },
            StoredStatus::Cancelled => RunStatus::Cancelled,
        }
    }
}

/// Where a child run's outcome goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ParentLink {
    pub run_id: String,
    pub step: u64,
    pub branch: u32,
}

/// The durable operation a run awaits, flattened into branches (one unless it is a join).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PendingOp {
    pub step: u64,
    pub state: u32,
    pub name: String,
    pub scheduled_at_ms: u64,
    /// The operation is a join: its branches get their own idempotency keys and events.
    pub join: bool,
    pub branches: Vec<Branch>,
}

/// One leaf operation of a pending step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Branch {
    Task {
        name: String,
        args: Vec<u8>,
        policy: TaskPolicy,
    },
    Sleep {
        until_ms: u64,
    },
    Signal {
        name: String,
        timeout: Option<Duration>,
        deadline_ms: Option<u64>,
    },
    Child {
        run_id: String,
        workflow: String,
    },
}

/// Progress or result of one branch of the pending step. No record: not started or first
/// attempt in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum BranchRecord {
    /// `failed_attempts` attempts failed; the next one runs at `retry_at_ms`.
    Retrying {
        failed_attempts: u32,
        retry_at_ms: u64,
    },
    /// Finished with this encoded output.
    Done(Vec<u8>),
    /// Finished in a way the workflow cannot receive (a failed child run).
    Failed(String),
}

/// A child run to create in the same transaction as its parent's step.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChildStart {
    pub run_id: String,
    pub workflow: String,
    pub fingerprint: u64,
    pub input: Vec<u8>,
    pub parent: ParentLink,
}

/// Flattens an operation into its leaf branches: a join of joins is one list, and its
/// output is the concatenation of the leaves' outputs in order.
pub(crate) fn flatten(request: &OpRequest, out: &mut Vec<OpRequest>) {
    match request {
        OpRequest::All(branches) => branches.iter().for_each(|b| flatten(b, out)),
        other => out.push(other.clone()),
    }
}

/// Encodes an internal record (never over the payload limit in practice: its payloads
/// were checked when they were produced).
pub(crate) fn encode_record<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>, FlowError> {
    postcard::to_stdvec(value)
        .map_err(|e| FlowError::storage(format!("could not encode {what}: {e}")))
}

/// Decodes an internal record; failure means the journal is damaged or from another version.
pub(crate) fn decode_record<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, FlowError> {
    codec::decode(bytes, || what.to_string()).map_err(|e| FlowError::Corrupt {
        path: "journal".into(),
        message: e.to_string(),
    })
}
