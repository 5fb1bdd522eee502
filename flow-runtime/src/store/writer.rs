//! The journal's write side: each batch of changes goes to redb, through the
//! write-ahead log when the journal has one.
//!
//! Without a log, a batch is one durable redb commit. With one, a batch is durable once
//! the log holds it, and redb only has to show it to readers: batches are applied to one
//! open write transaction, which is committed (without durability) when a reader needs
//! it, every `PUBLISH_EVERY` batches, or at a checkpoint (durably). A step then costs one
//! log append and its share of B-tree updates; the pages a transition changes are copied
//! once per redb commit, not once per step.

use std::panic::AssertUnwindSafe;

use redb::{Database, Durability, WriteTransaction};

use super::change::LoggedBatch;
use super::recovery::{checkpoint, close_log, log_error};
use super::txn_tables::Tables;
use super::wal::WriteAheadLog;
use crate::error::{panic_message, FlowError};

/// A batch of changes, as the writer needs it.
pub(crate) trait BatchWrites {
    /// Appends the changes' log encoding (see `LoggedBatch`).
    fn encode(&self, out: &mut Vec<u8>);
    /// Applies the changes at time `now`; an error fails the whole batch.
    fn apply(&mut self, tables: &mut Tables<'_>, now: u64) -> Result<(), FlowError>;
}

/// Most batches the open transaction holds before it is committed anyway: keeps redb's
/// commit (and the memory it holds until then) small.
const PUBLISH_EVERY: u32 = 64;

/// The journal's write-ahead log, if it has one (see `store::wal`).
pub(crate) enum Log {
    /// No log (in-memory journals, custom backends without a log backend): every batch
    /// is a durable redb commit.
    Absent,
    Open(WriteAheadLog),
    /// A write failed after the log took batches that redb may lack: nothing more may
    /// be written until the journal is reopened (which replays the log). Holds what
    /// failed, for every later error.
    Failed(String),
}

/// Writes batches; one per journal, behind the store's lock.
pub(crate) struct JournalWriter {
    log: Log,
    /// Logged batches not yet committed to redb (readers do not see them yet).
    open: Option<WriteTransaction>,
    open_batches: u32,
    /// Log size past which the writer checkpoints (see `store::recovery`).
    checkpoint_bytes: u64,
    /// The journal's name, for errors.
    name: String,
}

impl JournalWriter {
    pub(crate) fn new(log: Option<WriteAheadLog>, checkpoint_bytes: u64, name: String) -> Self {
        JournalWriter {
            log: log.map_or(Log::Absent, Log::Open),
            open: None,
            open_batches: 0,
            checkpoint_bytes,
            name,
        }
    }

    pub(crate) fn is_logged(&self) -> bool {
        !matches!(self.log, Log::Absent)
    }

    /// Whether a failure stopped the writer.
    pub(crate) fn is_failed(&self) -> bool {
        matches!(self.log, Log::Failed(_))
    }

    /// The error for reads and writes after a failure (`None` if there was none).
    pub(crate) fn failure(&self) -> Option<FlowError> {
        match &self.log {
            Log::Failed(cause) => Some(failed(cause)),
            _ => None,
        }
    }

    /// Whether batches wait in the open transaction for readers.
    pub(crate) fn has_unpublished(&self) -> bool {
        self.open.is_some()
    }

    /// Writes `batch` at time `now`; returns once it is durable. After an error the
    /// batch's fate is unknown to its requesters, as after any failed commit: the log may
    /// hold it, and reopening the journal then replays it.
    pub(crate) fn write_batch(
        &mut self,
        db: &Database,
        now: u64,
        batch: &mut impl BatchWrites,
    ) -> Result<(), FlowError> {
        let wal = match &mut self.log {
            Log::Failed(cause) => return Err(failed(cause)),
            Log::Absent => {
                return commit_durably(db, |tables| self.checked(|| batch.apply(tables, now)))
            }
            Log::Open(wal) => wal,
        };
        let appended = wal.append_with(|out| {
            LoggedBatch::begin(out, now);
            batch.encode(out);
        });
        if let Err(e) = appended {
            let error = log_error(e);
            self.fail(&error);
            return Err(error);
        }
        let position = wal.position();
        let txn = match self.open.take() {
            Some(txn) => txn,
            None => match begin_unlogged(db) {
                Ok(txn) => txn,
                Err(e) => {
                    self.fail(&e);
                    return Err(e);
                }
            },
        };
        let name = &self.name;
        let applied = Tables::open(&txn).and_then(|mut tables| {
            tables.set_log_position(position)?;
            checked(name, || batch.apply(&mut tables, now))
        });
        if let Err(e) = applied {
            // The open transaction is lost with this batch, and with it batches the
            // log holds.
            let _ = txn.abort();
            self.fail(&e);
            return Err(e);
        }
        self.open = Some(txn);
        self.open_batches += 1;
        if self.open_batches >= PUBLISH_EVERY {
            // The batch is durable already: a failure here fails later writes only.
            let _ = self.publish();
        }
        Ok(())
    }

    /// Commits the open transaction (without durability: the log has its batches),
    /// making them visible to readers.
    pub(crate) fn publish(&mut self) -> Result<(), FlowError> {
        self.open_batches = 0;
        let Some(txn) = self.open.take() else {
            return Ok(());
        };
        txn.commit().map_err(|e| {
            let error = FlowError::from(e);
            self.fail(&error);
            error
        })
    }

    /// Checkpoints if the log has grown enough; a failure fails later writes.
    pub(crate) fn checkpoint_if_due(&mut self, db: &Database) {
        let due = matches!(&self.log, Log::Open(wal) if wal.bytes() >= self.checkpoint_bytes);
        if due {
            if let Err(e) = self.checkpoint(db) {
                tracing::error!(error = %e, "journal checkpoint failed");
            }
        }
    }

    /// Makes everything in redb durable and starts the log over.
    fn checkpoint(&mut self, db: &Database) -> Result<(), FlowError> {
        // Without a log there is never an open transaction; a failed writer has none left.
        let Log::Open(wal) = &mut self.log else {
            return Ok(());
        };
        let open = self.open.take();
        self.open_batches = 0;
        if let Err(e) = checkpoint(db, open, wal) {
            self.fail(&e);
            return Err(e);
        }
        Ok(())
    }

    /// Gives the journal file's free pages back to the file system when they are most of
    /// it (see `store::compact`): checkpoints (redb's compaction works on durable state
    /// only), then lets redb move the pages in use down and cut the file. `file_len` is
    /// the file's length now. Returns whether it compacted. A failure fails later writes,
    /// as a failed checkpoint does.
    pub(crate) fn compact_if_sparse(
        &mut self,
        db: &mut Database,
        file_len: u64,
    ) -> Result<bool, FlowError> {
        if self.is_failed() {
            return Ok(false);
        }
        let used = match &self.open {
            Some(txn) => txn.stats()?,
            None => {
                let txn = db.begin_write()?;
                let stats = txn.stats();
                txn.abort()?;
                stats?
            }
        };
        let used = used.allocated_pages() * used.page_size() as u64;
        if !super::compact::worth_compacting(file_len, used) {
            return Ok(false);
        }
        self.checkpoint(db)?;
        match db.compact() {
            Ok(_) => Ok(true),
            // redb's file is as it was before; what it cannot do now (a transaction in
            // progress elsewhere, which the store's lock rules out) is tried next time.
            Err(redb::CompactionError::Storage(e)) => {
                let error = FlowError::storage(format!("compacting the journal file failed: {e}"));
                self.fail(&error);
                Err(error)
            }
            Err(other) => {
                tracing::debug!(reason = %other, "journal compaction skipped");
                Ok(false)
            }
        }
    }

    /// For shutdown: checkpoints and empties the log, so that the journal file alone is
    /// the whole journal. A failed journal is left as it is, for the next open to replay.
    pub(crate) fn close(&mut self, db: &Database) {
        let closed = match &mut self.log {
            Log::Open(wal) => {
                self.open_batches = 0;
                close_log(db, self.open.take(), wal)
            }
            _ => Ok(()),
        };
        if let Err(e) = closed {
            tracing::error!(error = %e, "could not checkpoint the journal at shutdown");
        }
        self.open = None;
        self.log = Log::Absent;
    }

    /// Stops writes after `cause`, which every later error repeats.
    fn fail(&mut self, cause: &FlowError) {
        self.open = None;
        self.open_batches = 0;
        if self.is_logged() && !self.is_failed() {
            let cause = match cause {
                FlowError::Storage { message } => message.clone(),
                other => other.to_string(),
            };
            self.log = Log::Failed(cause);
        }
    }
}

impl JournalWriter {
    fn checked(&self, apply: impl FnOnce() -> Result<(), FlowError>) -> Result<(), FlowError> {
        checked(&self.name, apply)
    }
}

/// Runs `apply`, failing it if it read a value that failed its checksum (what it wrote
/// from that value is then dropped with its transaction) or if redb panicked, and names
/// the file in its errors.
fn checked(name: &str, apply: impl FnOnce() -> Result<(), FlowError>) -> Result<(), FlowError> {
    super::tables::take_damage();
    // redb may panic on a damaged page: reported, not printed.
    let applied = super::guard::quietly(AssertUnwindSafe(apply)).unwrap_or_else(|panic| {
        Err(FlowError::Corrupt {
            path: name.to_string(),
            message: format!("writing it failed: {}", panic_message(&*panic)),
        })
    });
    if let Some(table) = super::tables::take_damage() {
        return Err(super::tables::damaged_value(name, table));
    }
    applied.map_err(|e| e.naming_file(name))
}

/// A write transaction for logged batches: its commit needs no durability.
pub(crate) fn begin_unlogged(db: &Database) -> Result<WriteTransaction, FlowError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::None)
        .map_err(|e| FlowError::storage(format!("could not start a transaction: {e}")))?;
    Ok(txn)
}

/// One batch as one durable redb commit (a journal without a log).
fn commit_durably(
    db: &Database,
    apply: impl FnOnce(&mut Tables<'_>) -> Result<(), FlowError>,
) -> Result<(), FlowError> {
    let txn = db.begin_write()?;
    if let Err(e) = Tables::open(&txn).and_then(|mut tables| apply(&mut tables)) {
        let _ = txn.abort();
        return Err(e);
    }
    txn.commit()?;
    Ok(())
}

/// The error for reads and writes after a failed write, with its cause (the I/O error
/// of a full disk, say), so that every caller learns what went wrong, not only that
/// something did.
fn failed(cause: &str) -> FlowError {
    FlowError::storage(format!(
        "an earlier write to the journal failed ({cause}); shut the engine down and open \
         the journal again (opening replays the write-ahead log)"
    ))
}
