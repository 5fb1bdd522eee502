//! The engine behind [`flow`](https://docs.rs/flow): the state-machine driver, the redb
//! journal, retries, timeouts and timers. Users depend on the `flow` facade crate, which
//! re-exports this crate's public items and the `#[workflow]` / `#[task]` macros.

#![warn(missing_docs)]

mod batch;
mod callback;
pub mod codec;
mod durable;
mod engine;
mod error;
#[cfg(feature = "test-hooks")]
pub mod fuzz_hooks;
mod history;
#[cfg(feature = "http")]
pub mod http;
mod join;
mod json;
mod machine;
mod map;
mod named;
mod op;
#[cfg(feature = "otel")]
pub mod otel;
mod outcome;
mod output;
mod race;
mod race_encoding;
pub mod remote;
mod route;
mod signal_types;
mod store;
mod task;
pub mod testing;
mod time;
mod workflow;

pub use batch::{all, Batch, Batched, BranchStatus, Completion};
pub use callback::{Callback, CallbackError, WaitForCallback};
pub use codec::{CodecError, MAX_PAYLOAD_BYTES};
pub use durable::{
    continue_as_new, signal, sleep, sleep_until, ContinueAsNew, Signal, SignalTimeout,
    SignalWithTimeout, Sleep,
};
pub use engine::{
    CommitMetrics, Histogram, Metrics, TaskMetrics, WorkflowMetrics, ATTEMPT_SECONDS_BUCKETS,
    BATCH_SIZE_BUCKETS, COMMIT_SECONDS_BUCKETS,
};
pub use engine::{Completed, LeasedTask, QueueInfo, TaskHeartbeat, MAX_POLL_TASKS, MAX_POLL_WAIT};
pub use engine::{
    Delivery, Engine, EngineBuilder, ListQuery, RegisteredWorkflow, RunDescription, RunHandle,
    RunPage, StatusKind, DEFAULT_PAGE_RUNS, MAX_PAGE_RUNS,
};
pub use engine::{RunCounts, StepLocals, Upgrade, UpgradePlan};
pub use error::FlowError;
pub use history::{AttemptInProgress, EventKind, HistoryEvent, RunStatus, RunSummary};
pub use join::{Join, LimitedJoin};
pub use map::{map, Map, MapFailed, TolerantMap};
pub use named::{Named, OpExt};
pub use op::{CompletionPolicy, DurableOp, OpRequest, Tolerance};
pub use race::{first_ok, race, Either, FirstOk, OneOf3, Race};
pub use route::{route_key, task_token_route, token_route};
pub use signal_types::{SignalSite, SignalSites, SignalType};
pub use task::{RetryPolicy, TaskContext, TaskFailure, TaskPolicy, DEFAULT_TASK_TIMEOUT};
pub use workflow::{GraphMarks, SlotInfo, StateGraph, StateInfo, Workflow};

/// The contract between the runtime and the code `#[workflow]` and `#[task]` generate: a
/// run's state machine and the transition each step yields, the task trait and how an
/// attempt is judged. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::machine::{frame, Journaled, Machine, MachineCtl, StepFault, Transition};
    pub use crate::remote::{erased_judge, RemoteTask};
    pub use crate::task::{
        erased_failure_output, erased_run, AtMostOnce, AttemptClass, BoxFuture, Task,
        TaskRegistration,
    };
    pub use inventory;
    pub use serde;
    pub use std::marker::PhantomData;

    /// `?` inside a workflow, rewritten by the macro: splits a value into continue/return.
    pub trait QuestionMark {
        /// The value `?` evaluates to.
        type Continue;
        /// What `?` returns early with.
        type Residual;
        /// Splits `self`.
        fn branch(self) -> std::ops::ControlFlow<Self::Residual, Self::Continue>;
    }

    impl<T, E> QuestionMark for Result<T, E> {
        type Continue = T;
        type Residual = Result<std::convert::Infallible, E>;
        fn branch(self) -> std::ops::ControlFlow<Self::Residual, T> {
            match self {
                Ok(v) => std::ops::ControlFlow::Continue(v),
                Err(e) => std::ops::ControlFlow::Break(Err(e)),
            }
        }
    }

    impl<T> QuestionMark for Option<T> {
        type Continue = T;
        type Residual = Option<std::convert::Infallible>;
        fn branch(self) -> std::ops::ControlFlow<Self::Residual, T> {
            match self {
                Some(v) => std::ops::ControlFlow::Continue(v),
                None => std::ops::ControlFlow::Break(None),
            }
        }
    }

    /// Builds a workflow's return value from what `?` returned early with.
    pub trait FromQuestionResidual<R> {
        /// Converts, applying `From` to the error like `?` does.
        fn from_residual(residual: R) -> Self;
    }

    impl<T, E, F: From<E>> FromQuestionResidual<Result<std::convert::Infallible, E>> for Result<T, F> {
        fn from_residual(residual: Result<std::convert::Infallible, E>) -> Self {
            match residual {
                Err(e) => Err(From::from(e)),
                Ok(never) => match never {},
            }
        }
    }

    impl<T> FromQuestionResidual<Option<std::convert::Infallible>> for Option<T> {
        fn from_residual(_: Option<std::convert::Infallible>) -> Self {
            None
        }
    }

    /// A `for` loop over a collection, across steps: the items are written to the
    /// journal once, then only the position advances.
    pub fn for_items<I: IntoIterator>(items: I) -> Vec<Option<I::Item>> {
        items.into_iter().map(Some).collect()
    }

    /// The next item of a `for` loop compiled by `#[workflow]`.
    pub fn for_next<T>(items: &mut [Option<T>], position: &mut usize) -> Option<T> {
        let item = items.get_mut(*position)?.take();
        *position += 1;
        item
    }
}
