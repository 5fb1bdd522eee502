//! Opening a journal: telling a flow journal from other files, creating a new one, and
//! checking that its write-ahead log goes with it before either file is written.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use redb::{
    Database, DatabaseError, ReadTransaction, ReadableDatabase, StorageBackend, StorageError,
    TableError,
};

use redb::backends::FileBackend;

use super::deferred::Deferred;
use super::guard::quietly;
use super::lost_log;
use super::overlay::Overlay;
use super::recovery::{attach_log, check_log, journal_side, log_error};
use super::tables::*;
use super::wal::WriteAheadLog;
use super::Store;
use crate::error::{panic_message, FlowError};

/// How to open a journal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenOptions {
    pub cache_bytes: usize,
    /// Check every page's checksum on every open, not only after an unclean shutdown.
    pub check_integrity: bool,
    /// Log size that triggers a checkpoint.
    pub checkpoint_bytes: u64,
    /// Open a file journal whose log is refused (damaged, missing, another journal's),
    /// setting the log aside (see `store::lost_log`).
    pub accept_log_loss: bool,
    /// Open a file journal to look at it only: no byte of either file changes (see
    /// [`open_file_read_only`]).
    pub read_only: bool,
}

impl OpenOptions {
    fn builder(self) -> redb::Builder {
        let mut builder = redb::Builder::new();
        builder.set_cache_size(self.cache_bytes);
        builder
    }
}

/// Opens redb on `file` and, after an unclean shutdown (or always, if asked), verifies
/// the checksum of every page it can reach. redb's own recovery trusts a file as far as
/// its last commit's checksums hold and would roll a damaged one back (reporting a
/// success); a journal is refused instead, and as the writes are held back, untouched.
fn open_checked(
    file: &Deferred,
    name: &str,
    options: OpenOptions,
    unclean: bool,
) -> Result<Database, FlowError> {
    let mut db = guarded(name, || options.builder().create_with_backend(file.clone()))?;
    if unclean || options.check_integrity {
        let checked = guarded(name, || db.check_integrity());
        match checked {
            Ok(true) => {}
            Ok(false) => {
                return Err(FlowError::Corrupt {
                    path: name.to_string(),
                    message: "redb's integrity check found pages whose checksums do not hold"
                        .into(),
                })
            }
            Err(e) => return Err(e),
        }
    }
    Ok(db)
}

/// What a read-only look at an existing journal file found.
enum Probe {
    /// Nothing there yet, or an interrupted creation to start afresh.
    New,
    /// A flow journal, shut down cleanly.
    Clean,
    /// A journal that was not shut down cleanly: redb must repair it, and its integrity
    /// is checked.
    Unclean,
}

/// Opens (or creates) the journal at `path`, checks that it is one, and attaches its
/// write-ahead log (`log_path`), replaying what the log holds beyond the file.
///
/// Symbolic links are resolved first: the log and the lock belong to the real file. No
/// byte of either file changes until the log is known to go with the journal: redb's
/// writes (its recovery flag, a repair, an integrity check, a new journal's tables) are
/// held back until then (see `store::deferred`), and a refused journal or log is left
/// as it was.
pub(crate) fn open_file(path: &Path, options: OpenOptions) -> Result<Store, FlowError> {
    if options.read_only {
        return open_file_read_only(&real_path(path)?, options);
    }
    let path = real_path(path)?;
    let name = path.display().to_string();
    let log_path = log_path(&path);
    let log_name = log_path.display().to_string();
    let log_len = std::fs::metadata(&log_path).map(|m| m.len()).ok();
    let probe = probe_file(&path, &name, options, log_len.unwrap_or(0))?;
    if matches!(probe, Probe::New) && log_len.is_some_and(|len| len > 0) {
        if !options.accept_log_loss {
            return Err(FlowError::LogMismatch {
                path: name,
                log: log_name,
                reason: "the journal file is missing or empty, so the log belongs to another \
                         journal"
                    .into(),
            });
        }
        // The new journal starts with a new log; the orphan is kept aside.
        lost_log::set_aside(&log_path)?;
        std::fs::remove_file(&log_path).map_err(|io| FlowError::Storage {
            message: format!("could not remove the lost log `{log_name}`: {io}"),
        })?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|io| FlowError::Storage {
            message: format!("could not open `{name}`: {io}"),
        })?;
    let file = FileBackend::new(file).map_err(|e| open_error(&name, e))?;
    let deferred = Deferred::new(Box::new(file)).map_err(|io| FlowError::Storage {
        message: format!("could not read `{name}`: {io}"),
    })?;
    if matches!(probe, Probe::New) {
        // An interrupted creation held nothing: start over from an empty file.
        reset(&deferred, &name)?;
    }
    let db = open_checked(&deferred, &name, options, matches!(probe, Probe::Unclean))?;
    let log = reading(&name, || {
        check_or_init(&db, &name)?;
        let side = journal_side(&db, &name)?;
        // A log the journal expects is not created where it is missing: that is refused,
        // unless the loss is accepted.
        let create = side.live.is_none() || options.accept_log_loss;
        let log = open_log_file(&log_path, &name, create)?
            .map(|file| WriteAheadLog::open(Box::new(file), side.id))
            .transpose()
            .map_err(log_error)?;
        let checked = check_log(
            &side,
            log.as_ref().map(|(_, recovered)| recovered),
            (&name, &log_name),
        );
        let lost = match checked {
            Ok(()) => false,
            Err(e @ (FlowError::LogDamaged { .. } | FlowError::LogMismatch { .. }))
                if options.accept_log_loss =>
            {
                let aside = lost_log::set_aside(&log_path)?;
                tracing::warn!(
                    journal = %name,
                    kept_as = ?aside,
                    "opening with a lost write-ahead log, as accepted: {e}"
                );
                true
            }
            Err(e) => return Err(e),
        };
        release(&deferred, &name)?;
        let (log, mut recovered) = log.expect("a missing log is refused or created");
        if lost {
            recovered = lost_log::salvage(&side, recovered);
        }
        attach_log(&db, &name, &side, log, recovered, lost)
    })?;
    Ok(Store::new(db, Some(log), options.checkpoint_bytes, name).with_files(path, log_path))
}

/// Opens the journal at `path` (its real path) to look at it, changing no byte of it or
/// of its log: both are read through an [`Overlay`] that keeps every write in memory, so
/// the open runs as any other (redb's repair after a crash, the log's replay, the
/// bookkeeping of a log in use, the checkpoint at shutdown) on a private copy of what
/// it changes. A missing or empty file is refused (nothing is created).
///
/// The lock: a shared lock on the log file, which every engine locks exclusively while
/// it has the journal open, so an engine that has it makes this open fail with
/// [`FlowError::DatabaseAlreadyOpen`], and one that tries to open it meanwhile fails
/// likewise; it is released when the store closes. (A journal whose log file is gone
/// is read without one.)
fn open_file_read_only(path: &Path, options: OpenOptions) -> Result<Store, FlowError> {
    let name = path.display().to_string();
    let log_path = log_path(path);
    let log_name = log_path.display().to_string();
    let failed = |what: &str, shown: &str, io: std::io::Error| FlowError::Storage {
        message: format!("could not {what} `{shown}`: {io}"),
    };
    let held = match std::fs::File::open(&log_path) {
        Ok(file) => {
            match file.try_lock_shared() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(FlowError::DatabaseAlreadyOpen { path: name })
                }
                Err(std::fs::TryLockError::Error(io)) => return Err(failed("lock", &log_name, io)),
            }
            Some(file)
        }
        Err(io) if io.kind() == std::io::ErrorKind::NotFound => None,
        Err(io) => return Err(failed("open", &log_name, io)),
    };
    let log_len = std::fs::metadata(&log_path).map_or(0, |m| m.len());
    let probe = probe_file(path, &name, options, log_len)?;
    if matches!(probe, Probe::New) {
        return Err(FlowError::Storage {
            message: format!(
                "there is no journal at `{name}` (the file is missing, empty or was never                  written whole); opening a journal only to look at it creates none"
            ),
        });
    }
    let read_only = |shown: &str, file: std::fs::File| -> Result<Overlay, FlowError> {
        let base = FileBackend::new(file).map_err(|e| open_error(shown, e))?;
        Overlay::new(Box::new(base)).map_err(|io| failed("read", shown, io))
    };
    let file = std::fs::File::open(path).map_err(|io| failed("open", &name, io))?;
    let deferred =
        Deferred::new(Box::new(read_only(&name, file)?)).map_err(|io| failed("read", &name, io))?;
    let db = open_checked(&deferred, &name, options, matches!(probe, Probe::Unclean))?;
    let log = reading(&name, || {
        check_or_init(&db, &name)?;
        let side = journal_side(&db, &name)?;
        let log = match &held {
            Some(file) => {
                let file = file
                    .try_clone()
                    .map_err(|io| failed("open", &log_name, io))?;
                let log = read_only(&log_name, file)?;
                Some(WriteAheadLog::open(Box::new(log), side.id).map_err(log_error)?)
            }
            None => None,
        };
        check_log(
            &side,
            log.as_ref().map(|(_, recovered)| recovered),
            (&name, &log_name),
        )?;
        release(&deferred, &name)?;
        // No log file: an empty one, in memory.
        let (log, recovered) = match log {
            Some(log) => log,
            None => {
                let empty = redb::backends::InMemoryBackend::new();
                WriteAheadLog::open(Box::new(empty), side.id).map_err(log_error)?
            }
        };
        attach_log(&db, &name, &side, log, recovered, false)
    })?;
    Ok(Store::new(db, Some(log), options.checkpoint_bytes, name).holding(held))
}

/// Looks at an existing journal file read-only, so that a file that is not a flow journal
/// is refused without a single byte of it changing.
fn probe_file(
    path: &Path,
    name: &str,
    options: OpenOptions,
    log_len: u64,
) -> Result<Probe, FlowError> {
    let exists = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
    if !exists {
        return Ok(Probe::New);
    }
    match guarded(name, || options.builder().open_read_only(path)) {
        Ok(db) => {
            reading(name, || check(&db.begin_read()?, name))?;
            Ok(Probe::Clean)
        }
        Err(FlowError::Corrupt { message, .. }) if message == NEEDS_REPAIR => Ok(Probe::Unclean),
        Err(e @ FlowError::NotARedbFile { .. }) => {
            let bytes = std::fs::read(path).map_err(|io| FlowError::Storage {
                message: format!("could not read `{name}`: {io}"),
            })?;
            match never_held_a_journal(bytes, log_len) {
                true => Ok(Probe::New),
                false => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// The real path of the journal at `path`: symbolic links resolved (a dangling one to
/// the file it will create), so that a journal opened through a link pairs with the same
/// log, and takes the same lock, as one opened by its real path.
pub(crate) fn real_path(path: &Path) -> Result<PathBuf, FlowError> {
    let failed = |io: std::io::Error| FlowError::Storage {
        message: format!("could not resolve the path `{}`: {io}", path.display()),
    };
    let mut path = path.to_path_buf();
    // Links are followed by hand while the target is missing (`canonicalize` needs it).
    for _ in 0..40 {
        match std::fs::canonicalize(&path) {
            Ok(real) => return Ok(real),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(failed(e)),
            Err(_) => {}
        }
        match std::fs::read_link(&path) {
            Ok(target) => {
                let parent = path.parent().unwrap_or(Path::new(""));
                path = parent.join(target);
            }
            // The file does not exist yet: its directory must.
            Err(_) => {
                let parent = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                let file_name = path
                    .file_name()
                    .ok_or_else(|| failed(std::io::Error::other("the path names no file")))?;
                return Ok(std::fs::canonicalize(parent)
                    .map_err(failed)?
                    .join(file_name));
            }
        }
    }
    Err(failed(std::io::Error::other(
        "too many levels of symbolic links",
    )))
}

/// The write-ahead log of the journal at `path`: the same name with `-wal` appended.
pub(crate) fn log_path(path: &Path) -> PathBuf {
    let mut log = path.as_os_str().to_owned();
    log.push("-wal");
    PathBuf::from(log)
}

/// Opens the log file (creating it if `create`; `None` if it is missing and not to be
/// created) and locks it, so that no second engine of an older or a foreign build can
/// write it while this one does.
fn open_log_file(log: &Path, name: &str, create: bool) -> Result<Option<FileBackend>, FlowError> {
    let failed = |what: &str, io: std::io::Error| FlowError::Storage {
        message: format!("could not {what} `{}`: {io}", log.display()),
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(log);
    let file = match file {
        Ok(file) => file,
        Err(io) if io.kind() == std::io::ErrorKind::NotFound && !create => return Ok(None),
        Err(io) => return Err(failed("open", io)),
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(FlowError::DatabaseAlreadyOpen { path: name.into() })
        }
        Err(std::fs::TryLockError::Error(io)) => return Err(failed("lock", io)),
    }
    FileBackend::new(file)
        .map(Some)
        .map_err(|e| open_error(name, e))
}

/// Empties a file that never held a journal.
fn reset(file: &Deferred, name: &str) -> Result<(), FlowError> {
    file.set_len(0).map_err(|io| FlowError::Storage {
        message: format!("could not reset `{name}`: {io}"),
    })
}

/// Lets redb's held-back writes through, once the journal is accepted.
fn release(file: &Deferred, name: &str) -> Result<(), FlowError> {
    file.release().map_err(|io| FlowError::Storage {
        message: format!("could not write `{name}`: {io}"),
    })
}

/// redb's magic number, the first bytes of every redb file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// How long a redb file is before its first commit: a file killed while redb created it
/// is at most this long. Every journal is longer (its tables are its first commit).
fn never_committed_len() -> u64 {
    static LEN: OnceLock<u64> = OnceLock::new();
    *LEN.get_or_init(|| {
        let backend = redb::backends::InMemoryBackend::new();
        let probe = Deferred::new(Box::new(backend)).expect("memory");
        let db = redb::Builder::new().create_with_backend(probe.clone());
        let len = probe.len().unwrap_or(0);
        drop(db);
        len
    })
}

/// True if `bytes` are what a process killed while redb created the file leaves, and no
/// log (`log_len` bytes) shows that a journal was ever there: redb writes its magic
/// number last, so such a file is no longer than redb's layout before its first commit,
/// has zeros where the magic goes, and is either all zeros or an empty database once the
/// magic is put back. Anything else is refused untouched (a journal of all zeros, a
/// foreign file).
fn never_held_a_journal(mut bytes: Vec<u8>, log_len: u64) -> bool {
    if log_len > 0 || bytes.len() as u64 > never_committed_len() {
        return false;
    }
    if bytes.len() < REDB_MAGIC.len() || bytes[..REDB_MAGIC.len()].iter().any(|b| *b != 0) {
        return false;
    }
    if bytes.iter().all(|b| *b == 0) {
        return true;
    }
    bytes[..REDB_MAGIC.len()].copy_from_slice(&REDB_MAGIC);
    let backend = redb::backends::InMemoryBackend::new();
    if backend.set_len(bytes.len() as u64).is_err() || backend.write(0, &bytes).is_err() {
        return false;
    }
    let opened = quietly(AssertUnwindSafe(|| {
        let db = redb::Builder::new().create_with_backend(backend).ok()?;
        let txn = db.begin_read().ok()?;
        let empty = txn.list_tables().ok()?.next().is_none()
            && txn.list_multimap_tables().ok()?.next().is_none();
        Some(empty)
    }));
    matches!(opened, Ok(Some(true)))
}

/// The contents of a custom backend, if it is short enough to be an interrupted creation.
fn short_contents(backend: &dyn StorageBackend) -> Option<Vec<u8>> {
    let len = backend.len().ok()?;
    if len == 0 || len > never_committed_len() {
        return None;
    }
    let mut bytes = vec![0; len as usize];
    backend.read(0, &mut bytes).ok()?;
    Some(bytes)
}

/// Opens (or initializes) a journal on a custom storage backend, with its write-ahead
/// log on `log` if there is one; like [`open_file`], nothing is written to either until
/// the log is known to go with the journal.
pub(crate) fn open_backend(
    backend: Box<dyn StorageBackend>,
    log: Option<Box<dyn StorageBackend>>,
    name: &str,
    options: OpenOptions,
) -> Result<Store, FlowError> {
    let log_len = match &log {
        Some(log) => log.len().map_err(log_error)?,
        None => 0,
    };
    let deferred = Deferred::new(backend).map_err(|io| FlowError::Storage {
        message: format!("could not read `{name}`: {io}"),
    })?;
    let interrupted = short_contents(&deferred).is_some_and(|b| never_held_a_journal(b, log_len));
    if interrupted {
        reset(&deferred, name)?;
    }
    let unclean = deferred.len().is_ok_and(|len| len > 0)
        && matches!(
            guarded(name, || options.builder().open_read_only_with_backend(deferred.clone())),
            Err(FlowError::Corrupt { message, .. }) if message == NEEDS_REPAIR
        );
    let db = open_checked(&deferred, name, options, unclean)?;
    let log = reading(name, || {
        check_or_init(&db, name)?;
        let side = journal_side(&db, name)?;
        let names = (name, "its log backend");
        let log = log
            .map(|log| WriteAheadLog::open(log, side.id))
            .transpose()
            .map_err(log_error)?;
        check_log(&side, log.as_ref().map(|(_, recovered)| recovered), names)?;
        release(&deferred, name)?;
        log.map(|(log, recovered)| attach_log(&db, name, &side, log, recovered, false))
            .transpose()
    })?;
    Ok(Store::new(
        db,
        log,
        options.checkpoint_bytes,
        name.to_string(),
    ))
}

/// Runs the open's reads and writes of an opened database: a panic of redb's on a damaged
/// page is reported as a corrupt journal (without its text on stderr), and errors name
/// the file.
fn reading<T>(name: &str, f: impl FnOnce() -> Result<T, FlowError>) -> Result<T, FlowError> {
    match quietly(AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(|e| e.naming_file(name)),
        Err(panic) => Err(FlowError::Corrupt {
            path: name.to_string(),
            message: format!("redb could not read it: {}", panic_message(&*panic)),
        }),
    }
}

/// How a read-only open reports a file that was not closed cleanly.
const NEEDS_REPAIR: &str = "it needs repair and the repair was aborted";

/// Runs redb's open, turning its errors (and a panic on a damaged file) into `FlowError`s.
fn guarded<D>(name: &str, open: impl FnOnce() -> Result<D, DatabaseError>) -> Result<D, FlowError> {
    match quietly(AssertUnwindSafe(open)) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(error)) => Err(open_error(name, error)),
        Err(panic) => Err(FlowError::Corrupt {
            path: name.to_string(),
            message: format!("redb could not read it: {}", panic_message(&*panic)),
        }),
    }
}

fn open_error(name: &str, error: DatabaseError) -> FlowError {
    let path = name.to_string();
    match error {
        DatabaseError::DatabaseAlreadyOpen => FlowError::DatabaseAlreadyOpen { path },
        DatabaseError::Storage(StorageError::Io(e))
            if e.kind() == std::io::ErrorKind::InvalidData =>
        {
            FlowError::NotARedbFile {
                path,
                message: e.to_string(),
            }
        }
        DatabaseError::Storage(StorageError::Corrupted(message)) => {
            FlowError::Corrupt { path, message }
        }
        DatabaseError::RepairAborted => FlowError::Corrupt {
            path,
            message: NEEDS_REPAIR.into(),
        },
        DatabaseError::UpgradeRequired(version) => FlowError::NotARedbFile {
            path,
            message: format!(
                "it is in the old redb file format {version}, which must be upgraded first"
            ),
        },
        other => FlowError::Storage {
            message: format!("could not open `{path}`: {other}"),
        },
    }
}

/// Checks that a database is a flow journal, or initializes it if it holds no tables.
fn check_or_init(db: &Database, name: &str) -> Result<(), FlowError> {
    let txn = db.begin_read()?;
    if check(&txn, name)? {
        drop(txn);
        add_new_tables(db)?;
    } else {
        drop(txn);
        init(db)?;
    }
    super::run_index::migrate_if_needed(db)
}

/// True if the database is a flow journal this build reads, false if it is empty (no
/// tables at all); an error for anything else.
fn check(txn: &ReadTransaction, name: &str) -> Result<bool, FlowError> {
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(TableError::TableDoesNotExist(_)) => {
            let tables = table_names(txn)?;
            return if tables.is_empty() {
                Ok(false)
            } else {
                Err(FlowError::ForeignDatabase {
                    path: name.to_string(),
                    tables: tables.join(", "),
                })
            };
        }
        Err(e) => return Err(e.into()),
    };
    if meta.get("magic")?.as_ref().map(|m| m.value()) != Some(MAGIC) {
        return Err(FlowError::ForeignDatabase {
            path: name.to_string(),
            tables: table_names(txn)?.join(", "),
        });
    }
    let found = meta
        .get("format")?
        .and_then(|v| <[u8; 4]>::try_from(v.value()).ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0);
    if found != FORMAT_VERSION && found != MIGRATES_FROM {
        return Err(FlowError::UnsupportedFormat {
            path: name.to_string(),
            found,
            expected: FORMAT_VERSION,
        });
    }
    Ok(true)
}

fn table_names(txn: &ReadTransaction) -> Result<Vec<String>, FlowError> {
    use redb::{MultimapTableHandle, TableHandle};
    let mut names: Vec<String> = txn.list_tables()?.map(|t| t.name().to_string()).collect();
    names.extend(txn.list_multimap_tables()?.map(|t| t.name().to_string()));
    Ok(names)
}

/// Creates every table and the meta entries in one transaction.
fn init(db: &Database) -> Result<(), FlowError> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        meta.insert("magic", MAGIC)?;
        meta.insert("format", FORMAT_VERSION.to_le_bytes().as_slice())?;
        txn.open_table(RUNS)?;
        txn.open_table(INPUTS)?;
        txn.open_table(OUTPUTS)?;
        txn.open_table(PENDING)?;
        txn.open_table(BRANCHES)?;
        txn.open_table(SLOTS)?;
        txn.open_table(HISTORY)?;
        txn.open_table(TIMERS)?;
        txn.open_table(ACTIVE)?;
        txn.open_table(INBOX)?;
        txn.open_table(CANCELS)?;
    }
    txn.commit()?;
    add_new_tables(db)
}

/// Creates the tables added after format 1 was fixed (map items, callback tokens, run
/// deadlines, generation inputs, nudges, history batches, token types, retention, step states,
/// deliveries) when a journal lacks them; a no-op otherwise.
fn add_new_tables(db: &Database) -> Result<(), FlowError> {
    let missing = {
        let txn = db.begin_read()?;
        let names = table_names(&txn)?;
        [
            MAP_ITEMS.to_string(),
            TOKENS.to_string(),
            RUN_DEADLINES.to_string(),
            GENERATION_INPUTS.to_string(),
            NUDGES.to_string(),
            HISTORY_BATCHES.to_string(),
            TOKEN_TYPES.to_string(),
            RETENTION.to_string(),
            RUN_EXPIRIES.to_string(),
            EXPIRIES.to_string(),
            RUN_TOKENS.to_string(),
            STEP_STATES.to_string(),
            DELIVERIES.to_string(),
        ]
        .iter()
        .any(|t| !names.contains(t))
    };
    if !missing {
        return Ok(());
    }
    let txn = db.begin_write()?;
    txn.open_table(MAP_ITEMS)?;
    txn.open_table(TOKENS)?;
    txn.open_table(RUN_DEADLINES)?;
    txn.open_table(GENERATION_INPUTS)?;
    txn.open_table(NUDGES)?;
    txn.open_table(HISTORY_BATCHES)?;
    txn.open_table(TOKEN_TYPES)?;
    txn.open_table(RETENTION)?;
    txn.open_table(RUN_EXPIRIES)?;
    txn.open_table(EXPIRIES)?;
    txn.open_table(RUN_TOKENS)?;
    txn.open_table(STEP_STATES)?;
    txn.open_table(DELIVERIES)?;
    txn.commit()?;
    Ok(())
}
