//! The code an engine can run, by name: the workflows registered with it, and the tasks
//! linked into the program (minus those a test hides).
//!
//! Names are what the journal stores, so one name must mean one definition: a second
//! workflow registered under a taken name, or two `#[task]`s linked under one name, are
//! refused when the engine opens ([`FlowError::DuplicateName`]).

use std::collections::{HashMap, HashSet};

use crate::error::FlowError;
use crate::machine::{Machine, StepFault, Transition};
use crate::signal_types::SignalSites;
use crate::store::RunRecord;
use crate::task::TaskRegistration;
use crate::workflow::Workflow;

/// A registered workflow, type-erased.
#[derive(Clone, Copy)]
pub(crate) struct WorkflowEntry {
    pub name: &'static str,
    pub fingerprint: u64,
    pub step: fn(&mut Machine) -> Result<Transition, StepFault>,
    /// The Rust type that registered it, to name both sides of a collision.
    pub type_name: &'static str,
    /// Whether an encoded output of this workflow is an `Err` (see `outcome`).
    pub returned_err: fn(&[u8]) -> Option<bool>,
    /// The signals its body waits for (checked at send).
    pub signals: &'static SignalSites,
    /// Starts a run from an input encoded without the Rust type (see `by_name`).
    pub start_encoded: super::by_name::StartEncoded,
    /// The input type's name.
    pub input_type: &'static str,
}

impl WorkflowEntry {
    pub(crate) fn of<W: Workflow>() -> Self {
        WorkflowEntry {
            name: W::NAME,
            fingerprint: W::FINGERPRINT,
            step: W::step,
            type_name: std::any::type_name::<W>(),
            returned_err: crate::outcome::returned_err::<W::Output>,
            signals: W::signals(),
            start_encoded: super::by_name::start_encoded::<W>,
            input_type: std::any::type_name::<W::Input>(),
        }
    }
}

/// Registered workflows by name, and the tasks the engine may run.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    map: HashMap<&'static str, WorkflowEntry>,
    /// A second registration of a taken name, reported when the engine opens.
    duplicate: Option<(WorkflowEntry, WorkflowEntry)>,
    /// Tasks this engine acts as if were not linked (a test hook).
    hidden_tasks: HashSet<String>,
}

impl Registry {
    /// Registers `entry`. The same type again is harmless; another type under a taken
    /// name is remembered and refused by [`check`](Self::check).
    pub(crate) fn insert(&mut self, entry: WorkflowEntry) {
        match self.map.get(entry.name) {
            Some(first) if first.type_name != entry.type_name => {
                self.duplicate.get_or_insert((*first, entry));
            }
            _ => {
                self.map.insert(entry.name, entry);
            }
        }
    }

    pub(crate) fn hide_task(&mut self, name: &str) {
        self.hidden_tasks.insert(name.to_string());
    }

    /// Refuses a registry in which one name stands for two workflows, or a program that
    /// links two tasks under one name.
    pub(crate) fn check(&self) -> Result<(), FlowError> {
        if let Some((first, second)) = &self.duplicate {
            return Err(FlowError::DuplicateName {
                kind: "workflow",
                name: first.name.to_string(),
                first: format!("registered by `{}`", first.type_name),
                second: format!("registered by `{}`", second.type_name),
            });
        }
        // A task's registration carries only its name: the program's two definitions
        // cannot be told apart here, so the message says where to look.
        let mut seen = HashSet::new();
        for task in inventory::iter::<TaskRegistration>() {
            if !seen.insert(task.name) {
                return Err(FlowError::DuplicateName {
                    kind: "task",
                    name: task.name.to_string(),
                    first: "one `#[task]` function".to_string(),
                    second: "another, in this program or a crate it links".to_string(),
                });
            }
        }
        Ok(())
    }

    pub(crate) fn get(&self, name: &str) -> Option<&WorkflowEntry> {
        self.map.get(name)
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &WorkflowEntry> {
        self.map.values()
    }

    /// The task linked under `name`, unless this engine hides it.
    pub(crate) fn find_task(&self, name: &str) -> Option<&'static TaskRegistration> {
        if self.hidden_tasks.contains(name) {
            return None;
        }
        crate::task::find_task(name)
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
