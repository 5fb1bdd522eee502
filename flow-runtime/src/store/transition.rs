//! Transitions as data: what one turn of a run's driver asks the journal to change.
//!
//! A [`RunWrite`] is one transition of one run (a [`StartWrite`] a run's first, with its
//! input), computed by the engine and applied by `store::apply` inside the commit thread's
//! write transaction. These types are logged to the write-ahead log as they are (postcard,
//! field after field), so their fields' order and types are part of the on-disk format.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::records::{encode_record, BranchRecord, ChildStart, PendingOp, RunRecord, TokenRecord};
use crate::error::FlowError;
use crate::history::EventKind;
use crate::op::OpRequest;

/// What happens to the run's pending operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum PendingChange {
    Keep,
    Set(PendingOp),
    Remove,
}

/// One transition of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunWrite {
    pub run_id: String,
    /// The header the driver read: the write is refused if the stored header moved on (a
    /// guard against two drivers for one run).
    pub expect: ExpectedHeader,
    /// The new header (`updated_at_ms` is set here).
    pub header: RunRecord,
    pub events: Vec<EventKind>,
    /// Slots the step changed.
    pub slots: Vec<(u32, Vec<u8>)>,
    pub pending: PendingChange,
    pub branch_puts: Vec<BranchPut>,
    /// Deletes the branch records of this step (it finished).
    pub clear_branches: Option<u64>,
    pub timers_add: Vec<u64>,
    pub timers_remove: Vec<u64>,
    /// Inbox messages the transition consumed.
    pub inbox_consume: Vec<u64>,
    /// Whether the run has deadline-free work after this transition.
    pub active: bool,
    /// The workflow's output, when the run completes.
    pub output: Option<Vec<u8>>,
    pub children: Vec<ChildStart>,
    /// The transition delivered a pending cancellation.
    pub consume_cancel: bool,
    /// A map scheduled in this transition: its step and encoded items, written once.
    pub map_items: Option<(u64, Vec<Vec<u8>>)>,
    /// Callback tokens issued by this transition.
    pub tokens: Vec<(String, TokenRecord)>,
    /// Runs (children this run no longer waits for) to cancel.
    pub cancel_runs: Vec<String>,
    /// A run-level deadline to set (at start).
    pub run_deadline: Option<u64>,
    /// The run-level deadline passed: record it and request cancellation.
    pub run_timed_out: bool,
    /// The run continues as new with this input: its history, slots and pending operation of
    /// the current generation are deleted.
    pub continue_as_new: Option<Vec<u8>>,
    /// What the driver saw of the run when it computed this write (`None` for a start).
    pub seen: Option<Seen>,
    /// The type each token of `tokens` awaits, by name (`flow_token_types`). Logged
    /// last: a change logged before this field existed decodes as one whose list is
    /// empty (see `LoggedBatch::decode`).
    pub token_types: Vec<(String, String)>,
    /// `events` and the new pending operation, encoded by [`RunWrite::encode`] before the
    /// write goes to the commit thread (whose time is the engine's serial bottleneck).
    /// Not logged: replay encodes them again, to the same bytes.
    #[serde(skip)]
    pub encoded: Option<EncodedParts>,
    /// Set when the transition parks the run because this engine lacks code it needs
    /// (a task, a type that decodes its state): why. The run stays pending and active, so
    /// the next engine to open the journal drives it again. Not logged.
    #[serde(skip)]
    pub blocked: Option<String>,
}

/// The parts of a run's header that only its transitions move, as the driver read them.
/// Logged as the tuple `(pc, steps, started)` was (postcard writes a struct's fields in
/// order, as a tuple's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExpectedHeader {
    pub pc: u32,
    pub steps: u64,
    pub started: bool,
}

impl ExpectedHeader {
    /// What `header` holds of them.
    pub(crate) fn of(header: &RunRecord) -> Self {
        ExpectedHeader {
            pc: header.pc,
            steps: header.steps,
            started: header.started,
        }
    }
}

/// The record of branch `branch` of step `step`, as a transition writes it. Logged as the
/// tuple `(step, branch, record)` was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BranchPut {
    pub step: u64,
    pub branch: u32,
    pub record: BranchRecord,
}

impl BranchPut {
    pub(crate) fn new(step: u64, branch: u32, record: BranchRecord) -> Self {
        BranchPut {
            step,
            branch,
            record,
        }
    }

    /// Whether this put is written over the stored record, whose finishedness
    /// `stored_is_finished` tells (asked only when it matters): a branch finished by
    /// someone else meanwhile (a callback completed, a child run delivered its result)
    /// stays finished, so a driver's older view never turns it back into `Awaiting` or
    /// `Retrying`. The one statement of this rule: the store applies it, and the engine's
    /// projection of a committed transition (`engine::driver::project`) follows it.
    pub(crate) fn replaces<E>(
        &self,
        stored_is_finished: impl FnOnce() -> Result<bool, E>,
    ) -> Result<bool, E> {
        Ok(self.record.is_finished() || !stored_is_finished()?)
    }
}

/// What a driver saw of the parts of its run that others change.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Seen {
    /// The run's nudge count; a higher stored count keeps the run active.
    pub nudges: u64,
    /// The run had a run-level deadline.
    pub run_deadline: bool,
    /// A cancellation was requested and not yet delivered.
    pub cancel: bool,
}

/// The parts of a [`RunWrite`] encoded ahead of the commit.
#[derive(Debug, Clone)]
pub(crate) struct EncodedParts {
    /// `events` as postcard encodes a `Vec<EventKind>` (a length, then each event).
    pub(super) events: Vec<u8>,
    pub(super) events_len: u64,
    /// The pending operation of `PendingChange::Set`.
    pub(super) pending: Option<Vec<u8>>,
}

impl EncodedParts {
    pub(super) fn of(events: &[EventKind], pending: &PendingChange) -> Result<Self, FlowError> {
        Ok(EncodedParts {
            events: encode_record(&events, "history events")?,
            events_len: events.len() as u64,
            pending: match pending {
                PendingChange::Set(op) => Some(encode_record(op, "pending step")?),
                _ => None,
            },
        })
    }
}

impl RunWrite {
    /// A write that changes nothing but what the caller sets.
    pub(crate) fn new(run_id: &str, header: &RunRecord) -> Self {
        RunWrite {
            run_id: run_id.to_string(),
            expect: ExpectedHeader::of(header),
            header: header.clone(),
            events: Vec::new(),
            slots: Vec::new(),
            pending: PendingChange::Keep,
            branch_puts: Vec::new(),
            clear_branches: None,
            timers_add: Vec::new(),
            timers_remove: Vec::new(),
            inbox_consume: Vec::new(),
            active: false,
            output: None,
            children: Vec::new(),
            consume_cancel: false,
            map_items: None,
            tokens: Vec::new(),
            cancel_runs: Vec::new(),
            run_deadline: None,
            run_timed_out: false,
            continue_as_new: None,
            seen: None,
            token_types: Vec::new(),
            encoded: None,
            blocked: None,
        }
    }

    /// Encodes the events and the pending operation now, off the commit thread. Changing
    /// either afterwards is a bug: the commit writes what was encoded here.
    pub(crate) fn encode(&mut self) -> Result<(), FlowError> {
        self.encoded = Some(EncodedParts::of(&self.events, &self.pending)?);
        Ok(())
    }

    /// The encoded parts: those from [`RunWrite::encode`], or encoded now.
    pub(super) fn encoded_parts(&self) -> Result<Cow<'_, EncodedParts>, FlowError> {
        match &self.encoded {
            Some(parts) => Ok(Cow::Borrowed(parts)),
            None => EncodedParts::of(&self.events, &self.pending).map(Cow::Owned),
        }
    }
}

/// The stored form of a map item: items are encoded once, when the map is scheduled
/// (`RunWrite::map_items`), and read back a few at a time.
pub(crate) fn encode_map_item(item: &OpRequest) -> Result<Vec<u8>, FlowError> {
    encode_record(item, "map item")
}

/// A new run: its first transition, plus the input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StartWrite {
    pub input: Vec<u8>,
    pub write: RunWrite,
}
