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
