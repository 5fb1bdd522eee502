//! Remote tasks (Step Functions' activities): `#[task(queue = "resize")]` declares a task
//! whose attempts the engine does not run itself but hands to workers, in any process
//! and any language, through a named queue (`Engine::poll_tasks` and its siblings, or
//! flow-server's worker protocol over HTTP).
//!
//! A workflow awaits a remote task like any other: its retry policy, `timeout` (the
//! start-to-close timeout of one attempt, counted from the moment a worker takes it),
//! `?` and `match` work unchanged. What a remote task adds is declared here and travels
//! with the program, not the journal: the queue's name, the heartbeat timeout and the
//! schedule-to-start timeout.

use std::time::Duration;

use crate::codec::{self, CodecError};
use crate::task::Task;
pub use crate::task::{AttemptClass, AttemptResult};

/// The heartbeat timeout of a remote task that declares none: a worker that holds an
/// attempt must heartbeat (or finish) at least this often, or the attempt fails as
/// timed out and is retried by the task's policy.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(30);

/// The schedule-to-start timeout of a remote task that declares none: how long an
/// attempt waits on its queue for a worker before it fails (and is retried by the
/// task's policy). Finite, so that a queue nobody serves does not hold its runs forever.
pub const DEFAULT_SCHEDULE_TO_START: Duration = Duration::from_secs(5 * 60);

/// A task declared remote with `#[task(queue = "...")]`, as the macro registers it.
pub struct RemoteTask {
    /// The task's registered name.
    pub name: &'static str,
    /// The queue its attempts are put on.
    pub queue: &'static str,
    /// `heartbeat = "10s"`; `None` means [`DEFAULT_HEARTBEAT_TIMEOUT`].
    pub heartbeat: Option<Duration>,
    /// `schedule_to_start = "1m"`; `None` means [`DEFAULT_SCHEDULE_TO_START`].
    pub schedule_to_start: Option<Duration>,
    /// Checks a worker's output (encoded without the Rust type) against the task's
    /// output type and judges it as the task's policy does.
    pub judge: fn(&[u8]) -> Result<AttemptResult, CodecError>,
}

inventory::collect!(RemoteTask);

impl RemoteTask {
    /// The heartbeat timeout attempts get.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat.unwrap_or(DEFAULT_HEARTBEAT_TIMEOUT)
    }

    /// The schedule-to-start timeout attempts get.
    pub fn schedule_to_start_timeout(&self) -> Duration {
        self.schedule_to_start.unwrap_or(DEFAULT_SCHEDULE_TO_START)
    }
}

/// The remote declaration of task `name`, if it has one.
pub fn find_remote(name: &str) -> Option<&'static RemoteTask> {
    inventory::iter::<RemoteTask>().find(|t| t.name == name)
}

/// The names of every queue a linked remote task declares, sorted, without repeats.
pub fn declared_queues() -> Vec<&'static str> {
    let mut queues: Vec<_> = inventory::iter::<RemoteTask>().map(|t| t.queue).collect();
    queues.sort_unstable();
    queues.dedup();
    queues
}

/// The type-erased judge `#[task(queue = ...)]` registers for `T`: decodes a worker's
/// output as `T::Output` (refusing one that does not fit), classifies it like an
/// attempt's output, and encodes it again as the journal stores outputs.
pub fn erased_judge<T: Task>(output: &[u8]) -> Result<AttemptResult, CodecError> {
    let value: T::Output = codec::decode(output, || format!("output of task `{}`", T::NAME))?;
    Ok(AttemptResult {
        class: T::classify(&value),
        retry_after: T::retry_delay(&value),
        output: codec::encode(&value, || format!("output of task `{}`", T::NAME)),
    })
}

/// Runs one attempt of the task registered as `name` (linked into this program with
/// `#[task]`) on `args` (encoded as a poll hands them out), with `ctx` as the attempt's
/// [`TaskContext`](crate::TaskContext): what a worker process does with a task it
/// polled. Spawn the future (a panic in the body is then the spawn's error).
///
/// Fails, without running anything, for a task this program does not link or arguments
/// that do not decode as the task's: a worker should report the attempt failed.
pub fn run_task(
    name: &str,
    args: &[u8],
    ctx: crate::TaskContext,
) -> Result<crate::task::BoxFuture<AttemptResult>, String> {
    let task = crate::task::find_unique_task(name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "task `{name}` is not linked into this worker's program: link the crate \
                 that defines it, or serve its queue with a worker that does"
            )
        })?;
    let body = (task.run)(args).map_err(|e| e.to_string())?;
    Ok(Box::pin(ctx.scope(body)))
}
