//! Redrive: setting a failed, cancelled (or timed-out) or faulted run going again at the
//! step it ended in.
//!
//! A run that ends this way keeps its pending step, the results its branches had and its
//! locals (`step::end_run` leaves them), so the run can resume there: the branches that
//! had not finished get fresh attempts, those that had keep their results, and the steps
//! committed before are not run again.

use std::collections::BTreeMap;

use crate::engine::{step, Engine};
use crate::error::FlowError;
use crate::history::EventKind;
use crate::store::{Branch, BranchRecord, Change, Journal, RunWrite, Seen, StoredStatus};

impl Engine {
    /// Sets failed, cancelled (or timed-out) or faulted run `run_id` going again at the
    /// step it ended in: with the locals it had, the results that step's branches had,
    /// and fresh attempts for the rest (a task runs again from attempt 1; a failed
    /// step's machine runs again, for code that was fixed meanwhile). Steps committed
    /// before are not run again. The history records `RunRedriven`; a run-level
    /// timeout the run had is not restored, and a scheduled deletion
    /// ([`EngineBuilder::retention`](crate::EngineBuilder::retention)) is dropped.
    /// Returns once durable.
    ///
    /// A run that completed (also one whose workflow returned `Err`) is not redriven:
    /// its workflow decided how it ended.
    ///
    /// Errors: [`FlowError::UnknownRun`]; [`FlowError::NotRedrivable`] for a run in any
    /// other state; [`FlowError::RedriveNeedsChild`] when the step waits for a child
    /// run that ended without a result. Nothing is written then.
    ///
    /// ```no_run
    /// # async fn demo(engine: flow_runtime::Engine) -> Result<(), flow_runtime::FlowError> {
    /// engine.redrive("order-42").await?;
    /// # Ok(()) }
    /// ```
    pub async fn redrive(&self, run_id: &str) -> Result<(), FlowError> {
        let core = self.core();
        let snap = core
            .store
            .snapshot(run_id)?
            .ok_or_else(|| FlowError::UnknownRun {
                run_id: run_id.to_string(),
            })?;
        let ended = match &snap.header.status {
            StoredStatus::Failed(_) | StoredStatus::Cancelled | StoredStatus::Faulted(_) => {
                snap.header.status.to_public().to_string()
            }
            _ => {
                return Err(FlowError::NotRedrivable {
                    run_id: run_id.to_string(),
                    status: self.status(run_id).await?.to_string(),
                })
            }
        };
        // What the store keeps of the step's branches (see `Tables::apply_redrive`).
        let kept: BTreeMap<u32, BranchRecord> = snap
            .branches
            .iter()
            .filter(|(_, r)| r.is_finished() || matches!(r, BranchRecord::MapProgress(_)))
            .map(|(i, r)| (*i, r.clone()))
            .collect();
        if let Some(op) = &snap.pending {
            for (i, branch) in op.branches.iter().enumerate() {
                let Branch::Child { run_id: child, .. } = branch else {
                    continue;
                };
                let record = kept.get(&(i as u32));
                if matches!(record, Some(BranchRecord::Done(_))) {
                    continue;
                }
                let child_status = core.store.header(child)?.map(|h| h.status);
                let delivers = matches!(
                    child_status,
                    Some(ref s) if !s.is_settled() || *s == StoredStatus::Completed
                );
                if !delivers || matches!(record, Some(BranchRecord::Failed(_))) {
                    return Err(FlowError::RedriveNeedsChild {
                        run_id: run_id.to_string(),
                        child: child.clone(),
                        status: match child_status {
                            Some(s) => s.to_public().to_string(),
                            None => "deleted".to_string(),
                        },
                    });
                }
            }
        }
        let mut write = RunWrite::new(run_id, &snap.header);
        write.header.status = StoredStatus::Running;
        write.active = true;
        // Ending the run dropped its deadlines: the pending step gets them back.
        write.timers_add = match (&snap.pending, &snap.map) {
            (Some(_), Some(map)) => {
                step::map_needs(&map.items, &kept, &map.progress.open).deadlines
            }
            (Some(op), None) => step::needs(op, &kept).deadlines,
            (None, _) => Default::default(),
        }
        .into_iter()
        .collect();
        write.events.push(EventKind::RunRedriven { ended });
        write.seen = Some(Seen {
            nudges: snap.nudges,
            run_deadline: snap.run_deadline.is_some(),
            cancel: snap.cancel_requested,
        });
        let first_deadline = write.timers_add.iter().min().copied();
        core.commits.submit(Change::Redrive(write)).await?;
        if let Some(deadline) = first_deadline {
            core.timers.added(deadline);
        }
        core.wake(run_id);
        Ok(())
    }
}
