//! Keeping redb and the write-ahead log in step: replaying the log when a journal is
//! opened, and checkpoints.
//!
//! Each logged batch's transaction also records its log position in the meta table
//! (`LOG_POSITION`), so whatever redb has made durable carries the position of the
//! last batch it holds. Replay applies the records past that position: each batch takes
//! effect exactly once, whenever the process died. A checkpoint is a durable redb
//! commit (making every earlier non-durable one durable too), after which the log
//! starts a new epoch: its old records are all at or before the recorded position.

use redb::{Database, Durability, ReadableDatabase, StorageBackend, WriteTransaction};

use super::change::LoggedBatch;
use super::tables::{JOURNAL_ID, LOG_POSITION, META};
use super::txn_tables::Tables;
use super::wal::{LogPosition, WriteAheadLog};
use super::writer::begin_unlogged;
use crate::error::FlowError;

/// Opens the journal's log on `file`, replays into `db` what `db` lacks, checkpoints,
/// and returns the log ready for appending. `names` name the journal and the log in
/// errors.
pub(crate) fn attach_log(
    db: &Database,
    file: Box<dyn StorageBackend>,
    names: (&str, &str),
) -> Result<WriteAheadLog, FlowError> {
    let journal = journal_id(db)?;
    let (mut log, recovered) = WriteAheadLog::open(file, journal).map_err(log_error)?;
    let position = stored_position(db)?;
    let mismatch = |reason: &str| FlowError::LogMismatch {
        path: names.0.to_string(),
        log: names.1.to_string(),
        reason: reason.to_string(),
    };
    if !recovered.records.is_empty() {
        if recovered.journal != journal {
            return Err(mismatch("the log belongs to another journal"));
        }
        if position < recovered.base {
            return Err(mismatch(
                "the journal file is older than the log expects (restored from a backup?)",
            ));
        }
    }
    let missing: Vec<_> = recovered
        .records
        .iter()
        .filter(|(seq, _)| (recovered.epoch, *seq) > position)
        .collect();
    if let Some((last, _)) = missing.last() {
        let txn = begin_unlogged(db)?;
        {
            let mut tables = Tables::open(&txn)?;
            for (_, payload) in &missing {
                let (now, changes) = LoggedBatch::decode(payload)?;
                for change in &changes {
                    // A change refused the first time (a conflict, an unknown run) wrote
                    // nothing then and is refused, writing nothing, again.
                    if let Err(e @ (FlowError::Storage { .. } | FlowError::Corrupt { .. })) =
                        change.apply(&mut tables, now)
                    {
                        return Err(e);
                    }
                }
            }
        }
        let replayed = (recovered.epoch, *last);
        commit_durably_at(txn, replayed)?;
        tracing::info!(
            batches = missing.len(),
            "replayed the journal's write-ahead log"
        );
        log.start_over(replayed).map_err(log_error)?;
    } else {
        log.start_over(position).map_err(log_error)?;
    }
    Ok(log)
}

/// Makes everything applied so far durable in redb, with the batches of `open` if
/// given, and starts the log over.
pub(crate) fn checkpoint(
    db: &Database,
    open: Option<WriteTransaction>,
    log: &mut WriteAheadLog,
) -> Result<(), FlowError> {
    let position = log.position();
    let txn = match open {
        Some(txn) => txn,
        None => db.begin_write()?,
    };
    commit_durably_at(txn, position)?;
    log.start_over(position).map_err(log_error)
}

/// Commits `txn` durably, recording that the journal holds the log up to `position`
/// (with every earlier non-durable commit).
fn commit_durably_at(mut txn: WriteTransaction, position: LogPosition) -> Result<(), FlowError> {
    txn.set_durability(Durability::Immediate)
        .map_err(|e| FlowError::storage(format!("could not checkpoint: {e}")))?;
    Tables::open(&txn)?.set_log_position(position)?;
    txn.commit()?;
    Ok(())
}

/// The journal's ID (given to it when it first got a log): what tells its log from
/// another journal's.
fn journal_id(db: &Database) -> Result<u64, FlowError> {
    let stored = {
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        let id = meta.get(JOURNAL_ID)?;
        id.and_then(|v| v.value().try_into().ok().map(u64::from_le_bytes))
    };
    if let Some(id) = stored {
        return Ok(id);
    }
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| FlowError::storage(format!("the OS random source failed: {e}")))?;
    let txn = db.begin_write()?;
    txn.open_table(META)?.insert(JOURNAL_ID, bytes.as_slice())?;
    txn.commit()?;
    Ok(u64::from_le_bytes(bytes))
}

/// The log position the journal holds ((0, 0) if it never had a log).
fn stored_position(db: &Database) -> Result<LogPosition, FlowError> {
    let txn = db.begin_read()?;
    let meta = txn.open_table(META)?;
    let Some(bytes) = meta.get(LOG_POSITION)? else {
        return Ok((0, 0));
    };
    let bytes = bytes.value();
    let word = |at: usize| bytes.get(at..at + 8).and_then(|b| b.try_into().ok());
    match (word(0), word(8)) {
        (Some(epoch), Some(seq)) => Ok((u64::from_le_bytes(epoch), u64::from_le_bytes(seq))),
        _ => Err(FlowError::Corrupt {
            path: "journal".into(),
            message: "its log position record is damaged".into(),
        }),
    }
}

/// An I/O error of the log, as the engine reports it.
pub(crate) fn log_error(e: std::io::Error) -> FlowError {
    FlowError::Storage {
        message: format!("the journal's write-ahead log failed: {e}"),
    }
}
