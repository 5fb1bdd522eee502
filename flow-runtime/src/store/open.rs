//! Opening a journal: telling a flow journal from other files, and creating a new one.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use redb::{
    Database, DatabaseError, ReadTransaction, ReadableDatabase, StorageBackend, StorageError,
    TableError,
};

use redb::backends::FileBackend;

use super::recovery::attach_log;
use super::tables::*;
use super::Store;
use crate::error::{panic_message, FlowError};

/// How to open a journal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenOptions {
    pub cache_bytes: usize,
    pub check_integrity: bool,
    /// Log size that triggers a checkpoint.
    pub checkpoint_bytes: u64,
}

impl OpenOptions {
    fn builder(self) -> redb::Builder {
        let mut builder = redb::Builder::new();
        builder.set_cache_size(self.cache_bytes);
        builder.set_check_integrity_on_open(self.check_integrity);
        builder
    }
}

/// Opens (or creates) the journal at `path`, checks that it is one, and attaches its
/// write-ahead log (`log_path`), replaying what the log holds beyond the file.
///
/// An existing file is first inspected read-only, so that a file that is not a flow
/// journal is refused without a single byte of it changing (a writable open would). Only
/// a file that needs crash recovery is opened writable straight away: redb must repair it
/// before anything can be read.
pub(crate) fn open_file(path: &Path, options: OpenOptions) -> Result<Store, FlowError> {
    let name = path.display().to_string();
    let builder = options.builder();
    let exists = std::fs::metadata(path)
        .map(|m| m.len() > 0)
        .unwrap_or(false);
    if exists {
        match guarded(&name, || builder.open_read_only(path)) {
            Ok(db) => {
                let txn = db.begin_read()?;
                check(&txn, &name)?;
            }
            Err(FlowError::Corrupt { message, .. }) if message == NEEDS_REPAIR => {}
            Err(e @ FlowError::NotARedbFile { .. }) => {
                if !interrupted_creation(path) {
                    return Err(e);
                }
                // Nothing was ever committed to it: start the journal afresh.
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_len(0))
                    .map_err(|io| FlowError::Storage {
                        message: format!("could not reset `{name}`: {io}"),
                    })?;
            }
            Err(e) => return Err(e),
        }
    }
    let db = guarded(&name, || builder.create(path))?;
    check_or_init(&db, &name)?;
    let log_path = log_path(path);
    let log = open_log_file(&log_path, &name)?;
    let log = attach_log(&db, Box::new(log), (&name, &log_path.display().to_string()))?;
    Ok(Store::new(db, Some(log), options.checkpoint_bytes))
}

/// The write-ahead log of the journal at `path`: the same name with `-wal` appended.
pub(crate) fn log_path(path: &Path) -> PathBuf {
    let mut log = path.as_os_str().to_owned();
    log.push("-wal");
    PathBuf::from(log)
}

/// Opens (or creates) the log file and locks it, so that no second engine of an older
/// or a foreign build can write it while this one does.
fn open_log_file(log: &Path, name: &str) -> Result<FileBackend, FlowError> {
    let failed = |what: &str, io: std::io::Error| FlowError::Storage {
        message: format!("could not {what} `{}`: {io}", log.display()),
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(log)
        .map_err(|io| failed("open", io))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(FlowError::DatabaseAlreadyOpen { path: name.into() })
        }
        Err(std::fs::TryLockError::Error(io)) => return Err(failed("lock", io)),
    }
    FileBackend::new(file).map_err(|e| open_error(name, e))
}

/// redb's magic number, the first bytes of every redb file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// Largest file an interrupted creation can leave (redb's initial layout is ~100 KiB).
const MAX_INTERRUPTED_CREATION: u64 = 4 << 20;

/// True if `path` is what a process killed while redb created the file leaves: redb writes
/// its magic number last, so such a file has zeros where the magic goes and is either all
/// zeros or an empty database once the magic is put back. Anything else is refused as
/// before (a foreign file is never reset).
fn interrupted_creation(path: &Path) -> bool {
    let small = std::fs::metadata(path).is_ok_and(|m| m.len() <= MAX_INTERRUPTED_CREATION);
    let Some(bytes) = small.then(|| std::fs::read(path).ok()).flatten() else {
        return false;
    };
    is_interrupted_creation(bytes)
}

/// [`interrupted_creation`] for the contents of a custom storage backend.
fn backend_interrupted_creation(backend: &dyn StorageBackend) -> bool {
    let Ok(len) = backend.len() else { return false };
    if len == 0 || len > MAX_INTERRUPTED_CREATION {
        return false;
    }
    let mut bytes = vec![0; len as usize];
    backend.read(0, &mut bytes).is_ok() && is_interrupted_creation(bytes)
}

fn is_interrupted_creation(mut bytes: Vec<u8>) -> bool {
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
    let opened = catch_unwind(AssertUnwindSafe(|| {
        let db = redb::Builder::new().create_with_backend(backend).ok()?;
        let txn = db.begin_read().ok()?;
        let empty = txn.list_tables().ok()?.next().is_none()
            && txn.list_multimap_tables().ok()?.next().is_none();
        Some(empty)
    }));
    matches!(opened, Ok(Some(true)))
}

/// Opens (or initializes) a journal on a custom storage backend, with its write-ahead
/// log on `log` if there is one.
pub(crate) fn open_backend(
    backend: Box<dyn StorageBackend>,
    log: Option<Box<dyn StorageBackend>>,
    name: &str,
    options: OpenOptions,
) -> Result<Store, FlowError> {
    let builder = options.builder();
    if backend_interrupted_creation(&*backend) {
        // Nothing was ever committed to it: start the journal afresh.
        backend.set_len(0).map_err(|io| FlowError::Storage {
            message: format!("could not reset `{name}`: {io}"),
        })?;
    }
    let db = guarded(name, || builder.create_with_backend(BoxedBackend(backend)))?;
    check_or_init(&db, name)?;
    let log = log
        .map(|log| attach_log(&db, log, (name, "its log backend")))
        .transpose()?;
    Ok(Store::new(db, log, options.checkpoint_bytes))
}

/// `Box<dyn StorageBackend>` as a `StorageBackend` (redb wants a sized type). Every
/// method, the provided ones included, is forwarded: the wrapped backend's own lock
/// methods must be the ones redb calls.
#[derive(Debug)]
struct BoxedBackend(Box<dyn StorageBackend>);

impl StorageBackend for BoxedBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.0.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.0.close()
    }
    fn try_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.0.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.0.try_lock_shared_range(start, end)
    }
    fn lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.0.lock_range(start, end)
    }
    fn lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.0.lock_shared_range(start, end)
    }
    fn unlock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.0.unlock_range(start, end)
    }
    fn query_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.0.query_lock_range(start, end)
    }
}

/// How a read-only open reports a file that was not closed cleanly.
const NEEDS_REPAIR: &str = "it needs repair and the repair was aborted";

/// Runs redb's open, turning its errors (and a panic on a damaged file) into `FlowError`s.
fn guarded<D>(name: &str, open: impl FnOnce() -> Result<D, DatabaseError>) -> Result<D, FlowError> {
    match catch_unwind(AssertUnwindSafe(open)) {
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
        add_new_tables(db)
    } else {
        drop(txn);
        init(db)
    }
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
    if found != FORMAT_VERSION {
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
/// deadlines, generation inputs, nudges, history batches) when a journal lacks them; a no-op otherwise.
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
    txn.commit()?;
    Ok(())
}
