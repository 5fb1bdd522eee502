//! Runs this engine parked because it lacks code they need (a task not linked into the
//! program, a type their stored state no longer decodes as). Such a run stays pending and
//! active in the journal, unchanged; this engine no longer drives it (nothing it could do
//! would differ), and the next engine that opens the journal tries again.

use std::collections::HashMap;
use std::sync::Mutex;

/// Why a run is parked while `Engine::upgrade` moves it.
const UPGRADING: &str = "the run is being moved to another version of its workflow";

/// Parked runs and why, for this engine's lifetime.
#[derive(Default)]
pub(crate) struct BlockedRuns {
    reasons: Mutex<HashMap<String, String>>,
}

impl BlockedRuns {
    /// Parks `run_id` for `reason`.
    pub(crate) fn park(&self, run_id: &str, reason: String) {
        self.lock().insert(run_id.to_string(), reason);
    }

    /// Why `run_id` is parked, if it is.
    pub(crate) fn reason(&self, run_id: &str) -> Option<String> {
        self.lock().get(run_id).cloned()
    }

    /// Parks `run_id` while `Engine::upgrade` moves it to another version, so that no
    /// driver starts on it meanwhile (`status` says so for that long); returns the reason
    /// it was parked for before, which [`unpark`](Self::unpark) puts back. `None` if an
    /// upgrade of the run is in progress already.
    pub(crate) fn park_for_upgrade(&self, run_id: &str) -> Option<Option<String>> {
        let mut reasons = self.lock();
        if reasons.get(run_id).map(String::as_str) == Some(UPGRADING) {
            return None;
        }
        Some(reasons.insert(run_id.to_string(), UPGRADING.to_string()))
    }

    /// Ends an upgrade's parking: back to `before`, the reason the run was parked for
    /// before it (the next wake-up tries the run again whatever it was).
    pub(crate) fn unpark(&self, run_id: &str, before: Option<String>) {
        let mut reasons = self.lock();
        match before {
            Some(reason) => reasons.insert(run_id.to_string(), reason),
            None => reasons.remove(run_id),
        };
    }

    pub(crate) fn is_parked(&self, run_id: &str) -> bool {
        self.lock().contains_key(run_id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // The map stays consistent even if a holder panicked: each operation is one call.
        self.reasons.lock().unwrap_or_else(|e| e.into_inner())
    }
}
