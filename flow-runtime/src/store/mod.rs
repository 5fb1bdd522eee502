//! The journal: a redb file and its write-ahead log.
//!
//! - opening and validating them: `open`, `recovery` (redb's writes at open held back by
//!   `deferred` until the log is accepted);
//! - the storage schema: `tables` (redb's tables, whose values it seals with a
//!   checksum), `records` (their values);
//! - reading runs: `read`;
//! - changes as data: `transition` (a run's transition), `change` (every change, as
//!   logged);
//! - changes as writes to redb's tables: `txn_tables` (the tables of one write
//!   transaction), `apply` (starts and transitions), `external_events` (signals,
//!   cancellations, callbacks), `deliveries` (those applied once per request ID),
//!   `retention` (expiries and deleting runs), `upgrade` (a
//!   run moved to another version);
//! - the log itself: `wal`; the writer that puts batches of changes through both:
//!   `writer`, driven by the commit pipeline (`engine::commit`);
//! - `compact` gives the file's free pages back when the engine is idle;
//! - `guard` keeps redb's panics on damaged pages off stderr; `fuzzing` serves the fuzz
//!   targets.
//!
//! The store never depends on the engine.

mod apply;
mod change;
mod compact;
mod deferred;
mod deliveries;
mod external_events;
#[cfg(feature = "test-hooks")]
mod fuzzing;
mod guard;
mod journal;
mod lost_log;
mod open;
mod overlay;
mod read;
pub(crate) mod records;
mod recovery;
mod remove;
mod retention;
mod run_index;
mod tables;
mod transition;
mod txn_tables;
mod upgrade;
mod wal;
mod worker_key;
mod writer;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

use redb::{Database, ReadTransaction, ReadableDatabase};

use crate::error::{panic_message, FlowError};

pub(crate) use apply::StartOutcome;
pub(crate) use change::{Applied, Change, LoggedBatch};
#[cfg(feature = "test-hooks")]
pub(crate) use fuzzing::{read_log_for_fuzzing, unseal_for_fuzzing};
pub(crate) use journal::Journal;
// The storage schema's values the engine decides with (see `Journal`).
pub(crate) use open::{open_backend, open_file, OpenOptions};
pub(crate) use read::{Snapshot, TimerStart};
pub(crate) use records::{
    flatten, join_layout, BatchSpec, Branch, BranchRecord, ChildStart, MapProgress, MapSpec,
    ParentLink, PendingOp, RunRecord, Shape, StoredStatus, TokenRecord, MAP_PROGRESS,
};
pub(crate) use remove::remove_journal_files;
pub(crate) use retention::RetentionSettings;
pub(crate) use run_index::{status_code, IndexKey};
pub(crate) use transition::{
    encode_map_item, BranchPut, PendingChange, RunWrite, Seen, StartWrite,
};
pub(crate) use txn_tables::Tables;
pub(crate) use upgrade::UpgradeWrite;
pub(crate) use wal::WriteAheadLog;
pub(crate) use writer::{BatchWrites, JournalWriter};

/// How large a journal's files are, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StorageSizes {
    /// The journal file (redb).
    pub journal_bytes: Option<u64>,
    /// Its write-ahead log.
    pub log_bytes: Option<u64>,
}

/// The open journal, shared by the engine's tasks and its commit thread.
///
/// The database sits behind a lock only so that shutdown can drop it (and release the
/// file) while other parts of the engine still hold the `Store`: reads and the commit
/// thread take the lock shared, for the length of one transaction.
pub(crate) struct Store {
    db: RwLock<Option<Database>>,
    /// The write side; locked by whoever writes (after `db`, if both are taken).
    writer: Mutex<JournalWriter>,
    /// Batches wait in the writer's open transaction: a read must publish them first.
    unpublished: AtomicBool,
    /// The writer failed: redb may lack acknowledged batches, so reads fail too until
    /// the journal is reopened (which replays them from the log).
    failed: AtomicBool,
    /// Whether the journal has a log (fixed at open; kept here so that submitting a
    /// change need not lock the writer to know whether to encode it).
    logged: bool,
    /// The journal's file (or backend) name, for errors.
    name: String,
    /// The journal's file and its log's, when it is on files: their sizes are metrics.
    files: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// The file whose lock keeps engines out while a read-only store has the journal
    /// (see `open::open_file_read_only`); released when the store closes.
    held: Mutex<Option<std::fs::File>>,
}

impl Store {
    pub(crate) fn new(
        db: Database,
        log: Option<WriteAheadLog>,
        checkpoint_bytes: u64,
        name: String,
    ) -> Self {
        let writer = JournalWriter::new(log, checkpoint_bytes, name.clone());
        Store {
            db: RwLock::new(Some(db)),
            logged: writer.is_logged(),
            writer: Mutex::new(writer),
            unpublished: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            name,
            files: None,
            held: Mutex::new(None),
        }
    }

    /// Keeps `file` (locked) until the store closes.
    pub(crate) fn holding(self, file: Option<std::fs::File>) -> Self {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = file;
        self
    }

    /// Records the paths of the journal's file and of its log (see [`StorageSizes`]).
    pub(crate) fn with_files(
        mut self,
        journal: std::path::PathBuf,
        log: std::path::PathBuf,
    ) -> Self {
        self.files = Some((journal, log));
        self
    }

    fn lock_writer(&self) -> MutexGuard<'_, JournalWriter> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mirrors the writer's state for readers (called with the writer locked, before
    /// its requesters are answered).
    fn mirror(&self, writer: &JournalWriter) {
        self.unpublished
            .store(writer.has_unpublished(), Ordering::Release);
        self.failed.store(writer.is_failed(), Ordering::Release);
    }

    /// Runs `f` in a read transaction.
    ///
    /// A damaged page can make redb panic (debug builds) instead of returning an error;
    /// that is reported as a corrupt journal rather than taking the caller down. A value
    /// that fails its checksum (see `tables::Sealed`) is reported likewise, and what `f`
    /// computed from it is dropped.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, FlowError>,
    ) -> Result<T, FlowError> {
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        let db = guard
            .as_ref()
            .ok_or_else(|| FlowError::stopped("the journal is closed"))?;
        // A read sees every batch whose writer was answered: publish those waiting.
        if self.unpublished.load(Ordering::Acquire) {
            let mut writer = self.lock_writer();
            let published = writer.publish();
            self.mirror(&writer);
            published?;
        }
        if self.failed.load(Ordering::Acquire) {
            if let Some(failure) = self.lock_writer().failure() {
                return Err(failure);
            }
        }
        tables::take_damage();
        let read = guard::quietly(AssertUnwindSafe(|| f(&db.begin_read()?)));
        let read = read.unwrap_or_else(|panic| {
            Err(FlowError::Corrupt {
                path: self.name.clone(),
                message: format!("reading it failed: {}", panic_message(&*panic)),
            })
        });
        if let Some(table) = tables::take_damage() {
            return Err(tables::damaged_value(&self.name, table));
        }
        read.map_err(|e| e.naming_file(&self.name))
    }

    /// Runs `f` with the database and the writer; `None` once the journal is closed.
    pub(super) fn with_writer<T>(
        &self,
        f: impl FnOnce(&Database, &mut JournalWriter) -> T,
    ) -> Option<T> {
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        let db = guard.as_ref()?;
        let mut writer = self.lock_writer();
        let result = f(db, &mut writer);
        self.mirror(&writer);
        Some(result)
    }
}
