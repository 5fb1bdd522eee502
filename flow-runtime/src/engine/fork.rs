//! Fork: a new run that starts from another run's state as it was before one of its
//! steps, and performs that step afresh.
//!
//! The state is put back together from the journal: the locals from the slots each
//! transition up to the one that scheduled the step wrote (`STEP_STATES`), the program
//! counter from that transition, and the step's operation from the history's
//! `StepScheduled` event. The new run is created like any run, by one `Change::Start`.

use std::collections::BTreeMap;

use crate::engine::step::{self, Needs};
use crate::engine::{check_run_id, Engine};
use crate::error::FlowError;
use crate::history::{started_events, EventKind};
use crate::op::OpRequest;
use crate::store::{
    Applied, BranchPut, BranchRecord, Change, Journal, MapProgress, PendingChange, RunRecord,
    RunWrite, StartOutcome, StartWrite, StoredStatus, MAP_PROGRESS,
};
use crate::time::now_ms;

impl Engine {
    /// Starts run `new_run_id` from the state run `run_id` had before its step `step`
    /// (numbered from 0, as the history's `StepScheduled` events number them): the same
    /// workflow version and input, the locals as they were when that step was scheduled, and the
    /// step's operation performed afresh (new attempts, a new callback token, new child
    /// runs). The steps before it are not run. The new run's history begins with
    /// `RunStarted` and `RunForked`; the source run is not changed. Returns once the new
    /// run's start is durable; follow it with [`handle`](Self::handle).
    ///
    /// Errors, with nothing written: [`FlowError::UnknownRun`] for an unknown source,
    /// [`FlowError::RunIdConflict`] if `new_run_id` exists, [`FlowError::ForkRefused`]
    /// when the step cannot be forked from (not scheduled yet, before the run's last
    /// continue-as-new, recorded before flow kept step states, a map step, a run moved
    /// to another version by [`upgrade`](Self::upgrade), or a workflow this engine cannot
    /// drive).
    ///
    /// ```no_run
    /// # async fn demo(engine: flow_runtime::Engine) -> Result<(), flow_runtime::FlowError> {
    /// engine.fork("order-42", 3, "order-42-retry").await?;
    /// # Ok(()) }
    /// ```
    pub async fn fork(
        &self,
        run_id: &str,
        step: u64,
        new_run_id: impl Into<String>,
    ) -> Result<(), FlowError> {
        let new_run_id = new_run_id.into();
        check_run_id(&new_run_id)?;
        let core = self.core();
        let refused = |reason: String| FlowError::ForkRefused {
            run_id: run_id.to_string(),
            step,
            reason,
        };
        let source = core
            .store
            .header(run_id)?
            .ok_or_else(|| FlowError::UnknownRun {
                run_id: run_id.to_string(),
            })?;
        if core.store.header(&new_run_id)?.is_some() {
            return Err(FlowError::RunIdConflict {
                run_id: new_run_id,
                difference: format!("an existing run: a fork of `{run_id}` needs a new ID"),
            });
        }
        if step >= source.steps {
            return Err(refused(format!(
                "the run has scheduled {} steps so far (0 to {})",
                source.steps,
                source.steps.saturating_sub(1)
            )));
        }
        core.registry.driver_for(&source).map_err(refused)?;
        let (pc, slots) = core.store.step_state(run_id, step)?.ok_or_else(|| {
            refused(
                "its state at that step is not in the journal: the step is from before the \
                 run's last continue-as-new, or was scheduled by a flow version that did \
                 not keep step states"
                    .to_string(),
            )
        })?;
        let history = core.store.history(run_id)?;
        // Step states record what each transition wrote, and an upgrade replaces every
        // slot without such a record: the state before any step of an upgraded run is
        // either the old version's (its program counter means nothing to the new code)
        // or misses what the upgrade wrote. Refused rather than started from a mix.
        if let Some((from, to, at)) = history.iter().find_map(|e| match e.kind {
            EventKind::RunUpgraded { from, to, step } => Some((from, to, step)),
            _ => None,
        }) {
            return Err(refused(format!(
                "the run was moved from version {from} to version {to} at its step {at} \
                 (`Engine::upgrade`), and the journal does not keep its state across that \
                 move, so a fork would start from a mix of both versions' locals; start a \
                 new run instead"
            )));
        }
        let scheduled_event = history.into_iter().rev().find_map(|e| match e.kind {
            EventKind::StepScheduled {
                step: s,
                state,
                request,
                ..
            } if s == step => Some((state, request)),
            _ => None,
        });
        let Some((state, request)) = scheduled_event else {
            return Err(refused(
                "the history has no `StepScheduled` event for it".to_string(),
            ));
        };
        // The history holds a map's items (read back from `MAP_ITEMS`), except for a map
        // scheduled by a flow version that deleted them when the map ended.
        if let (OpRequest::Map { items, .. } | OpRequest::Batch { items, .. }, _) =
            step::peel(&request)
        {
            if items.is_empty() {
                return Err(refused(
                    "it is a map or batch whose items are not in the journal (a flow \
                     version before items were kept deleted them when it ended); fork at \
                     the step before or after it"
                        .to_string(),
                ));
            }
        }
        let input = core
            .store
            .generation_input(run_id)?
            .ok_or_else(|| refused("the run's input is missing".to_string()))?;

        let now = now_ms();
        let header = RunRecord {
            workflow: source.workflow.clone(),
            fingerprint: source.fingerprint,
            status: StoredStatus::Running,
            pc,
            steps: step.saturating_add(1),
            started: true,
            created_at_ms: now,
            updated_at_ms: now,
            parent: None,
            next_seq: Some(0),
            version: source.version,
        };
        let mut write = RunWrite::new(&new_run_id, &header);
        // The write creates the run (`expect` is not checked for a start); its step count
        // must read as advanced so that the step's state is recorded for the new run too.
        write.expect.steps = step;
        let scheduled = step::schedule(&core.registry, &new_run_id, step, state, &request, now)
            .map_err(refused)?;
        write.events = started_events(
            EventKind::RunStarted {
                workflow: source.workflow.clone(),
                input: Vec::new(),
                parent: None,
            },
            source.version,
        );
        write.events.push(EventKind::RunForked {
            from: run_id.to_string(),
            step,
        });
        write.events.push(EventKind::StepScheduled {
            step,
            state,
            name: scheduled.op.name.clone(),
            request: step::without_items(request),
        });
        write.events.extend(
            scheduled
                .names
                .into_iter()
                .map(|(branch, name)| EventKind::BranchNamed { step, branch, name }),
        );
        write.slots = slots;
        write.children = scheduled.children;
        write.tokens = scheduled.tokens;
        write.token_types = scheduled.token_types;
        if let Some(items) = scheduled.map_items {
            // As the step's first scheduling did: the items in their table, a fresh
            // progress record.
            write.map_items = Some((step, items));
            write.branch_puts.push(BranchPut::new(
                step,
                MAP_PROGRESS,
                BranchRecord::MapProgress(MapProgress::default()),
            ));
        }
        step::set_needs(
            &mut write,
            &Needs::default(),
            &step::needs(&scheduled.op, &BTreeMap::new()),
        );
        write.pending = PendingChange::Set(scheduled.op);
        let first_deadline = write.timers_add.iter().min().copied();
        let active = write.active;
        let start = StartWrite { input, write };
        match core.commits.submit(Change::Start(start)).await? {
            (Applied::Started(StartOutcome::Created(effects)), _) => {
                for run in &effects.wake {
                    core.wake(run);
                }
            }
            _ => {
                return Err(FlowError::RunIdConflict {
                    run_id: new_run_id,
                    difference: format!("an existing run: a fork of `{run_id}` needs a new ID"),
                })
            }
        }
        if let Some(deadline) = first_deadline {
            core.timers.added(deadline);
        }
        if active {
            core.wake(&new_run_id);
        }
        Ok(())
    }
}
