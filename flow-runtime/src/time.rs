//! Wall-clock time as the journal stores it: whole milliseconds since the Unix epoch.
//!
//! Shared by the engine (deadlines it computes) and the store (deadlines it renews), so
//! it belongs to neither.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The time now, in ms since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

/// A duration in whole milliseconds, saturating at `u64::MAX` (a stored policy or timeout
/// may hold any `Duration`: never truncate it to a short one).
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

thread_local! {
    /// The virtual time `flow::testing` runs a workflow step at on this thread, if any.
    static VIRTUAL_NOW_MS: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// The wall-clock instant a workflow step computes deadlines from (`flow::sleep`): the
/// real clock, or the test environment's virtual clock while it runs a step.
pub(crate) fn workflow_now() -> SystemTime {
    match VIRTUAL_NOW_MS.with(|now| now.get()) {
        Some(ms) => UNIX_EPOCH + Duration::from_millis(ms),
        None => SystemTime::now(),
    }
}

/// Runs `f` with the virtual clock at `now_ms` on this thread (see [`workflow_now`]).
pub(crate) fn with_virtual_now<R>(now_ms: u64, f: impl FnOnce() -> R) -> R {
    /// Puts the previous value back, also when `f` panics.
    struct Restore(Option<u64>);
    impl Drop for Restore {
        fn drop(&mut self) {
            VIRTUAL_NOW_MS.with(|now| now.set(self.0));
        }
    }
    let _restore = Restore(VIRTUAL_NOW_MS.with(|now| now.replace(Some(now_ms))));
    f()
}
