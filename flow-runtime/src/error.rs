//! The one error type of the engine's public API.

use crate::codec::CodecError;

/// Everything that can go wrong when opening a journal or working with runs.
///
/// Every variant says what happened and what to do about it. None of them is reported
/// after committed data was deleted or overwritten: an error leaves the journal as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// The file exists but is not a redb database at all.
    #[error(
        "`{path}` is not a flow journal (not a redb database: {message}); \
         check the path, or move the file away to start a new journal there"
    )]
    NotARedbFile {
        /// The file.
        path: String,
        /// What redb said.
        message: String,
    },
    /// The file is a redb database written by another program.
    #[error(
        "`{path}` is a redb database but not a flow journal (it has no `flow_meta` table; \
         its tables are: {tables}); point the engine at its own file"
    )]
    ForeignDatabase {
        /// The file.
        path: String,
        /// The names of the tables it holds.
        tables: String,
    },
    /// The journal was written by a newer (or unknown) version of flow.
    #[error(
        "`{path}` is a flow journal in format {found}, but this build reads format {expected}; \
         nothing was changed: open it with the flow version that wrote it (and let its runs \
         finish there), or start a new journal"
    )]
    UnsupportedFormat {
        /// The file.
        path: String,
        /// The format version found in the file.
        found: u32,
        /// The format version this build reads and writes.
        expected: u32,
    },
    /// The file is damaged.
    #[error(
        "the journal `{path}` is corrupt ({message}); nothing was changed: restore it from a \
         backup, or keep it for inspection and start a new journal"
    )]
    Corrupt {
        /// The file (or "journal" when the failure was found later).
        path: String,
        /// What is damaged.
        message: String,
    },
    /// The write-ahead log beside the journal holds changes that cannot apply to it: the
    /// journal file was deleted, replaced or restored from a backup, but not its log.
    #[error(
        "the write-ahead log `{log}` does not go with `{path}`: {reason}; nothing was \
         changed: put back the journal file that goes with the log, or, if that journal is \
         gone for good, delete the log"
    )]
    LogMismatch {
        /// The journal.
        path: String,
        /// The log.
        log: String,
        /// How they differ.
        reason: String,
    },
    /// The write-ahead log beside the journal is damaged or gone where the journal needs
    /// it: it may have held acknowledged changes that the journal file lacks.
    #[error(
        "the write-ahead log `{log}` of the journal `{path}` is damaged: {reason}; nothing \
         was changed: restore both files from a backup, or put back the log that was \
         beside the journal; keep both files as they are until then (if the log is lost \
         for good, EngineBuilder::accept_log_loss opens the journal without it, losing \
         what only the log held)"
    )]
    LogDamaged {
        /// The journal.
        path: String,
        /// The log.
        log: String,
        /// What is wrong with the log.
        reason: String,
    },
    /// Another engine (in this or another process) has the file open.
    #[error(
        "another engine has `{path}` open; shut that engine down first (Engine::shutdown), \
         or give this engine its own file"
    )]
    DatabaseAlreadyOpen {
        /// The file.
        path: String,
    },
    /// An I/O or storage failure (disk full, permissions, ...).
    #[error("journal storage failed: {message}; fix the storage problem and reopen the journal")]
    Storage {
        /// What failed.
        message: String,
    },
    /// `Engine::complete` was given a token that no waiting callback holds.
    #[error(
        "invalid callback token: {reason}; a token completes the callback that issued it, \
         once, while its step still waits"
    )]
    InvalidCallbackToken {
        /// Why the token was refused (unknown, used, or its step is over).
        reason: String,
    },
    /// Only a failed, cancelled or faulted run can be redriven; nothing was written.
    #[error(
        "run `{run_id}` cannot be redriven: it is {status}, and only a failed, cancelled \
         (or timed-out) or faulted run can be; to run again from an earlier step of a run \
         that completed, start a new run"
    )]
    NotRedrivable {
        /// The run.
        run_id: String,
        /// Its status.
        status: String,
    },
    /// The step a run would be redriven at waits for a child run that ended without a
    /// result; nothing was written.
    #[error(
        "run `{run_id}` cannot be redriven: its step waits for child run `{child}`, which \
         is {status} and will not deliver a result; redriving a step that waits for an \
         ended child run is not supported"
    )]
    RedriveNeedsChild {
        /// The run.
        run_id: String,
        /// The child run.
        child: String,
        /// The child's status.
        status: String,
    },
    /// A run cannot be forked at this step; nothing was written.
    #[error("run `{run_id}` cannot be forked at step {step}: {reason}")]
    ForkRefused {
        /// The run to fork from.
        run_id: String,
        /// The step asked for.
        step: u64,
        /// Why not.
        reason: String,
    },
    /// A run cannot be deleted while a driver may work on it; nothing was deleted.
    #[error(
        "run `{run_id}` was not deleted: it is {status}, and only a finished or faulted run \
         can be; cancel it (`Engine::cancel`) and wait for it to finish, then delete it"
    )]
    RunNotSettled {
        /// The run.
        run_id: String,
        /// Its status.
        status: String,
    },
    /// A callback's completion value does not fit the type its step awaits; nothing was
    /// stored and the token can still be completed.
    #[error(
        "the completion of callback token `{token}` was refused: it was sent as `{sent}`, \
         which does not fit the awaited type `{awaited}` ({reason}); nothing was stored and \
         the token is still open: complete it with a value of the awaited type"
    )]
    CallbackTypeMismatch {
        /// The token.
        token: String,
        /// The type the caller encoded.
        sent: String,
        /// The type the callback's step awaits.
        awaited: String,
        /// Why the value does not decode as the awaited type.
        reason: String,
    },
    /// A signal's payload does not fit the type the run's workflow waits for under that
    /// name; nothing was stored.
    #[error(
        "signal `{signal}` for run `{run_id}` was refused: it was sent as `{sent}`, which does \
         not fit what the workflow waits for ({expected}); nothing was stored: send a value \
         of the awaited type"
    )]
    SignalTypeMismatch {
        /// The run.
        run_id: String,
        /// The signal's name.
        signal: String,
        /// The type the sender encoded.
        sent: String,
        /// Each awaited type with why the payload does not fit it.
        expected: String,
    },
    /// The run's workflow never waits for a signal of this name; nothing was stored.
    #[error(
        "signal `{signal}` for run `{run_id}` was refused: workflow `{workflow}` never waits \
         for a signal of that name (it waits for `{known}`); nothing was stored: check the \
         signal's name"
    )]
    UnknownSignal {
        /// The run.
        run_id: String,
        /// The run's workflow.
        workflow: String,
        /// The refused name.
        signal: String,
        /// The names the workflow waits for.
        known: String,
    },
    /// No run with this ID exists in the journal.
    #[error("no run `{run_id}` in this journal; check the run ID (Engine::list shows the runs)")]
    UnknownRun {
        /// The run ID asked for.
        run_id: String,
    },
    /// The workflow was not registered with the engine.
    #[error(
        "workflow `{workflow}` is not registered in this engine; add \
         `.register::<{workflow}>()` to the EngineBuilder"
    )]
    UnknownWorkflow {
        /// The workflow's registered name.
        workflow: String,
    },
    /// An input encoded without the workflow's Rust type
    /// ([`Engine::start_encoded`](crate::Engine::start_encoded)) does not fit its input
    /// type; nothing was started.
    #[error(
        "the input does not fit workflow `{workflow}`'s input type `{expected}` ({message}); \
         nothing was started: send a value of that type (an object with its fields for a \
         struct, an array for a tuple of several arguments)"
    )]
    InputTypeMismatch {
        /// The workflow.
        workflow: String,
        /// Its input type.
        expected: String,
        /// Why the input does not fit.
        message: String,
    },
    /// The run exists but belongs to another workflow than the one asked for.
    #[error("run `{run_id}` is a run of workflow `{stored}`, not of `{requested}`")]
    WrongWorkflow {
        /// The run.
        run_id: String,
        /// The run's workflow.
        stored: String,
        /// The workflow the caller expected.
        requested: String,
    },
    /// A run with this ID exists already and was started differently.
    #[error(
        "run `{run_id}` already exists with {difference}; starting a run is idempotent only \
         with the same workflow and input: use a new run ID, or Engine::handle to follow \
         the existing run"
    )]
    RunIdConflict {
        /// The run ID.
        run_id: String,
        /// What differs from the existing run.
        difference: String,
    },
    /// A payload could not be encoded or decoded, or is too large.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The run ended with an error: a panic in the workflow, or a task failure its output
    /// type cannot carry.
    #[error("run `{run_id}` failed: {error}")]
    RunFailed {
        /// The run.
        run_id: String,
        /// Why it failed.
        error: String,
    },
    /// The run cannot go on: its stored state does not fit the code (see the message).
    /// It is kept in the journal unchanged.
    #[error("run `{run_id}` is faulted and kept in the journal unchanged: {error}")]
    RunFaulted {
        /// The run.
        run_id: String,
        /// What went wrong.
        error: String,
    },
    /// The run waits for code this engine lacks: its workflow is not registered (or with
    /// a different body), a task it calls is not linked into the program, or a value it
    /// stored no longer decodes as the code's type. Nothing was written: the run resumes
    /// when an engine with that code opens the journal.
    #[error("run `{run_id}` is blocked and kept in the journal unchanged: {reason}")]
    RunBlocked {
        /// The run.
        run_id: String,
        /// What it waits for.
        reason: String,
    },
    /// Two definitions claim one registered name, so the engine could run the wrong one.
    #[error(
        "{kind} name `{name}` is registered twice ({first}; {second}); names must be unique: \
         rename one function or pin distinct names with `#[{kind}(name = \"...\")]`"
    )]
    DuplicateName {
        /// `task` or `workflow`.
        kind: &'static str,
        /// The name both claim.
        name: String,
        /// The first definition.
        first: String,
        /// The second definition.
        second: String,
    },
    /// The run is not faulted, so there is nothing to retry.
    #[error("run `{run_id}` is not faulted ({status}); only a faulted run can be retried")]
    NotFaulted {
        /// The run.
        run_id: String,
        /// Where it stands.
        status: String,
    },
    /// The run was cancelled.
    #[error("run `{run_id}` was cancelled")]
    RunCancelled {
        /// The run.
        run_id: String,
    },
    /// The run has finished, so it cannot receive signals or be cancelled.
    #[error("run `{run_id}` has already finished ({status}); it no longer takes {what}")]
    RunFinished {
        /// The run.
        run_id: String,
        /// Its final status.
        status: String,
        /// What was refused ("signals", "cancellation").
        what: &'static str,
    },
    /// A run ID is empty or too long.
    #[error("invalid run ID {run_id:?}: {reason}")]
    InvalidRunId {
        /// The run ID.
        run_id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The engine was shut down (or halted by a test hook) before the request completed.
    #[error("the engine has stopped ({reason}); open the journal again to continue")]
    EngineStopped {
        /// Why it stopped.
        reason: String,
    },
    /// `Engine::export` could not write the run's recording.
    #[error("could not export run `{run_id}`: {reason}")]
    ExportFailed {
        /// The run.
        run_id: String,
        /// Why (the file's error).
        reason: String,
    },
    /// `Engine::start` was given a call of an older version of a workflow than the newest
    /// registered: new runs start on the newest unless the caller picks a version.
    #[error(
        "workflow `{workflow}` version {version} is not the newest registered (version \
         {newest} is): new runs start on the newest version; call the newest version's \
         function, or pick this version on purpose with Engine::start_version"
    )]
    NotNewestVersion {
        /// The workflow's registered name.
        workflow: String,
        /// The version of the call.
        version: u32,
        /// The newest registered version.
        newest: u32,
    },
    /// `Engine::upgrade` cannot move the run to the asked version; nothing was written.
    #[error(
        "run `{run_id}` cannot be moved from version {from} to version {to} of workflow \
         `{workflow}`: {reason}; nothing was changed"
    )]
    UpgradeRefused {
        /// The run.
        run_id: String,
        /// The run's workflow.
        workflow: String,
        /// The version the run is on.
        from: u32,
        /// The version asked for.
        to: u32,
        /// What does not fit.
        reason: String,
    },
    /// No linked remote task (`#[task(queue = "...")]`) declares this queue.
    #[error(
        "unknown task queue `{queue}`: no remote task linked into the engine's program \
         declares it (declared queues: {known}); check the queue's name"
    )]
    UnknownQueue {
        /// The queue asked for.
        queue: String,
        /// The queues the program declares, comma-separated.
        known: String,
    },
    /// A remote-task token that this engine did not issue (garbled, cut, or from
    /// another journal).
    #[error("invalid task token: {reason}; send the token exactly as the poll answer gave it")]
    InvalidTaskToken {
        /// What is wrong with it.
        reason: String,
    },
    /// A remote-task token whose lease is no longer the attempt's: the task was handed
    /// out again (after a heartbeat timeout, or to another worker after an engine
    /// restart), or the token names an older attempt. Nothing was changed.
    #[error(
        "stale task token: {reason}; nothing was changed: stop working on this task, \
         another lease owns it now"
    )]
    StaleTaskToken {
        /// Why the lease is no longer this token's.
        reason: String,
    },
    /// No attempt holds this remote-task token any more: it completed, failed, timed
    /// out, or its run moved on or was cancelled. Nothing was changed.
    #[error(
        "task token is no longer valid: {reason}; nothing was changed: drop the task \
         (its run no longer waits for this attempt)"
    )]
    TaskTokenGone {
        /// What became of the attempt, as far as the engine knows.
        reason: String,
    },
    /// A remote-task token used on another queue's endpoint than its task's.
    #[error(
        "the token belongs to a task of queue `{token_queue}`, not of queue `{queue}`; \
         nothing was changed: report a task on the queue it was polled from"
    )]
    WrongQueue {
        /// The queue named in the request.
        queue: String,
        /// The queue of the token's task.
        token_queue: String,
    },
    /// A worker's output does not fit the remote task's output type. The attempt is
    /// unchanged: the worker may report it again with a fitting output, or fail it.
    #[error(
        "the output does not fit remote task `{task}`'s output type: {message}; nothing \
         was changed: complete the task with a value of its output type (a `Result` as \
         {{\"Ok\": value}} or {{\"Err\": error}}), or fail it"
    )]
    TaskOutputMismatch {
        /// Task name.
        task: String,
        /// The decoder's message.
        message: String,
    },
    /// The engine opened moments ago and may not have put every attempt back on its
    /// queue yet: a token of the previous engine cannot be judged. Nothing was changed;
    /// retry shortly.
    #[error(
        "the engine restarted moments ago and is still putting the attempts it recovered \
         back on their queues; nothing was changed: retry in a second"
    )]
    QueuesRecovering,
    /// The attempt was already completed (or failed) with another result through this
    /// token. Nothing was changed.
    #[error(
        "the task was already {how} through this token, with another result; nothing \
         was changed"
    )]
    TaskAlreadyReported {
        /// `completed` or `failed`.
        how: &'static str,
    },
    /// A worker's report was taken in, but the run's driver ended (the engine stopped or
    /// halted) before the transition holding it was durable: the report may be lost.
    #[error(
        "the task's {how} report was taken in, but the engine stopped before it was \
         durable; report it again through the same token once the engine is back (the \
         attempt is handed back to it for one heartbeat timeout)"
    )]
    TaskReportNotDurable {
        /// `completed` or `failed`.
        how: &'static str,
    },
}

impl FlowError {
    pub(crate) fn storage(error: impl std::fmt::Display) -> Self {
        FlowError::Storage {
            message: error.to_string(),
        }
    }

    /// Names the journal's file in an error found where the file's name was not known
    /// (reported as "journal").
    pub(crate) fn naming_file(self, file: &str) -> Self {
        match self {
            FlowError::Corrupt { path, message } if path == UNNAMED_JOURNAL => FlowError::Corrupt {
                path: file.to_string(),
                message,
            },
            FlowError::DatabaseAlreadyOpen { path } if path == UNNAMED_JOURNAL => {
                FlowError::DatabaseAlreadyOpen {
                    path: file.to_string(),
                }
            }
            other => other,
        }
    }

    pub(crate) fn stopped(reason: impl Into<String>) -> Self {
        FlowError::EngineStopped {
            reason: reason.into(),
        }
    }
}

/// What errors found without the journal's file name at hand call it, until
/// [`FlowError::naming_file`] puts the name in.
pub(crate) const UNNAMED_JOURNAL: &str = "journal";

impl From<redb::Error> for FlowError {
    fn from(error: redb::Error) -> Self {
        match error {
            redb::Error::Corrupted(message) => FlowError::Corrupt {
                path: UNNAMED_JOURNAL.into(),
                message,
            },
            redb::Error::DatabaseAlreadyOpen => FlowError::DatabaseAlreadyOpen {
                path: UNNAMED_JOURNAL.into(),
            },
            other => FlowError::storage(other),
        }
    }
}

macro_rules! via_redb_error {
    ($($t:ty),*) => {$(
        impl From<$t> for FlowError {
            fn from(error: $t) -> Self {
                redb::Error::from(error).into()
            }
        }
    )*};
}

via_redb_error!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError
);

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_string()
    }
}
