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
//! 0      header slot 0 \  each: b"flow-wal", version u32, crc32 u32 of the next 32
//! 2048   header slot 1 /  bytes, epoch u64, journal ID u64 (the journal the log
//!                         belongs to), base epoch u64, base seq u64 (the log position
//!                         the journal held durably when this epoch began)
//! 4096   record, record, ...  each:
//!          magic u32, crc32 u32 of everything after it, epoch u64, seq u64,
//!          payload length u64, payload
//! ```
//! The header in force is the whole slot with the higher epoch. Starting over writes
//! the new epoch into the other slot and syncs it, so a write torn by a power cut leaves
//! the previous header whole. Replay takes records in order while each is whole (its
//! checksum holds) and carries the header's epoch and the next sequence number; the
//! first that does not ends the log. The previous epoch's records, still in the file
//! behind the new ones, are never taken for new ones.
//!
//! # Telling a torn tail from damage
//! Each append is synced before the next begins, so a crash can tear the last record
//! only: a whole record of the current epoch behind the end of the log, or one of a
//! later epoch anywhere, means the log was damaged (see [`Recovered::damage`]). The file
//! grows in steps of [`GROWTH`] zero bytes, written once (later records overwrite them,
//! so their syncs never change the file's size): a length that is not a multiple of it
//! means the file was cut.

use std::io;

use redb::StorageBackend;

/// Bytes reserved for the header slots; records start after them, so that a torn record
/// never touches a header's sectors.
const HEADER_BYTES: u64 = 4096;
/// Where each header slot starts (sectors apart, so one torn write spoils one slot).
const SLOT_OFFSETS: [u64; 2] = [0, 2048];
const HEADER_MAGIC: &[u8; 8] = b"flow-wal";
/// Version 2: two header slots, synced when written; the file preallocated. Version 3:
/// logged run headers carry the workflow's version (a log of version 2 would misalign
/// them, so it is not read: its header does not count as whole).
const LOG_VERSION: u32 = 3;
const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"FWRc");
/// A record's fixed part, before its payload.
const RECORD_HEAD: usize = 32;

/// The log grows in steps of this many zero bytes, written once; a log that is in use
/// is always a whole number of steps long.
pub(crate) const GROWTH: u64 = 1 << 20;

/// A position in the log: (epoch, sequence number of the last record applied).
pub(crate) type LogPosition = (u64, u64);

/// What a log header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub epoch: u64,
    /// The ID of the journal the log belongs to.
    pub journal: u64,
    /// The position the journal held when the epoch began.
    pub base: LogPosition,
}

/// The log file, positioned after its last whole record.
pub(crate) struct WriteAheadLog {
    file: Box<dyn StorageBackend>,
    /// The journal's ID, written into every header.
    journal: u64,
    epoch: u64,
    /// The slot holding the header in force (the next one goes into the other).
    slot: usize,
    /// Sequence number of the next record (they start at 1).
    next_seq: u64,
    /// Where the next record goes.
    end: u64,
    /// Bytes of the file already written (zeros or old records).
    allocated: u64,
    record: Vec<u8>,
}

/// What a log held when it was opened. Opening reads only: nothing is written until
/// [`WriteAheadLog::start_over`].
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The file's length in bytes.
    pub len: u64,
    /// The header in force, if either slot is whole.
    pub header: Option<Header>,
    /// `(seq, payload)` of the header's epoch, in order.
    pub records: Vec<(u64, Vec<u8>)>,
    /// Evidence that records were lost to damage rather than to a torn last append: the
    /// position of a whole record that replay did not reach, and what it says.
    pub damage: Option<(LogPosition, String)>,
}

impl Recovered {
    /// The epoch of the records (0 without a header).
    pub(crate) fn epoch(&self) -> u64 {
        self.header.map_or(0, |h| h.epoch)
    }
}

impl WriteAheadLog {
    /// Reads the log's header and whole records, and looks for damage; the log is not
    /// usable for appending until [`start_over`](Self::start_over). `journal` is the ID of
    /// the journal it is opened for (what the log was written for is in its header).
    pub(crate) fn open(
        file: Box<dyn StorageBackend>,
        journal: u64,
    ) -> io::Result<(Self, Recovered)> {
        let len = file.len()?;
        let mut recovered = Recovered {
            len,
            header: None,
            records: Vec::new(),
            damage: None,
        };
        let mut slot = 1;
        for (i, offset) in SLOT_OFFSETS.into_iter().enumerate() {
            if offset + HEADER_LEN as u64 > len {
                continue;
            }
            let mut bytes = [0u8; HEADER_LEN];
            file.read(offset, &mut bytes)?;
            if let Some(header) = decode_header(&bytes) {
                if recovered.header.is_none_or(|h| header.epoch > h.epoch) {
                    recovered.header = Some(header);
                    slot = i;
                }
            }
        }
        let epoch = recovered.epoch();
        let mut at = HEADER_BYTES;
        if recovered.header.is_some() {
            let mut seq = 1;
            while let Some(payload) = read_record(&*file, len, at, epoch, seq)? {
                at += (RECORD_HEAD + payload.len()) as u64;
                recovered.records.push((seq, payload));
                seq += 1;
            }
        }
        let last = recovered.records.len() as u64;
        recovered.damage = find_stranded_record(&*file, len, at, epoch, last)?;
        let log = WriteAheadLog {
            file,
            journal,
            epoch,
            slot,
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

    /// The epoch records are appended in.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Bytes of records since the log started over.
    pub(crate) fn bytes(&self) -> u64 {
        self.end - HEADER_BYTES
    }

    /// The file's length: it only grows until the log is emptied.
    pub(crate) fn allocated(&self) -> u64 {
        self.allocated
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
        self.grow_to(needed)?;
        self.file.write(self.end, &self.record)?;
        self.file.sync_data()?;
        self.end = needed;
        self.next_seq += 1;
        Ok(())
    }

    /// Makes the file at least `needed` bytes long, in whole steps of zeros.
    fn grow_to(&mut self, needed: u64) -> io::Result<()> {
        if needed <= self.allocated {
            return Ok(());
        }
        // Zeros, not a hole: a hole would be allocated (and journaled) by each sync.
        let grown = needed.div_ceil(GROWTH) * GROWTH;
        self.file.set_len(grown)?;
        let zeros = vec![0u8; (grown - self.allocated) as usize];
        self.file.write(self.allocated, &zeros)?;
        self.allocated = grown;
        Ok(())
    }

    /// Starts a new epoch with no records, after the journal made `base` durable, and
    /// syncs its header: once this returns, the log is whole on disk, a whole number of
    /// growth steps long. Until the header is synced the previous one stays in force, and
    /// its records are all at or before `base`, so replaying them skips them all.
    pub(crate) fn start_over(&mut self, base: LogPosition) -> io::Result<()> {
        // A fresh number even if the header was unreadable (old records may carry any).
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let epoch = base.0.max(self.epoch).saturating_add(1).max(clock);
        // A length left by a cut or an older build is rounded up to whole steps.
        let allocated = self.allocated.next_multiple_of(GROWTH).max(GROWTH);
        if allocated != self.allocated {
            let from = self.allocated;
            self.file.set_len(allocated)?;
            let zeros = vec![0u8; (allocated - from) as usize];
            self.file.write(from, &zeros)?;
            self.allocated = allocated;
        }
        let slot = 1 - self.slot;
        let header = encode_header(&Header {
            epoch,
            journal: self.journal,
            base,
        });
        self.file.write(SLOT_OFFSETS[slot], &header)?;
        self.file.sync_data()?;
        self.epoch = epoch;
        self.slot = slot;
        self.next_seq = 1;
        self.end = HEADER_BYTES;
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

/// Bytes of a header slot that are used.
const HEADER_LEN: usize = 48;

fn encode_header(header: &Header) -> [u8; HEADER_LEN] {
    let mut bytes = [0u8; HEADER_LEN];
    bytes[..8].copy_from_slice(HEADER_MAGIC);
    bytes[8..12].copy_from_slice(&LOG_VERSION.to_le_bytes());
    let words = [header.epoch, header.journal, header.base.0, header.base.1];
    for (i, word) in words.into_iter().enumerate() {
        bytes[16 + 8 * i..24 + 8 * i].copy_from_slice(&word.to_le_bytes());
    }
    let crc = crc32fast::hash(&bytes[16..]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// The header in a slot, if the slot is whole.
fn decode_header(bytes: &[u8; HEADER_LEN]) -> Option<Header> {
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    let crc = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
    let whole = bytes[..8] == *HEADER_MAGIC
        && version == LOG_VERSION
        && crc == crc32fast::hash(&bytes[16..]);
    whole.then(|| Header {
        epoch: word(16),
        journal: word(24),
        base: (word(32), word(40)),
    })
}

/// A record's fixed part, decoded.
struct RecordHead {
    magic: u32,
    crc: u32,
    epoch: u64,
    seq: u64,
    size: u64,
}

impl RecordHead {
    fn decode(head: &[u8]) -> Self {
        let word = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap());
        RecordHead {
            magic: u32::from_le_bytes(head[..4].try_into().unwrap()),
            crc: u32::from_le_bytes(head[4..8].try_into().unwrap()),
            epoch: word(8),
            seq: word(16),
            size: word(24),
        }
    }
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
    let fields = RecordHead::decode(&head);
    if fields.magic != RECORD_MAGIC || fields.epoch != epoch || fields.seq != seq {
        return Ok(None);
    }
    if fields.size > len - at - RECORD_HEAD as u64 {
        return Ok(None);
    }
    let mut record = vec![0u8; RECORD_HEAD + fields.size as usize];
    file.read(at, &mut record)?;
    if fields.crc != crc32fast::hash(&record[8..]) {
        return Ok(None);
    }
    record.drain(..RECORD_HEAD);
    Ok(Some(record))
}

/// Looks in `[from, len)` for a whole record replay should have reached: one of `epoch`
/// numbered after `last`, or one of a later epoch (its header was lost). Only damage
/// leaves one: a crash tears the last append only.
fn find_stranded_record(
    file: &dyn StorageBackend,
    len: u64,
    from: u64,
    epoch: u64,
    last: u64,
) -> io::Result<Option<(LogPosition, String)>> {
    if from >= len {
        return Ok(None);
    }
    // Records may sit anywhere behind a damaged one (its length field is not to be
    // trusted), so every offset is a candidate; the log is a few MiB at most.
    let mut rest = vec![0u8; (len - from) as usize];
    file.read(from, &mut rest)?;
    let magic = RECORD_MAGIC.to_le_bytes();
    let mut at = 0;
    while at + RECORD_HEAD <= rest.len() {
        let Some(found) = rest[at..].windows(4).position(|w| w == magic) else {
            break;
        };
        at += found;
        if at + RECORD_HEAD > rest.len() {
            break;
        }
        let head = RecordHead::decode(&rest[at..at + RECORD_HEAD]);
        let stranded = (head.epoch == epoch && head.seq > last) || head.epoch > epoch;
        let fits = head.size <= (rest.len() - at - RECORD_HEAD) as u64;
        if stranded && fits {
            let end = at + RECORD_HEAD + head.size as usize;
            if head.crc == crc32fast::hash(&rest[at + 8..end]) {
                let what = if head.epoch == epoch {
                    format!(
                        "record {} is whole at byte {}, but record {} before it is not",
                        head.seq,
                        from + at as u64,
                        last + 1
                    )
                } else {
                    format!(
                        "a whole record of epoch {} is at byte {}, but no whole header \
                         names that epoch",
                        head.epoch,
                        from + at as u64
                    )
                };
                return Ok(Some(((head.epoch, head.seq), what)));
            }
        }
        at += 1;
    }
    Ok(None)
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
        log.start_over((recovered.epoch(), 0)).unwrap();
        let payloads: Vec<Vec<u8>> = (0..300u32)
            .map(|i| vec![i as u8; i as usize * 37])
            .collect();
        for p in &payloads {
            log.append(p).unwrap();
        }
        let epoch = log.position().0;
        assert_eq!(log.position(), (epoch, 300));
        let (mut log, recovered) = reopen(&file);
        assert_eq!(recovered.epoch(), epoch);
        assert_eq!(recovered.header.unwrap().journal, 42);
        let (_, other) = WriteAheadLog::open(Box::new(file.clone()), 7).unwrap();
        assert_eq!(
            other.header.unwrap().journal,
            42,
            "the header names the journal it was written for"
        );
        let seqs: Vec<u64> = recovered.records.iter().map(|r| r.0).collect();
        assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
        assert!(recovered.records.iter().map(|r| &r.1).eq(payloads.iter()));

        // A new epoch hides the old records even where they were not overwritten.
        log.start_over((recovered.epoch(), 300)).unwrap();
        assert!(log.position().0 > epoch);
        log.append(b"only").unwrap();
        let (_, recovered) = reopen(&file);
        assert_eq!(recovered.records, vec![(1, b"only".to_vec())]);
    }

    #[test]
    fn a_torn_last_record_ends_the_log_and_damage_before_whole_records_is_found() {
        let file = Shared::default();
        let (mut log, recovered) = reopen(&file);
        log.start_over((recovered.epoch(), 0)).unwrap();
        for i in 0..5u8 {
            log.append(&[i; 100]).unwrap();
        }
        let record = |n: u64| HEADER_BYTES + n * (RECORD_HEAD as u64 + 100);
        let flip = |at: u64| {
            let mut byte = [0u8];
            file.read(at, &mut byte).unwrap();
            file.write(at, &[byte[0] ^ 1]).unwrap();
        };
        // The last record torn: the log ends before it, and nothing says otherwise.
        flip(record(4) + 40);
        let (_, recovered) = reopen(&file);
        assert_eq!(recovered.records.len(), 4);
        assert!(recovered.damage.is_none());
        flip(record(4) + 40);

        // The third record damaged: the two after it are whole, so it is no torn tail.
        flip(record(2) + RECORD_HEAD as u64 + 7);
        let (_, recovered) = reopen(&file);
        assert_eq!(recovered.records.len(), 2);
        let (position, what) = recovered.damage.unwrap();
        assert_eq!(position.1, 4, "{what}");
        flip(record(2) + RECORD_HEAD as u64 + 7);

        // A damaged header: the other slot is empty, and whole records remain.
        flip(12);
        let (_, recovered) = reopen(&file);
        assert!(recovered.header.is_none() && recovered.records.is_empty());
        assert!(recovered.damage.is_some());
    }

    #[test]
    fn a_new_epoch_goes_to_the_other_slot_and_a_torn_one_leaves_the_previous() {
        let file = Shared::default();
        let (mut log, recovered) = reopen(&file);
        log.start_over((recovered.epoch(), 0)).unwrap();
        log.append(b"one").unwrap();
        let first = log.position();
        log.start_over(first).unwrap();
        let second = log.epoch();
        // The second header torn: the first is in force, its record all checkpointed.
        let slot = SLOT_OFFSETS.iter().find(|&&o| {
            let mut b = [0u8; HEADER_LEN];
            file.read(o, &mut b).unwrap();
            decode_header(&b).is_some_and(|h| h.epoch == second)
        });
        file.write(*slot.unwrap() + 20, &[0xAB]).unwrap();
        let (_, recovered) = reopen(&file);
        assert_eq!(recovered.epoch(), first.0);
        assert!(recovered.damage.is_none());
        assert_eq!(file.len().unwrap() % GROWTH, 0);
    }

    #[test]
    fn an_emptied_log_holds_nothing() {
        let file = Shared::default();
        let (mut log, recovered) = reopen(&file);
        log.start_over((recovered.epoch(), 0)).unwrap();
        log.append(b"x").unwrap();
        log.empty().unwrap();
        assert_eq!(file.len().unwrap(), 0);
        let (_, recovered) = reopen(&file);
        assert!(recovered.records.is_empty());
    }
}
