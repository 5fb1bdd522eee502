//! The code an engine can run, by name: the workflows registered with it, and the tasks
//! linked into the program (minus those a test hides).
//!
//! Names (and, for workflows, versions) are what the journal stores, so one name must mean
//! one definition: a second workflow registered under a taken name and version, or two
//! `#[task]`s linked under one name, are refused when the engine opens
//! ([`FlowError::DuplicateName`]). Versions of one workflow name are not duplicates: each
//! run is driven by the version it stores.

use std::collections::{BTreeMap, HashMap, HashSet};

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
    pub version: u32,
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
    /// Its states and transitions.
    pub graph: &'static crate::workflow::StateGraph,
    /// Its journaled locals' names, by slot (time travel shows them).
    pub slots: &'static [crate::workflow::SlotInfo],
}

impl WorkflowEntry {
    pub(crate) fn of<W: Workflow>() -> Self {
        WorkflowEntry {
            name: W::NAME,
            version: W::VERSION,
            fingerprint: W::FINGERPRINT,
            step: W::step,
            type_name: std::any::type_name::<W>(),
            graph: W::graph(),
            slots: W::slots(),
            returned_err: crate::outcome::returned_err::<W::Output>,
            signals: W::signals(),
            start_encoded: super::by_name::start_encoded::<W>,
            input_type: std::any::type_name::<W::Input>(),
        }
    }
}

/// Registered workflows by name and version, and the tasks the engine may run.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    /// Each name's versions, oldest first.
    map: HashMap<&'static str, BTreeMap<u32, WorkflowEntry>>,
    /// A second registration of a taken name and version, reported when the engine opens.
    duplicate: Option<(WorkflowEntry, WorkflowEntry)>,
    /// Tasks this engine acts as if were not linked (a test hook).
    hidden_tasks: HashSet<String>,
}

impl Registry {
    /// Registers `entry`. The same type again is harmless; another type under a taken
    /// name and version is remembered and refused by [`check`](Self::check).
    pub(crate) fn insert(&mut self, entry: WorkflowEntry) {
        let versions = self.map.entry(entry.name).or_default();
        match versions.get(&entry.version) {
            Some(first) if first.type_name != entry.type_name => {
                self.duplicate.get_or_insert((*first, entry));
            }
            _ => {
                versions.insert(entry.version, entry);
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
                first: format!(
                    "version {} registered by `{}`",
                    first.version, first.type_name
                ),
                second: format!(
                    "version {} registered by `{}` (a new version needs its own \
                     `version = N`)",
                    second.version, second.type_name
                ),
            });
        }
        crate::task::check_task_names()
    }

    /// The newest registered version of workflow `name`: the one new runs start on.
    pub(crate) fn get(&self, name: &str) -> Option<&WorkflowEntry> {
        self.map.get(name)?.values().next_back()
    }

    /// Version `version` of workflow `name`, if registered.
    pub(crate) fn get_version(&self, name: &str, version: u32) -> Option<&WorkflowEntry> {
        self.map.get(name)?.get(&version)
    }

    /// The registered versions of workflow `name`, oldest first.
    pub(crate) fn versions(&self, name: &str) -> Vec<u32> {
        self.map
            .get(name)
            .map(|v| v.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Every registered workflow, each version apart.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &WorkflowEntry> {
        self.map.values().flat_map(|versions| versions.values())
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
        let Some(entry) = self.get_version(&run.workflow, run.version) else {
            let registered = self.versions(&run.workflow);
            if registered.is_empty() {
                return Err(format!(
                    "workflow `{}` is not registered in this engine; the run waits until an \
                     engine that registers it opens the journal",
                    run.workflow
                ));
            }
            let registered: Vec<String> = registered.iter().map(u32::to_string).collect();
            return Err(format!(
                "workflow `{}` version {} is not registered in this engine (it registers \
                 version {}); the run stays on the version it started with and waits until an \
                 engine that registers version {} opens the journal, or until \
                 `Engine::upgrade` moves it to a registered version",
                run.workflow,
                run.version,
                registered.join(", "),
                run.version
            ));
        };
        if entry.fingerprint != run.fingerprint {
            return Err(format!(
                "workflow `{}` version {} changed since this run was stored (stored fingerprint \
                 {:016x}, registered {:016x}); the run waits until an engine with the original \
                 code opens the journal (to change a workflow under running runs, register the \
                 new code as a new version: `#[workflow(version = N)]`)",
                run.workflow, run.version, run.fingerprint, entry.fingerprint
            ));
        }
        Ok(entry)
    }
}
