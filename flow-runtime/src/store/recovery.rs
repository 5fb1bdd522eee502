//! Keeping redb and the write-ahead log in step: checking that a log goes with its
//! journal, replaying it when a journal is opened, and checkpoints.
//!
//! Each logged batch's transaction also records its log position in the meta table
//! (`LOG_POSITION`), so whatever redb has made durable carries the position of the
//! last batch it holds. Replay applies the records past that position: each batch takes
//! effect exactly once, whenever the process died. A checkpoint is a durable redb
//! commit (making every earlier non-durable one durable too), after which the log
//! starts a new epoch: its old records are all at or before the recorded position.
//!
//! # Knowing that a log is expected
//! A log's records are the only copy of what was acknowledged since the last
//! checkpoint, so losing the file (deleted, emptied, overwritten, cut short) must not
//! pass for "nothing happened since". The journal keeps a durable marker
//! ([`LOG_STATE`]) while its log is in use: the log's epoch at the last durable commit
//! and the length the file had then. It is written when an open has synced the log's
//! first header (so the marker never points at a log that is not on disk) and with
//! every checkpoint, and removed by the checkpoint of a clean shutdown, which then
//! empties the log: from there the journal file alone is the whole journal. While the
//! marker is there, a log that is missing, has no whole header, belongs to another
//! journal, is of an older epoch, or is shorter than it was is refused, as is one with
//! whole records behind a damaged one (see `store::wal`); a refused log is never
//! written to.

use std::panic::AssertUnwindSafe;

use redb::{Database, Durability, ReadableDatabase, WriteTransaction};

use super::change::LoggedBatch;
use super::guard::quietly;
use super::tables::{damaged_value, take_damage, JOURNAL_ID, LOG_POSITION, LOG_STATE, META};
use super::txn_tables::Tables;
use super::wal::{LogPosition, Recovered, WriteAheadLog, GROWTH};
use super::writer::begin_unlogged;
use crate::error::{panic_message, FlowError};

/// The journal's marker of a log in use (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LiveLog {
    /// The log's epoch when the marker was written; the log's can only be later.
    pub epoch: u64,
    /// The log file's length then; it only grows while the log is in use.
    pub min_len: u64,
}

impl LiveLog {
    const LEN: usize = 20;

    fn encode(&self) -> [u8; Self::LEN] {
        let mut bytes = [0u8; Self::LEN];
        bytes[..8].copy_from_slice(&self.epoch.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.min_len.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..16]);
        bytes[16..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; Self::LEN] = bytes.try_into().ok()?;
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let crc = u32::from_le_bytes(bytes[16..].try_into().unwrap());
        (crc == crc32fast::hash(&bytes[..16])).then(|| LiveLog {
            epoch: word(0),
            min_len: word(8),
        })
    }
}

/// What the journal file says about its log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JournalSide {
    /// The journal's ID, which its log's header repeats.
    pub id: u64,
    /// The log position the journal holds durably.
    pub position: LogPosition,
    /// Set while a log is in use (not after a clean shutdown).
    pub live: Option<LiveLog>,
}

/// Reads what the journal knows of its log. Gives the journal an ID if it has none yet
/// (a write: opening defers it until the log is found to go with the journal).
pub(crate) fn journal_side(db: &Database, name: &str) -> Result<JournalSide, FlowError> {
    let damaged = |what: &str| FlowError::Corrupt {
        path: name.to_string(),
        message: format!("its {what} record in `flow_meta` is damaged"),
    };
    let (id, position, live) = {
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        let id = match meta.get(JOURNAL_ID)? {
            Some(v) => Some(
                <[u8; 8]>::try_from(v.value())
                    .map(u64::from_le_bytes)
                    .map_err(|_| damaged("journal ID"))?,
            ),
            None => None,
        };
        let position = match meta.get(LOG_POSITION)? {
            Some(v) => decode_position(v.value()).ok_or_else(|| damaged("log position"))?,
            None => (0, 0),
        };
        let live = match meta.get(LOG_STATE)? {
            Some(v) => Some(LiveLog::decode(v.value()).ok_or_else(|| damaged("log state"))?),
            None => None,
        };
        (id, position, live)
    };
    let id = match id {
        Some(id) => id,
        None => new_journal_id(db)?,
    };
    Ok(JournalSide { id, position, live })
}

fn decode_position(bytes: &[u8]) -> Option<LogPosition> {
    let word = |at: usize| {
        bytes
            .get(at..at + 8)?
            .try_into()
            .ok()
            .map(u64::from_le_bytes)
    };
    (bytes.len() == 16).then_some(())?;
    Some((word(0)?, word(8)?))
}

/// Gives a journal its ID, when it first gets a log: what tells its log from another
/// journal's.
fn new_journal_id(db: &Database) -> Result<u64, FlowError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| FlowError::storage(format!("the OS random source failed: {e}")))?;
    let txn = db.begin_write()?;
    txn.open_table(META)?.insert(JOURNAL_ID, bytes.as_slice())?;
    txn.commit()?;
    Ok(u64::from_le_bytes(bytes))
}

/// Checks that the log (`None`: there is no log file) goes with the journal, before
/// anything is written to either. `names` name the journal and the log in errors.
pub(crate) fn check_log(
    side: &JournalSide,
    log: Option<&Recovered>,
    names: (&str, &str),
) -> Result<(), FlowError> {
    let mismatch = |reason: String| FlowError::LogMismatch {
        path: names.0.to_string(),
        log: names.1.to_string(),
        reason,
    };
    let damaged = |reason: String| FlowError::LogDamaged {
        path: names.0.to_string(),
        log: names.1.to_string(),
        reason,
    };
    if let Some(live) = side.live {
        let Some(log) = log else {
            return Err(damaged(
                "the log is missing, but the journal was not shut down cleanly and its \
                 log may hold acknowledged changes"
                    .into(),
            ));
        };
        let Some(header) = log.header else {
            return Err(damaged(format!(
                "the log has no whole header ({} bytes{}), but the journal was not shut \
                 down cleanly and its log may hold acknowledged changes",
                log.len,
                if log.len == 0 { ": emptied" } else { "" }
            )));
        };
        if header.journal != side.id {
            return Err(mismatch(
                "the log belongs to another journal, and this journal's own log is gone".into(),
            ));
        }
        if header.epoch < live.epoch {
            return Err(damaged(format!(
                "the log's header is of epoch {}, older than the epoch {} the journal last \
                 recorded (a damaged header, or an older copy of the log)",
                header.epoch, live.epoch
            )));
        }
        if log.len < live.min_len || log.len % GROWTH != 0 {
            return Err(damaged(format!(
                "the log is {} bytes long, but it was at least {} bytes and grows in whole \
                 steps of {GROWTH}: it was cut short",
                log.len, live.min_len
            )));
        }
    }
    if let Some((at, what)) = log.and_then(|log| log.damage.as_ref()) {
        if *at > side.position {
            return Err(damaged(format!(
                "{what}: records were lost in the middle of the log, not at its end"
            )));
        }
    }
    let Some(log) = log.filter(|log| !log.records.is_empty()) else {
        return Ok(());
    };
    let header = log.header.expect("records come with a header");
    if header.journal != side.id {
        return Err(mismatch("the log belongs to another journal".into()));
    }
    if side.position < header.base {
        return Err(mismatch(
            "the journal file is older than the log expects (restored from a backup?)".into(),
        ));
    }
    Ok(())
}

/// Replays into `db` what the checked log holds beyond the journal, starts the log over,
/// and marks it in use; returns it ready for appending. `replaced`: the log took the
/// place of a lost one, so the journal's marker must describe it afresh.
pub(crate) fn attach_log(
    db: &Database,
    name: &str,
    side: &JournalSide,
    mut log: WriteAheadLog,
    recovered: Recovered,
    replaced: bool,
) -> Result<WriteAheadLog, FlowError> {
    let epoch = recovered.epoch();
    let missing: Vec<_> = recovered
        .records
        .iter()
        .filter(|(seq, _)| (epoch, *seq) > side.position)
        .collect();
    let mut position = side.position;
    if let Some((last, _)) = missing.last() {
        let txn = begin_unlogged(db)?;
        take_damage();
        {
            let mut tables = Tables::open(&txn)?;
            for (_, payload) in &missing {
                let (now, changes) = LoggedBatch::decode(payload)?;
                for change in &changes {
                    // A change refused the first time (a conflict, an unknown run) wrote
                    // nothing then and is refused, writing nothing, again.
                    let applied = quietly(AssertUnwindSafe(|| change.apply(&mut tables, now)))
                        .unwrap_or_else(|panic| {
                            Err(FlowError::Corrupt {
                                path: name.to_string(),
                                message: format!(
                                    "replaying its log failed: {}",
                                    panic_message(&*panic)
                                ),
                            })
                        });
                    if let Err(e @ (FlowError::Storage { .. } | FlowError::Corrupt { .. })) =
                        applied
                    {
                        return Err(e.naming_file(name));
                    }
                }
            }
        }
        if let Some(table) = take_damage() {
            return Err(damaged_value(name, table));
        }
        position = (epoch, *last);
        commit_durably_at(txn, position, Marker::Keep)?;
        tracing::info!(
            batches = missing.len(),
            "replayed the journal's write-ahead log"
        );
    }
    // The header is synced before the marker names it: the marker never points at a log
    // that is not on disk. A marker already there stays true (the new epoch is later, the
    // file no shorter), and the next checkpoint brings it up to date.
    log.start_over(position).map_err(log_error)?;
    if side.live.is_none() || replaced {
        commit_durably_at(db.begin_write()?, position, Marker::Live(live(&log)))?;
    }
    Ok(log)
}

fn live(log: &WriteAheadLog) -> LiveLog {
    LiveLog {
        epoch: log.epoch(),
        min_len: log.allocated(),
    }
}

/// What a durable commit does to the journal's marker of its log.
enum Marker {
    Keep,
    Live(LiveLog),
    /// A clean shutdown: the log is about to be emptied.
    Closed,
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
    commit_durably_at(txn, position, Marker::Live(live(log)))?;
    log.start_over(position).map_err(log_error)
}

/// For a clean shutdown: makes everything durable in redb, with the batches of `open` if
/// given, records that no log is in use, and empties the log.
pub(crate) fn close_log(
    db: &Database,
    open: Option<WriteTransaction>,
    log: &mut WriteAheadLog,
) -> Result<(), FlowError> {
    let txn = match open {
        Some(txn) => txn,
        None => db.begin_write()?,
    };
    commit_durably_at(txn, log.position(), Marker::Closed)?;
    log.empty().map_err(log_error)
}

/// Commits `txn` durably, recording that the journal holds the log up to `position`
/// (with every earlier non-durable commit).
///
/// Two-phase: redb then never takes a damaged latest commit for one torn by a crash
/// (which it would silently roll back); it reports it.
fn commit_durably_at(
    mut txn: WriteTransaction,
    position: LogPosition,
    marker: Marker,
) -> Result<(), FlowError> {
    txn.set_durability(Durability::Immediate)
        .map_err(|e| FlowError::storage(format!("could not checkpoint: {e}")))?;
    txn.set_two_phase_commit(true);
    Tables::open(&txn)?.set_log_position(position)?;
    {
        let mut meta = txn.open_table(META)?;
        match marker {
            Marker::Keep => {}
            Marker::Live(live) => {
                meta.insert(LOG_STATE, live.encode().as_slice())?;
            }
            Marker::Closed => {
                meta.remove(LOG_STATE)?;
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// An I/O error of the log, as the engine reports it.
pub(crate) fn log_error(e: std::io::Error) -> FlowError {
    FlowError::Storage {
        message: format!("the journal's write-ahead log failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::wal::Header;

    const NAMES: (&str, &str) = ("j.redb", "j.redb-wal");

    fn side(live: Option<LiveLog>) -> JournalSide {
        JournalSide {
            id: 7,
            position: (5, 3),
            live,
        }
    }

    fn log(epoch: u64, journal: u64, len: u64) -> Recovered {
        Recovered {
            len,
            header: Some(Header {
                epoch,
                journal,
                base: (5, 0),
            }),
            records: vec![(1, vec![1]), (2, vec![2]), (3, vec![3]), (4, vec![4])],
            damage: None,
        }
    }

    fn reason(result: Result<(), FlowError>) -> String {
        match result {
            Err(FlowError::LogDamaged { reason, .. }) => format!("damaged: {reason}"),
            Err(FlowError::LogMismatch { reason, .. }) => format!("mismatch: {reason}"),
            Err(other) => panic!("{other}"),
            Ok(()) => "accepted".into(),
        }
    }

    #[test]
    fn the_marker_survives_only_whole() {
        let live = LiveLog {
            epoch: 9,
            min_len: GROWTH,
        };
        let mut bytes = live.encode();
        assert_eq!(LiveLog::decode(&bytes), Some(live));
        bytes[3] ^= 1;
        assert_eq!(LiveLog::decode(&bytes), None);
        assert_eq!(LiveLog::decode(&bytes[..19]), None);
    }

    #[test]
    fn a_log_in_use_must_be_there_whole_and_the_journals() {
        let live = Some(LiveLog {
            epoch: 5,
            min_len: GROWTH,
        });
        let check = |log: Option<&Recovered>| reason(check_log(&side(live), log, NAMES));
        assert_eq!(check(Some(&log(5, 7, GROWTH))), "accepted");
        assert_eq!(check(Some(&log(6, 7, 2 * GROWTH))), "accepted");
        assert!(check(None).starts_with("damaged: the log is missing"));
        let headless = Recovered {
            header: None,
            records: Vec::new(),
            ..log(5, 7, 0)
        };
        assert!(check(Some(&headless)).contains("no whole header"));
        assert!(check(Some(&log(5, 8, GROWTH))).starts_with("mismatch"));
        assert!(check(Some(&log(4, 7, GROWTH))).contains("older than the epoch"));
        assert!(check(Some(&log(5, 7, GROWTH - 1))).contains("cut short"));
        let mut stranded = log(5, 7, GROWTH);
        stranded.damage = Some(((5, 9), "record 9 is whole".into()));
        assert!(check(Some(&stranded)).contains("in the middle of the log"));
        // Damage among records the journal holds already loses nothing.
        stranded.damage = Some(((5, 2), "record 2 is whole".into()));
        assert_eq!(check(Some(&stranded)), "accepted");
    }

    #[test]
    fn without_a_log_in_use_only_a_log_with_records_is_checked() {
        let check = |log: Option<&Recovered>| reason(check_log(&side(None), log, NAMES));
        assert_eq!(check(None), "accepted");
        let headless = Recovered {
            len: 0,
            header: None,
            records: Vec::new(),
            damage: None,
        };
        assert_eq!(check(Some(&headless)), "accepted");
        assert!(check(Some(&log(5, 8, GROWTH))).contains("another journal"));
        let mut ahead = log(6, 7, GROWTH);
        ahead.header.as_mut().unwrap().base = (6, 0);
        assert!(check(Some(&ahead)).contains("older than the log expects"));
    }
}
