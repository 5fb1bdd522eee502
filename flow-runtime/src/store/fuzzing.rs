//! The store's decoders of untrusted bytes that live below the record decoders, for the
//! fuzz targets (`crate::fuzz_hooks`): a sealed table value, and a write-ahead log.

use std::sync::Arc;

use redb::backends::InMemoryBackend;
use redb::{StorageBackend, Value};

use super::recovery::{check_log, JournalSide, LiveLog};
use super::tables::{damaged_value, take_damage, values};
use super::wal::WriteAheadLog;
use crate::error::FlowError;

/// Reads `bytes` as a stored value of the run headers' table: `Ok` if its checksum
/// holds, the corruption error otherwise.
pub(crate) fn unseal_for_fuzzing(bytes: &[u8]) -> Result<(), FlowError> {
    take_damage();
    std::hint::black_box(values::RUNS::from_bytes(bytes));
    match take_damage() {
        Some(table) => Err(damaged_value("fuzzed bytes", table)),
        None => Ok(()),
    }
}

/// Reads `bytes` as the records of a write-ahead log (behind a whole header), looking
/// for whole records behind damage, and checks the log as an open would for a journal
/// that expects it. The header's epoch is the clock's, so the records `bytes` hold are
/// read as another epoch's: what is exercised is the search through them.
pub(crate) fn read_log_for_fuzzing(bytes: &[u8]) -> Result<(), FlowError> {
    let file = Shared::default();
    let io = |e: std::io::Error| FlowError::storage(e);
    let (mut log, _) = WriteAheadLog::open(Box::new(file.clone()), 42).map_err(io)?;
    log.start_over((0, 0)).map_err(io)?;
    // Just the bytes behind the header: the length check refuses such a log, after the
    // reading and the search this is about.
    file.set_len(4096 + bytes.len() as u64).map_err(io)?;
    file.write(4096, bytes).map_err(io)?;
    let (_, recovered) = WriteAheadLog::open(Box::new(file), 42).map_err(io)?;
    let side = JournalSide {
        id: 42,
        position: (0, 0),
        live: Some(LiveLog {
            epoch: 0,
            min_len: 0,
        }),
    };
    check_log(&side, Some(&recovered), ("fuzzed journal", "fuzzed log"))
}

/// An in-memory file both the writer and the reader of the log hold.
#[derive(Debug, Clone, Default)]
struct Shared(Arc<InMemoryBackend>);

impl StorageBackend for Shared {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write(offset, data)
    }
}
