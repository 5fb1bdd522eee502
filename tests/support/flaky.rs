//! A storage backend on memory that outlives its engine and whose writes can be made to
//! fail (`failing`): a disk that refuses writes (or is full), for tests of what a failed
//! commit does.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use redb::backends::InMemoryBackend;
use redb::StorageBackend;

/// A backend on memory that survives its engine, whose writes can be made to fail.
#[derive(Debug, Clone, Default)]
pub struct Flaky {
    data: Arc<InMemoryBackend>,
    /// While true, every write, resize and sync fails.
    pub failing: Arc<AtomicBool>,
    /// The OS error the failures carry (`None`: a plain I/O error).
    os_error: Option<i32>,
}

impl Flaky {
    /// A disk that, once `failing`, is full: its failures say "no space left on device".
    pub fn filling() -> Self {
        Flaky {
            os_error: Some(28),
            ..Flaky::default()
        }
    }

    fn check(&self) -> io::Result<()> {
        match (self.failing.load(Ordering::SeqCst), self.os_error) {
            (false, _) => Ok(()),
            (true, Some(code)) => Err(io::Error::from_raw_os_error(code)),
            (true, None) => Err(io::Error::other("simulated disk failure")),
        }
    }
}

impl StorageBackend for Flaky {
    fn len(&self) -> io::Result<u64> {
        self.data.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.data.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check()?;
        self.data.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.check()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check()?;
        self.data.write(offset, data)
    }
}
