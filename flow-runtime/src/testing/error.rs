//! [`TestError`]: why a test environment could not do what the test asked.

use crate::codec::CodecError;
use crate::error::FlowError;

/// Why a [`TestEnv`](super::TestEnv) call failed. Each says what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// The run cannot finish: it waits for something only the test can send, and no timer
    /// is left that could end the wait.
    #[error(
        "run `{run_id}` cannot finish: it waits for {waiting_for} and no timer is left; \
         send what it waits for (TestRun::signal, TestEnv::complete_callback) before \
         asking for its result"
    )]
    Stuck {
        /// The run.
        run_id: String,
        /// What its pending operation waits for (`signal:approval`, `child run x`, ...).
        waiting_for: String,
    },
    /// The run was still going after its result had let time jump over this many timers:
    /// it probably never ends (a poller, an entity); drive it with `TestEnv::advance`.
    #[error(
        "run `{run_id}` was still going after {timers} timers; it may never end: move time \
         with TestEnv::advance and check what it did instead of asking for its result"
    )]
    Endless {
        /// The run.
        run_id: String,
        /// Timers fired while waiting for it.
        timers: u64,
    },
    /// The workflow panicked, or a task failure reached it that its output type cannot
    /// carry.
    #[error("run `{run_id}` failed: {error}")]
    Failed {
        /// The run.
        run_id: String,
        /// Why.
        error: String,
    },
    /// The compiled workflow faulted (a value that does not decode, a map item of the
    /// wrong kind, ...).
    #[error("run `{run_id}` faulted: {error}")]
    Faulted {
        /// The run.
        run_id: String,
        /// Why.
        error: String,
    },
    /// The run ended because it was cancelled (or its run-level timeout expired) while it
    /// awaited something that cannot receive `Err(TaskFailure::Cancelled)`.
    #[error("run `{run_id}` was cancelled")]
    Cancelled {
        /// The run.
        run_id: String,
    },
    /// A task is neither mocked in this environment nor linked into the program.
    #[error(
        "task `{name}` is neither mocked nor linked into this program; mock it with \
         TestEnv::mock::<{name}>() or TestEnv::mock_named(\"{name}\")"
    )]
    UnknownTask {
        /// The task's registered name.
        name: String,
    },
    /// A child workflow is not registered with the environment.
    #[error(
        "child workflow `{name}` is not registered in this test environment; add \
         `env.register::<{name}>()` before starting the run"
    )]
    UnknownWorkflow {
        /// The workflow's registered name.
        name: String,
    },
    /// No run has this ID.
    #[error("no run `{run_id}` in this test environment")]
    UnknownRun {
        /// The ID asked for.
        run_id: String,
    },
    /// The run has finished, so it takes no signal or cancellation.
    #[error("run `{run_id}` has finished; it takes no more {what}")]
    RunFinished {
        /// The run.
        run_id: String,
        /// "signals" or "cancellation".
        what: &'static str,
    },
    /// The token belongs to no callback the environment waits for (unknown, used already,
    /// or its step is over).
    #[error("callback token `{token}` is unknown, used already, or its step is over")]
    InvalidCallbackToken {
        /// The token given.
        token: String,
    },
    /// `TestRun::callback_token` found no callback (or several) that the run waits for.
    #[error("run `{run_id}` waits for {found} callbacks, not exactly one; {hint}")]
    CallbackTokens {
        /// The run.
        run_id: String,
        /// How many it waits for.
        found: usize,
        /// What to do.
        hint: &'static str,
    },
    /// A mock could not answer a call.
    #[error("mock of task `{task}`: {message}")]
    Mock {
        /// The mocked task.
        task: String,
        /// What went wrong and what to do.
        message: String,
    },
    /// The engine's own check refused the request (e.g. a signal the workflow never
    /// waits for, or a payload of the wrong type).
    #[error(transparent)]
    Refused(#[from] FlowError),
    /// A value did not encode or decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
}
