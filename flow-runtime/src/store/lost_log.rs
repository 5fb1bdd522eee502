//! Opening a journal whose write-ahead log is lost, when the user accepts the loss
//! (`EngineBuilder::accept_log_loss`): the refused log is kept aside as evidence, the
//! whole records of it that belong to this journal are replayed, and a new log starts.
//!
//! The journal file alone is a consistent earlier state (each redb commit is atomic, and
//! replayed records are a prefix of what the log acknowledged), so runs continue from
//! there; what only the lost part of the log held is gone, and tasks whose results it
//! held run again.

use std::path::{Path, PathBuf};

use super::recovery::JournalSide;
use super::wal::Recovered;
use crate::error::FlowError;

/// Copies the refused log at `log` (if it has any bytes) beside it as
/// `<log>.lost-<ms since the epoch>`, synced, and returns the copy's path.
pub(crate) fn set_aside(log: &Path) -> Result<Option<PathBuf>, FlowError> {
    let failed = |what: &str, io: std::io::Error| FlowError::Storage {
        message: format!("could not {what} the lost log `{}`: {io}", log.display()),
    };
    match std::fs::metadata(log) {
        Ok(meta) if meta.len() > 0 => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed("read", e)),
    }
    let mut aside = log.as_os_str().to_owned();
    aside.push(format!(".lost-{}", crate::time::now_ms()));
    let aside = PathBuf::from(aside);
    std::fs::copy(log, &aside).map_err(|e| failed("copy", e))?;
    std::fs::File::open(&aside)
        .and_then(|f| f.sync_all())
        .map_err(|e| failed("sync the copy of", e))?;
    Ok(Some(aside))
}

/// What of a refused log may still be replayed: its whole records, if its header says it
/// was written for this journal from a position the journal has reached; nothing
/// otherwise (another journal's log, or one that expects an older journal file).
pub(crate) fn salvage(side: &JournalSide, mut recovered: Recovered) -> Recovered {
    let ours = recovered
        .header
        .is_some_and(|h| h.journal == side.id && side.position >= h.base);
    if !ours {
        recovered.records.clear();
    }
    recovered.damage = None;
    recovered
}
