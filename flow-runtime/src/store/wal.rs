//! The write-ahead log: what makes a durable step cost one small sequential write and
//! one `fdatasync`.
//!
//! A durable redb commit writes a transition's copy-on-write pages wherever its allocator
//! put them (about ten scattered pages for one step) and does a good deal of bookkeeping
//! for them. With the log, the commit pipeline appends each batch of changes (a few
//! hundred bytes per step, see `store::change`) to this file and syncs it, and only
//! then applies the batch to redb with `Durability::None`: in memory, visible to readers,
//! not yet in the redb file. Every so often a checkpoint makes redb durable (recording
//! the log position it holds in the journal's meta table) and starts the log over.
//! Opening a journal replays the records past the recorded position.
//!
//! Records are applied in log order and replayed as a prefix, so a change that read
//! what an earlier one wrote can never survive a crash that lost the earlier one.
//!
//! # Layout
//! ```text
//! 0      header: b"flow-wal", version u32, crc32 u32 of the next 16 bytes, epoch u64,
//!          journal ID u64 (the journal the log belongs to), base epoch u64, base seq
//!          u64 (the log position the journal held durably when this epoch began)
//! 4096   record, record, ...  each:
//!          magic u32, crc32 u32 of everything after it, epoch u64, seq u64,
//!          payload length u64, payload
//! ```
//! Replay takes records in order while each is whole (its checksum holds) and carries
//! the header's epoch and the next sequence number; the first that does not ends the
//! log. Starting over writes a new epoch into the header, so the previous epoch's
//! records, still in the file behind the new ones, are never taken for new ones. The
//! file is overwritten in place rather than truncated, so a sync flushes data only,
//! with no file-size change for the file system to journal.

use std::io;

use redb::StorageBackend;

/// Bytes reserved for the header; records start after it, so that a torn record never
/// touches the header's sectors.
const HEADER_BYTES: u64 = 4096;
const HEADER_MAGIC: &[u8; 8] = b"flow-wal";
const LOG_VERSION: u32 = 1;
const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"FWRc");
/// A record's fixed part, before its payload.
const RECORD_HEAD: usize = 32;

/// The log grows in steps of this many zero bytes, written once: later records
/// overwrite them, so their syncs never change the file's size.
const GROWTH: u64 = 1 << 20;

/// A position in the log: (epoch, sequence number of the last record applied).
pub(crate) type LogPosition = (u64, u64);

/// The log file, positioned after its last whole record.
pub(crate) struct WriteAheadLog {
    file: Box<dyn StorageBackend>,
    /// The journal's ID, written into every header.
    journal: u64,
    epoch: u64,
    /// Sequence number of the next record (they start at 1).
    next_seq: u64,
    /// Where the next record goes.
    end: u64,
    /// Bytes of the file already written (zeros or old records).
    allocated: u64,
    record: Vec<u8>,
}

/// The records a log held when it was opened.
pub(crate) struct Recovered {
    pub epoch: u64,
    /// The ID of the journal the log belongs to.
    pub journal: u64,
    /// The position the journal held when the log's epoch began.
    pub base: LogPosition,
    /// `(seq, payload)`, in order.
    pub records: Vec<(u64, Vec<u8>)>,
}

impl WriteAheadLog {
    /// Reads the log's whole records; the log is not usable for appending until
    /// [`start_over`](Self::start_over). `journal` is the ID of the journal it is opened
    /// for (what the log was written for is in `Recovered::journal`).
    pub(crate) fn open(
        file: Box<dyn StorageBackend>,
        journal: u64,
    ) -> io::Result<(Self, Recovered)> {
        let len = file.len()?;
        let mut recovered = Recovered {
            epoch: 0,
            journal,
            base: (0, 0),
            records: Vec::new(),
        };
        if len >= HEADER_BYTES {
            let mut header = [0u8; HEADER_LEN];
            file.read(0, &mut header)?;
            if let Some((epoch, owner, base)) = decode_header(&header) {
                recovered.epoch = epoch;
                recovered.journal = owner;
                recovered.base = base;
                let mut at = HEADER_BYTES;
                let mut seq = 1;
                while let Some(payload) = read_record(&*file, len, at, epoch, seq)? {
                    at += (RECORD_HEAD + payload.len()) as u64;
                    recovered.records.push((seq, payload));
                    seq += 1;
                }
            }
        }
        let log = WriteAheadLog {
            file,
            journal,
            epoch: recovered.epoch,
            next_seq: u64::MAX,
            end: u64::MAX,
            allocated: len,
            record: Vec::new(),
        };
        Ok((log, recovered))
    }

    /// The position of the last record appended.
    pub(crate) fn position(&self) -> LogPosition {
        (self.epoch, self.next_seq - 1)
    }

    /// Bytes of records since the log started over.
    pub(crate) fn bytes(&self) -> u64 {
        self.end - HEADER_BYTES
    }

    /// Appends one record and syncs it; returns once it is durable.
    #[cfg(test)]
    pub(crate) fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        self.append_with(|out| out.extend_from_slice(payload))
    }

    /// Appends one record whose payload `fill` appends to the buffer it is given, and
    /// syncs it; returns once it is durable. The payload is built in place.
    pub(crate) fn append_with(&mut self, fill: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        let record = &mut self.record;
        record.clear();
        record.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
        record.extend_from_slice(&[0; 4]);
        for field in [self.epoch, self.next_seq, 0] {
            record.extend_from_slice(&field.to_le_bytes());
        }
        fill(record);
        let payload = (record.len() - RECORD_HEAD) as u64;
        record[24..32].copy_from_slice(&payload.to_le_bytes());
        let crc = crc32fast::hash(&record[8..]);
        record[4..8].copy_from_slice(&crc.to_le_bytes());
        let needed = self.end + record.len() as u64;
        if needed > self.allocated {
            // Zeros, not a hole: a hole would be allocated (and journaled) by each sync.
            let grown = needed.div_ceil(GROWTH) * GROWTH;
            self.file.set_len(grown)?;
            self.file.write(
                self.allocated,
                &vec![0u8; (grown - self.allocated) as usize],
            )?;
            self.allocated = grown;
        }
        self.file.write(self.end, &self.record)?;
        self.file.sync_data()?;
        self.end = needed;
        self.next_seq += 1;
        Ok(())
    }

    /// Starts a new epoch with no records, after the journal made `base` durable. The
    /// header is not synced: the next record's sync carries it, and until then the old
    /// epoch's records stay valid and are all at or before `base`, so replaying them
    /// skips them all.
    pub(crate) fn start_over(&mut self, base: LogPosition) -> io::Result<()> {
        let after = base.0;
        // A fresh number even if the header was unreadable (old records may carry any).
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        self.epoch = after.max(self.epoch).saturating_add(1).max(clock);
        self.next_seq = 1;
        self.end = HEADER_BYTES;
        let header = encode_header(self.epoch, self.journal, base);
        if self.allocated < HEADER_BYTES {
            let mut first = vec![0u8; HEADER_BYTES as usize];
            first[..header.len()].copy_from_slice(&header);
            self.file.set_len(HEADER_BYTES)?;
            self.file.write(0, &first)?;
            self.allocated = HEADER_BYTES;
        } else {
            self.file.write(0, &header)?;
        }
        Ok(())
    }

    /// Empties the file, after a checkpoint that holds everything: the journal file is
    /// then the whole journal (a clean shutdown).
    pub(crate) fn empty(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_data()?;
        self.allocated = 0;
        self.end = HEADER_BYTES;
        Ok(())
    }
}

/// Bytes of the header that are used.
const HEADER_LEN: usize = 48;

fn encode_header(epoch: u64, journal: u64, base: LogPosition) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(HEADER_MAGIC);
    header[8..12].copy_from_slice(&LOG_VERSION.to_le_bytes());
    for (at, word) in [(16, epoch), (24, journal), (32, base.0), (40, base.1)] {
        header[at..at + 8].copy_from_slice(&word.to_le_bytes());
    }
    let crc = crc32fast::hash(&header[16..]);
    header[12..16].copy_from_slice(&crc.to_le_bytes());
    header
}

/// The epoch, journal ID and base position in a header, if the header is whole.
fn decode_header(header: &[u8; HEADER_LEN]) -> Option<(u64, u64, LogPosition)> {
    let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap());
    let version = u32::from_le_bytes(header[8..12].try_into().unwrap());
    let crc = u32::from_le_bytes(header[12..16].try_into().unwrap());
    let whole = header[..8] == *HEADER_MAGIC
        && version == LOG_VERSION
        && crc == crc32fast::hash(&header[16..]);
    whole.then(|| (word(16), word(24), (word(32), word(40))))
}

/// The payload of the whole record at `at`, if there is one with this epoch and
/// sequence number.
fn read_record(
    file: &dyn StorageBackend,
    len: u64,
    at: u64,
    epoch: u64,
    seq: u64,
) -> io::Result<Option<Vec<u8>>> {
    if at + RECORD_HEAD as u64 > len {
        return Ok(None);
    }
    let mut head = [0u8; RECORD_HEAD];
    file.read(at, &mut head)?;
    let field = |i: usize| u64::from_le_bytes(head[8 + 8 * i..16 + 8 * i].try_into().unwrap());
    let magic = u32::from_le_bytes(head[..4].try_into().unwrap());
    let size = field(2);
    if magic != RECORD_MAGIC || field(0) != epoch || field(1) != seq {
        return Ok(None);
    }
    if size > len - at - RECORD_HEAD as u64 {
        return Ok(None);
    }
    let mut record = vec![0u8; RECORD_HEAD + size as usize];
    file.read(at, &mut record)?;
    let crc = u32::from_le_bytes(record[4..8].try_into().unwrap());
    if crc != crc32fast::hash(&record[8..]) {
        return Ok(None);
    }
    record.drain(..RECORD_HEAD);
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::backends::InMemoryBackend;
    use std::sync::Arc;

    /// A backend the test keeps a handle on, to reopen the "same file".
    #[derive(Debug, Clone, Default)]
    struct Shared(Arc<InMemoryBackend>);

    impl StorageBackend for Shared {
        fn len(&self) -> io::Result<u64> {
            self.0.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
            self.0.read(offset, out)
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.0.set_len(len)
        }
        fn sync_data(&self) -> io::Result<()> {
            Ok(())
        }
        fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
            self.0.write(offset, data)
        }
    }

    fn reopen(file: &Shared) -> (WriteAheadLog, Recovered) {
        WriteAheadLog::open(Box::new(file.clone()), 42).unwrap()
    }

    #[test]
    fn records_come_back_in_order_until_the_log_starts_over() {
        let file = Shared::default();
        let (mut log, recovered) = reopen(&file);
        assert!(recovered.records.is_empty());
        log.start_over((recovered.epoch, 0)).unwrap();
        let payloads: Vec<Vec<u8>> = (0..300u32)
            .map(|i| vec![i as u8; i as usize * 37])
            .collect();
        for p in &payloads {
            log.append(p).unwrap();
        }
        let epoch = log.position().0;
        assert_eq!(log.position(), (epoch, 300));
        let (mut log, recovered) = reopen(&file);
        assert_eq!(recovered.epoch, epoch);
        assert_eq!(recovered.journal, 42);
        let (_, other) = WriteAheadLog::open(Box::new(file.clone()), 7).unwrap();
        assert_eq!(
            other.journal, 42,
            "the header names the journal it was written for"
        );
        let seqs: Vec<u64> = recovered.records.iter().map(|r| r.0).collect();
        assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
        assert!(recovered.records.iter().map(|r| &r.1).eq(payloads.iter()));

        // A new epoch hides the old records even where they were not overwritten.
        log.start_over((recovered.epoch, 300)).unwrap();
        assert!(log.position().0 > epoch);
        log.append(b"only").unwrap();
        let (_, recovered) = reopen(&file);
        assert_eq!(recovered.records, vec![(1, b"only".to_vec())]);
    }

    #[test]
    fn a_damaged_record_ends_the_log() {
        let file = Shared::default();
        let (mut log, recovered) = reopen(&file);
        log.start_over((recovered.epoch, 0)).unwrap();
        for i in 0..5u8 {
            log.append(&[i; 100]).unwrap();
        }
        // Flip one byte in the third record's payload.
        let third = HEADER_BYTES + 2 * (RECORD_HEAD as u64 + 100) + RECORD_HEAD as u64 + 7;
        let mut byte = [0u8];
        file.read(third, &mut byte).unwrap();
        file.write(third, &[byte[0] ^ 1]).unwrap();
        let (_, recovered) = reopen(&file);
        assert_eq!(recovered.records.len(), 2);

        // A torn header: nothing is replayed.
        file.write(12, &[0xFF]).unwrap();
        let (_, recovered) = reopen(&file);
        assert!(recovered.records.is_empty());
    }

    #[test]
    fn an_emptied_log_holds_nothing() {
        let file = Shared::default();
        let (mut log, recovered) = reopen(&file);
        log.start_over((recovered.epoch, 0)).unwrap();
        log.append(b"x").unwrap();
        log.empty().unwrap();
        assert_eq!(file.len().unwrap(), 0);
        let (_, recovered) = reopen(&file);
        assert!(recovered.records.is_empty());
    }
}
