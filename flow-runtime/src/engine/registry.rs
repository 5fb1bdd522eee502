//! The workflows an engine can drive, by name.

use std::collections::HashMap;

use crate::machine::{Machine, StepFault, Transition};
use crate::signal_types::SignalSites;
use crate::store::RunRecord;
use crate::workflow::Workflow;

/// A registered workflow, type-erased.
#[derive(Clone, Copy)]
pub(crate) struct WorkflowEntry {
    pub name: &'static str,
    pub fingerprint: u64,
    pub step: fn(&mut Machine) -> Result<Transition, StepFault>,
    /// The signals its body waits for (checked at send).
    pub signals: &'static SignalSites,
}

impl WorkflowEntry {
    pub(crate) fn of<W: Workflow>() -> Self {
        WorkflowEntry {
            name: W::NAME,
            fingerprint: W::FINGERPRINT,
            step: W::step,
            signals: W::signals(),
        }
    }
}

/// Registered workflows by name.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    map: HashMap<&'static str, WorkflowEntry>,
}

impl Registry {
    pub(crate) fn insert(&mut self, entry: WorkflowEntry) {
        self.map.insert(entry.name, entry);
    }

    pub(crate) fn get(&self, name: &str) -> Option<&WorkflowEntry> {
        self.map.get(name)
    }

    /// The workflow that can drive this run, or why this engine cannot.
    pub(crate) fn driver_for(&self, run: &RunRecord) -> Result<&WorkflowEntry, String> {
        let Some(entry) = self.get(&run.workflow) else {
            return Err(format!(
                "workflow `{}` is not registered in this engine; the run waits until an engine \
                 that registers it opens the journal",
                run.workflow
            ));
        };
        if entry.fingerprint != run.fingerprint {
            return Err(format!(
                "workflow `{}` changed since this run was stored (stored fingerprint {:016x}, \
                 registered {:016x}); the run waits until an engine with the original code \
                 opens the journal",
                run.workflow, run.fingerprint, entry.fingerprint
            ));
        }
        Ok(entry)
    }
}
