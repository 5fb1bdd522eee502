//! What the journal shows about runs: their history events, status and summaries.

use serde::{Deserialize, Serialize};

/// One entry of a run's history, as returned by [`Engine::history`](crate::Engine::history).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// Position in the run's history, from 0.
    pub seq: u64,
    /// When the event was committed, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    pub kind: EventKind,
}

/// What happened in a run. Payloads (`input`, `output`) are encoded user values: render
/// them with [`codec::to_json`](crate::codec::to_json).
///
/// `step` numbers the run's durable operations from 0 in the order the workflow awaited
/// them; `branch` numbers the operations of a join (0 for a single operation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventKind {
    /// The run was created.
    RunStarted {
        /// Workflow name.
        workflow: String,
        /// Encoded input (as `Engine::history` returns it; the journal stores it once, in
        /// the run's input record).
        input: Vec<u8>,
        /// The parent run, for a child workflow.
        parent: Option<String>,
    },
    /// The workflow awaited a durable operation.
    StepScheduled {
        /// Step number.
        step: u64,
        /// The await site's index in the workflow's state graph.
        state: u32,
        /// What is awaited: the name given with [`OpExt::named`](crate::OpExt::named), or
        /// the task or workflow name, `sleep`, `signal:NAME`, `join(N)` (see
        /// [`OpRequest::label`](crate::OpRequest::label)).
        name: String,
        /// The operation with its encoded arguments (the state's input, as Step
        /// Functions' history shows it); `flow::testing::RecordedRun` compares them.
        request: crate::OpRequest,
    },
    /// A task attempt started (written together with the attempt's outcome).
    AttemptStarted {
        /// Step number.
        step: u64,
        /// Branch within the step.
        branch: u32,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// A task attempt failed.
    AttemptFailed {
        /// Step number.
        step: u64,
        /// Branch within the step.
        branch: u32,
        /// Attempt number, from 1.
        attempt: u32,
        /// What went wrong.
        error: String,
        /// When the next attempt runs (ms since the Unix epoch); `None` when none will.
        retry_at_ms: Option<u64>,
    },
    /// One branch of a join finished; the join goes on until all have.
    BranchCompleted {
        /// Step number.
        step: u64,
        /// Branch within the step.
        branch: u32,
        /// The branch's encoded output.
        output: Vec<u8>,
    },
    /// The awaited operation finished; the workflow resumes with `output`.
    StepCompleted {
        /// Step number.
        step: u64,
        /// Encoded output of the operation.
        output: Vec<u8>,
    },
    /// A signal arrived in the run's inbox.
    SignalReceived {
        /// Signal name.
        name: String,
        /// Position in the inbox.
        seq: u64,
    },
    /// A durable sleep or a signal timeout expired.
    TimerFired {
        /// Step number.
        step: u64,
        /// Branch within the step.
        branch: u32,
        /// The deadline, ms since the Unix epoch.
        deadline_ms: u64,
    },
    /// Cancellation was requested.
    CancelRequested,
    /// The workflow returned.
    RunCompleted {
        /// Encoded workflow output.
        output: Vec<u8>,
    },
    /// The run failed (panic in the workflow, or a task failure the workflow cannot
    /// receive).
    RunFailed {
        /// Why.
        error: String,
    },
    /// The run cannot go on with this code; it is kept unchanged.
    RunFaulted {
        /// Why.
        error: String,
    },
    /// The run ended because it was cancelled.
    RunCancelled,
    /// One item of a map finished (its output is in the map's `StepCompleted`).
    MapItemCompleted {
        /// Step number.
        step: u64,
        /// The item's index.
        item: u32,
        /// Its failure, when it counts as failed (a task whose last attempt failed, or a
        /// failed child run).
        failure: Option<String>,
    },
    /// A map had more failed items than it tolerates; the open items were cancelled and
    /// the workflow receives `Err(MapFailed)`.
    MapFailed {
        /// Step number.
        step: u64,
        /// Failed items so far.
        failed: u32,
        /// Failed items tolerated.
        tolerated: u32,
    },
    /// A callback token was completed through `Engine::complete`.
    CallbackCompleted {
        /// Step number.
        step: u64,
        /// Branch within the step.
        branch: u32,
        /// Completed with `Ok` (false: with `Err`).
        ok: bool,
    },
    /// A callback's task succeeded and handed its token out; the step waits for it.
    CallbackWaiting {
        /// Step number.
        step: u64,
        /// Branch within the step.
        branch: u32,
    },
    /// A race was decided: `winner` finished first, the other branches were cancelled.
    RaceWon {
        /// Step number.
        step: u64,
        /// The winning branch.
        winner: u32,
    },
    /// The run-level timeout expired; cancellation was requested.
    RunTimedOut {
        /// The deadline, ms since the Unix epoch.
        deadline_ms: u64,
    },
    /// The run continued as new: the previous generation's history and state were
    /// dropped, and the run restarted with `input` under the same run ID.
    ContinuedAsNew {
        /// The new generation's encoded input.
        input: Vec<u8>,
        /// Steps taken by the run before this generation (step numbers keep counting).
        steps_before: u64,
    },
    /// A faulted run was set going again with `Engine::retry_faulted`: it resumes its
    /// pending operation (or its first step) as it stood when it faulted.
    FaultRetried {
        /// The fault it had.
        error: String,
    },
    // Variants below were added after the ones above: postcard numbers variants in order,
    // so new ones go at the end and stored events keep decoding.
    /// A failed, cancelled or faulted run was set going again with `Engine::redrive`: it
    /// resumes the step it ended in, with the locals it had and fresh attempts for what
    /// had not finished.
    RunRedriven {
        /// How it had ended (its status, as `RunStatus` shows it).
        ended: String,
    },
    /// The run was started by `Engine::fork` from another run's state before a step;
    /// its first event after `RunStarted`.
    RunForked {
        /// The run it was forked from.
        from: String,
        /// The step of that run it starts at (which it runs afresh).
        step: u64,
    },
    /// The run started on this version of its workflow: follows `RunStarted` for a
    /// version other than 1 (a run without it started on version 1).
    RunVersion {
        /// The workflow's version (`#[workflow(version = N)]`).
        version: u32,
    },
    /// `Engine::upgrade` moved the run to another version of its workflow, at the step it
    /// was waiting for (the same operation in both versions).
    RunUpgraded {
        /// The version the run was on.
        from: u32,
        /// The version it is on now.
        to: u32,
        /// The step it waits for (both versions await the same operation there).
        step: u64,
    },
    /// A branch of a join, race or batch, or a map item, has a name (given with
    /// [`OpExt::named`](crate::OpExt::named)); written with the step's `StepScheduled`.
    BranchNamed {
        /// Step number.
        step: u64,
        /// The branch (or map item).
        branch: u32,
        /// Its name.
        name: String,
    },
    /// A batch completed (see [`Batch`](crate::Batch)): every branch finished, or its
    /// policy stopped it early and the branches still running were cancelled.
    BatchCompleted {
        /// Step number.
        step: u64,
        /// Why it completed.
        completion: crate::Completion,
        /// Branches that succeeded.
        succeeded: u32,
        /// Branches that failed.
        failed: u32,
    },
}

/// A run's first events: `started`, then the version it is on unless it is 1 (see
/// [`EventKind::RunVersion`]).
pub(crate) fn started_events(started: EventKind, version: u32) -> Vec<EventKind> {
    let mut events = vec![started];
    if version != 1 {
        events.push(EventKind::RunVersion { version });
    }
    events
}

/// Where a run stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    /// A task attempt is running or about to start.
    Running,
    /// The run waits for a sleep, a signal, a child run or a retry back-off.
    Waiting,
    /// The workflow returned: `Ok`, or an output that is not a `Result`.
    Completed,
    /// The workflow returned `Err`: the run ended, but failed; its result
    /// ([`RunHandle::result`](crate::RunHandle::result)) is that `Err`. Told apart from
    /// [`Completed`](Self::Completed) when this engine registers the workflow (it knows the
    /// output's type); otherwise such a run shows as `Completed`.
    ReturnedErr,
    /// The run failed: the workflow panicked, or a task failure reached it that its
    /// output type cannot carry.
    Failed {
        /// Why.
        error: String,
    },
    /// The run was cancelled.
    Cancelled,
    /// The run met a state no code can continue (a damaged journal, a child run ID
    /// already taken); it is kept in the journal unchanged, and
    /// [`Engine::retry_faulted`](crate::Engine::retry_faulted) sets it going again once
    /// the cause is dealt with.
    Faulted {
        /// Why.
        error: String,
    },
    /// The run waits for something this engine lacks: its workflow is not registered (or
    /// registered with a different body), a task it calls is not linked into the program,
    /// or a value it stored no longer decodes as the code's type. Nothing was written; it
    /// resumes when an engine that has that code opens the journal.
    Blocked {
        /// Why.
        reason: String,
    },
}

impl RunStatus {
    /// True once the run has ended (completed, returned `Err`, failed or cancelled). Faulted and blocked
    /// runs have not ended: they may go on with other code.
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            RunStatus::Completed
                | RunStatus::ReturnedErr
                | RunStatus::Failed { .. }
                | RunStatus::Cancelled
        )
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunStatus::Running => f.write_str("running"),
            RunStatus::Waiting => f.write_str("waiting"),
            RunStatus::Completed => f.write_str("completed"),
            RunStatus::ReturnedErr => f.write_str("returned Err"),
            RunStatus::Failed { error } => write!(f, "failed: {error}"),
            RunStatus::Cancelled => f.write_str("cancelled"),
            RunStatus::Faulted { error } => write!(f, "faulted: {error}"),
            RunStatus::Blocked { reason } => write!(f, "blocked: {reason}"),
        }
    }
}

/// One run, as listed by [`Engine::list`](crate::Engine::list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run ID.
    pub run_id: String,
    /// Workflow name.
    pub workflow: String,
    /// The version of the workflow the run is on (`#[workflow(version = N)]`; 1 for
    /// workflows without versions).
    pub version: u32,
    /// Where the run stands.
    pub status: RunStatus,
    /// When the run was started, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When the run last changed, ms since the Unix epoch.
    pub updated_at_ms: u64,
    /// How many durable operations the run has awaited so far.
    pub steps: u64,
}

/// A task attempt running right now, as
/// [`Engine::attempts_in_progress`](crate::Engine::attempts_in_progress) shows it. It is
/// kept in the running engine's memory, not in the journal: nothing is written when an
/// attempt begins (the history's `AttemptStarted` is written with its outcome), so the
/// view is empty in any other engine and after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptInProgress {
    /// Step number.
    pub step: u64,
    /// Branch within the step.
    pub branch: u32,
    /// Task name.
    pub task: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// When the attempt began, ms since the Unix epoch.
    pub started_at_ms: u64,
}
