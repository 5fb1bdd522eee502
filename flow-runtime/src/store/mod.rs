//! The redb journal: opening and validating the file, reading runs, and the writes a
//! transition makes (applied by the commit thread, see `engine::commit`).

mod change;
mod open;
mod read;
pub(crate) mod records;
mod recovery;
mod tables;
mod wal;
mod write;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, RwLock};

use redb::{Database, ReadTransaction, ReadableDatabase};

use recovery::checkpoint;
pub(crate) use recovery::log_error;
pub(crate) use wal::{LogPosition, WriteAheadLog};

use crate::error::{panic_message, FlowError};

pub(crate) use open::{open_backend, open_file, OpenOptions};
pub(crate) use change::{Applied, Change, LoggedBatch};
pub(crate) use read::{Snapshot, TimerStart};
pub(crate) use write::{PendingChange, RunWrite, Seen, StartOutcome, StartWrite, Tables};

/// The open journal, shared by the engine's tasks and its commit thread.
///
/// The database sits behind a lock only so that shutdown can drop it (and release the
/// file) while other parts of the engine still hold the `Store`: reads and the commit
/// thread take the lock shared, for the length of one transaction.
pub(crate) struct Store {
    db: RwLock<Option<Database>>,
    /// The write-ahead log; locked by whoever writes.
    log: Mutex<Log>,
    /// Log size past which the writer checkpoints (see `store::recovery`): bounds the
    /// changes redb holds in memory only and the replay after a crash.
    checkpoint_bytes: u64,
}

/// The journal's write-ahead log, if it has one (see `store::wal`).
pub(crate) enum Log {
    /// No log (in-memory journals, custom backends without a log backend): every
    /// commit is a durable redb commit.
    Absent,
    Open(WriteAheadLog),
    /// A write failed after the log took a batch that redb may lack: nothing more may be
    /// written until the journal is reopened (which replays the log).
    Failed,
}


impl Store {
    pub(crate) fn new(db: Database, log: Option<WriteAheadLog>, checkpoint_bytes: u64) -> Self {
        Store {
            db: RwLock::new(Some(db)),
            log: Mutex::new(log.map_or(Log::Absent, Log::Open)),
            checkpoint_bytes,
        }
    }

    /// Whether commits go through a write-ahead log.
    pub(crate) fn is_logged(&self) -> bool {
        !matches!(*self.lock_log(), Log::Absent)
    }

    fn lock_log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` in a read transaction.
    ///
    /// A damaged page can make redb panic (debug builds) instead of returning an error;
    /// that is reported as a corrupt journal rather than taking the caller down.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, FlowError>,
    ) -> Result<T, FlowError> {
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        let db = guard
            .as_ref()
            .ok_or_else(|| FlowError::stopped("the journal is closed"))?;
        catch_unwind(AssertUnwindSafe(|| f(&db.begin_read()?))).unwrap_or_else(|panic| {
            Err(FlowError::Corrupt {
                path: "journal".into(),
                message: format!("reading it failed: {}", panic_message(&*panic)),
            })
        })
    }

    /// Runs `f` with the database and the log (for the writer's transactions); `None`
    /// once the journal is closed.
    pub(crate) fn with_writer<T>(&self, f: impl FnOnce(&Database, &mut Log) -> T) -> Option<T> {
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        let db = guard.as_ref()?;
        Some(f(db, &mut self.lock_log()))
    }

    /// Checkpoints if the log has grown enough; a failure leaves the log `Failed`.
    pub(crate) fn checkpoint_if_due(&self) {
        self.with_writer(|db, log| {
            let Log::Open(wal) = log else { return };
            if wal.bytes() >= self.checkpoint_bytes {
                if let Err(e) = checkpoint(db, wal) {
                    tracing::error!(error = %e, "journal checkpoint failed");
                    *log = Log::Failed;
                }
            }
        });
    }

    /// Checkpoints and empties the log (so that the journal file alone is the whole
    /// journal), then drops the database, releasing the file; later reads fail with
    /// `EngineStopped`.
    pub(crate) fn close(&self) {
        let db = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        let mut log = self.lock_log();
        if let (Some(db), Log::Open(wal)) = (&db, &mut *log) {
            let closed = checkpoint(db, wal).and_then(|()| wal.empty().map_err(log_error));
            if let Err(e) = closed {
                tracing::error!(error = %e, "could not checkpoint the journal at shutdown");
            }
        }
        *log = Log::Absent;
        drop(log);
        drop(db);
    }
}
