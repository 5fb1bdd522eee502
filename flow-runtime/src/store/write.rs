//! Writes, applied inside the commit thread's write transaction.
//!
//! A `RunWrite` is one transition of one run: everything it changes, computed by the run's
//! driver, applied here in one go. Checks come before writes, so a request refused with a
//! logical error (conflict, unknown run) leaves the shared transaction untouched.

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};

use redb::{Key, ReadableTable, Table, TableDefinition, Value, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::read::StoredEvents;
use super::records::{
    decode_record, decode_run_header, encode_record, Branch, BranchRecord, ChildStart, PendingOp,
    RunRecord, StoredStatus, TokenRecord,
};
use super::tables::*;
use crate::error::FlowError;
use crate::history::EventKind;

/// The journal's tables, opened once per write transaction when first used.
pub(crate) struct Tables<'t> {
    runs: Lazy<'t, &'static str, values::RUNS>,
    inputs: Lazy<'t, &'static str, values::INPUTS>,
    outputs: Lazy<'t, &'static str, values::OUTPUTS>,
    pending: Lazy<'t, &'static str, values::PENDING>,
    branches: Lazy<'t, (&'static str, u64, u32), values::BRANCHES>,
    slots: Lazy<'t, (&'static str, u32), values::SLOTS>,
    history: Lazy<'t, (&'static str, u64), values::HISTORY>,
    history_batches: Lazy<'t, (&'static str, u64), values::HISTORY_BATCHES>,
    timers: Lazy<'t, (u64, &'static str), ()>,
    active: Lazy<'t, &'static str, ()>,
    inbox: Lazy<'t, (&'static str, u64), values::INBOX>,
    cancels: Lazy<'t, &'static str, ()>,
    map_items: Lazy<'t, (&'static str, u64, u32), values::MAP_ITEMS>,
    tokens: Lazy<'t, &'static str, values::TOKENS>,
    run_deadlines: Lazy<'t, &'static str, values::RUN_DEADLINES>,
    generation_inputs: Lazy<'t, &'static str, values::GENERATION_INPUTS>,
    nudges: Lazy<'t, &'static str, values::NUDGES>,
    meta: Lazy<'t, &'static str, &'static [u8]>,
}

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
    /// `(pc, steps, started)` of the header the driver read: the write is refused if the
    /// stored header moved on (a guard against two drivers for one run).
    pub expect: (u32, u64, bool),
    /// The new header (`updated_at_ms` is set here).
    pub header: RunRecord,
    pub events: Vec<EventKind>,
    /// Slots the step changed.
    pub slots: Vec<(u32, Vec<u8>)>,
    pub pending: PendingChange,
    pub branch_puts: Vec<(u64, u32, BranchRecord)>,
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
    /// The run continues as new with this input: its history, slots and pending step of
    /// the current generation are deleted.
    pub continue_as_new: Option<Vec<u8>>,
    /// What the driver saw of the run when it computed this write (`None` for a start).
    pub seen: Option<Seen>,
    /// `events` and the new pending step, encoded by [`RunWrite::encode`] before the
    /// write goes to the commit thread (whose time is the engine's serial bottleneck).
    /// Not logged: replay encodes them again, to the same bytes.
    #[serde(skip)]
    pub encoded: Option<EncodedParts>,
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
    events: Vec<u8>,
    events_len: u64,
    /// The pending step of `PendingChange::Set`.
    pending: Option<Vec<u8>>,
}

impl EncodedParts {
    fn of(events: &[EventKind], pending: &PendingChange) -> Result<Self, FlowError> {
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
            expect: (header.pc, header.steps, header.started),
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
            encoded: None,
        }
    }

    /// Encodes the events and the pending step now, off the commit thread. Changing
    /// either afterwards is a bug: the commit writes what was encoded here.
    pub(crate) fn encode(&mut self) -> Result<(), FlowError> {
        self.encoded = Some(EncodedParts::of(&self.events, &self.pending)?);
        Ok(())
    }

    /// The encoded parts: those from [`RunWrite::encode`], or encoded now.
    fn encoded_parts(&self) -> Result<Cow<'_, EncodedParts>, FlowError> {
        match &self.encoded {
            Some(parts) => Ok(Cow::Borrowed(parts)),
            None => EncodedParts::of(&self.events, &self.pending).map(Cow::Owned),
        }
    }
}

/// A new run: its first transition, plus the input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StartWrite {
    pub input: Vec<u8>,
    pub write: RunWrite,
}

/// Runs to wake once the transaction is durable.
#[derive(Debug, Default)]
pub(crate) struct WriteEffects {
    pub wake: Vec<String>,
}

thread_local! {
    /// The commit thread encodes thousands of records per batch: into this buffer, not
    /// a new allocation each.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's empty scratch buffer.
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> Result<R, FlowError>) -> Result<R, FlowError> {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            f(&mut buf)
        }
        // Only a nested use finds it taken: give that one a buffer of its own.
        Err(_) => f(&mut Vec::new()),
    })
}

/// Appends the encoding of `value` to `buf`.
fn encode_into<T: Serialize>(buf: &mut Vec<u8>, value: &T, what: &str) -> Result<(), FlowError> {
    let taken = std::mem::take(buf);
    *buf = postcard::to_extend(value, taken)
        .map_err(|e| FlowError::storage(format!("could not encode {what}: {e}")))?;
    Ok(())
}

/// A table of a write transaction, opened when first used: redb's commit does work for
/// every table a transaction opened, and most transactions touch a few of the journal's.
struct Lazy<'t, K: Key + 'static, V: Value + 'static> {
    txn: &'t WriteTransaction,
    definition: TableDefinition<'static, K, V>,
    table: OnceCell<Table<'t, K, V>>,
}

impl<'t, K: Key + 'static, V: Value + 'static> Lazy<'t, K, V> {
    fn new(txn: &'t WriteTransaction, definition: TableDefinition<'static, K, V>) -> Self {
        Lazy {
            txn,
            definition,
            table: OnceCell::new(),
        }
    }

    /// The table, for reading.
    fn read(&self) -> Result<&Table<'t, K, V>, FlowError> {
        if let Some(table) = self.table.get() {
            return Ok(table);
        }
        let table = self.txn.open_table(self.definition)?;
        Ok(self.table.get_or_init(|| table))
    }

    /// The table, for writing.
    fn write(&mut self) -> Result<&mut Table<'t, K, V>, FlowError> {
        self.read()?;
        Ok(self.table.get_mut().expect("opened by `read`"))
    }
}

/// What a start did.
#[derive(Debug)]
pub(crate) enum StartOutcome {
    Created(WriteEffects),
    /// A run with this ID, workflow and input existed already; nothing was written.
    Existing,
}

impl<'t> Tables<'t> {
    /// The journal's tables in `txn`, each opened when first used.
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Self, FlowError> {
        Ok(Tables {
            runs: Lazy::new(txn, RUNS),
            inputs: Lazy::new(txn, INPUTS),
            outputs: Lazy::new(txn, OUTPUTS),
            pending: Lazy::new(txn, PENDING),
            branches: Lazy::new(txn, BRANCHES),
            slots: Lazy::new(txn, SLOTS),
            history: Lazy::new(txn, HISTORY),
            history_batches: Lazy::new(txn, HISTORY_BATCHES),
            timers: Lazy::new(txn, TIMERS),
            active: Lazy::new(txn, ACTIVE),
            inbox: Lazy::new(txn, INBOX),
            cancels: Lazy::new(txn, CANCELS),
            map_items: Lazy::new(txn, MAP_ITEMS),
            tokens: Lazy::new(txn, TOKENS),
            run_deadlines: Lazy::new(txn, RUN_DEADLINES),
            generation_inputs: Lazy::new(txn, GENERATION_INPUTS),
            nudges: Lazy::new(txn, NUDGES),
            meta: Lazy::new(txn, META),
        })
    }

    /// Records that this transaction holds the write-ahead log up to `position` (see
    /// `store::recovery`): whenever redb makes it durable, the position goes with it.
    pub(crate) fn set_log_position(&mut self, position: (u64, u64)) -> Result<(), FlowError> {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&position.0.to_le_bytes());
        bytes[8..].copy_from_slice(&position.1.to_le_bytes());
        self.meta.write()?.insert(LOG_POSITION, bytes.as_slice())?;
        Ok(())
    }

    fn header(&self, run_id: &str) -> Result<Option<RunRecord>, FlowError> {
        self.runs
            .read()?
            .get(run_id)?
            .map(|r| decode_run_header(r.value()))
            .transpose()
    }

    fn put_header(&mut self, run_id: &str, header: &RunRecord) -> Result<(), FlowError> {
        let runs = self.runs.write()?;
        with_scratch(|buf| {
            encode_into(buf, header, "run header")?;
            runs.insert(run_id, buf.as_slice())?;
            Ok(())
        })
    }

    /// Appends events to the history of `run_id` from outside its transitions (signals,
    /// cancellations, callbacks, child results), keeping the header's `next_seq`.
    fn append_events(
        &mut self,
        run_id: &str,
        now_ms: u64,
        events: Vec<EventKind>,
    ) -> Result<(), FlowError> {
        let parts = EncodedParts::of(&events, &PendingChange::Keep)?;
        match self.header(run_id)? {
            Some(mut header) => {
                header.next_seq =
                    Some(self.insert_events(run_id, header.next_seq, now_ms, &parts)?);
                self.put_header(run_id, &header)
            }
            None => self.insert_events(run_id, None, now_ms, &parts).map(|_| ()),
        }
    }

    /// Inserts the encoded events of `parts` at `next` (the header's `next_seq`; found by
    /// a scan of the history when unknown) as one record; returns the seq after them.
    fn insert_events(
        &mut self,
        run_id: &str,
        next: Option<u64>,
        now_ms: u64,
        parts: &EncodedParts,
    ) -> Result<u64, FlowError> {
        let next = match next {
            Some(next) => next,
            None => self.scan_next_seq(run_id)?,
        };
        if parts.events_len == 0 {
            return Ok(next);
        }
        // Every new event needs a sequence number below `u64::MAX`: never wrap onto the
        // run's first events.
        let after = next
            .checked_add(parts.events_len)
            .ok_or_else(|| seq_exhausted("history", run_id))?;
        let batches = self.history_batches.write()?;
        with_scratch(|buf| {
            // A `StoredEvents`: postcard writes a struct's fields one after the other.
            encode_into(buf, &now_ms, "history events")?;
            buf.extend_from_slice(&parts.events);
            batches.insert((run_id, next), buf.as_slice())?;
            Ok(())
        })?;
        Ok(after)
    }

    /// The seq after the run's last history event, read from the history itself (for runs
    /// whose header predates `next_seq`).
    fn scan_next_seq(&self, run_id: &str) -> Result<u64, FlowError> {
        let range = (run_id, 0)..=(run_id, u64::MAX);
        if let Some(last) = self
            .history_batches
            .read()?
            .range(range.clone())?
            .next_back()
        {
            let (key, value) = last?;
            let batch: StoredEvents = decode_record(value.value(), "history events")?;
            return key
                .value()
                .1
                .checked_add(batch.kinds.len() as u64)
                .ok_or_else(|| seq_exhausted("history", run_id));
        }
        match self.history.read()?.range(range)?.next_back() {
            Some(last) => next_seq(last?.0.value().1, "history", run_id),
            None => Ok(0),
        }
    }

    /// Creates a run from its first transition, or finds the same run already there.
    pub(crate) fn apply_start(
        &mut self,
        start: &StartWrite,
        now_ms: u64,
    ) -> Result<StartOutcome, FlowError> {
        let run_id = start.write.run_id.as_str();
        if let Some(existing) = self.header(run_id)? {
            let input = self.inputs.read()?.get(run_id)?.map(|v| v.value().to_vec());
            same_start(
                run_id,
                &existing,
                input.as_deref(),
                &start.write.header.workflow,
                &start.input,
            )?;
            return Ok(StartOutcome::Existing);
        }
        self.inputs
            .write()?
            .insert(run_id, start.input.as_slice())?;
        let effects = self.apply_unchecked(&start.write, now_ms, Some(0))?;
        Ok(StartOutcome::Created(effects))
    }

    /// Applies one transition of an existing run.
    pub(crate) fn apply_run_write(
        &mut self,
        write: &RunWrite,
        now_ms: u64,
    ) -> Result<WriteEffects, FlowError> {
        let stored = self
            .header(&write.run_id)?
            .ok_or_else(|| FlowError::UnknownRun {
                run_id: write.run_id.clone(),
            })?;
        if (stored.pc, stored.steps, stored.started) != write.expect || stored.status.is_settled() {
            return Err(FlowError::storage(format!(
                "internal: run `{}` changed while its transition was computed; it will be \
                 retried when the run is next woken",
                write.run_id
            )));
        }
        self.apply_unchecked(write, now_ms, stored.next_seq)
    }

    /// Applies a transition whose header was checked; refuses (before writing) to create
    /// a child run over an existing run. `next_seq` is the stored header's (the driver's
    /// copy may be older: signals and callbacks append events too).
    fn apply_unchecked(
        &mut self,
        write: &RunWrite,
        now_ms: u64,
        next_seq: Option<u64>,
    ) -> Result<WriteEffects, FlowError> {
        for child in &write.children {
            if self.runs.read()?.get(child.run_id.as_str())?.is_some() {
                return Err(FlowError::RunIdConflict {
                    run_id: child.run_id.clone(),
                    difference: format!(
                        "another origin: it cannot be created as the child run of `{}`",
                        write.run_id
                    ),
                });
            }
        }
        let mut effects = WriteEffects::default();
        let run_id = write.run_id.as_str();
        let parts = write.encoded_parts()?;
        let mut header = write.header.clone();
        header.updated_at_ms = now_ms;
        let mut next_seq = next_seq;
        if let Some(input) = &write.continue_as_new {
            // The old generation is dropped, not archived: history, slots, branch
            // records and map items go; the inbox and the run ID stay.
            self.history
                .write()?
                .retain_in((run_id, 0)..=(run_id, u64::MAX), |_, _| false)?;
            self.history_batches
                .write()?
                .retain_in((run_id, 0)..=(run_id, u64::MAX), |_, _| false)?;
            self.slots
                .write()?
                .retain_in((run_id, 0)..=(run_id, u32::MAX), |_, _| false)?;
            self.branches
                .write()?
                .retain_in((run_id, 0, 0)..=(run_id, u64::MAX, u32::MAX), |_, _| false)?;
            self.map_items
                .write()?
                .retain_in((run_id, 0, 0)..=(run_id, u64::MAX, u32::MAX), |_, _| false)?;
            self.generation_inputs
                .write()?
                .insert(run_id, input.as_slice())?;
            next_seq = Some(0);
        }
        header.next_seq = Some(self.insert_events(run_id, next_seq, now_ms, &parts)?);
        self.put_header(run_id, &header)?;
        if let Some((step, items)) = &write.map_items {
            for (i, item) in items.iter().enumerate() {
                self.map_items
                    .write()?
                    .insert((run_id, *step, i as u32), item.as_slice())?;
            }
        }
        for (token, record) in &write.tokens {
            self.tokens.write()?.insert(
                token.as_str(),
                encode_record(record, "callback token")?.as_slice(),
            )?;
        }
        if let Some(deadline) = write.run_deadline {
            self.run_deadlines.write()?.insert(run_id, deadline)?;
            self.timers.write()?.insert((deadline, run_id), ())?;
        }
        // A run-level deadline is set at start only, so the driver knows whether there is
        // one to delete.
        let had_deadline =
            write.run_deadline.is_some() || write.seen.is_none_or(|seen| seen.run_deadline);
        if (write.run_timed_out || header.status.is_settled()) && had_deadline {
            let deadline = self
                .run_deadlines
                .write()?
                .remove(run_id)?
                .map(|d| d.value());
            if let Some(deadline) = deadline {
                self.timers.write()?.remove((deadline, run_id))?;
            }
        }
        if write.run_timed_out && !header.status.is_settled() {
            self.cancels.write()?.insert(run_id, ())?;
        }
        for (slot, bytes) in &write.slots {
            self.slots
                .write()?
                .insert((run_id, *slot), bytes.as_slice())?;
        }
        if let Some(step) = write.clear_branches {
            self.branches
                .write()?
                .retain_in((run_id, step, 0)..=(run_id, step, u32::MAX), |_, _| false)?;
            self.map_items
                .write()?
                .retain_in((run_id, step, 0)..=(run_id, step, u32::MAX), |_, _| false)?;
        }
        // A branch finished by someone else meanwhile (a callback completed, a child run
        // delivered its result) stays finished: the driver's older view must not turn it
        // back into `Awaiting` or `Retrying`, and the run must get to see it.
        let mut revived = false;
        for (step, branch, record) in &write.branch_puts {
            let key = (run_id, *step, *branch);
            if !record.is_finished() {
                let finished = match self.branches.read()?.get(key)? {
                    Some(old) => {
                        decode_record::<BranchRecord>(old.value(), "branch record")?.is_finished()
                    }
                    None => false,
                };
                if finished {
                    revived = true;
                    continue;
                }
            }
            self.branches
                .write()?
                .insert(key, encode_record(record, "branch record")?.as_slice())?;
        }
        // Every outside event (a cancellation among them) nudges the run, so a run never
        // reached from outside has no cancellation or nudge count to delete when it ends.
        let mut reached = true;
        if let Some(seen) = write.seen {
            let now = self.nudge_count(run_id)?;
            // Something reached the run after the driver read it: it must look again.
            revived |= now != seen.nudges;
            reached = now > 0 || seen.cancel || write.run_timed_out;
        }
        if revived && !write.active && !header.status.is_settled() {
            header.status = StoredStatus::Running;
            self.put_header(run_id, &header)?;
        }
        match &write.pending {
            PendingChange::Keep => {}
            PendingChange::Set(_) => {
                let op = parts.pending.as_deref().unwrap_or_default();
                self.pending.write()?.insert(run_id, op)?;
            }
            PendingChange::Remove => {
                self.pending.write()?.remove(run_id)?;
            }
        }
        for deadline in &write.timers_remove {
            self.timers.write()?.remove((*deadline, run_id))?;
        }
        for deadline in &write.timers_add {
            self.timers.write()?.insert((*deadline, run_id), ())?;
        }
        for seq in &write.inbox_consume {
            self.inbox.write()?.remove((run_id, *seq))?;
        }
        if write.consume_cancel || (header.status.is_settled() && reached) {
            self.cancels.write()?.remove(run_id)?;
        }
        if header.status.is_finished() && reached {
            self.nudges.write()?.remove(run_id)?;
        }
        // Most transitions leave this unchanged; a lookup is cheaper than a rewrite.
        let active = write.active || (revived && !header.status.is_settled());
        if active != self.active.read()?.get(run_id)?.is_some() {
            if active {
                self.active.write()?.insert(run_id, ())?;
            } else {
                self.active.write()?.remove(run_id)?;
            }
        }
        if let Some(output) = &write.output {
            self.outputs.write()?.insert(run_id, output.as_slice())?;
        }
        for child in &write.children {
            self.create_child(child, now_ms)?;
            effects.wake.push(child.run_id.clone());
        }
        for other in &write.cancel_runs {
            if self.cancel_if_open(other, now_ms)? {
                effects.wake.push(other.clone());
            }
        }
        if header.status.is_finished() {
            if let Some(parent) = &header.parent {
                if self.deliver_to_parent(
                    parent,
                    run_id,
                    &header.status,
                    write.output.as_deref(),
                )? {
                    effects.wake.push(parent.run_id.clone());
                }
            }
        }
        Ok(effects)
    }

    fn create_child(&mut self, child: &ChildStart, now_ms: u64) -> Result<(), FlowError> {
        let header = RunRecord {
            workflow: child.workflow.clone(),
            fingerprint: child.fingerprint,
            status: StoredStatus::Running,
            pc: 0,
            steps: 0,
            started: false,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            parent: Some(child.parent.clone()),
            next_seq: Some(0),
        };
        let id = child.run_id.as_str();
        self.put_header(id, &header)?;
        self.inputs.write()?.insert(id, child.input.as_slice())?;
        self.append_events(
            id,
            now_ms,
            vec![EventKind::RunStarted {
                workflow: child.workflow.clone(),
                input: child.input.clone(),
                parent: Some(child.parent.run_id.clone()),
            }],
        )?;
        self.active.write()?.insert(id, ())?;
        Ok(())
    }

    /// Records a finished child's outcome as its parent's branch result; true if the
    /// parent still waits for it.
    fn deliver_to_parent(
        &mut self,
        parent: &super::records::ParentLink,
        child_id: &str,
        status: &StoredStatus,
        output: Option<&[u8]>,
    ) -> Result<bool, FlowError> {
        // A finished parent no longer waits (a faulted one is kept as it is, with the
        // results that reach it).
        let parent_open = match self.header(&parent.run_id)? {
            Some(header) => !header.status.is_finished(),
            None => false,
        };
        if !parent_open {
            return Ok(false);
        }
        let waiting = match self.pending.read()?.get(parent.run_id.as_str())? {
            Some(op) => decode_record::<PendingOp>(op.value(), "pending step")?.step == parent.step,
            None => false,
        };
        if !waiting {
            return Ok(false);
        }
        let record = match (status, output) {
            (StoredStatus::Completed, Some(output)) => BranchRecord::Done(output.to_vec()),
            (StoredStatus::Failed(error), _) => {
                BranchRecord::Failed(format!("child run `{child_id}` failed: {error}"))
            }
            _ => BranchRecord::Failed(format!("child run `{child_id}` was cancelled")),
        };
        let pid = parent.run_id.as_str();
        self.branches.write()?.insert(
            (pid, parent.step, parent.branch),
            encode_record(&record, "branch record")?.as_slice(),
        )?;
        self.nudge(pid)?;
        Ok(true)
    }

    /// Appends a signal to the run's inbox.
    pub(crate) fn append_signal(
        &mut self,
        run_id: &str,
        name: &str,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<(), FlowError> {
        self.check_open(run_id, "signals")?;
        let seq = match self
            .inbox
            .read()?
            .range((run_id, 0)..=(run_id, u64::MAX))?
            .next_back()
        {
            Some(last) => next_seq(last?.0.value().1, "inbox", run_id)?,
            None => 0,
        };
        let message = encode_record(&(name, payload), "inbox message")?;
        self.inbox
            .write()?
            .insert((run_id, seq), message.as_slice())?;
        // A run waiting for this signal now has deadline-free work: recovery must wake it
        // even if the process dies before its driver consumes the message.
        let waits = match self.pending.read()?.get(run_id)? {
            Some(op) => decode_record::<PendingOp>(op.value(), "pending step")?
                .branches
                .iter()
                .any(|b| matches!(b, Branch::Signal { name: wanted, .. } if wanted == name)),
            None => false,
        };
        if waits {
            self.nudge(run_id)?;
        }
        self.append_events(
            run_id,
            now_ms,
            vec![EventKind::SignalReceived {
                name: name.to_string(),
                seq,
            }],
        )
    }

    /// Records a cancellation request for the run's driver.
    pub(crate) fn request_cancel(&mut self, run_id: &str, now_ms: u64) -> Result<(), FlowError> {
        self.check_open(run_id, "cancellation")?;
        if self.cancels.write()?.insert(run_id, ())?.is_none() {
            self.append_events(run_id, now_ms, vec![EventKind::CancelRequested])?;
        }
        // Recovery must wake the run for it, even if it waits for nothing else.
        self.nudge(run_id)?;
        Ok(())
    }

    /// How many outside events reached `run_id` (see `NUDGES`).
    fn nudge_count(&self, run_id: &str) -> Result<u64, FlowError> {
        Ok(self
            .nudges
            .read()?
            .get(run_id)?
            .map(|n| n.value())
            .unwrap_or(0))
    }

    /// Records that an outside event reached `run_id` and marks it active.
    fn nudge(&mut self, run_id: &str) -> Result<(), FlowError> {
        let n = self.nudge_count(run_id)?;
        self.nudges.write()?.insert(run_id, n.saturating_add(1))?;
        self.active.write()?.insert(run_id, ())?;
        Ok(())
    }

    /// Requests cancellation of `run_id` if it exists and has not finished; true if so.
    fn cancel_if_open(&mut self, run_id: &str, now_ms: u64) -> Result<bool, FlowError> {
        match self.header(run_id)? {
            Some(header) if !header.status.is_settled() => {}
            _ => return Ok(false),
        }
        if self.cancels.write()?.insert(run_id, ())?.is_none() {
            self.append_events(run_id, now_ms, vec![EventKind::CancelRequested])?;
        }
        self.nudge(run_id)?;
        Ok(true)
    }

    /// Completes callback `token` with `output` (the encoded `Result<T, CallbackError>`);
    /// returns the run to wake.
    pub(crate) fn complete_callback(
        &mut self,
        token: &str,
        output: Vec<u8>,
        ok: bool,
        now_ms: u64,
    ) -> Result<String, FlowError> {
        let refused = |reason: &str| FlowError::InvalidCallbackToken {
            reason: reason.to_string(),
        };
        let mut record: TokenRecord = match self.tokens.read()?.get(token)? {
            Some(r) => decode_record(r.value(), "callback token")?,
            None => return Err(refused("no callback was issued with this token")),
        };
        if record.used {
            return Err(refused(
                "this token was completed already (tokens are single-use)",
            ));
        }
        let run_id = record.run_id.clone();
        let waiting = match self.pending.read()?.get(run_id.as_str())? {
            Some(op) => decode_record::<PendingOp>(op.value(), "pending step")?.step == record.step,
            None => false,
        };
        let open = self
            .header(&run_id)?
            .is_some_and(|h| !h.status.is_settled());
        let finished = self
            .branches
            .read()?
            .get((run_id.as_str(), record.step, record.branch))?
            .map(|r| decode_record::<BranchRecord>(r.value(), "branch record"))
            .transpose()?
            .is_some_and(|r| r.is_finished());
        if !waiting || !open || finished {
            return Err(refused(
                "the step that issued it is over (it timed out, was cancelled or lost a race)",
            ));
        }
        record.used = true;
        self.tokens
            .write()?
            .insert(token, encode_record(&record, "callback token")?.as_slice())?;
        self.branches.write()?.insert(
            (run_id.as_str(), record.step, record.branch),
            encode_record(&BranchRecord::Done(output), "branch record")?.as_slice(),
        )?;
        self.nudge(&run_id)?;
        self.append_events(
            &run_id,
            now_ms,
            vec![EventKind::CallbackCompleted {
                step: record.step,
                branch: record.branch,
                ok,
            }],
        )?;
        Ok(run_id)
    }

    /// Records a heartbeat for callback `token`; returns the run and the new heartbeat
    /// deadline, if the callback has a heartbeat interval and its task handed the token out.
    pub(crate) fn heartbeat_callback(
        &mut self,
        token: &str,
        now_ms: u64,
    ) -> Result<Option<u64>, FlowError> {
        let refused = |reason: &str| FlowError::InvalidCallbackToken {
            reason: reason.to_string(),
        };
        let record: TokenRecord = match self.tokens.read()?.get(token)? {
            Some(r) => decode_record(r.value(), "callback token")?,
            None => return Err(refused("no callback was issued with this token")),
        };
        if record.used {
            return Err(refused(
                "this token was completed already (tokens are single-use)",
            ));
        }
        let run_id = record.run_id.as_str();
        let open = self.header(run_id)?.is_some_and(|h| !h.status.is_settled());
        let op = match self.pending.read()?.get(run_id)? {
            Some(op) => Some(decode_record::<PendingOp>(op.value(), "pending step")?),
            None => None,
        };
        let interval = match op.as_ref().filter(|op| open && op.step == record.step) {
            Some(op) => match op.branches.get(record.branch as usize) {
                Some(Branch::Callback { heartbeat, .. }) => *heartbeat,
                _ => None,
            },
            None => {
                return Err(refused(
                    "the step that issued it is over (it timed out, was cancelled or lost a \
                     race)",
                ))
            }
        };
        let key = (run_id, record.step, record.branch);
        let current = self
            .branches
            .read()?
            .get(key)?
            .map(|r| decode_record::<BranchRecord>(r.value(), "branch record"))
            .transpose()?;
        let (
            Some(interval),
            Some(BranchRecord::Awaiting {
                heartbeat_deadline_ms,
            }),
        ) = (interval, current)
        else {
            // No interval, or the task has not handed the token out yet: nothing to extend.
            return Ok(None);
        };
        let deadline = now_ms.saturating_add(crate::engine::millis(interval));
        if let Some(old) = heartbeat_deadline_ms {
            self.timers.write()?.remove((old, run_id))?;
        }
        self.timers.write()?.insert((deadline, run_id), ())?;
        let renewed = BranchRecord::Awaiting {
            heartbeat_deadline_ms: Some(deadline),
        };
        self.branches
            .write()?
            .insert(key, encode_record(&renewed, "branch record")?.as_slice())?;
        Ok(Some(deadline))
    }

    fn check_open(&self, run_id: &str, what: &'static str) -> Result<RunRecord, FlowError> {
        let header = self.header(run_id)?.ok_or_else(|| FlowError::UnknownRun {
            run_id: run_id.to_string(),
        })?;
        if header.status.is_finished() {
            return Err(FlowError::RunFinished {
                run_id: run_id.to_string(),
                status: header.status.to_public().to_string(),
                what,
            });
        }
        Ok(header)
    }
}

/// Checks that a start asks for the run that exists: same workflow, same input.
fn same_start(
    run_id: &str,
    existing: &RunRecord,
    existing_input: Option<&[u8]>,
    workflow: &str,
    input: &[u8],
) -> Result<(), FlowError> {
    let difference = if existing.workflow != workflow {
        format!(
            "workflow `{}` (this start asks for `{workflow}`)",
            existing.workflow
        )
    } else if existing_input != Some(input) {
        "the same workflow but a different input".to_string()
    } else {
        return Ok(());
    };
    Err(FlowError::RunIdConflict {
        run_id: run_id.to_string(),
        difference,
    })
}

/// The sequence number after `last` in a run's `what` (history, inbox), or a corrupt-journal
/// error at `u64::MAX`: a damaged journal must never wrap onto the run's first entries.
fn next_seq(last: u64, what: &str, run_id: &str) -> Result<u64, FlowError> {
    last.checked_add(1)
        .ok_or_else(|| seq_exhausted(what, run_id))
}

fn seq_exhausted(what: &str, run_id: &str) -> FlowError {
    FlowError::Corrupt {
        path: "journal".into(),
        message: format!(
            "the {what} of run `{run_id}` has no sequence numbers left (an entry is keyed at \
             u64::MAX)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use redb::backends::InMemoryBackend;

    use super::super::read::StoredEvent;
    use super::super::{open_backend, OpenOptions};
    use super::*;

    fn parts(events: &[EventKind]) -> EncodedParts {
        EncodedParts::of(events, &PendingChange::Keep).unwrap()
    }

    /// A journal written before `HISTORY_BATCHES` holds one row per event in `HISTORY`
    /// and headers without `next_seq`: appends continue after its last event, and the
    /// history reads as one sequence (which also checks that a batch assembled from
    /// pre-encoded events decodes as `StoredEvents`).
    #[test]
    fn batches_continue_an_older_per_event_history() {
        let options = OpenOptions {
            cache_bytes: 1 << 20,
            check_integrity: false,
            checkpoint_bytes: 1 << 20,
        };
        let store = open_backend(Box::new(InMemoryBackend::new()), None, "test", options).unwrap();
        let txn = store
            .with_writer(|db, _| db.begin_write().unwrap())
            .unwrap();
        {
            let mut tables = Tables::open(&txn).unwrap();
            for seq in 0..2 {
                let old = StoredEvent {
                    at_ms: 1,
                    kind: EventKind::CancelRequested,
                };
                let bytes = encode_record(&old, "history event").unwrap();
                tables
                    .history
                    .write()
                    .unwrap()
                    .insert(("r", seq), bytes.as_slice())
                    .unwrap();
            }
            let after = tables
                .insert_events(
                    "r",
                    None,
                    2,
                    &parts(&[EventKind::RunCancelled, EventKind::RunCancelled]),
                )
                .unwrap();
            assert_eq!(after, 4);
            assert_eq!(tables.scan_next_seq("r").unwrap(), 4);
            let after = tables
                .insert_events("r", Some(after), 3, &parts(&[EventKind::CancelRequested]))
                .unwrap();
            assert_eq!(after, 5);
        }
        txn.commit().unwrap();
        let history = store.history("r").unwrap();
        let seen: Vec<_> = history.iter().map(|e| (e.seq, e.at_ms)).collect();
        assert_eq!(seen, [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3)]);
        assert_eq!(history[2].kind, EventKind::RunCancelled);
    }
}
