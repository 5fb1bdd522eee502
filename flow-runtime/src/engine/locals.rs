//! Time travel: a run's saved locals as they were when one of its steps was scheduled.

use std::collections::BTreeMap;

use crate::engine::Engine;
use crate::error::FlowError;
use crate::history::{EventKind, HistoryEvent};
use crate::store::{Journal, RunRecord};
use crate::workflow::SlotInfo;

/// A run's state as the transition that scheduled one of its steps left it
/// ([`Engine::step_locals`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepLocals {
    /// The machine's program counter then: the point its next step resumes at (the
    /// history's `StepScheduled` event names the graph state the step was scheduled at).
    pub pc: u32,
    /// Every saved local slot, by slot index, encoded like any stored user value
    /// (`codec::to_json` renders one).
    pub slots: Vec<(u32, Vec<u8>)>,
    /// What the workflow's source calls each entry of [`slots`](Self::slots), in the
    /// same order ([`SlotInfo`]: its name, its type as written, its line). `None` when
    /// this engine cannot tell: the run's workflow version is not registered here, its
    /// code changed since the run was stored, the step was recorded before the run moved
    /// to another version (`Engine::upgrade`), or the workflow did not record names.
    pub names: Vec<Option<SlotInfo>>,
}

impl StepLocals {
    /// The name of slot `slot` in the workflow's source (`x#2` for the second local
    /// named `x`), if known ([`names`](Self::names)).
    pub fn name_of(&self, slot: u32) -> Option<&'static str> {
        self.slots
            .iter()
            .zip(&self.names)
            .find(|((s, _), _)| *s == slot)
            .and_then(|(_, info)| info.map(|info| info.name))
    }
}

/// Names the slots of a run's step states: by the registered code that drives the run,
/// for the slots that code is known to have written.
struct Namer {
    /// The driving code's slots; `None` when it is not known here.
    slots: Option<&'static [SlotInfo]>,
    /// Steps before this one were recorded by another version's code (before the run's
    /// last upgrade), and are not named.
    first: u64,
    /// After an upgrade: every slot as the old code left it (the state at the upgrade's
    /// step). A step state accumulates every slot written so far, so a later step still
    /// holds the old code's slots that the new code has not written since: a slot that
    /// still holds exactly the old bytes may be the old code's, and is not named. `None`
    /// when the run was never upgraded.
    before: Option<BTreeMap<u32, Vec<u8>>>,
}

impl Namer {
    fn locals(&self, step: u64, pc: u32, slots: Vec<(u32, Vec<u8>)>) -> StepLocals {
        let names = slots
            .iter()
            .map(|(slot, bytes)| match self.slots {
                Some(_) if step < self.first => None,
                Some(_) if self.before.as_ref().and_then(|b| b.get(slot)) == Some(bytes) => None,
                Some(known) => known.iter().find(|info| info.slot == *slot).copied(),
                None => None,
            })
            .collect();
        StepLocals { pc, slots, names }
    }
}

impl Engine {
    /// Run `run_id`'s saved locals as they were when its step `step` was scheduled
    /// (numbered from 0, as the history's `StepScheduled` events number them): what a
    /// replay engine could show only by re-running the code. `Ok(None)` when the journal
    /// does not hold that state: a step not scheduled yet, one before the run's last
    /// continue-as-new, or one recorded by a flow version that did not keep step states.
    ///
    /// Errors: [`FlowError::UnknownRun`]; a storage error.
    ///
    /// ```no_run
    /// # async fn demo(engine: flow_runtime::Engine) -> Result<(), flow_runtime::FlowError> {
    /// if let Some(at) = engine.step_locals("order-42", 3).await? {
    ///     for (slot, bytes) in &at.slots {
    ///         println!("slot {slot}: {}", flow_runtime::codec::to_json(bytes)?);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn step_locals(
        &self,
        run_id: &str,
        step: u64,
    ) -> Result<Option<StepLocals>, FlowError> {
        let store = &self.core().store;
        let header = store.header(run_id)?.ok_or_else(|| FlowError::UnknownRun {
            run_id: run_id.to_string(),
        })?;
        if step >= header.steps {
            return Ok(None);
        }
        let Some((pc, slots)) = store.step_state(run_id, step)? else {
            return Ok(None);
        };
        let namer = self.namer(run_id, &header, None)?;
        Ok(Some(namer.locals(step, pc, slots)))
    }

    /// [`step_locals`](Self::step_locals) for each step in `steps` that the journal holds
    /// a state of, in step order, read in one pass (a listing of many steps costs one
    /// read, not one per step).
    ///
    /// Errors: [`FlowError::UnknownRun`]; a storage error.
    pub async fn step_locals_range(
        &self,
        run_id: &str,
        steps: std::ops::Range<u64>,
    ) -> Result<Vec<(u64, StepLocals)>, FlowError> {
        self.step_locals_range_with_history(run_id, steps, None)
            .await
    }

    /// [`step_locals_range`](Self::step_locals_range) for a caller that has read the
    /// run's history already ([`Engine::history`]): naming the slots needs to know
    /// whether the run was upgraded, which `history` tells without reading it again.
    /// `None` reads it when needed.
    ///
    /// Errors: [`FlowError::UnknownRun`]; a storage error.
    pub async fn step_locals_range_with_history(
        &self,
        run_id: &str,
        steps: std::ops::Range<u64>,
        history: Option<&[HistoryEvent]>,
    ) -> Result<Vec<(u64, StepLocals)>, FlowError> {
        let store = &self.core().store;
        let header = store.header(run_id)?.ok_or_else(|| FlowError::UnknownRun {
            run_id: run_id.to_string(),
        })?;
        let steps = steps.start..steps.end.min(header.steps);
        let states = store.step_states(run_id, steps)?;
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let namer = self.namer(run_id, &header, history)?;
        Ok(states
            .into_iter()
            .map(|(step, (pc, slots))| (step, namer.locals(step, pc, slots)))
            .collect())
    }

    /// How to name the slots of `run_id`'s step states: by the registered version that
    /// drives it, if its fingerprint matches the stored one, for the steps recorded since
    /// the run's last upgrade (earlier ones hold another version's slots), and of those
    /// only the slots the new version wrote (see [`Namer::before`]).
    fn namer(
        &self,
        run_id: &str,
        header: &RunRecord,
        history: Option<&[HistoryEvent]>,
    ) -> Result<Namer, FlowError> {
        let core = self.core();
        let slots = core
            .registry
            .get_version(&header.workflow, header.version)
            .filter(|entry| entry.fingerprint == header.fingerprint && !entry.slots.is_empty())
            .map(|entry| entry.slots);
        let Some(slots) = slots else {
            return Ok(Namer {
                slots: None,
                first: 0,
                before: None,
            });
        };
        let read;
        let history = match history {
            Some(history) => history,
            None => {
                read = core.store.history(run_id)?;
                &read
            }
        };
        let upgraded = history
            .iter()
            .filter_map(|event| match event.kind {
                EventKind::RunUpgraded { step, .. } => Some(step),
                _ => None,
            })
            .max();
        let Some(step) = upgraded else {
            return Ok(Namer {
                slots: Some(slots),
                first: 0,
                before: None,
            });
        };
        // Without the state the old code left, no later slot can be told apart from it.
        let Some((_, before)) = core.store.step_state(run_id, step)? else {
            return Ok(Namer {
                slots: None,
                first: 0,
                before: None,
            });
        };
        Ok(Namer {
            slots: Some(slots),
            first: step + 1,
            before: Some(before.into_iter().collect()),
        })
    }
}
