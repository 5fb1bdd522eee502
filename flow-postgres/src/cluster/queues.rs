//! Remote tasks' queues across the cluster: a worker may poll any process, and report
//! through any process.
//!
//! Each shard's engine queues the attempts of its runs in memory. A poll takes what the
//! engines of the process it reached have waiting, then asks each other process
//! (through a request to one of its shards) for what its engines have, and repeats until
//! it has tasks or its wait is over. Heartbeats and reports go to the engine that
//! leased the task: a task token names its run, so its shard.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flow_runtime::{
    Completed, Engine, FlowError, LeasedTask, TaskHeartbeat, MAX_POLL_TASKS, MAX_POLL_WAIT,
};
use serde::Serialize;

use super::wire::{Answer, Request, TaskReport};
use super::{Cluster, Inner};
use crate::error::{query_error, storage};

/// How often a waiting poll asks the engines of this process again.
const LOCAL_EVERY: Duration = Duration::from_millis(20);
/// How often a waiting poll asks the other processes again.
const REMOTE_EVERY: Duration = Duration::from_millis(250);
/// How long a poll waits for another process's answer before going on without it.
const REMOTE_ANSWER: Duration = Duration::from_secs(2);

impl Cluster {
    /// Takes up to `max` tasks of `queue` waiting in any process of the cluster, as
    /// [`Engine::poll_tasks`] does in one engine: waiting up to `wait` for the first.
    pub async fn poll_tasks(
        &self,
        queue: &str,
        worker: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<LeasedTask>, FlowError> {
        let max = max.clamp(1, MAX_POLL_TASKS);
        let deadline = Instant::now() + wait.min(MAX_POLL_WAIT);
        let mut asked_others: Option<Instant> = None;
        loop {
            let mut tasks = poll_here(&self.inner, queue, worker, max).await?;
            if tasks.is_empty() && asked_others.is_none_or(|at| at.elapsed() >= REMOTE_EVERY) {
                asked_others = Some(Instant::now());
                tasks = self.poll_others(queue, worker, max).await?;
            }
            if !tasks.is_empty() || Instant::now() >= deadline {
                return Ok(tasks);
            }
            tokio::time::sleep(LOCAL_EVERY.min(deadline.saturating_duration_since(Instant::now())))
                .await;
        }
    }

    /// Asks each other live process, one after another, for what its engines have
    /// waiting, until `max` tasks are found.
    async fn poll_others(
        &self,
        queue: &str,
        worker: &str,
        max: usize,
    ) -> Result<Vec<LeasedTask>, FlowError> {
        let owner = self.inner.owner.clone();
        // One shard of each other process addresses it.
        let others: Vec<i32> = self
            .inner
            .control
            .call_async(move |client| {
                client
                    .query(
                        "SELECT min(shard) FROM flow_shards WHERE owner IS NOT NULL \
                         AND owner <> $1 AND expires_at > clock_timestamp() GROUP BY owner",
                        &[&owner],
                    )
                    .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            })
            .await?
            .map_err(|e| query_error("finding the cluster's other processes", &e))?;
        let mut tasks = Vec::new();
        for shard in others {
            let request = Request::Poll {
                queue: queue.to_string(),
                worker: worker.to_string(),
                max: (max - tasks.len()) as u32,
            };
            let id = self.inner.request_id();
            let asked = super::serve::ask(&self.inner, &id, shard as u32, &request);
            match tokio::time::timeout(REMOTE_ANSWER, asked).await {
                Ok(Ok(Answer::Tasks(found))) => tasks.extend(found),
                Ok(Ok(Answer::Refused(e))) => return Err(e.into()),
                Ok(Ok(_)) => return Err(storage("a poll was answered without tasks")),
                Ok(Err(e)) => return Err(e),
                // Its tasks, if it leases any after all, are retried after their
                // heartbeat timeout, as a silent worker's are.
                Err(_) => {
                    self.inner.forget_request(&id);
                    tracing::debug!(shard, "another process did not answer a poll in time");
                }
            }
            if tasks.len() >= max {
                break;
            }
        }
        Ok(tasks)
    }

    /// Records a sign of life for the task `token` leases, as
    /// [`Engine::heartbeat_task`] does, through the process whose engine leased it.
    pub async fn heartbeat_task(
        &self,
        queue: &str,
        token: &str,
    ) -> Result<TaskHeartbeat, FlowError> {
        let request = Request::TaskHeartbeat {
            queue: queue.to_string(),
            token: token.to_string(),
        };
        let shard = self.token_shard(token)?;
        let answer = self
            .route(shard, request, |engine| {
                let (queue, token) = (queue.to_string(), token.to_string());
                async move { engine.heartbeat_task(&queue, &token).map(Answer::Heartbeat) }
            })
            .await?;
        match answer {
            Answer::Heartbeat(beat) => Ok(beat),
            Answer::Refused(e) => Err(e.into()),
            _ => Err(storage("a heartbeat was answered without one")),
        }
    }

    /// Reports the task `token` leases as finished with `output`, as
    /// [`Engine::complete_task`] does.
    pub async fn complete_task<T: Serialize + ?Sized>(
        &self,
        queue: &str,
        token: &str,
        output: &T,
    ) -> Result<Completed, FlowError> {
        let bytes = flow_runtime::codec::encode(output, || "a remote task's output".to_string())?;
        self.report(queue, token, TaskReport::Completed(bytes))
            .await
    }

    /// Reports the task `token` leases as failed, as [`Engine::fail_task`] does.
    pub async fn fail_task(
        &self,
        queue: &str,
        token: &str,
        error: &str,
        retryable: bool,
        retry_after: Option<Duration>,
    ) -> Result<Completed, FlowError> {
        let report = TaskReport::Failed {
            error: error.to_string(),
            retryable,
            retry_after_ms: retry_after.map(|d| d.as_millis() as u64),
        };
        self.report(queue, token, report).await
    }

    async fn report(
        &self,
        queue: &str,
        token: &str,
        report: TaskReport,
    ) -> Result<Completed, FlowError> {
        let request = Request::TaskReport {
            queue: queue.to_string(),
            token: token.to_string(),
            report: report.clone(),
        };
        let shard = self.token_shard(token)?;
        let answer = self
            .route(shard, request, |engine| {
                let (queue, token, report) = (queue.to_string(), token.to_string(), report.clone());
                async move {
                    report_here(&engine, &queue, &token, report)
                        .await
                        .map(Answer::Report)
                }
            })
            .await?;
        match answer {
            Answer::Report(completed) => Ok(completed),
            Answer::Refused(e) => Err(e.into()),
            _ => Err(storage("a report was answered without its outcome")),
        }
    }
}

/// Up to `max` tasks of `queue` waiting in this process's engines, without waiting.
pub(crate) async fn poll_here(
    inner: &Arc<Inner>,
    queue: &str,
    worker: &str,
    max: usize,
) -> Result<Vec<LeasedTask>, FlowError> {
    let engines: Vec<Engine> = inner
        .read_held()
        .values()
        .map(|h| h.engine.clone())
        .collect();
    let mut tasks = Vec::new();
    for engine in engines {
        if tasks.len() >= max {
            break;
        }
        match engine
            .poll_tasks(queue, worker, max - tasks.len(), Duration::ZERO)
            .await
        {
            Ok(found) => tasks.extend(found),
            // A shard being handed over has nothing to hand out.
            Err(FlowError::EngineStopped { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(tasks)
}

/// Applies a worker's report to the engine that leased the task.
pub(crate) async fn report_here(
    engine: &Engine,
    queue: &str,
    token: &str,
    report: TaskReport,
) -> Result<Completed, FlowError> {
    match report {
        TaskReport::Completed(output) => engine.complete_task_encoded(queue, token, &output).await,
        TaskReport::Failed {
            error,
            retryable,
            retry_after_ms,
        } => {
            engine
                .fail_task(
                    queue,
                    token,
                    &error,
                    retryable,
                    retry_after_ms.map(Duration::from_millis),
                )
                .await
        }
    }
}
