//! One run of a test environment: its machine, its journaled slots, its pending
//! operation branch by branch, its inbox and its history, all in memory.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::history::{EventKind, HistoryEvent, RunStatus};
use crate::machine::{Machine, StepFault, Transition};
use crate::op::{CompletionPolicy, OpRequest, Tolerance};
use crate::signal_types::SignalSites;
use crate::task::TaskPolicy;
use crate::workflow::Workflow;

/// A workflow the environment can run, type-erased.
#[derive(Clone, Copy)]
pub(super) struct Entry {
    pub name: &'static str,
    pub step: fn(&mut Machine) -> Result<Transition, StepFault>,
    pub signals: &'static SignalSites,
    /// Whether an encoded output is an `Err` (a tolerant map counts such a child as
    /// failed).
    pub returned_err: fn(&[u8]) -> Option<bool>,
}

impl Entry {
    pub(super) fn of<W: Workflow>() -> Self {
        Entry {
            name: W::NAME,
            step: W::step,
            signals: W::signals(),
            returned_err: crate::outcome::returned_err::<W::Output>,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RunEnd {
    /// The workflow returned this encoded output.
    Completed(Vec<u8>),
    Failed(String),
    Faulted(String),
    Cancelled,
}

/// A task call in a branch, and where its attempts stand.
#[derive(Debug, Clone)]
pub(super) struct TaskBranch {
    pub name: String,
    pub args: Vec<u8>,
    pub policy: TaskPolicy,
    /// Attempts that failed so far.
    pub failed: u32,
    pub state: TaskState,
}

impl TaskBranch {
    pub(super) fn new(name: String, args: Vec<u8>, policy: TaskPolicy) -> Self {
        TaskBranch {
            name,
            args,
            policy,
            failed: 0,
            state: TaskState::Due,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum TaskState {
    /// The next attempt runs at the next turn.
    Due,
    /// The next attempt runs at this virtual instant (a retry back-off).
    RetryAt(u64),
    /// Attempt `attempt` never answers (a mock that hangs); it times out at `until`.
    Hung { attempt: u32, until: u64 },
}

/// One leaf operation of the pending operation (or one map item).
#[derive(Debug, Clone)]
pub(super) enum Branch {
    /// A map item not started yet.
    Waiting(OpRequest),
    Task(TaskBranch),
    Sleep {
        until: u64,
    },
    Signal {
        name: String,
        timeout: Option<Duration>,
        deadline: Option<u64>,
    },
    Child {
        run_id: String,
    },
    Callback {
        task: TaskBranch,
        token: String,
        timeout: Option<Duration>,
        deadline: Option<u64>,
        heartbeat: Option<Duration>,
        /// Set once the task handed the token out.
        awaiting: bool,
        heartbeat_due: Option<u64>,
    },
    /// Finished with this output; `failure` when a tolerant map counts it as failed.
    Done {
        output: Vec<u8>,
        failure: Option<String>,
    },
    /// A branch that fails the run: a child run that failed, faulted or was cancelled,
    /// or an operation that cannot be a branch.
    Failed(String),
}

impl Branch {
    pub(super) fn is_finished(&self) -> bool {
        matches!(self, Branch::Done { .. } | Branch::Failed(_))
    }
}

/// How the branches of a pending operation make its output.
#[derive(Debug, Clone)]
pub(super) enum Shape {
    Single,
    Join,
    /// A join with joins inside: each join's part count in pre-order, 0 for a leaf.
    NestedJoin(Vec<u32>),
    Race,
    /// A race for the first branch that outputs `Ok` (`flow::first_ok`).
    FirstOk,
    /// A map, or a batch (a map with a completion policy).
    Map(MapState),
}

#[derive(Debug, Clone)]
pub(super) struct MapState {
    pub max_in_flight: u32,
    pub tolerance: Option<Tolerance>,
    /// A batch's completion policy (`flow::all`, `Map::min_successes`, `Map::batch`);
    /// `None` for a plain map.
    pub policy: Option<CompletionPolicy>,
    /// Items started so far (in order).
    pub next: usize,
    /// Items started and not finished, in order.
    pub open: Vec<usize>,
    pub failed: u32,
    pub first_error: Option<String>,
}

/// The operation a run awaits.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub step: u64,
    pub label: String,
    pub shape: Shape,
    pub branches: Vec<Branch>,
}

impl Pending {
    /// Whether branches get their own child IDs and idempotency keys (`step.branch`).
    pub(super) fn is_multi(&self) -> bool {
        !matches!(self.shape, Shape::Single)
    }
}

/// One run held in memory.
pub(super) struct Run {
    pub entry: Entry,
    pub machine: Machine,
    /// The slots a journal would hold: what a restart rebuilds the machine from.
    pub slots: BTreeMap<u32, Vec<u8>>,
    /// Resumptions so far, counted for `Restore::AtStep`.
    pub resumptions: usize,
    pub steps: u64,
    pub end: Option<RunEnd>,
    pub pending: Option<Pending>,
    pub inbox: VecDeque<(String, Vec<u8>)>,
    pub signals_received: u64,
    pub cancel_requested: bool,
    pub run_deadline: Option<u64>,
    pub history: Vec<HistoryEvent>,
    /// Every completed step of the current generation: its label and output.
    pub completed: Vec<(String, Vec<u8>)>,
}

impl Run {
    pub(super) fn new(entry: Entry, input: Vec<u8>) -> Self {
        Run {
            entry,
            machine: Machine::start(entry.name, input),
            slots: BTreeMap::new(),
            resumptions: 0,
            steps: 0,
            end: None,
            pending: None,
            inbox: VecDeque::new(),
            signals_received: 0,
            cancel_requested: false,
            run_deadline: None,
            history: Vec::new(),
            completed: Vec::new(),
        }
    }

    pub(super) fn event(&mut self, at_ms: u64, kind: EventKind) {
        self.history.push(HistoryEvent {
            seq: self.history.len() as u64,
            at_ms,
            kind,
        });
    }

    /// Ends the run (not for completion, which carries its output).
    pub(super) fn finish(&mut self, at_ms: u64, end: RunEnd) {
        let kind = match &end {
            RunEnd::Completed(output) => EventKind::RunCompleted {
                output: output.clone(),
            },
            RunEnd::Failed(error) => EventKind::RunFailed {
                error: error.clone(),
            },
            RunEnd::Faulted(error) => EventKind::RunFaulted {
                error: error.clone(),
            },
            RunEnd::Cancelled => EventKind::RunCancelled,
        };
        self.event(at_ms, kind);
        self.pending = None;
        self.end = Some(end);
    }

    /// Where the run stands, as an engine would report it.
    pub(super) fn status(&self) -> RunStatus {
        match &self.end {
            Some(RunEnd::Completed(output)) => {
                if (self.entry.returned_err)(output) == Some(true) {
                    RunStatus::ReturnedErr
                } else {
                    RunStatus::Completed
                }
            }
            Some(RunEnd::Failed(error)) => RunStatus::Failed {
                error: error.clone(),
            },
            Some(RunEnd::Faulted(error)) => RunStatus::Faulted {
                error: error.clone(),
            },
            Some(RunEnd::Cancelled) => RunStatus::Cancelled,
            None => RunStatus::Waiting,
        }
    }

    /// What the open branches of the pending operation wait for, for messages.
    pub(super) fn waiting_for(&self) -> String {
        let Some(pending) = &self.pending else {
            return "nothing".into();
        };
        let open: Vec<String> = pending
            .branches
            .iter()
            .filter_map(|b| match b {
                Branch::Signal { name, .. } => Some(format!("signal `{name}`")),
                Branch::Callback { task, .. } => {
                    Some(format!("the callback token of `{}`", task.name))
                }
                Branch::Child { run_id } => Some(format!("child run `{run_id}`")),
                Branch::Task(task) => Some(format!("task `{}`", task.name)),
                Branch::Sleep { .. } => Some("a sleep".into()),
                Branch::Waiting(_) | Branch::Done { .. } | Branch::Failed(_) => None,
            })
            .collect();
        if open.is_empty() {
            pending.label.clone()
        } else {
            open.join(" and ")
        }
    }
}
