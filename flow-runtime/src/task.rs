//! Tasks: units of side-effecting work, their retry/timeout policy and their registry.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::error::FlowError;

/// A boxed, sendable future, as task bodies are stored.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Implemented by `#[task]` for the struct that holds one call's arguments.
///
/// The struct has the task function's name; calling the function builds it. Awaited
/// directly (outside a workflow) it runs the body; awaited inside a `#[workflow]` it is
/// journaled and run by the engine with retries and a timeout.
pub trait Task: Serialize + DeserializeOwned + Send + 'static {
    /// Registered name: the function's name unless `#[task(name = "...")]` pins another.
    const NAME: &'static str;
    /// The task function's return type.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The declared retry and timeout policy.
    fn policy() -> TaskPolicy;
    /// Runs the body once.
    fn run(self) -> BoxFuture<Self::Output>;
    /// Sorts one attempt's output into success, retryable failure or final failure.
    fn classify(output: &Self::Output) -> AttemptClass;
    /// Turns an engine-side failure (timeout, panic, cancellation) into an output the
    /// workflow can handle, if the output type can carry it (`Result<T, E>` with
    /// `E: From<TaskFailure>`).
    fn from_failure(failure: TaskFailure) -> Option<Self::Output>;
    /// The delay a retryable output asks the engine to wait, at least, before the next
    /// attempt (e.g. an HTTP `Retry-After`); `None` (the default, and what `#[task]`
    /// generates) leaves the delay to the retry policy. The engine waits the longer of
    /// the policy's delay and this one, capped at the policy's `max_interval` (see
    /// [`RetryPolicy::delay_with_request`]). Ignored for outputs that are not retried.
    fn retry_delay(output: &Self::Output) -> Option<Duration> {
        let _ = output;
        None
    }
}

/// How one attempt ended, as judged by the task's declared policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptClass {
    /// `Ok`, or a plain (non-`Result`) output.
    Success,
    /// An `Err` that may be retried; the text is for the history.
    Retryable(String),
    /// An `Err` the policy marks non-retryable; delivered to the workflow at once.
    NonRetryable(String),
}

/// A failure the engine observed rather than the task returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TaskFailure {
    /// The attempt ran longer than the task's `timeout`.
    #[error("task `{task}` timed out after {after:?}")]
    TimedOut {
        /// Task name.
        task: String,
        /// The configured timeout.
        after: Duration,
    },
    /// The attempt panicked.
    #[error("task `{task}` panicked: {message}")]
    Panicked {
        /// Task name.
        task: String,
        /// The panic payload, if it was a string.
        message: String,
    },
    /// The run was cancelled while the task was pending.
    #[error("run was cancelled while `{task}` was pending")]
    Cancelled {
        /// Task name.
        task: String,
    },
    /// The attempt returned an output the journal cannot store: it is over
    /// [`MAX_PAYLOAD_BYTES`](crate::MAX_PAYLOAD_BYTES), or its serde impl failed. Retried
    /// as the task's policy says, like any failed attempt.
    #[error("task `{task}` returned an output that cannot be stored: {reason}")]
    OutputNotStored {
        /// Task name.
        task: String,
        /// Why (the size and the limit, or the serializer's message).
        reason: String,
    },
    /// The engine ended (a crash, a kill, a power loss) while the attempt ran: it may
    /// have done part or all of its work. It counts as a failed attempt; an at-most-once
    /// task is not run again.
    #[error("attempt {attempt} of task `{task}` was interrupted: the engine stopped while it ran")]
    Interrupted {
        /// Task name.
        task: String,
        /// The interrupted attempt (1-based).
        attempt: u32,
    },
    /// A remote task's worker reported that the attempt failed (`Engine::fail_task`).
    #[error("a worker failed attempt {attempt} of remote task `{task}`: {message}")]
    WorkerFailed {
        /// Task name.
        task: String,
        /// The attempt (1-based).
        attempt: u32,
        /// What the worker said.
        message: String,
    },
    /// The worker holding a remote task's attempt sent no heartbeat within the task's
    /// heartbeat timeout (it died, hung or lost its connection).
    #[error("the worker holding attempt {attempt} of remote task `{task}` sent no heartbeat within {after:?}")]
    HeartbeatTimedOut {
        /// Task name.
        task: String,
        /// The attempt (1-based).
        attempt: u32,
        /// The heartbeat timeout.
        after: Duration,
    },
    /// No worker took a remote task's attempt from its queue within the task's
    /// schedule-to-start timeout.
    #[error("no worker took attempt {attempt} of remote task `{task}` from queue `{queue}` within {after:?}")]
    NotStarted {
        /// Task name.
        task: String,
        /// The queue.
        queue: String,
        /// The attempt (1-based).
        attempt: u32,
        /// The schedule-to-start timeout.
        after: Duration,
    },
}

impl From<TaskFailure> for String {
    fn from(failure: TaskFailure) -> String {
        failure.to_string()
    }
}

/// Retry policy of a task, as declared in `#[task(retry(...))]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Total attempts, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub initial_interval: Duration,
    /// Multiplier applied to the delay after each retry.
    pub backoff_rate: f64,
    /// Upper bound on the delay.
    pub max_interval: Duration,
    /// Random spread applied to each delay, as a fraction (0.1 = ±10%).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_interval: Duration::from_millis(100),
            backoff_rate: 2.0,
            max_interval: Duration::from_secs(60),
            jitter: 0.0,
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` (1-based), before jitter.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let p = flow_runtime::RetryPolicy { initial_interval: Duration::from_millis(100), backoff_rate: 2.0, ..Default::default() };
    /// assert_eq!(p.delay_after(3), Duration::from_millis(400));
    /// let broken = flow_runtime::RetryPolicy { backoff_rate: f64::NAN, jitter: 1e300, ..p };
    /// let _ = broken.jittered_delay_after(9, 0.99); // a damaged policy never panics
    /// ```
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let secs = self.initial_interval.as_secs_f64() * self.backoff_rate.powi(exponent);
        let capped = secs.min(self.max_interval.as_secs_f64()).max(0.0);
        secs_to_duration(capped, self.max_interval)
    }

    /// The delay after failed attempt `attempt`, spread by `jitter` using `unit`, a number
    /// in `[0, 1)` supplied by the caller.
    pub fn jittered_delay_after(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.delay_after(attempt).as_secs_f64();
        let spread = base * self.jitter * (unit * 2.0 - 1.0);
        secs_to_duration((base + spread).max(0.0), self.max_interval)
    }

    /// The delay after failed attempt `attempt` when the attempt asked for `requested`
    /// (see [`Task::retry_delay`]): the longer of the jittered policy delay and the
    /// request, the request capped at `max_interval` so that no answer (a server's
    /// `Retry-After: 86400`) holds a run longer than its policy allows.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let p = flow_runtime::RetryPolicy { initial_interval: Duration::from_millis(100), max_interval: Duration::from_secs(10), ..Default::default() };
    /// assert_eq!(p.delay_with_request(1, 0.5, Some(Duration::from_secs(2))), Duration::from_secs(2));
    /// assert_eq!(p.delay_with_request(1, 0.5, Some(Duration::from_millis(1))), Duration::from_millis(100));
    /// assert_eq!(p.delay_with_request(1, 0.5, Some(Duration::from_secs(3600))), Duration::from_secs(10));
    /// assert_eq!(p.delay_with_request(1, 0.5, None), Duration::from_millis(100));
    /// ```
    pub fn delay_with_request(
        &self,
        attempt: u32,
        unit: f64,
        requested: Option<Duration>,
    ) -> Duration {
        let policy = self.jittered_delay_after(attempt, unit);
        match requested {
            Some(requested) => policy.max(requested.min(self.max_interval)),
            None => policy,
        }
    }
}

/// Seconds as a `Duration`, never panicking: a policy read back from a damaged journal
/// can hold any float, so NaN falls back to `fallback` and huge values saturate.
fn secs_to_duration(secs: f64, fallback: Duration) -> Duration {
    if secs.is_nan() {
        return fallback;
    }
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)
}

/// The start-to-close timeout of an attempt of a task that declares none: 5 minutes.
///
/// Finite so that a hung call (a socket without a read timeout, a lock never released)
/// ends as a failed attempt (retried, then reported to the workflow as
/// `TaskFailure::TimedOut`) instead of holding its run forever; long enough for any
/// ordinary request. Work that takes longer declares `timeout = "..."`.
pub const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Retry and timeout policy of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TaskPolicy {
    /// Retries of failed attempts.
    pub retry: RetryPolicy,
    /// Start-to-close timeout of one attempt; `None` means [`DEFAULT_TASK_TIMEOUT`].
    pub timeout: Option<Duration>,
}

impl TaskPolicy {
    /// The timeout an attempt actually gets: the declared one, or the default.
    pub fn effective_timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TASK_TIMEOUT)
    }
}

/// What the engine knows about the task attempt that is running, readable from the task
/// body through [`TaskContext::current`].
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// The run that called the task.
    pub run_id: String,
    /// Stable across retries and crashes of the same call: use it to make external
    /// effects exactly-once (e.g. as a payment provider's idempotency key).
    pub idempotency_key: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    cancel: tokio::sync::watch::Receiver<bool>,
    callback_token: Option<String>,
}

// The cancellation channel has no meaningful equality; two contexts are equal when they
// describe the same attempt.
impl PartialEq for TaskContext {
    fn eq(&self, other: &Self) -> bool {
        self.run_id == other.run_id
            && self.idempotency_key == other.idempotency_key
            && self.attempt == other.attempt
    }
}

impl Eq for TaskContext {}

tokio::task_local! {
    static CURRENT: TaskContext;
}

impl TaskContext {
    /// A context for one attempt of a call.
    pub fn new(
        run_id: String,
        idempotency_key: String,
        attempt: u32,
        cancel: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        TaskContext {
            run_id,
            idempotency_key,
            attempt,
            cancel,
            callback_token: None,
        }
    }

    /// The same context, carrying the callback token of a
    /// [`wait_for_callback`](crate::WaitForCallback::wait_for_callback) call.
    pub fn with_callback_token(mut self, token: String) -> Self {
        self.callback_token = Some(token);
        self
    }

    /// The token to hand to the outside system that completes this callback (with
    /// `Engine::complete`); `None` unless the task was awaited with `wait_for_callback`.
    /// Same for every attempt of the call.
    pub fn callback_token(&self) -> Option<&str> {
        self.callback_token.as_deref()
    }

    /// The context of the task attempt this code runs in, or `None` when the task was
    /// called directly (outside an engine).
    pub fn current() -> Option<TaskContext> {
        CURRENT.try_with(|c| c.clone()).ok()
    }

    /// True once the run has been cancelled; long tasks should poll it and stop early.
    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Runs `fut` with `self` as the current context.
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }
}

/// Everything the engine needs to run a task known only by name (e.g. after recovery).
pub struct TaskRegistration {
    /// Registered name.
    pub name: &'static str,
    /// Decodes the arguments and runs one attempt.
    pub run: fn(&[u8]) -> Result<BoxFuture<AttemptResult>, CodecError>,
    /// Encodes the output a failure turns into, when the output type can carry one.
    pub failure_output: fn(TaskFailure) -> Option<Result<Vec<u8>, CodecError>>,
    /// The function's path and source location, to name both sides of a name collision.
    pub defined_at: &'static str,
}

/// One finished attempt, type-erased: its class and its encoded output.
pub struct AttemptResult {
    /// Success or which kind of failure.
    pub class: AttemptClass,
    /// The encoded `Task::Output`.
    pub output: Result<Vec<u8>, CodecError>,
    /// The least delay before a retry the output asked for ([`Task::retry_delay`]).
    pub retry_after: Option<Duration>,
}

inventory::collect!(TaskRegistration);

/// Marks the task `name` at-most-once (`#[task(at_most_once)]` submits it): each attempt's
/// start is made durable before the attempt runs, and an attempt interrupted by the
/// engine's end is not run again: its [`TaskFailure::Interrupted`] reaches the workflow.
pub struct AtMostOnce {
    /// Registered task name.
    pub name: &'static str,
}

inventory::collect!(AtMostOnce);

/// Whether the task `name` is at-most-once.
pub fn is_at_most_once(name: &str) -> bool {
    inventory::iter::<AtMostOnce>().any(|t| t.name == name)
}

/// Looks up a task registered anywhere in the program by `#[task]`.
pub fn find_task(name: &str) -> Option<&'static TaskRegistration> {
    inventory::iter::<TaskRegistration>().find(|t| t.name == name)
}

/// Refuses a program that links two `#[task]` functions under one name: which body a
/// lookup finds would depend on link order. Engines check this when they open, test
/// drivers at each lookup ([`find_unique_task`]).
pub fn check_task_names() -> Result<(), FlowError> {
    let mut seen: HashMap<&str, &TaskRegistration> = HashMap::new();
    for task in inventory::iter::<TaskRegistration>() {
        if let Some(first) = seen.insert(task.name, task) {
            return Err(duplicate_task(first, task));
        }
    }
    Ok(())
}

/// Like [`find_task`], but refuses a name that two linked tasks claim.
pub fn find_unique_task(name: &str) -> Result<Option<&'static TaskRegistration>, FlowError> {
    let mut found = inventory::iter::<TaskRegistration>().filter(|t| t.name == name);
    let first = found.next();
    match (first, found.next()) {
        (Some(first), Some(second)) => Err(duplicate_task(first, second)),
        _ => Ok(first),
    }
}

fn duplicate_task(first: &TaskRegistration, second: &TaskRegistration) -> FlowError {
    FlowError::DuplicateName {
        kind: "task",
        name: second.name.to_string(),
        first: format!("`#[task]` {}", first.defined_at),
        second: format!("`#[task]` {}", second.defined_at),
    }
}

/// The type-erased runner `#[task]` registers for `T`.
pub fn erased_run<T: Task>(args: &[u8]) -> Result<BoxFuture<AttemptResult>, CodecError> {
    let call: T = codec::decode(args, || format!("arguments of task `{}`", T::NAME))?;
    Ok(Box::pin(async move {
        let output = call.run().await;
        AttemptResult {
            class: T::classify(&output),
            retry_after: T::retry_delay(&output),
            output: codec::encode(&output, || format!("output of task `{}`", T::NAME)),
        }
    }))
}

/// The type-erased failure encoder `#[task]` registers for `T`.
pub fn erased_failure_output<T: Task>(failure: TaskFailure) -> Option<Result<Vec<u8>, CodecError>> {
    T::from_failure(failure).map(|o| codec::encode(&o, || format!("output of task `{}`", T::NAME)))
}
