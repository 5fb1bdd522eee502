//! Which runs have a driver in memory, and who waits for which run to finish.
//!
//! At most one driver works on a run. Waking a run either nudges its live driver or
//! spawns one; a driver leaves only after checking, under the same lock, that nobody woke
//! it meanwhile, so no wake-up is lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::engine::attempt::RunningAttempts;
use crate::engine::driver::DurableStarts;
use crate::store::StoredStatus;

/// Live drivers by run ID.
#[derive(Default)]
pub(crate) struct Drivers {
    map: Mutex<HashMap<String, Arc<DriverSlot>>>,
    /// Signalled whenever a driver leaves (the timer service waits on it when too many
    /// drivers are live).
    pub left: Notify,
    /// Attempts whose start this engine recorded and has not begun yet, and when it
    /// opened: what tells an attempt interrupted by an earlier engine's end from one
    /// about to start.
    pub starts: DurableStarts,
    /// Attempts running now, for `Engine::attempts_in_progress`.
    pub running: Arc<RunningAttempts>,
}

/// How a live driver is woken: shared by the driver and its entry in [`Drivers`].
#[derive(Default)]
pub(crate) struct DriverSlot {
    /// Set by every wake-up (under the map's lock); cleared by the driver's next turn.
    woken: AtomicBool,
    notify: Notify,
}

impl DriverSlot {
    /// Called by a driver before it reads the run: wake-ups until now are covered. Returns
    /// whether the run was woken since the last call (its journal state may have changed
    /// under the driver, so the driver must read it).
    pub(crate) fn take_woken(&self) -> bool {
        self.woken.swap(false, Ordering::AcqRel)
    }

    /// Resolves at the next wake-up (or at once if one came since the last wait).
    pub(crate) async fn notified(&self) {
        self.notify.notified().await
    }
}

impl Drivers {
    /// Wakes the run's driver; returns the new driver's slot if one must be spawned.
    pub(crate) fn wake(&self, run_id: &str) -> Option<Arc<DriverSlot>> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = map.get(run_id) {
            slot.woken.store(true, Ordering::Release);
            slot.notify.notify_one();
            return None;
        }
        let slot = Arc::new(DriverSlot::default());
        map.insert(run_id.to_string(), slot.clone());
        Some(slot)
    }

    /// How many runs have a driver now.
    pub(crate) fn live(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Removes the driver unless it was woken since its last read; true if it left.
    pub(crate) fn try_leave(&self, run_id: &str) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(run_id) {
            Some(slot) if slot.woken.load(Ordering::Acquire) => false,
            _ => {
                map.remove(run_id);
                drop(map);
                self.left.notify_waiters();
                true
            }
        }
    }

    /// Removes the driver whatever happened (it stopped or failed).
    pub(crate) fn leave(&self, run_id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(run_id);
        self.left.notify_waiters();
    }

    /// Whether the run has a driver now. A driver leaves before it tells the run's
    /// waiters that the run ended (or that it is gone), so a waiter subscribed before
    /// asking learns of the end from the notification.
    pub(crate) fn is_live(&self, run_id: &str) -> bool {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(run_id)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Notifiers for callers waiting on a run's result; entries exist only while someone waits.
#[derive(Default)]
pub(crate) struct Waiters {
    map: Mutex<HashMap<String, (usize, Arc<Waiting>)>>,
}

/// What the waiters on one run share.
#[derive(Default)]
pub(crate) struct Waiting {
    pub notify: Notify,
    /// The run's end, as committed, when whoever ended it handed it over.
    ended: Mutex<Option<RunEnd>>,
}

impl Waiting {
    /// The run's end, if it was handed over.
    pub(crate) fn ended(&self) -> Option<RunEnd> {
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// How a run ended: its status and, if it completed, its encoded output.
pub(crate) type RunEnd = (StoredStatus, Option<Vec<u8>>);

/// A registration in [`Waiters`]; unregisters on drop.
pub(crate) struct WaiterGuard<'a> {
    waiters: &'a Waiters,
    run_id: String,
    pub waiting: Arc<Waiting>,
}

impl Waiters {
    pub(crate) fn subscribe(&self, run_id: &str) -> WaiterGuard<'_> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map
            .entry(run_id.to_string())
            .or_insert_with(|| (0, Arc::default()));
        entry.0 += 1;
        WaiterGuard {
            waiters: self,
            run_id: run_id.to_string(),
            waiting: entry.1.clone(),
        }
    }

    /// Wakes everyone waiting on the run, which ended (durably) as `end` if given: they
    /// need not read it from the journal.
    pub(crate) fn notify(&self, run_id: &str, end: Option<RunEnd>) {
        if let Some((_, waiting)) = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(run_id)
        {
            if end.is_some() {
                *waiting.ended.lock().unwrap_or_else(|e| e.into_inner()) = end;
            }
            waiting.notify.notify_waiters();
        }
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.waiters.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = map.get_mut(&self.run_id) {
            entry.0 -= 1;
            if entry.0 == 0 {
                map.remove(&self.run_id);
            }
        }
    }
}
