//! A simulated disk with a volatile write cache, for power-loss tests: two files (the
//! journal and its write-ahead log), each a `redb::StorageBackend` whose writes are
//! visible to reads at once but survive a power cut only once that file's `sync_data`
//! returned. One power supply: a cut hits both files at once, and a sync of one file
//! orders nothing of the other's. Included by `tests/power_loss.rs` and
//! `tests/write_ahead_log.rs` only (it needs `redb`); each uses part of it.
#![allow(dead_code)]

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use redb::StorageBackend;

use crate::support::rng::XorShift;

/// Block size for sector-aligned tearing.
pub const SECTOR: usize = 512;

/// What reaches the platter when the power goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutMode {
    /// Nothing written since the last `sync_data` survives.
    DropUnsynced,
    /// Unsynced writes reached the disk in order, but the last one was torn: only a
    /// prefix of it (a whole number of sectors, or any length) is there.
    TearLastWrite,
    /// Any subset of the unsynced writes survives, in any order, some of them torn: what
    /// a drive that reorders its cache may leave (only `sync_data` orders writes).
    ScrambleUnsynced,
}

#[derive(Debug, Clone)]
enum Pending {
    Write { offset: usize, data: Vec<u8> },
    SetLen(usize),
}

/// The files on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum File {
    Journal = 0,
    Log = 1,
}

/// The contents of both files.
#[derive(Debug, Clone, Default)]
pub struct Image {
    pub journal: Vec<u8>,
    pub log: Vec<u8>,
}

impl Image {
    fn file(&self, file: File) -> &Vec<u8> {
        match file {
            File::Journal => &self.journal,
            File::Log => &self.log,
        }
    }

    fn file_mut(&mut self, file: File) -> &mut Vec<u8> {
        match file {
            File::Journal => &mut self.journal,
            File::Log => &mut self.log,
        }
    }
}

struct DiskState {
    /// What reads see: the durable image plus the cached writes.
    visible: Image,
    /// What survives a power cut.
    durable: Image,
    /// Writes and length changes not yet synced (by their file), oldest first.
    pending: Vec<(File, Pending)>,
    /// `write`, `set_len` and `sync_data` calls so far.
    calls: u64,
    /// The call that cuts the power (it fails, and so does everything after it).
    cut_at: Option<u64>,
    mode: CutMode,
    rng: XorShift,
    powered: bool,
    /// What the cut did, for the report.
    cut_note: String,
}

/// The disk; clones share it. The engine gets a [`DiskBackend`] on it, the test keeps a
/// `Disk` to arm the power cut and to take the surviving image afterwards.
#[derive(Clone)]
pub struct Disk(Arc<Mutex<DiskState>>);

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("Disk")
            .field("journal_len", &s.visible.journal.len())
            .field("log_len", &s.visible.log.len())
            .field("calls", &s.calls)
            .field("powered", &s.powered)
            .finish()
    }
}

impl Disk {
    /// A disk holding `image`, all of it durable.
    pub fn new(image: Image, mode: CutMode, seed: u64) -> Self {
        Disk(Arc::new(Mutex::new(DiskState {
            visible: image.clone(),
            durable: image,
            pending: Vec::new(),
            calls: 0,
            cut_at: None,
            mode,
            rng: XorShift::new(seed),
            powered: true,
            cut_note: String::new(),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cuts the power at the `n`-th mutating call from now (1 = the next one).
    pub fn cut_after_calls(&self, n: u64) {
        let mut s = self.lock();
        s.cut_at = Some(s.calls + n.max(1));
    }

    /// A storage backend on the journal file, for `Engine::builder().backend(..)`.
    pub fn backend(&self) -> DiskBackend {
        DiskBackend(self.clone(), File::Journal)
    }

    /// A storage backend on the log file, for `Engine::builder().log_backend(..)`.
    pub fn log_backend(&self) -> DiskBackend {
        DiskBackend(self.clone(), File::Log)
    }

    pub fn is_cut(&self) -> bool {
        !self.lock().powered
    }

    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    pub fn cut_note(&self) -> String {
        self.lock().cut_note.clone()
    }

    /// What a killed process leaves (the OS still writes back its cache): every write
    /// the disk accepted, without the call the cut failed.
    pub fn written_image(&self) -> Image {
        self.lock().visible.clone()
    }

    /// What a fresh boot finds: after a cut, the durable image; without one, everything
    /// written (a clean shutdown lets the OS write its cache back).
    pub fn boot_image(&self) -> Image {
        let s = self.lock();
        if s.powered {
            s.visible.clone()
        } else {
            s.durable.clone()
        }
    }
}

fn dead() -> io::Error {
    io::Error::other("simulated power cut: the disk is gone")
}

fn out_of_range() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "read or write past the end of the disk",
    )
}

fn apply(image: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::SetLen(len) => image.resize(*len, 0),
        Pending::Write { offset, data } => {
            let end = offset + data.len();
            if image.len() < end {
                // Only reachable when the SetLen that made room was lost: a real file
                // would grow to hold the write.
                image.resize(end, 0);
            }
            image[*offset..end].copy_from_slice(data);
        }
    }
}

impl DiskState {
    /// Counts a mutating call; the one chosen cuts the power. `in_flight` is the write
    /// this call is making, which the cut may tear.
    fn tick(&mut self, in_flight: Option<(File, &Pending)>) -> io::Result<()> {
        if !self.powered {
            return Err(dead());
        }
        self.calls += 1;
        if self.cut_at == Some(self.calls) {
            if let Some((file, op)) = in_flight {
                self.pending.push((file, op.clone()));
            }
            self.power_cut();
            return Err(dead());
        }
        Ok(())
    }

    fn power_cut(&mut self) {
        self.powered = false;
        let pending = std::mem::take(&mut self.pending);
        let writes = pending
            .iter()
            .filter(|(_, p)| matches!(p, Pending::Write { .. }))
            .count();
        let mut durable = std::mem::take(&mut self.durable);
        let mut kept = 0;
        let mut torn = 0;
        match self.mode {
            CutMode::DropUnsynced => {}
            CutMode::TearLastWrite => {
                let last_write = pending
                    .iter()
                    .rposition(|(_, p)| matches!(p, Pending::Write { .. }));
                for (i, (file, op)) in pending.iter().enumerate() {
                    let image = durable.file_mut(*file);
                    if Some(i) == last_write {
                        let torn_op = self.tear(op);
                        apply(image, &torn_op);
                        torn += 1;
                    } else {
                        apply(image, op);
                        kept += usize::from(matches!(op, Pending::Write { .. }));
                    }
                }
            }
            CutMode::ScrambleUnsynced => {
                for (file, op) in &pending {
                    let image = durable.file_mut(*file);
                    match op {
                        // Length changes are file-system metadata: kept.
                        Pending::SetLen(_) => apply(image, op),
                        Pending::Write { .. } if self.rng.chance(1, 2) => {}
                        Pending::Write { .. } if self.rng.chance(1, 4) => {
                            let torn_op = self.tear(op);
                            apply(image, &torn_op);
                            torn += 1;
                        }
                        Pending::Write { .. } => {
                            apply(image, op);
                            kept += 1;
                        }
                    }
                }
            }
        }
        self.cut_note = format!(
            "call {}: {writes} unsynced writes, {kept} kept whole, {torn} torn",
            self.calls
        );
        self.durable = durable;
    }

    /// A prefix of a write: whole sectors, or any length.
    fn tear(&mut self, op: &Pending) -> Pending {
        let Pending::Write { offset, data } = op else {
            return op.clone();
        };
        let len = if self.rng.chance(1, 2) {
            (self.rng.range(0, data.len() as u64) as usize / SECTOR) * SECTOR
        } else {
            self.rng.range(0, data.len().saturating_sub(1) as u64) as usize
        };
        Pending::Write {
            offset: *offset,
            data: data[..len.min(data.len())].to_vec(),
        }
    }
}

/// The engine's side of one file of a [`Disk`].
#[derive(Debug)]
pub struct DiskBackend(Disk, File);

impl StorageBackend for DiskBackend {
    fn len(&self) -> Result<u64, io::Error> {
        let s = self.0.lock();
        if !s.powered {
            return Err(dead());
        }
        Ok(s.visible.file(self.1).len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let s = self.0.lock();
        if !s.powered {
            return Err(dead());
        }
        let offset = usize::try_from(offset).map_err(|_| out_of_range())?;
        let source = s
            .visible
            .file(self.1)
            .get(offset..offset + out.len())
            .ok_or_else(out_of_range)?;
        out.copy_from_slice(source);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let len = usize::try_from(len).map_err(|_| out_of_range())?;
        let mut s = self.0.lock();
        let op = Pending::SetLen(len);
        s.tick(None)?;
        apply(s.visible.file_mut(self.1), &op);
        s.pending.push((self.1, op));
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let mut s = self.0.lock();
        s.tick(None)?;
        let (synced, others) = std::mem::take(&mut s.pending)
            .into_iter()
            .partition::<Vec<_>, _>(|(file, _)| *file == self.1);
        s.pending = others;
        for (_, op) in &synced {
            apply(s.durable.file_mut(self.1), op);
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let offset = usize::try_from(offset).map_err(|_| out_of_range())?;
        let mut s = self.0.lock();
        if s.powered && offset + data.len() > s.visible.file(self.1).len() {
            return Err(out_of_range());
        }
        let op = Pending::Write {
            offset,
            data: data.to_vec(),
        };
        s.tick(Some((self.1, &op)))?;
        apply(s.visible.file_mut(self.1), &op);
        s.pending.push((self.1, op));
        Ok(())
    }

    fn close(&self) -> Result<(), io::Error> {
        Ok(())
    }
}
