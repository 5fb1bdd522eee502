//! Deleting a journal: both files, found the way opening finds them, and never under an
//! engine that holds them.

use std::io::{Error, ErrorKind};
use std::path::Path;

use super::open::{log_path, real_path};

/// Deletes the journal at `path` and its write-ahead log, whichever exist.
///
/// The path is resolved as [`open`](super::open_file) resolves it, so a journal reached
/// through a symbolic link loses its real files (the link stays, and opens a fresh
/// journal at the same place). A journal whose log an engine holds locked is refused
/// with [`ErrorKind::ResourceBusy`] and left as it is.
pub(crate) fn remove_journal_files(path: &Path) -> std::io::Result<()> {
    let real = real_path(path).map_err(|e| Error::other(e.to_string()))?;
    let log = log_path(&real);
    // Holding the log's lock while deleting keeps an engine from opening the pair halfway.
    let _lock = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&log)
    {
        Ok(file) => match file.try_lock() {
            Ok(()) => Some(file),
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::new(
                    ErrorKind::ResourceBusy,
                    format!(
                        "the journal `{}` is open in an engine; shut that engine down before \
                         removing it",
                        path.display()
                    ),
                ))
            }
            Err(std::fs::TryLockError::Error(io)) => return Err(io),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    for file in [&real, &log] {
        match std::fs::remove_file(file) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}
