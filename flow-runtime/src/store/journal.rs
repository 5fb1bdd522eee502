//! The journal interface: everything the engine asks of durable storage, in one trait.
//!
//! The engine reads runs through [`Journal`] and changes them only by handing batches of
//! [`Change`](super::Change)s to [`Journal::write_batch`]; it never opens a table. This is
//! the interface a second store would implement: [`Store`], the redb file with its
//! write-ahead log, is the first (`flow-postgres` keeps that same store's bytes in
//! PostgreSQL, through redb's storage backends). What an implementation must guarantee:
//!
//! - a batch is durable when `write_batch` returns `Ok`, and every read after that sees it;
//! - a change is applied exactly as `Change::apply` describes (checks before writes: a
//!   change refused with a logical error writes nothing), and replaying a logged batch
//!   applies it again to the same result;
//! - reads see whole batches, never part of one.
//!
//! The values it speaks in (`RunRecord`, `PendingOp`, `BranchRecord`, ...) are the
//! storage schema of `store::records`; their encodings are the on-disk format.

use super::read::{self, HeaderAndOutput, ListedRun, Snapshot, StateAtStep, TimerScan, TimerStart};
use super::records::{BranchRecord, RunRecord};
use super::run_index::IndexKey;
use super::writer::BatchWrites;
use std::sync::atomic::Ordering;

use super::{StorageSizes, Store};
use crate::error::FlowError;
use crate::history::HistoryEvent;
use crate::op::OpRequest;

/// What the engine needs of a store; see the module documentation for the guarantees.
pub(crate) trait Journal: Send + Sync + 'static {
    // Reads: one run, for its driver.

    /// The run's header, if the run exists.
    fn header(&self, run_id: &str) -> Result<Option<RunRecord>, FlowError>;
    /// Everything a driver needs to decide the run's next move.
    fn snapshot(&self, run_id: &str) -> Result<Option<Snapshot>, FlowError>;
    /// Every stored local slot of the run (to rebuild its machine).
    fn slots(&self, run_id: &str) -> Result<Vec<(u32, Vec<u8>)>, FlowError>;
    /// The input of the run's current generation (its input until a continue-as-new).
    fn generation_input(&self, run_id: &str) -> Result<Option<Vec<u8>>, FlowError>;
    /// Up to `count` items of the map pending in `step`, from item `from`.
    fn map_items(
        &self,
        run_id: &str,
        step: u64,
        from: u32,
        count: u32,
    ) -> Result<Vec<(u32, OpRequest)>, FlowError>;
    /// Every item record of the map in `step`, by item.
    fn map_records(&self, run_id: &str, step: u64) -> Result<Vec<(u32, BranchRecord)>, FlowError>;
    /// The oldest signal called `name` in the run's inbox, not in `skip`: its seq and payload.
    fn oldest_signal(
        &self,
        run_id: &str,
        name: &str,
        skip: &[u64],
    ) -> Result<Option<(u64, Vec<u8>)>, FlowError>;

    // Reads: for callers and for recovery.

    /// The name of the type the step of callback `token` awaits, if the token is unused
    /// and recorded one.
    fn token_type(&self, token: &str) -> Result<Option<String>, FlowError>;

    /// The run's header and, once it completed, its output.
    fn header_and_output(&self, run_id: &str) -> Result<Option<HeaderAndOutput>, FlowError>;
    /// Up to `limit` runs after run ID `after` (from the first without one), in run ID
    /// order: ID, header, and the output of a completed run.
    fn runs_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<ListedRun>, FlowError>;
    /// Up to `limit` runs of the index `key` (a stored status, or a workflow) after run
    /// ID `after`, in run ID order, as [`runs_after`](Journal::runs_after) reads them;
    /// `Ok(None)` when the store keeps no such index, and a listing reads every run
    /// instead (the default).
    fn runs_indexed(
        &self,
        key: IndexKey<'_>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<ListedRun>>, FlowError> {
        let _ = (key, after, limit);
        Ok(None)
    }
    /// The run's history, oldest first.
    fn history(&self, run_id: &str) -> Result<Vec<HistoryEvent>, FlowError>;
    /// Runs with work that needs no deadline (their drivers start at open).
    fn active_runs(&self) -> Result<Vec<String>, FlowError>;
    /// The run's program counter and slots as the transition that scheduled `step` left
    /// them, if it was recorded.
    fn step_state(&self, run_id: &str, step: u64) -> Result<Option<StateAtStep>, FlowError>;
    /// [`step_state`](Journal::step_state) of each step in `steps` that has one, in step
    /// order, read together (the default asks for each step on its own).
    fn step_states(
        &self,
        run_id: &str,
        steps: std::ops::Range<u64>,
    ) -> Result<Vec<(u64, StateAtStep)>, FlowError> {
        let mut out = Vec::new();
        for step in steps {
            if let Some(state) = self.step_state(run_id, step)? {
                out.push((step, state));
            }
        }
        Ok(out)
    }
    /// The retention settings the journal holds, as `RetentionSettings::rows`.
    fn retention_rows(&self) -> Result<Vec<(String, u64)>, FlowError>;
    /// Up to `limit` runs whose expiry has passed at `now_ms`, and when the next expiry
    /// after them is due.
    fn due_expiries(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<(Vec<String>, Option<u64>), FlowError>;
    /// Up to `limit` timers due at `now_ms`, from `start`.
    fn scan_timers(
        &self,
        start: &TimerStart,
        now_ms: u64,
        limit: usize,
    ) -> Result<TimerScan, FlowError>;
    /// Whether a delivery was applied under request ID `request` (`Engine::deliver`).
    fn delivered(&self, request: &str) -> Result<bool, FlowError>;
    /// Every request ID deliveries were applied under, in order.
    fn deliveries(&self) -> Result<Vec<String>, FlowError>;
    /// The storage's sizes now, for metrics (unknown sizes are `None`).
    fn sizes(&self) -> StorageSizes;

    // Writes.

    /// Whether a commit is a log append (else a durable database commit); decides
    /// whether changes are encoded for the log before they are submitted.
    fn is_logged(&self) -> bool;
    /// Makes `batch` durable at time `now` (ms since the Unix epoch), applied in order;
    /// `None` once the journal is closed. After an error the batch's fate is unknown, as
    /// after any failed commit.
    fn write_batch<B: BatchWrites>(&self, now: u64, batch: &mut B)
        -> Option<Result<(), FlowError>>;
    /// Does maintenance the writes made due (a checkpoint of the log), off the path of
    /// any requester.
    fn checkpoint_if_due(&self);
    /// Does maintenance worth doing once no change has been written for a while (the
    /// redb store compacts its file, see `store::compact`); nothing by default.
    fn when_idle(&self) {}
    /// Makes everything durable in its final place and releases the journal; reads and
    /// writes fail afterwards.
    fn close(&self);
}

impl Journal for Store {
    fn header(&self, run_id: &str) -> Result<Option<RunRecord>, FlowError> {
        read::header(self, run_id)
    }
    fn snapshot(&self, run_id: &str) -> Result<Option<Snapshot>, FlowError> {
        read::snapshot(self, run_id)
    }
    fn slots(&self, run_id: &str) -> Result<Vec<(u32, Vec<u8>)>, FlowError> {
        read::slots(self, run_id)
    }
    fn generation_input(&self, run_id: &str) -> Result<Option<Vec<u8>>, FlowError> {
        read::generation_input(self, run_id)
    }
    fn map_items(
        &self,
        run_id: &str,
        step: u64,
        from: u32,
        count: u32,
    ) -> Result<Vec<(u32, OpRequest)>, FlowError> {
        read::map_items(self, run_id, step, from, count)
    }
    fn map_records(&self, run_id: &str, step: u64) -> Result<Vec<(u32, BranchRecord)>, FlowError> {
        read::map_records(self, run_id, step)
    }
    fn oldest_signal(
        &self,
        run_id: &str,
        name: &str,
        skip: &[u64],
    ) -> Result<Option<(u64, Vec<u8>)>, FlowError> {
        read::oldest_signal(self, run_id, name, skip)
    }
    fn token_type(&self, token: &str) -> Result<Option<String>, FlowError> {
        read::token_type(self, token)
    }
    fn header_and_output(&self, run_id: &str) -> Result<Option<HeaderAndOutput>, FlowError> {
        read::header_and_output(self, run_id)
    }
    fn runs_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<ListedRun>, FlowError> {
        read::runs_after(self, after, limit)
    }
    fn runs_indexed(
        &self,
        key: IndexKey<'_>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<ListedRun>>, FlowError> {
        super::run_index::runs_indexed(self, key, after, limit)
    }
    fn history(&self, run_id: &str) -> Result<Vec<HistoryEvent>, FlowError> {
        read::history(self, run_id)
    }
    fn active_runs(&self) -> Result<Vec<String>, FlowError> {
        read::active_runs(self)
    }
    fn step_state(&self, run_id: &str, step: u64) -> Result<Option<StateAtStep>, FlowError> {
        read::step_state(self, run_id, step)
    }
    fn step_states(
        &self,
        run_id: &str,
        steps: std::ops::Range<u64>,
    ) -> Result<Vec<(u64, StateAtStep)>, FlowError> {
        read::step_states(self, run_id, steps)
    }
    fn retention_rows(&self) -> Result<Vec<(String, u64)>, FlowError> {
        read::retention_rows(self)
    }
    fn due_expiries(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<(Vec<String>, Option<u64>), FlowError> {
        read::due_expiries(self, now_ms, limit)
    }
    fn scan_timers(
        &self,
        start: &TimerStart,
        now_ms: u64,
        limit: usize,
    ) -> Result<TimerScan, FlowError> {
        read::scan_timers(self, start, now_ms, limit)
    }
    fn delivered(&self, request: &str) -> Result<bool, FlowError> {
        super::deliveries::delivered(self, request)
    }
    fn deliveries(&self) -> Result<Vec<String>, FlowError> {
        super::deliveries::deliveries(self)
    }
    /// The sizes of the journal's file and of its log (metadata only); `None` for storage
    /// that is not on files, or a file that cannot be read.
    fn sizes(&self) -> StorageSizes {
        let size = |path: &std::path::Path| std::fs::metadata(path).ok().map(|m| m.len());
        match &self.files {
            Some((journal, log)) => StorageSizes {
                journal_bytes: size(journal),
                log_bytes: size(log),
            },
            None => StorageSizes::default(),
        }
    }
    fn is_logged(&self) -> bool {
        self.logged
    }
    fn write_batch<B: BatchWrites>(
        &self,
        now: u64,
        batch: &mut B,
    ) -> Option<Result<(), FlowError>> {
        self.with_writer(|db, writer| writer.write_batch(db, now, batch))
    }
    fn checkpoint_if_due(&self) {
        self.with_writer(|db, writer| writer.checkpoint_if_due(db));
    }
    fn when_idle(&self) {
        self.compact_if_sparse();
    }
    /// Checkpoints and empties the log (so that the journal file alone is the whole
    /// journal), then drops the database, releasing the file; later reads fail with
    /// `EngineStopped`.
    fn close(&self) {
        let db = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(db) = &db {
            self.lock_writer().close(db);
        }
        self.unpublished.store(false, Ordering::Release);
        drop(db);
        // A read-only store's lock on the journal goes with it.
        self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
