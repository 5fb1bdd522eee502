//! The virtual clock of a test environment: wall-clock milliseconds that move only when
//! the test advances them, shared by the environment and its handles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Virtual wall-clock time, in milliseconds since the Unix epoch.
#[derive(Clone, Debug)]
pub(super) struct Clock {
    now_ms: Arc<AtomicU64>,
    start_ms: u64,
}

impl Clock {
    /// A clock standing at `start`.
    pub(super) fn starting_at(start: SystemTime) -> Self {
        let start_ms = start
            .duration_since(UNIX_EPOCH)
            .map(crate::time::millis)
            .unwrap_or(0);
        Clock {
            now_ms: Arc::new(AtomicU64::new(start_ms)),
            start_ms,
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    /// Moves the clock to `ms`; never backwards.
    pub(super) fn set_ms(&self, ms: u64) {
        self.now_ms.fetch_max(ms, Ordering::SeqCst);
    }

    pub(super) fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.now_ms())
    }

    /// Virtual time passed since the clock was made.
    pub(super) fn elapsed(&self) -> Duration {
        Duration::from_millis(self.now_ms().saturating_sub(self.start_ms))
    }
}
