//! Indexes of the runs by stored status and by workflow, so that a listing filtered by
//! either reads the matching runs only, not every run of the journal (the web console
//! over a million runs).
//!
//! `RUNS_BY_STATUS` holds (status code, run ID) and `RUNS_BY_WORKFLOW` (workflow, run ID)
//! for every run in `RUNS`. They are kept by the two places that write `RUNS`:
//! `Tables::put_header` (every header write: a new run adds both entries; a status change
//! moves its status entry) and `Tables::delete_run` (both go with the run). A journal
//! written before the indexes existed gets them built on its first writable open
//! ([`migrate_if_needed`]), before its log is replayed, which then keeps them as any
//! write does. That open also moves the journal to format 4, so that a build without the
//! indexes refuses it rather than leave them stale. Until then (a read-only open of such a journal) the marker [`INDEX_BUILT`] is
//! missing and readers scan `RUNS` as before.

use std::ops::Bound;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};

use super::read::ListedRun;
use super::records::{decode_run_header, RunRecord, StoredStatus};
use super::tables::{FORMAT_VERSION, META, OUTPUTS, RUNS};
use super::txn_tables::Tables;
use super::Store;
use crate::error::FlowError;

/// (status code, run ID): every run, by its stored status ([`status_code`]).
pub(crate) const RUNS_BY_STATUS: TableDefinition<(u8, &str), ()> =
    TableDefinition::new("flow_runs_by_status");
/// (workflow name, run ID): every run, by its workflow.
pub(crate) const RUNS_BY_WORKFLOW: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("flow_runs_by_workflow");
/// The meta key present once both indexes hold every run.
pub(crate) const INDEX_BUILT: &str = "run_indexes_built";

/// A stored status without its details, as the status index keys it.
pub(crate) fn status_code(status: &StoredStatus) -> u8 {
    match status {
        StoredStatus::Running => 0,
        StoredStatus::Waiting => 1,
        StoredStatus::Completed => 2,
        StoredStatus::Failed(_) => 3,
        StoredStatus::Faulted(_) => 4,
        StoredStatus::Cancelled => 5,
    }
}

impl Tables<'_> {
    /// Keeps the indexes for a header write of `run_id`: `old` is the header it replaces.
    pub(super) fn index_header(
        &mut self,
        run_id: &str,
        old: Option<&RunRecord>,
        new: &RunRecord,
    ) -> Result<(), FlowError> {
        let code = status_code(&new.status);
        match old {
            None => {
                self.runs_by_workflow
                    .write()?
                    .insert((new.workflow.as_str(), run_id), ())?;
                self.runs_by_status.write()?.insert((code, run_id), ())?;
            }
            Some(old) => {
                let old_code = status_code(&old.status);
                if old_code != code {
                    let table = self.runs_by_status.write()?;
                    table.remove((old_code, run_id))?;
                    table.insert((code, run_id), ())?;
                }
            }
        }
        Ok(())
    }

    /// Drops the index entries of deleted run `run_id`, whose header was `old`.
    pub(super) fn unindex(&mut self, run_id: &str, old: &RunRecord) -> Result<(), FlowError> {
        self.runs_by_status
            .write()?
            .remove((status_code(&old.status), run_id))?;
        self.runs_by_workflow
            .write()?
            .remove((old.workflow.as_str(), run_id))?;
        Ok(())
    }
}

/// Migrates a format-3 journal (written before the indexes existed, or by a build that
/// did not keep them) to the current format: both indexes rebuilt from `RUNS`, the
/// marker and the format version written in one transaction. A no-op on a journal of
/// the current format.
pub(super) fn migrate_if_needed(db: &Database) -> Result<(), FlowError> {
    {
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        let format = meta
            .get("format")?
            .and_then(|v| <[u8; 4]>::try_from(v.value()).ok())
            .map(u32::from_le_bytes);
        if format == Some(FORMAT_VERSION) && meta.get(INDEX_BUILT)?.is_some() {
            return Ok(());
        }
    }
    let txn = db.begin_write()?;
    {
        // Entries left by an earlier build of the indexes may be stale: start empty.
        txn.delete_table(RUNS_BY_STATUS)?;
        txn.delete_table(RUNS_BY_WORKFLOW)?;
        let runs = txn.open_table(RUNS)?;
        let mut by_status = txn.open_table(RUNS_BY_STATUS)?;
        let mut by_workflow = txn.open_table(RUNS_BY_WORKFLOW)?;
        for entry in runs.iter()? {
            let (key, value) = entry?;
            let header = decode_run_header(value.value())?;
            by_status.insert((status_code(&header.status), key.value()), ())?;
            by_workflow.insert((header.workflow.as_str(), key.value()), ())?;
        }
        let mut meta = txn.open_table(META)?;
        meta.insert(INDEX_BUILT, [1u8].as_slice())?;
        meta.insert("format", FORMAT_VERSION.to_le_bytes().as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

/// Which index a listing reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IndexKey<'a> {
    /// Runs whose stored status has this [`status_code`].
    Status(u8),
    /// Runs of this workflow.
    Workflow(&'a str),
}

/// Up to `limit` runs of index `key` after run ID `after`, in run ID order, as
/// `runs_after` reads them; `None` when the journal's indexes are not built yet.
pub(super) fn runs_indexed(
    store: &Store,
    key: IndexKey<'_>,
    after: Option<&str>,
    limit: usize,
) -> Result<Option<Vec<ListedRun>>, FlowError> {
    store.read(|txn| {
        if txn.open_table(META)?.get(INDEX_BUILT)?.is_none() {
            return Ok(None);
        }
        let ids = match key {
            IndexKey::Status(code) => {
                let table = txn.open_table(RUNS_BY_STATUS)?;
                let lower = match after {
                    Some(id) => Bound::Excluded((code, id)),
                    None => Bound::Included((code, "")),
                };
                let mut ids = Vec::new();
                for entry in table.range::<(u8, &str)>((lower, Bound::Unbounded))? {
                    let (k, _) = entry?;
                    let (c, id) = k.value();
                    if c != code || ids.len() >= limit {
                        break;
                    }
                    ids.push(id.to_string());
                }
                ids
            }
            IndexKey::Workflow(workflow) => {
                let table = txn.open_table(RUNS_BY_WORKFLOW)?;
                let lower = match after {
                    Some(id) => Bound::Excluded((workflow, id)),
                    None => Bound::Included((workflow, "")),
                };
                let mut ids = Vec::new();
                for entry in table.range::<(&str, &str)>((lower, Bound::Unbounded))? {
                    let (k, _) = entry?;
                    let (w, id) = k.value();
                    if w != workflow || ids.len() >= limit {
                        break;
                    }
                    ids.push(id.to_string());
                }
                ids
            }
        };
        listed(txn, ids).map(Some)
    })
}

/// The listing rows of `ids`: header, and output of a completed run.
fn listed(txn: &ReadTransaction, ids: Vec<String>) -> Result<Vec<ListedRun>, FlowError> {
    let runs = txn.open_table(RUNS)?;
    let outputs = txn.open_table(OUTPUTS)?;
    let mut out = Vec::with_capacity(ids.len());
    for run_id in ids {
        let Some(value) = runs.get(run_id.as_str())? else {
            return Err(FlowError::Corrupt {
                path: crate::error::UNNAMED_JOURNAL.to_string(),
                message: format!(
                    "the run index names run `{run_id}`, which the journal does not hold"
                ),
            });
        };
        let header = decode_run_header(value.value())?;
        let output = match header.status {
            StoredStatus::Completed => outputs.get(run_id.as_str())?.map(|v| v.value().to_vec()),
            _ => None,
        };
        out.push((run_id, header, output));
    }
    Ok(out)
}
