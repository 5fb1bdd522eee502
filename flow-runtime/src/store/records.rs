//! The records stored in the journal's tables, and their encoding.

use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

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
    /// The sequence number of the run's next history event, so that appending needs no
    /// scan of the history. `None` in headers written before it existed (they are read
    /// with [`decode_run_header`]): the next append finds it by scanning, once.
    #[serde(default)]
    pub next_seq: Option<u64>,
    /// The version of `workflow` the run is on (`Workflow::VERSION`). Headers written
    /// before versions existed lack it and are read as version 1 (the version of every
    /// workflow then), by [`decode_run_header`].
    pub version: u32,
}

/// `RunRecord` as written before `version`, recognised by its length like [`RunRecordV1`].
#[derive(Deserialize)]
struct RunRecordV2 {
    workflow: String,
    fingerprint: u64,
    status: StoredStatus,
    pc: u32,
    steps: u64,
    started: bool,
    created_at_ms: u64,
    updated_at_ms: u64,
    parent: Option<ParentLink>,
    next_seq: Option<u64>,
}

/// `RunRecord` as written before `next_seq`: postcard is not self-describing, so an older
/// header is recognised by its length (it ends where the new field would start).
#[derive(Deserialize)]
struct RunRecordV1 {
    workflow: String,
    fingerprint: u64,
    status: StoredStatus,
    pc: u32,
    steps: u64,
    started: bool,
    created_at_ms: u64,
    updated_at_ms: u64,
    parent: Option<ParentLink>,
}

/// Decodes a run header, in its current layout or an older one (before `version`, before
/// `next_seq`). Each layout is the next one cut short, and a record must be decoded to its
/// last byte, so at most one layout fits.
pub(crate) fn decode_run_header(bytes: &[u8]) -> Result<RunRecord, FlowError> {
    let error = match decode_record::<RunRecord>(bytes, "run header") {
        Ok(header) => return Ok(header),
        Err(error) => error,
    };
    if let Ok(old) = decode_record::<RunRecordV2>(bytes, "run header") {
        return Ok(RunRecord {
            workflow: old.workflow,
            fingerprint: old.fingerprint,
            status: old.status,
            pc: old.pc,
            steps: old.steps,
            started: old.started,
            created_at_ms: old.created_at_ms,
            updated_at_ms: old.updated_at_ms,
            parent: old.parent,
            next_seq: old.next_seq,
            version: 1,
        });
    }
    match decode_record::<RunRecordV1>(bytes, "run header") {
        Ok(old) => Ok(RunRecord {
            workflow: old.workflow,
            fingerprint: old.fingerprint,
            status: old.status,
            pc: old.pc,
            steps: old.steps,
            started: old.started,
            created_at_ms: old.created_at_ms,
            updated_at_ms: old.updated_at_ms,
            parent: old.parent,
            next_seq: None,
            version: 1,
        }),
        Err(_) => Err(error),
    }
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
    /// How the branches combine. (Replaced a `join: bool`; postcard encodes `false`/`true`
    /// and the variant indexes 0/1 alike, so older records still decode.)
    pub shape: Shape,
    /// The leaf operations; empty for a map, whose items are in their own table.
    pub branches: Vec<Branch>,
}

impl PendingOp {
    /// More than a single operation: branches get their own idempotency keys and events.
    pub fn is_multi(&self) -> bool {
        self.shape != Shape::Single
    }
}

/// How a pending step's branches combine into its output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Shape {
    /// One operation.
    Single,
    /// All branches; the output is the array of their outputs.
    Join,
    /// The first branch to finish wins.
    Race,
    /// One item per index, run `max_in_flight` at a time (`flow_map_items` holds them).
    Map(MapSpec),
    /// All branches of a join with joins inside; the output nests as the joins do
    /// (the layout of [`join_layout`]).
    NestedJoin(Vec<u32>),
    // Variants below were added later; postcard numbers variants in order.
    /// A map whose completion policy may stop it early; the output is a `Batch`.
    Batch(BatchSpec),
    /// The first branch to finish with `Ok` wins; `Err` of all errors if none does.
    FirstOk,
}

/// A pending batch's parameters: its items run as a map's do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BatchSpec {
    pub map: MapSpec,
    pub policy: crate::op::CompletionPolicy,
}

impl Shape {
    /// The item parameters of a map or a batch (whose items are in their own table).
    pub fn map_spec(&self) -> Option<&MapSpec> {
        match self {
            Shape::Map(spec) => Some(spec),
            Shape::Batch(batch) => Some(&batch.map),
            _ => None,
        }
    }

    /// A join, flat or nested: every branch must finish.
    pub fn is_join(&self) -> bool {
        matches!(self, Shape::Join | Shape::NestedJoin(_))
    }
}

/// A pending map's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MapSpec {
    pub len: u32,
    pub max_in_flight: u32,
    pub tolerance: Option<crate::op::Tolerance>,
}

/// Where a pending map stands, kept as the branch record at index [`MAP_PROGRESS`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct MapProgress {
    /// The next item to start.
    pub next: u32,
    /// Items started and not finished (at most `max_in_flight`).
    pub open: Vec<u32>,
    /// Items finished.
    pub done: u32,
    /// Items finished with a failure.
    pub failed: u32,
    /// The first failure, for the `MapFailed` report.
    pub first_error: Option<String>,
}

/// The branch index under which a map keeps its progress.
pub(crate) const MAP_PROGRESS: u32 = u32::MAX;

/// Where a callback token points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TokenRecord {
    pub run_id: String,
    pub step: u64,
    pub branch: u32,
    /// Completed already (kept so a second completion gets a clear error).
    pub used: bool,
}

/// What the transition that scheduled a step wrote of the run's state (`STEP_STATES`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StepState {
    /// The block the run resumes at with the step's output.
    pub pc: u32,
    /// The slots the transition wrote (the others kept their earlier values).
    pub slots: Vec<(u32, Vec<u8>)>,
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
    /// A task handed `token`; the branch finishes when the token is completed.
    Callback {
        name: String,
        args: Vec<u8>,
        policy: TaskPolicy,
        token: String,
        timeout: Option<Duration>,
        deadline_ms: Option<u64>,
        heartbeat: Option<Duration>,
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
    /// A map item finished with this output, counted as a failure (its task's final
    /// attempt failed).
    Erred(Vec<u8>, String),
    /// A callback's task succeeded; the branch waits for its token to be completed, and
    /// for a heartbeat before `heartbeat_deadline_ms` when it has a heartbeat interval.
    Awaiting { heartbeat_deadline_ms: Option<u64> },
    /// A map's progress (at branch index [`MAP_PROGRESS`]).
    MapProgress(MapProgress),
    /// Task attempt `attempt` began at `at_ms`: written right before it begins, when its
    /// start must be durable (an at-most-once task's attempts, an attempt an opening
    /// engine finds due, the attempts after an interrupted one). An engine that finds it
    /// and did not write it knows the attempt was interrupted.
    Started { attempt: u32, at_ms: u64 },
    /// As `Retrying`, after an interrupted attempt: the next attempt's start is recorded
    /// (`Started`) before it begins, so that its interruption counts too.
    RetryingAfterInterrupted {
        failed_attempts: u32,
        retry_at_ms: u64,
    },
}

impl BranchRecord {
    /// The branch finished (with an output or a failure).
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            BranchRecord::Done(_) | BranchRecord::Failed(_) | BranchRecord::Erred(..)
        )
    }
}

/// A child run to create in the same transaction as its parent's step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ChildStart {
    pub run_id: String,
    pub workflow: String,
    pub fingerprint: u64,
    pub input: Vec<u8>,
    pub parent: ParentLink,
    /// The version of `workflow` the child starts on (the newest its parent's engine
    /// registers).
    pub version: u32,
}

/// Flattens an operation into its leaf branches: a join of joins is one list (its
/// output keeps the nesting, see [`join_layout`]).
pub(crate) fn flatten(request: &OpRequest, out: &mut Vec<OpRequest>) {
    match request {
        OpRequest::All(branches) => branches.iter().for_each(|b| flatten(b, out)),
        // A named join inside a join: its parts are branches (the name is not kept).
        OpRequest::Named { op, .. } if matches!(**op, OpRequest::All(_)) => flatten(op, out),
        other => out.push(other.clone()),
    }
}

/// How a join nests, in pre-order: each join's number of parts, 0 for a leaf. The
/// output of `join!(a, join!(b, c))` is `[a, [b, c]]`; its layout `[2, 0, 2, 0, 0]`.
pub(crate) fn join_layout(request: &OpRequest, out: &mut Vec<u32>) {
    match request {
        OpRequest::All(branches) => {
            out.push(branches.len() as u32);
            branches.iter().for_each(|b| join_layout(b, out));
        }
        OpRequest::Named { op, .. } if matches!(**op, OpRequest::All(_)) => join_layout(op, out),
        _ => out.push(0),
    }
}

/// Encodes an internal record (never over the payload limit in practice: its payloads
/// were checked when they were produced).
pub(crate) fn encode_record<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>, FlowError> {
    postcard::to_stdvec(value)
        .map_err(|e| FlowError::storage(format!("could not encode {what}: {e}")))
}

/// Decodes an internal record; failure means the journal is damaged or from another
/// version. Bytes left over after the record are an error too.
pub(crate) fn decode_record<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, FlowError> {
    let corrupt = |message: String| FlowError::Corrupt {
        path: crate::error::UNNAMED_JOURNAL.into(),
        message: format!("its {what} does not decode: {message}"),
    };
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(corrupt(format!("{} unexpected trailing bytes", rest.len()))),
        Err(e) => Err(corrupt(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_state_is_encoded_as_the_tuple_the_store_writes() {
        let slots = vec![(0u32, vec![1u8, 2]), (3, vec![])];
        let written = encode_record(&(7u32, &slots), "step state").unwrap();
        let state = StepState { pc: 7, slots };
        assert_eq!(encode_record(&state, "step state").unwrap(), written);
        assert_eq!(
            decode_record::<StepState>(&written, "step state").unwrap(),
            state
        );
    }

    #[test]
    fn headers_written_before_next_seq_or_version_still_decode() {
        let header = RunRecord {
            workflow: "w".into(),
            fingerprint: 7,
            status: StoredStatus::Waiting,
            pc: 3,
            steps: 4,
            started: true,
            created_at_ms: 5,
            updated_at_ms: 6,
            parent: None,
            next_seq: None,
            version: 1,
        };
        let mut bytes = encode_record(&header, "run header").unwrap();
        assert_eq!(decode_run_header(&bytes).unwrap(), header);
        // The layout before `version` lacks its trailing varint (1 = version 1).
        assert_eq!(bytes.pop(), Some(1));
        assert_eq!(decode_run_header(&bytes).unwrap(), header);
        // The layout before `next_seq` lacks the `Option` too (0 = None).
        assert_eq!(bytes.pop(), Some(0));
        assert_eq!(decode_run_header(&bytes).unwrap(), header);
        let current = RunRecord {
            next_seq: Some(300),
            version: 7,
            ..header
        };
        let bytes = encode_record(&current, "run header").unwrap();
        assert_eq!(decode_run_header(&bytes).unwrap(), current);
        // Cut inside `next_seq`, it fits no layout. (Cut before `version`, it is the
        // previous layout: a damaged value is caught by the table's seal, not here.)
        assert!(decode_run_header(&bytes[..bytes.len() - 2]).is_err());
    }
}
