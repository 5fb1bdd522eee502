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
    /// The locals the compiled machine journals across its steps (its slots), by slot
    /// index, as `#[workflow]` recorded them; time travel
    /// ([`Engine::step_locals`](crate::Engine::step_locals)) shows saved locals by these
    /// names. Empty (every slot unnamed) unless the macro recorded them.
    fn slots() -> &'static [SlotInfo] {
        &[]
    }
}

/// One local a compiled workflow journals across its steps (a slot), as its source
/// names it ([`Workflow::slots`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotInfo {
    /// The slot's index: the one stored step states are keyed by.
    pub slot: u32,
    /// The local's name as written (`order`). Locals that share a name (shadowing, or
    /// one name in two scopes) are told apart in the order they are bound in: `x`,
    /// `x#2`, ... A local the compiler made (a `for` loop's position) is described
    /// instead (`the position of the `for` loop at line 12`).
    pub name: &'static str,
    /// Its type as written (`let total: u64 = ..`, or an argument's type), when the
    /// source spells it.
    pub ty: Option<&'static str>,
    /// The source line it is bound at (0 when the compiler could not tell).
    pub line: u32,
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
        self.to_mermaid_marked(&GraphMarks::default())
    }

    /// The graph as a Mermaid `stateDiagram-v2`, with a run's visited states and its
    /// current state styled (classes `visited` and `current`).
    pub fn to_mermaid_marked(&self, marks: &GraphMarks) -> String {
        let mut out = String::from("stateDiagram-v2\n");
        for (i, s) in self.states.iter().enumerate() {
            out.push_str(&format!(
                "    s{i} : {} (line {})\n",
                mermaid_text(s.name),
                s.line
            ));
        }
        for &(from, to) in self.transitions {
            out.push_str(&format!(
                "    {} --> {}\n",
                Self::node(from),
                Self::node(to)
            ));
        }
        if !marks.is_empty() {
            out.push_str("    classDef visited fill:#dbeafe,stroke:#1d4ed8\n");
            out.push_str("    classDef current fill:#fde68a,stroke:#b45309,stroke-width:3px\n");
            for i in marks.visited.iter().filter(|&&i| Some(i) != marks.current) {
                out.push_str(&format!("    class s{i} visited\n"));
            }
            if let Some(i) = marks.current {
                out.push_str(&format!("    class s{i} current\n"));
            }
        }
        out
    }

    /// The graph in Graphviz DOT, with a run's visited states filled and its current
    /// state drawn bold.
    pub fn to_dot(&self, marks: &GraphMarks) -> String {
        let mut out = format!("digraph \"{}\" {{\n", dot_text(self.workflow));
        out.push_str(
            "    start [shape=circle, label=\"\", style=filled, fillcolor=black, width=0.2];\n",
        );
        out.push_str("    end [shape=doublecircle, label=\"\", style=filled, fillcolor=black, width=0.15];\n");
        for (i, s) in self.states.iter().enumerate() {
            let i = i as u32;
            let style = if marks.current == Some(i) {
                ", style=\"filled,bold\", fillcolor=\"#fde68a\", penwidth=3"
            } else if marks.visited.contains(&i) {
                ", style=filled, fillcolor=\"#dbeafe\""
            } else {
                ""
            };
            out.push_str(&format!(
                "    s{i} [shape=box, label=\"{} (line {})\"{style}];\n",
                dot_text(s.name),
                s.line
            ));
        }
        for &(from, to) in self.transitions {
            let name = |id: u32| match id {
                Self::START => "start".to_string(),
                Self::END => "end".to_string(),
                i => format!("s{i}"),
            };
            out.push_str(&format!("    {} -> {};\n", name(from), name(to)));
        }
        out.push_str("}\n");
        out
    }

    fn node(id: u32) -> String {
        match id {
            Self::START | Self::END => "[*]".into(),
            i => format!("s{i}"),
        }
    }
}

/// A run's path through a [`StateGraph`], for [`StateGraph::to_mermaid_marked`] and
/// [`StateGraph::to_dot`]: the states its steps were scheduled at, and the one it waits
/// at now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphMarks {
    /// States the run has been at (state indices).
    pub visited: std::collections::BTreeSet<u32>,
    /// The state the run is at now, while it has not ended.
    pub current: Option<u32>,
}

impl GraphMarks {
    /// The marks of a run from its history: every `StepScheduled`'s state is visited;
    /// the last one is current unless the run has ended.
    pub fn from_history(events: &[crate::history::HistoryEvent]) -> GraphMarks {
        use crate::history::EventKind;
        let mut marks = GraphMarks::default();
        let mut last = None;
        for event in events {
            match &event.kind {
                EventKind::StepScheduled { state, .. } => {
                    marks.visited.insert(*state);
                    last = Some(*state);
                }
                // A new generation starts over at the top of the graph.
                EventKind::ContinuedAsNew { .. } => {
                    marks.visited.clear();
                    last = None;
                }
                _ => {}
            }
        }
        let ended = events.last().is_some_and(|e| {
            matches!(
                e.kind,
                EventKind::RunCompleted { .. }
                    | EventKind::RunFailed { .. }
                    | EventKind::RunFaulted { .. }
                    | EventKind::RunCancelled
            )
        });
        marks.current = if ended { None } else { last };
        marks
    }

    fn is_empty(&self) -> bool {
        self.visited.is_empty() && self.current.is_none()
    }
}

/// A state's text for a Mermaid label (`:` and `;` end a label there).
fn mermaid_text(text: &str) -> String {
    text.replace([':', ';'], " ").replace('#', "")
}

/// A string for a DOT double-quoted ID.
fn dot_text(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}
