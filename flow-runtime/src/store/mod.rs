//! The redb journal: opening and validating the file, reading runs, and the writes a
//! transition makes (applied by the commit thread, see `engine::commit`).

mod open;
mod read;
pub(crate) mod records;
mod tables;
mod write;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::RwLock;

use redb::{Database, ReadTransaction, ReadableDatabase};

use crate::error::{panic_message, FlowError};

pub(crate) use open::{open_backend, open_file, OpenOptions};
pub(crate) use read::{Snapshot, TimerStart};
pub(crate) use write::{PendingChange, RunWrite, Seen, StartOutcome, StartWrite, Tables};

/// The open journal, shared by the engine's tasks and its commit thread.
///
/// The database sits behind a lock only so that shutdown can drop it (and release the
/// file) while other parts of the engine still hold the `Store`: reads and the commit
/// thread take the lock shared, for the length of one transaction.
pub(crate) struct Store {
    db: RwLock<Option<Database>>,
}

impl Store {
    pub(crate) fn new(db: Database) -> Self {
        Store {
            db: RwLock::new(Some(db)),
        }
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

    /// Runs `f` with the database (for the commit thread's write transactions).
    pub(crate) fn with_db<T>(&self, f: impl FnOnce(&Database) -> T) -> Option<T> {
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map(f)
    }

    /// Drops the database, releasing the file; later reads fail with `EngineStopped`.
    pub(crate) fn close(&self) {
        let db = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        drop(db);
    }
}
