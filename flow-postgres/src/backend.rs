//! The journal's two files (redb's database and its write-ahead log) kept in PostgreSQL.
//!
//! Each file is held whole in memory and stored as fixed-size blocks in `flow_blocks`
//! (its length in `flow_files`). Writes change the memory and mark blocks dirty;
//! `sync_data`, the only point at which redb and the log rely on durability, writes the
//! dirty blocks and the length in one PostgreSQL transaction, which also renews (and so
//! checks) the lease: a commit is durable when PostgreSQL says so, and refused if this
//! process no longer holds the lease. After a crash, opening sees each file as of its
//! last sync, which is all redb's and the log's recovery assume of a disk.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flow_runtime::FlowError;
use postgres::types::Type;
use postgres::Client;

use crate::conn::Conn;
use crate::error::{query_error, query_message, retryable};
use crate::lease::Lease;

/// Bytes per stored block.
pub(crate) const BLOCK: u64 = 8192;

/// What both files share: the connection and the lease. Dropped (with both files, when
/// the engine shuts down or its open fails), it gives the lease up.
pub(crate) struct Shared {
    pub conn: Conn,
    pub lease: Arc<Lease>,
    /// Set once the lease was given up: the files write nothing more.
    pub released: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Gives the lease up (once), so that another process takes the shard over at
    /// once; call it only after the engine on these files has shut down.
    pub(crate) fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            let lease = self.lease.clone();
            let _ = self.conn.call(move |client| lease.release(client));
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.release();
        self.conn.close();
    }
}

/// One file of the journal, as a redb storage backend.
pub(crate) struct PgFile {
    file: i16,
    state: Mutex<FileState>,
    shared: Arc<Shared>,
}

struct FileState {
    bytes: Vec<u8>,
    /// Blocks written since the last sync.
    dirty: BTreeSet<u64>,
    /// The length as last synced.
    stored_len: u64,
    /// The least length since the last sync: blocks from it on may be stale in the
    /// database and are deleted (then rewritten if dirty) at the next sync.
    least_len: u64,
}

impl fmt::Debug for PgFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgFile({})", self.file)
    }
}

impl PgFile {
    /// Loads file `file` whole from the database.
    pub(crate) fn load(file: i16, shared: Arc<Shared>) -> Result<PgFile, FlowError> {
        let bytes = shared.conn.call(move |client| load(client, file))??;
        let len = bytes.len() as u64;
        Ok(PgFile {
            file,
            state: Mutex::new(FileState {
                bytes,
                dirty: BTreeSet::new(),
                stored_len: len,
                least_len: len,
            }),
            shared,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FileState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn load(client: &mut Client, file: i16) -> Result<Vec<u8>, FlowError> {
    let doing = "reading the journal";
    let mut txn = client.transaction().map_err(|e| query_error(doing, &e))?;
    let len: i64 = txn
        .query_opt("SELECT len FROM flow_files WHERE file = $1", &[&file])
        .map_err(|e| query_error(doing, &e))?
        .map_or(0, |row| row.get(0));
    let mut bytes = vec![0u8; len as usize];
    let rows = txn
        .query(
            "SELECT idx, data FROM flow_blocks WHERE file = $1 ORDER BY idx",
            &[&file],
        )
        .map_err(|e| query_error(doing, &e))?;
    for row in rows {
        let idx: i64 = row.get(0);
        let data: &[u8] = row.get(1);
        let start = idx as u64 * BLOCK;
        let end = start + data.len() as u64;
        if data.len() as u64 > BLOCK || end > len as u64 {
            return Err(crate::error::storage(format!(
                "the journal's block {idx} of file {file} does not fit its length ({len} \
                 bytes): the database's flow tables were changed by something other than \
                 flow; restore them from a backup"
            )));
        }
        bytes[start as usize..end as usize].copy_from_slice(data);
    }
    txn.commit().map_err(|e| query_error(doing, &e))?;
    Ok(bytes)
}

fn eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "read past the end of the journal's file",
    )
}

impl redb::StorageBackend for PgFile {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.state().bytes.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let state = self.state();
        let end = offset.checked_add(out.len() as u64).ok_or_else(eof)?;
        if end > state.bytes.len() as u64 {
            return Err(eof());
        }
        out.copy_from_slice(&state.bytes[offset as usize..end as usize]);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut state = self.state();
        let old = state.bytes.len() as u64;
        state.bytes.resize(len as usize, 0);
        if len < old {
            state.least_len = state.least_len.min(len);
            if !len.is_multiple_of(BLOCK) {
                state.dirty.insert(len / BLOCK);
            }
            state.dirty.retain(|&block| block * BLOCK < len);
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        if data.is_empty() {
            return Ok(());
        }
        let mut state = self.state();
        let end = offset as usize + data.len();
        if end > state.bytes.len() {
            state.bytes.resize(end, 0);
        }
        state.bytes[offset as usize..end].copy_from_slice(data);
        for block in offset / BLOCK..=(end as u64 - 1) / BLOCK {
            state.dirty.insert(block);
        }
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let lease = self.shared.lease.clone();
        if lease.lost.load(Ordering::Acquire) || self.shared.released.load(Ordering::Acquire) {
            return Err(io::Error::other(lease.lost_error()));
        }
        let mut state = self.state();
        let len = state.bytes.len() as u64;
        if state.dirty.is_empty() && len == state.stored_len && state.least_len == len {
            return Ok(());
        }
        let mut idxs = Vec::with_capacity(state.dirty.len());
        let mut blocks = Vec::with_capacity(state.dirty.len());
        for &block in &state.dirty {
            let start = block * BLOCK;
            let end = (start + BLOCK).min(len);
            idxs.push(block as i64);
            blocks.push(state.bytes[start as usize..end as usize].to_vec());
        }
        let sync = Arc::new(Sync {
            file: self.file,
            len: len as i64,
            first_stale: state.least_len.div_ceil(BLOCK) as i64,
            truncate: state.least_len < state.stored_len,
            grows: len != state.stored_len,
            idxs,
            blocks,
            lease,
        });
        let began = std::time::Instant::now();
        // The same sync again writes the same rows: after a lost connection (whose
        // commit may or may not have happened) it is retried until it succeeds or the
        // lease's length has passed, so a server back within that is ridden out.
        let mut pause = Duration::from_millis(20);
        let mut attempts = 0u32;
        let synced = loop {
            attempts += 1;
            let attempt = sync.clone();
            let outcome = self
                .shared
                .conn
                .call(move |client| attempt.run(client))
                .unwrap_or_else(|e| Err(SyncError::Fatal(e.to_string())));
            match outcome {
                // At least one retry, even past the lease's length (this process may
                // have been paused): it learns then whether it still holds the lease.
                Err(SyncError::Retry(message))
                    if attempts == 1 || began.elapsed() < sync.lease.ttl =>
                {
                    tracing::warn!(
                        error = %message,
                        "PostgreSQL is unreachable; retrying the journal's commit"
                    );
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(SyncError::Retry(message) | SyncError::Fatal(message)) => break Err(message),
                Ok(()) => break Ok(()),
            }
        };
        tracing::trace!(
            file = sync.file,
            blocks = sync.idxs.len(),
            elapsed = ?began.elapsed(),
            "journal sync"
        );
        match synced {
            Ok(()) => {
                state.dirty.clear();
                state.stored_len = len;
                state.least_len = len;
                Ok(())
            }
            // The commit's fate is unknown (or it was refused): the blocks stay dirty.
            Err(message) => Err(io::Error::other(message)),
        }
    }
}

/// One sync's writes: dirty blocks, the length, stale blocks to delete.
struct Sync {
    file: i16,
    len: i64,
    first_stale: i64,
    truncate: bool,
    grows: bool,
    idxs: Vec<i64>,
    blocks: Vec<Vec<u8>>,
    lease: Arc<Lease>,
}

/// Why a sync failed.
enum SyncError {
    /// The connection was lost or the server is restarting: the commit's fate is
    /// unknown, and running the sync again is safe.
    Retry(String),
    /// Refused (the lease is gone) or failed for good.
    Fatal(String),
}

/// A sync's writes as one statement (one round trip, its own transaction): the lease's
/// renewal, and each write only if the renewal matched (`EXISTS (SELECT 1 FROM lease)`).
/// Rewritten blocks are left out of the deletion of stale ones, so that no row is
/// changed twice by one statement.
const SYNC: &str = "WITH lease AS ( \
         UPDATE flow_shards \
         SET expires_at = clock_timestamp() + ($3::BIGINT * INTERVAL '1 millisecond') \
         WHERE shard = $11 AND owner = $1 AND fence = $2 AND expires_at > clock_timestamp() \
         RETURNING 1 \
     ), stale AS ( \
         DELETE FROM flow_blocks \
         WHERE $8 AND file = $4 AND idx >= $5 AND idx <> ALL($6) \
             AND EXISTS (SELECT 1 FROM lease) \
     ), written AS ( \
         INSERT INTO flow_blocks (file, idx, data) \
         SELECT $4, u.i, u.d FROM unnest($6::BIGINT[], $7::BYTEA[]) AS u(i, d) \
         WHERE EXISTS (SELECT 1 FROM lease) \
         ON CONFLICT (file, idx) DO UPDATE SET data = excluded.data \
     ), length AS ( \
         INSERT INTO flow_files (file, len) \
         SELECT $4, $9 WHERE $10 AND EXISTS (SELECT 1 FROM lease) \
         ON CONFLICT (file) DO UPDATE SET len = excluded.len \
     ) \
     SELECT count(*) FROM lease";

impl Sync {
    /// Writes the sync, refused unless this process still holds the lease.
    fn run(&self, client: &mut Client) -> Result<(), SyncError> {
        let lease = &self.lease;
        let ttl_ms = lease.ttl.as_millis() as i64;
        let write_len = self.grows || self.truncate;
        let renewed: i64 = client
            .query_typed_one(
                SYNC,
                &[
                    (&lease.owner, Type::TEXT),
                    (&lease.fence, Type::INT8),
                    (&ttl_ms, Type::INT8),
                    (&self.file, Type::INT2),
                    (&self.first_stale, Type::INT8),
                    (&self.idxs, Type::INT8_ARRAY),
                    (&self.blocks, Type::BYTEA_ARRAY),
                    (&self.truncate, Type::BOOL),
                    (&self.len, Type::INT8),
                    (&write_len, Type::BOOL),
                    (&lease.shard, Type::INT4),
                ],
            )
            .map_err(|e| {
                let message = query_message("the journal's commit", &e);
                if retryable(&e) {
                    SyncError::Retry(message)
                } else {
                    SyncError::Fatal(message)
                }
            })?
            .get(0);
        if renewed != 1 {
            lease.lost.store(true, Ordering::Release);
            return Err(SyncError::Fatal(lease.lost_error()));
        }
        Ok(())
    }
}
