//! What a driver keeps between turns instead of reading the journal: the run's machine,
//! and the run as its own last commit left it (`project`); and what the committer of a
//! run's first transition hands its new driver (`Handover`).

use std::convert::Infallible;

use crate::machine::Machine;
use crate::store::{Branch, PendingChange, RunWrite, Snapshot};

/// A machine kept in memory between steps, valid while the run's header has `steps`.
pub(crate) struct CachedMachine {
    pub machine: Machine,
    pub steps: u64,
}

/// Whether a snapshot is simple enough to keep between turns: a pending operation made of task
/// calls only (no map, callback, signal, sleep or child: their records are also changed by
/// others, e.g. a heartbeat), no cancellation asked for.
pub(super) fn cacheable(snap: &Snapshot) -> bool {
    snap.map.is_none()
        && !snap.cancel_requested
        && !snap.header.status.is_settled()
        && snap.pending.as_ref().is_some_and(|op| {
            op.shape.map_spec().is_none()
                && op.branches.iter().all(|b| matches!(b, Branch::Task { .. }))
        })
}

/// The run as the journal holds it once `write`, computed from `snap`, has committed (and
/// nothing else changed the run: whatever else changes it wakes it, which makes the next
/// turn read the journal); `None` when that is not simple to know.
pub(crate) fn project(mut snap: Snapshot, write: &RunWrite) -> Option<Snapshot> {
    if write.continue_as_new.is_some()
        || write.map_items.is_some()
        || !write.children.is_empty()
        || !write.tokens.is_empty()
        || !write.cancel_runs.is_empty()
        || write.run_deadline.is_some()
        || write.run_timed_out
        || write.consume_cancel
        || write.header.status.is_settled()
        || snap.map.is_some()
    {
        return None;
    }
    match &write.pending {
        PendingChange::Keep => {}
        PendingChange::Set(op) => {
            if snap.pending.as_ref().map(|p| p.step) != Some(op.step) {
                snap.branches.clear();
            }
            snap.pending = Some(op.clone());
        }
        PendingChange::Remove => return None,
    }
    let step = snap.pending.as_ref()?.step;
    if write.clear_branches == Some(step) {
        snap.branches.clear();
    }
    // The store's rule for a put over a finished branch, followed as it is.
    for put in &write.branch_puts {
        if put.step != step {
            continue;
        }
        let stored = snap.branches.get(&put.branch);
        let Ok(replaces) =
            put.replaces(|| Ok::<_, Infallible>(stored.is_some_and(|r| r.is_finished())));
        if replaces {
            snap.branches.insert(put.branch, put.record.clone());
        }
    }
    snap.header = write.header.clone();
    cacheable(&snap).then_some(snap)
}

/// What the committer of a run's first transition hands its new driver, so that the
/// driver's first turn neither reads the run nor rebuilds its machine.
pub(crate) struct Handover {
    pub machine: CachedMachine,
    /// The run as the journal holds it after that transition (see [`project`]).
    pub snapshot: Option<Snapshot>,
}
