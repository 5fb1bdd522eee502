//! A storage backend that holds redb's writes in memory until it is told to let them
//! through: what lets an open refuse a journal without a byte of its file changing.
//!
//! Opening a journal that was not shut down cleanly makes redb repair it (and an
//! integrity check commits), before anything can be read; only then can the journal's
//! meta table say whether its write-ahead log goes with it. On this backend those
//! writes land in an overlay of pages that reads see, and are recorded in order;
//! [`Deferred::release`] replays them on the file, syncs included, once the open has
//! decided to go on: the file sees redb's own sequence of writes and syncs, so a crash
//! during the release is one redb recovers from. Dropped unreleased, the file is as it
//! was.

use std::collections::BTreeMap;
use std::io;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use redb::{BackendError, StorageBackend};

const PAGE: u64 = 4096;

/// A call held back, to replay on the file.
#[derive(Debug)]
enum Call {
    Write(u64, Vec<u8>),
    SetLen(u64),
    Sync,
}

/// Writes held back, and what the file looks like through them.
#[derive(Debug, Default)]
struct Overlay {
    /// The calls, in the order redb made them.
    calls: Vec<Call>,
    /// Whole pages as redb wrote them (page number → bytes).
    pages: BTreeMap<u64, Vec<u8>>,
    /// The length redb sees.
    len: u64,
    /// Bytes of the file below this are still what redb sees where no page overrides
    /// them (a shrink hides the rest).
    file_visible: u64,
}

#[derive(Debug)]
struct Inner {
    file: Box<dyn StorageBackend>,
    deferring: AtomicBool,
    overlay: Mutex<Overlay>,
}

/// The backend given to redb (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Deferred(Arc<Inner>);

impl Deferred {
    /// Wraps `file`, holding writes back until [`release`](Self::release).
    pub(crate) fn new(file: Box<dyn StorageBackend>) -> io::Result<Self> {
        let len = file.len()?;
        Ok(Deferred(Arc::new(Inner {
            file,
            deferring: AtomicBool::new(true),
            overlay: Mutex::new(Overlay {
                calls: Vec::new(),
                pages: BTreeMap::new(),
                len,
                file_visible: len,
            }),
        })))
    }

    /// Replays the calls held back on the file, in order, and syncs it; from then on
    /// every call goes straight to the file.
    pub(crate) fn release(&self) -> io::Result<()> {
        let mut overlay = self.lock();
        if !self.0.deferring.load(Ordering::Acquire) {
            return Ok(());
        }
        let file = &self.0.file;
        for call in &overlay.calls {
            match call {
                Call::Write(offset, data) => file.write(*offset, data)?,
                Call::SetLen(len) => file.set_len(*len)?,
                Call::Sync => file.sync_data()?,
            }
        }
        if !overlay.calls.is_empty() {
            file.sync_data()?;
        }
        overlay.calls = Vec::new();
        overlay.pages = BTreeMap::new();
        self.0.deferring.store(false, Ordering::Release);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Overlay> {
        self.0.overlay.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deferring(&self) -> bool {
        self.0.deferring.load(Ordering::Acquire)
    }

    /// Reads `out.len()` bytes at `offset` of the file as the overlay shows it.
    fn read_page_through(&self, overlay: &Overlay, page: u64, out: &mut [u8]) -> io::Result<()> {
        let at = page * PAGE;
        out.fill(0);
        let visible = overlay.file_visible.min(overlay.len);
        if at < visible {
            let n = ((visible - at) as usize).min(out.len());
            self.0.file.read(at, &mut out[..n])?;
        }
        Ok(())
    }
}

impl StorageBackend for Deferred {
    fn len(&self) -> io::Result<u64> {
        if !self.deferring() {
            return self.0.file.len();
        }
        Ok(self.lock().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        if !self.deferring() {
            return self.0.file.read(offset, out);
        }
        let overlay = self.lock();
        if offset + out.len() as u64 > overlay.len {
            // As a file does: redb tells a short file by this error.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the file",
            ));
        }
        let mut done = 0;
        let mut page_bytes = vec![0u8; PAGE as usize];
        while done < out.len() {
            let at = offset + done as u64;
            let (page, within) = (at / PAGE, (at % PAGE) as usize);
            let n = (PAGE as usize - within).min(out.len() - done);
            match overlay.pages.get(&page) {
                Some(bytes) => out[done..done + n].copy_from_slice(&bytes[within..within + n]),
                None => {
                    self.read_page_through(&overlay, page, &mut page_bytes)?;
                    out[done..done + n].copy_from_slice(&page_bytes[within..within + n]);
                }
            }
            done += n;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if !self.deferring() {
            return self.0.file.set_len(len);
        }
        let mut overlay = self.lock();
        overlay.calls.push(Call::SetLen(len));
        if len < overlay.len {
            overlay.file_visible = overlay.file_visible.min(len);
            let first_gone = len.div_ceil(PAGE);
            overlay.pages.retain(|&page, _| page < first_gone);
            if let Some(bytes) = overlay.pages.get_mut(&(len / PAGE)) {
                bytes[(len % PAGE) as usize..].fill(0);
            }
        }
        overlay.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        if !self.deferring() {
            return self.0.file.sync_data();
        }
        self.lock().calls.push(Call::Sync);
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if !self.deferring() {
            return self.0.file.write(offset, data);
        }
        let mut overlay = self.lock();
        overlay.calls.push(Call::Write(offset, data.to_vec()));
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let (page, within) = (at / PAGE, (at % PAGE) as usize);
            let n = (PAGE as usize - within).min(data.len() - done);
            if !overlay.pages.contains_key(&page) {
                let mut bytes = vec![0u8; PAGE as usize];
                self.read_page_through(&overlay, page, &mut bytes)?;
                overlay.pages.insert(page, bytes);
            }
            let bytes = overlay.pages.get_mut(&page).expect("inserted above");
            bytes[within..within + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        overlay.len = overlay.len.max(offset + data.len() as u64);
        Ok(())
    }

    fn close(&self) -> io::Result<()> {
        self.0.file.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.0.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.file.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.file.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.file.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::backends::InMemoryBackend;

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

    fn contents(file: &dyn StorageBackend) -> Vec<u8> {
        let mut bytes = vec![0; file.len().unwrap() as usize];
        file.read(0, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn writes_reach_the_file_only_when_released() {
        let file = Shared::default();
        file.set_len(10_000).unwrap();
        file.write(0, &[7; 10_000]).unwrap();
        let deferred = Deferred::new(Box::new(file.clone())).unwrap();
        deferred.write(4090, &[1; 20]).unwrap();
        deferred.set_len(6000).unwrap();
        deferred.set_len(9010).unwrap();
        deferred.write(8990, &[2; 20]).unwrap();
        let mut expected = vec![7u8; 6000];
        expected[4090..4110].fill(1);
        expected.resize(9010, 0);
        expected[8990..9010].fill(2);
        assert_eq!(contents(&deferred), expected);
        assert_eq!(
            contents(&file),
            vec![7; 10_000],
            "the file was written early"
        );
        deferred.release().unwrap();
        assert_eq!(contents(&file), expected);
        deferred.write(0, &[3]).unwrap();
        assert_eq!(contents(&file)[0], 3);
    }
}

#[cfg(test)]
mod differential {
    use super::*;
    use redb::backends::InMemoryBackend;

    #[test]
    fn matches_a_plain_backend() {
        let mut seed = 0x9E3779B97F4A7C15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..200 {
            let base = InMemoryBackend::new();
            base.set_len(20_000).unwrap();
            base.write(0, &vec![5u8; 20_000]).unwrap();
            let plain = InMemoryBackend::new();
            plain.set_len(20_000).unwrap();
            plain.write(0, &vec![5u8; 20_000]).unwrap();
            let deferred = Deferred::new(Box::new(base)).unwrap();
            for step in 0..30 {
                match next(3) {
                    0 => {
                        let len = next(30_000);
                        deferred.set_len(len).unwrap();
                        plain.set_len(len).unwrap();
                    }
                    _ => {
                        let len = plain.len().unwrap();
                        if len == 0 {
                            continue;
                        }
                        let at = next(len);
                        let n = next((len - at).min(9000)) as usize;
                        let data: Vec<u8> = (0..n).map(|i| (i as u64 + step) as u8).collect();
                        deferred.write(at, &data).unwrap();
                        plain.write(at, &data).unwrap();
                    }
                }
                let len = plain.len().unwrap();
                assert_eq!(deferred.len().unwrap(), len, "round {round} step {step}");
                let (mut a, mut b) = (vec![0; len as usize], vec![0; len as usize]);
                deferred.read(0, &mut a).unwrap();
                plain.read(0, &mut b).unwrap();
                assert!(a == b, "round {round} step {step}");
            }
        }
    }
}
