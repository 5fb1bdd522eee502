//! The timer service: wakes runs whose deadline (sleep, signal timeout, retry) has come.
//!
//! Deadlines live only in the journal's `timers` table, ordered by time, so memory does
//! not grow with the number of sleeping runs. The service reads due entries in bounded
//! batches, wakes their runs, and sleeps until the next deadline or until told of an
//! earlier one. Entries are deleted by the run's own transition (never here), so a crash
//! between waking and handling loses nothing: the next open sees the entry again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::engine::Core;
use crate::store::{Journal, TimerStart};
use crate::time::now_ms;

/// Timers read per journal read.
const BATCH: usize = 256;
/// Above this many live drivers the service waits before waking more runs.
const MAX_LIVE_DRIVERS: usize = 10_000;

/// Where the next scan starts, and the service's doorbell.
pub(crate) struct Timers {
    start: Mutex<TimerStart>,
    notify: Notify,
}

impl Timers {
    pub(crate) fn new() -> Self {
        Timers {
            start: Mutex::new(TimerStart::From(0)),
            notify: Notify::new(),
        }
    }

    /// Tells the service that a timer at `deadline_ms` was committed.
    pub(crate) fn added(&self, deadline_ms: u64) {
        let mut start = self.start.lock().unwrap_or_else(|e| e.into_inner());
        let earlier = match &*start {
            TimerStart::From(ms) => deadline_ms < *ms,
            TimerStart::After(ms, _) => deadline_ms <= *ms,
        };
        if earlier {
            // Behind the scan position: rescan from there (runs woken twice just find
            // nothing to do).
            *start = TimerStart::From(deadline_ms);
        }
        drop(start);
        self.notify.notify_one();
    }
}

/// The service loop; ends when the engine stops.
pub(crate) async fn run(core: Arc<Core>) {
    let mut stop = core.stop_receiver();
    loop {
        if stop.borrow().is_some() {
            return;
        }
        while core.drivers.len() > MAX_LIVE_DRIVERS {
            let left = core.drivers.left.notified();
            tokio::select! {
                _ = left => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stop.changed() => return,
            }
        }
        let start = core
            .timers
            .start
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let now = now_ms();
        let scan = match core.store.scan_timers(&start, now, BATCH) {
            Ok(scan) => scan,
            Err(e) => {
                tracing::error!(error = %e, "could not read timers; retrying in a second");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        for (_, run_id) in &scan.due {
            core.wake(run_id);
        }
        if let Some((deadline, run_id)) = scan.due.last() {
            let mut position = core.timers.start.lock().unwrap_or_else(|e| e.into_inner());
            // Unless an earlier timer reset the position meanwhile.
            if *position == start {
                *position = TimerStart::After(*deadline, run_id.clone());
            }
        }
        if scan.due.len() == BATCH {
            tokio::task::yield_now().await;
            continue;
        }
        let sleep = match scan.next {
            Some(deadline) => Duration::from_millis(deadline.saturating_sub(now_ms()).max(1)),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = core.timers.notify.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = stop.changed() => return,
        }
    }
}
