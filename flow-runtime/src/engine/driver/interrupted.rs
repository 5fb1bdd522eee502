//! Attempts interrupted by the end of an engine (a crash, a kill, a power loss): they
//! count as failed attempts, so a task that brings the process down every time ends after
//! its `max_attempts` instead of looping for ever.
//!
//! No attempt writes anything before it runs on the hot path. An engine that finds a task
//! due from before it opened cannot know whether an earlier engine had begun it, so it
//! records the attempt's start (`BranchRecord::Started`, committed right before the
//! attempt begins) and runs it. An engine that finds a `Started` it did not write knows
//! the attempt was interrupted, and judges it as a failed attempt
//! (`TaskFailure::Interrupted`); the retry it schedules (`RetryingAfterInterrupted`)
//! records its start too when it comes due. At-most-once tasks (`#[task(at_most_once)]`)
//! record every attempt's start, and an interrupted attempt of theirs is final: its
//! failure reaches the workflow.
//!
//! What this costs: one extra durable write per task found due at recovery, and one per
//! attempt of a task that already crashed the process (or is at-most-once). The first
//! attempt that brings an engine down without a start record runs once more (with one),
//! so a task that crashes the process every time brings it down `max_attempts + 1` times.
//! An engine that stops between recording a start and beginning the attempt (a window
//! of one turn) leaves an attempt that counts as interrupted though it never ran:
//! at-most-once cannot tell the two apart.

use std::collections::HashSet;
use std::sync::Mutex;

use super::AttemptKey;
use crate::time::now_ms;

/// The starts this engine recorded and has not begun yet, and when it opened.
pub(crate) struct DurableStarts {
    /// Wall-clock time the engine opened: a task due before it may have been running in
    /// an earlier engine. (Work due in the very millisecond of the opening is taken for
    /// this engine's own: a miss only runs an attempt again unrecorded, as before.)
    opened_ms: u64,
    pending: Mutex<HashSet<(String, AttemptKey, u32)>>,
}

impl Default for DurableStarts {
    fn default() -> Self {
        DurableStarts {
            opened_ms: now_ms(),
            pending: Mutex::new(HashSet::new()),
        }
    }
}

impl DurableStarts {
    /// Whether work due at `due_ms` may have begun before this engine opened.
    pub(crate) fn due_before_open(&self, due_ms: u64) -> bool {
        due_ms < self.opened_ms
    }

    /// This engine is recording the start of `attempt` (its next turn begins it).
    pub(super) fn recorded(&self, run: &str, key: AttemptKey, attempt: u32) {
        self.lock().insert((run.to_string(), key, attempt));
    }

    /// Whether this engine recorded the start of `attempt` and has not begun it.
    pub(super) fn is_recorded(&self, run: &str, key: AttemptKey, attempt: u32) -> bool {
        self.lock().contains(&(run.to_string(), key, attempt))
    }

    /// The attempt begins: its record is no longer pending.
    pub(super) fn begun(&self, run: &str, key: AttemptKey, attempt: u32) {
        self.lock().remove(&(run.to_string(), key, attempt));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(String, AttemptKey, u32)>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}
