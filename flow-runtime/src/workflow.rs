//! Workflows: compiled state machines and their static state graphs.

use serde::{de::DeserializeOwned, Serialize};

use crate::machine::{Machine, StepFault, Transition};
use crate::signal_types::SignalSites;

/// Implemented by `#[workflow]` for the struct named after the workflow function.
///
/// Calling the function builds the struct (it holds the input). Register the type with
/// the engine, start runs with it, or `.await` it: directly it runs as plain async code;
/// inside another workflow it starts a child run.
pub trait Workflow: Send + 'static {
    /// Registered name: the function's name unless `#[workflow(name = "...")]` pins another.
    const NAME: &'static str;
    /// Version of the workflow under its name: `#[workflow(version = N)]`, 1 without it.
    /// Several versions of one name can be registered side by side; each run stays on the
    /// version it started with (see `Engine::start` and `Engine::upgrade`).
    const VERSION: u32 = 1;
    /// Hash of the compiled body; a stored state from a different body is not resumed.
    const FINGERPRINT: u64;
    /// The function's arguments: the single argument's type, or a tuple of them.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// The function's return type.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// The input this call was built with.
    fn into_input(self) -> Self::Input;
    /// Wraps an input back into a call.
    fn from_input(input: Self::Input) -> Self;
    /// Runs the state machine from its program counter to the next suspension or the end.
    fn step(machine: &mut Machine) -> Result<Transition, StepFault>;
    /// The static graph of states (await sites) and transitions.
    fn graph() -> &'static StateGraph;
    /// The signals the body waits for, found by `#[workflow]`; checked when a signal is
    /// sent (see [`SignalSites`]). Unknown unless the macro found them.
    fn signals() -> &'static SignalSites {
        &SignalSites::UNKNOWN
    }
}

/// The states of a compiled workflow (one per await site) and the transitions between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateGraph {
    /// Workflow name.
    pub workflow: &'static str,
    /// One entry per await site, in source order.
    pub states: &'static [StateInfo],
    /// `(from, to)`; `START` and `END` stand for the run's beginning and end.
    pub transitions: &'static [(u32, u32)],
}

/// One await site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateInfo {
    /// What is awaited, as written (e.g. `charge`).
    pub name: &'static str,
    /// Source line of the `.await`.
    pub line: u32,
}

impl StateGraph {
    /// Stands for the run's beginning in [`transitions`](StateGraph::transitions).
    pub const START: u32 = u32::MAX - 1;
    /// Stands for the run's end in [`transitions`](StateGraph::transitions).
    pub const END: u32 = u32::MAX;

    /// The graph as a Mermaid `stateDiagram-v2`.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("stateDiagram-v2\n");
        for (i, s) in self.states.iter().enumerate() {
            out.push_str(&format!("    s{i} : {} (line {})\n", s.name, s.line));
        }
        for &(from, to) in self.transitions {
            out.push_str(&format!(
                "    {} --> {}\n",
                Self::node(from),
                Self::node(to)
            ));
        }
        out
    }

    fn node(id: u32) -> String {
        match id {
            Self::START | Self::END => "[*]".into(),
            i => format!("s{i}"),
        }
    }
}
