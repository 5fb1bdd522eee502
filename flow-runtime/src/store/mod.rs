//! The journal: a redb file and its write-ahead log. Opening and validating them
//! (`open`, `recovery`; redb's writes at open held back by `deferred` until the log is
//! accepted), reading runs (`read`), the changes the engine makes as data (`change`) and
//! as writes to redb's tables (`write`, whose values `tables` seals with a checksum),
//! the log itself (`wal`), and the writer that puts batches of changes through both
//! (`writer`, driven by the commit pipeline, see `engine::commit`). `guard` keeps redb's
//! panics on damaged pages off stderr; `fuzzing` serves the fuzz targets.

mod change;
mod deferred;
mod fuzzing;
mod guard;
mod open;
mod read;
pub(crate) mod records;
mod recovery;
mod tables;
mod wal;
mod write;
mod writer;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

use redb::{Database, ReadTransaction, ReadableDatabase};

use crate::error::{panic_message, FlowError};

pub(crate) use change::{Applied, Change, LoggedBatch};
pub(crate) use fuzzing::{read_log_for_fuzzing, unseal_for_fuzzing};
pub(crate) use open::{log_path, open_backend, open_file, OpenOptions};
pub(crate) use read::{Snapshot, TimerStart};
pub(crate) use wal::WriteAheadLog;
pub(crate) use write::{PendingChange, RunWrite, Seen, StartOutcome, StartWrite, Tables};
pub(crate) use writer::{BatchWrites, JournalWriter};

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
        }
    }

    /// Whether commits go through a write-ahead log.
    pub(crate) fn is_logged(&self) -> bool {
        self.logged
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
    pub(crate) fn with_writer<T>(
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

    /// Checkpoints if the log has grown enough.
    pub(crate) fn checkpoint_if_due(&self) {
        self.with_writer(|db, writer| writer.checkpoint_if_due(db));
    }

    /// Checkpoints and empties the log (so that the journal file alone is the whole
    /// journal), then drops the database, releasing the file; later reads fail with
    /// `EngineStopped`.
    pub(crate) fn close(&self) {
        let db = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(db) = &db {
            self.lock_writer().close(db);
        }
        self.unpublished.store(false, Ordering::Release);
        drop(db);
    }
}
