//! The journal's tables inside one write transaction, and the primitives every change is
//! built from: run headers, history appends, nudges.
//!
//! Tables are opened when first used (redb's commit does work for every table a
//! transaction opened), and records are encoded into a per-thread scratch buffer: the
//! commit thread encodes thousands of them per batch.

use std::cell::{OnceCell, RefCell};

use redb::{Key, ReadableTable, Table, TableDefinition, Value, WriteTransaction};
use serde::Serialize;

use super::read::StoredEvents;
use super::records::{decode_record, decode_run_header, RunRecord};
use super::tables::*;
use super::transition::{EncodedParts, PendingChange};
use crate::error::FlowError;
use crate::history::EventKind;

/// The journal's tables, opened once per write transaction when first used.
pub(crate) struct Tables<'t> {
    pub(super) runs: Lazy<'t, &'static str, values::RUNS>,
    pub(super) inputs: Lazy<'t, &'static str, values::INPUTS>,
    pub(super) outputs: Lazy<'t, &'static str, values::OUTPUTS>,
    pub(super) pending: Lazy<'t, &'static str, values::PENDING>,
    pub(super) branches: Lazy<'t, (&'static str, u64, u32), values::BRANCHES>,
    pub(super) slots: Lazy<'t, (&'static str, u32), values::SLOTS>,
    pub(super) history: Lazy<'t, (&'static str, u64), values::HISTORY>,
    pub(super) history_batches: Lazy<'t, (&'static str, u64), values::HISTORY_BATCHES>,
    pub(super) timers: Lazy<'t, (u64, &'static str), ()>,
    pub(super) active: Lazy<'t, &'static str, ()>,
    pub(super) inbox: Lazy<'t, (&'static str, u64), values::INBOX>,
    pub(super) cancels: Lazy<'t, &'static str, ()>,
    pub(super) map_items: Lazy<'t, (&'static str, u64, u32), values::MAP_ITEMS>,
    pub(super) tokens: Lazy<'t, &'static str, values::TOKENS>,
    pub(super) run_deadlines: Lazy<'t, &'static str, values::RUN_DEADLINES>,
    pub(super) generation_inputs: Lazy<'t, &'static str, values::GENERATION_INPUTS>,
    pub(super) nudges: Lazy<'t, &'static str, values::NUDGES>,
    pub(super) token_types: Lazy<'t, &'static str, values::TOKEN_TYPES>,
    pub(super) retention: Lazy<'t, &'static str, values::RETENTION>,
    pub(super) run_expiries: Lazy<'t, &'static str, values::RUN_EXPIRIES>,
    pub(super) expiries: Lazy<'t, (u64, &'static str), ()>,
    pub(super) run_tokens: Lazy<'t, (&'static str, &'static str), ()>,
    pub(super) step_states: Lazy<'t, (&'static str, u64), values::STEP_STATES>,
    pub(super) deliveries: Lazy<'t, &'static str, ()>,
    pub(super) runs_by_status: Lazy<'t, (u8, &'static str), ()>,
    pub(super) runs_by_workflow: Lazy<'t, (&'static str, &'static str), ()>,
    pub(super) meta: Lazy<'t, &'static str, &'static [u8]>,
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
pub(super) struct Lazy<'t, K: Key + 'static, V: Value + 'static> {
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
    pub(super) fn read(&self) -> Result<&Table<'t, K, V>, FlowError> {
        if let Some(table) = self.table.get() {
            return Ok(table);
        }
        let table = self.txn.open_table(self.definition)?;
        Ok(self.table.get_or_init(|| table))
    }

    /// The table, for writing.
    pub(super) fn write(&mut self) -> Result<&mut Table<'t, K, V>, FlowError> {
        self.read()?;
        Ok(self.table.get_mut().expect("opened by `read`"))
    }
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
            token_types: Lazy::new(txn, TOKEN_TYPES),
            retention: Lazy::new(txn, RETENTION),
            run_expiries: Lazy::new(txn, RUN_EXPIRIES),
            expiries: Lazy::new(txn, EXPIRIES),
            run_tokens: Lazy::new(txn, RUN_TOKENS),
            step_states: Lazy::new(txn, STEP_STATES),
            deliveries: Lazy::new(txn, DELIVERIES),
            runs_by_status: Lazy::new(txn, super::run_index::RUNS_BY_STATUS),
            runs_by_workflow: Lazy::new(txn, super::run_index::RUNS_BY_WORKFLOW),
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

    pub(super) fn header(&self, run_id: &str) -> Result<Option<RunRecord>, FlowError> {
        self.runs
            .read()?
            .get(run_id)?
            .map(|r| decode_run_header(r.value()))
            .transpose()
    }

    /// Writes `run_id`'s header, keeping the run indexes (`run_index.rs`).
    pub(super) fn put_header(&mut self, run_id: &str, header: &RunRecord) -> Result<(), FlowError> {
        let runs = self.runs.write()?;
        let old = with_scratch(|buf| {
            encode_into(buf, header, "run header")?;
            let old = runs.insert(run_id, buf.as_slice())?;
            old.map(|o| decode_run_header(o.value())).transpose()
        })?;
        self.index_header(run_id, old.as_ref(), header)
    }

    /// Appends events to the history of `run_id` from outside its transitions (signals,
    /// cancellations, callbacks, child results), keeping the header's `next_seq`.
    pub(super) fn append_events(
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
    pub(super) fn insert_events(
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
    pub(super) fn scan_next_seq(&self, run_id: &str) -> Result<u64, FlowError> {
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

    /// How many outside events reached `run_id` (see `NUDGES`).
    pub(super) fn nudge_count(&self, run_id: &str) -> Result<u64, FlowError> {
        Ok(self
            .nudges
            .read()?
            .get(run_id)?
            .map(|n| n.value())
            .unwrap_or(0))
    }

    /// Records that an outside event reached `run_id` and marks it active.
    pub(super) fn nudge(&mut self, run_id: &str) -> Result<(), FlowError> {
        let n = self.nudge_count(run_id)?;
        self.nudges.write()?.insert(run_id, n.saturating_add(1))?;
        self.active.write()?.insert(run_id, ())?;
        Ok(())
    }

    pub(super) fn check_open(
        &self,
        run_id: &str,
        what: &'static str,
    ) -> Result<RunRecord, FlowError> {
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

/// The sequence number after `last` in a run's `what` (history, inbox), or a corrupt-journal
/// error at `u64::MAX`: a damaged journal must never wrap onto the run's first entries.
pub(super) fn next_seq(last: u64, what: &str, run_id: &str) -> Result<u64, FlowError> {
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
    use super::super::records::encode_record;
    use super::super::{open_backend, Journal, OpenOptions};
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
            accept_log_loss: false,
            read_only: false,
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
