//! Giving a journal file's free pages back to the file system once the engine is idle.
//!
//! Deleted runs free their pages, and redb reuses them, but the file's length follows
//! the most pages ever in use at once, not the pages in use now. With the write-ahead
//! log, redb cannot reuse a page the last durable commit (checkpoint) still names until
//! the next checkpoint, nor one a reader still sees; so while runs go through, the
//! pages in use are the live rows plus up to a whole copy of the tree as it was at the
//! last checkpoint, and a burst (runs finishing faster than the retention service
//! deletes them, a reader held up on a busy machine) raises them further for a moment.
//! The file grows to that peak, and redb's allocator then spreads later pages over the
//! whole file, so it shrinks only when the upper half of its last region happens to
//! be free: a retention soak's file drifts up with its highest peak.
//!
//! When no change has been written for a while (`EngineBuilder::compact_when_idle`,
//! one second by default), the commit thread asks the store to compact: if free pages
//! are most of the file, the writer checkpoints and redb's `Database::compact` moves the
//! pages in use to the front and cuts the file. It holds the store's lock meanwhile
//! (readers wait; for a file of a few MiB, milliseconds). It changes where pages are,
//! never what the journal holds: the log position and its marker are those of the
//! checkpoint before it, and a crash during it leaves redb's last durable commit, which
//! holds the same rows.

use super::Store;

/// Free bytes below which a file is not worth compacting: sixteen pages.
const LEAST_FREE: u64 = 64 << 10;

/// Whether a journal file of `file_len` bytes with `used` bytes of pages in use is worth
/// compacting: its free pages are most of it, and more than a few.
pub(crate) fn worth_compacting(file_len: u64, used: u64) -> bool {
    let free = file_len.saturating_sub(used);
    free >= LEAST_FREE && free > file_len / 2
}

impl Store {
    /// Compacts the journal file if its free pages are most of it (file journals only;
    /// see the module docs). Called when the engine has been idle; returns whether it
    /// compacted. A failure is logged, and fails later writes as a failed checkpoint does.
    pub(crate) fn compact_if_sparse(&self) -> bool {
        let Some((path, _)) = &self.files else {
            return false;
        };
        let Ok(file_len) = std::fs::metadata(path).map(|m| m.len()) else {
            return false;
        };
        // The write lock: no read transaction is live while redb moves pages.
        let mut guard = self.db.write().unwrap_or_else(|e| e.into_inner());
        let Some(db) = guard.as_mut() else {
            return false;
        };
        let mut writer = self.lock_writer();
        let compacted = writer.compact_if_sparse(db, file_len);
        self.mirror(&writer);
        drop(writer);
        drop(guard);
        match compacted {
            Ok(done) => {
                if done {
                    let after = std::fs::metadata(path).map_or(0, |m| m.len());
                    tracing::debug!(before = file_len, after, "compacted the journal file");
                }
                done
            }
            Err(e) => {
                tracing::error!(error = %e, "could not compact the journal file");
                false
            }
        }
    }
}
