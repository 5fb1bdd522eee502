//! A worker for flow's remote tasks (`#[task(queue = "...")]`): it polls a flow-server's
//! task queues over HTTP and runs the bodies of the `#[task]`s its program links, then
//! reports their outputs. Any number of workers, in any number of processes and
//! machines, may serve one queue.
//!
//! ```no_run
//! # async fn demo() -> Result<(), flow_worker::WorkerError> {
//! use flow_worker::{Worker, WorkerOptions};
//!
//! let worker = Worker::new(WorkerOptions {
//!     token: std::env::var("FLOW_API_TOKEN").ok(),
//!     queues: vec!["thumbnails".into()],
//!     concurrency: 8,
//!     ..WorkerOptions::new("http://127.0.0.1:8080")
//! })?;
//! // Serves until Ctrl-C, then stops polling and finishes (and reports) what it holds.
//! let stats = worker.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! println!("{} tasks completed", stats.completed);
//! # Ok(()) }
//! ```
//!
//! What it does for you: long polls that take as many tasks as it has free slots
//! (`concurrency`), a heartbeat for each task it holds (three per heartbeat timeout),
//! cancellation passed on to the task body ([`TaskContext::is_cancelled`]) when the run
//! was cancelled or the lease was lost, reports sent in batches (one request carries
//! every report ready), retries with back-off while the server cannot be reached, and a
//! graceful stop.
//!
//! A crate of its own, not a module of `flow` or `flow-server`: a worker process needs
//! an HTTP client but neither the server (axum) nor an engine, and an engine's process
//! needs no HTTP client.
//!
//! [`TaskContext::is_cancelled`]: flow_runtime::TaskContext::is_cancelled

#![warn(missing_docs)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flow_runtime::codec;
use flow_runtime::remote::run_task;
use flow_runtime::TaskContext;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

/// How a worker connects and what it serves.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// The server's API token, if it has one.
    pub token: Option<String>,
    /// This worker's name, shown by `GET /v1/queues` (and `flow queues`).
    pub name: String,
    /// The queues to serve.
    pub queues: Vec<String>,
    /// The most tasks held (run) at once, over all queues.
    pub concurrency: usize,
    /// How long one poll waits for a task (at most 60 s).
    pub poll_wait: Duration,
}

impl WorkerOptions {
    /// Options for a server at `url`: no token, no queue yet, 4 tasks at once, 30 s polls,
    /// named after the host's process ID.
    pub fn new(url: &str) -> Self {
        WorkerOptions {
            url: url.trim_end_matches('/').to_string(),
            token: None,
            name: format!("worker-{}", std::process::id()),
            queues: Vec::new(),
            concurrency: 4,
            poll_wait: Duration::from_secs(30),
        }
    }
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The options cannot work.
    #[error("invalid worker options: {0}")]
    Options(String),
    /// The HTTP client could not be built.
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
    /// The server refused a poll for a reason retrying cannot fix (an unknown queue, a
    /// wrong API token).
    #[error("the server refused to serve queue `{queue}` ({status}): {message}")]
    Refused {
        /// The queue.
        queue: String,
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
}

/// What a worker did, counted when it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Tasks whose output the server accepted.
    pub completed: u64,
    /// Tasks reported failed (a panic, undecodable arguments, a task not linked).
    pub failed: u64,
    /// Reports the server refused (the lease had ended: the task went to another worker).
    pub refused: u64,
}

#[derive(Default)]
struct Counters {
    completed: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
}

struct Shared {
    client: reqwest::Client,
    options: WorkerOptions,
    counters: Counters,
}

/// A worker, ready to run.
pub struct Worker {
    shared: Arc<Shared>,
}

#[derive(Deserialize)]
struct Polled {
    tasks: Vec<PolledTask>,
}

#[derive(Deserialize)]
struct PolledTask {
    token: String,
    task: String,
    run_id: String,
    idempotency_key: String,
    attempt: u32,
    args: Value,
    heartbeat_timeout_ms: u64,
}

/// One report waiting to be sent, with the slot it frees once sent.
struct Report {
    body: Value,
    failed: bool,
    _slot: OwnedSemaphorePermit,
}

impl Worker {
    /// A worker with `options`; checks them and builds the HTTP client.
    pub fn new(options: WorkerOptions) -> Result<Worker, WorkerError> {
        if options.queues.is_empty() {
            return Err(WorkerError::Options(
                "no queue to serve: name at least one in `queues`".into(),
            ));
        }
        if options.concurrency == 0 {
            return Err(WorkerError::Options(
                "`concurrency` must be at least 1".into(),
            ));
        }
        if options.poll_wait > Duration::from_secs(60) {
            return Err(WorkerError::Options(
                "`poll_wait` must be at most 60 s (the server's longest poll)".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(options.concurrency + 2 * options.queues.len())
            .build()
            .map_err(|e| WorkerError::Client(e.to_string()))?;
        Ok(Worker {
            shared: Arc::new(Shared {
                client,
                options,
                counters: Counters::default(),
            }),
        })
    }

    /// Serves the queues until `shutdown` resolves, then stops polling, finishes the
    /// tasks it holds and reports them, and returns what it did. Fails early only for a
    /// refusal retrying cannot fix (an unknown queue, a wrong API token).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<WorkerStats, WorkerError> {
        let shared = self.shared;
        let slots = Arc::new(Semaphore::new(shared.options.concurrency));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (refusal_tx, mut refusals) = mpsc::unbounded_channel();
        let mut pollers = Vec::new();
        let mut reporters = Vec::new();
        for queue in &shared.options.queues {
            let (reports_tx, reports_rx) = mpsc::unbounded_channel();
            reporters.push(tokio::spawn(report_loop(
                shared.clone(),
                queue.clone(),
                reports_rx,
            )));
            let poller = poll_loop(
                shared.clone(),
                queue.clone(),
                slots.clone(),
                reports_tx,
                stop_rx.clone(),
            );
            let refusal_tx = refusal_tx.clone();
            pollers.push(tokio::spawn(async move {
                if let Err(e) = poller.await {
                    let _ = refusal_tx.send(e);
                }
            }));
        }
        tokio::pin!(shutdown);
        let mut refused = tokio::select! {
            _ = &mut shutdown => None,
            e = refusals.recv() => e,
        };
        let _ = stop_tx.send(true);
        for poller in pollers {
            let _ = poller.await;
        }
        if refused.is_none() {
            refused = refusals.try_recv().ok();
        }
        // Every task held is finished and its report sent once all slots are back.
        let _ = slots.acquire_many(shared.options.concurrency as u32).await;
        for reporter in reporters {
            let _ = reporter.await;
        }
        if let Some(e) = refused {
            return Err(e);
        }
        let c = &shared.counters;
        Ok(WorkerStats {
            completed: c.completed.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
        })
    }
}

impl Shared {
    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        let request = self
            .client
            .post(format!("{}{path}", self.options.url))
            .json(body);
        match &self.options.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }
}

/// Back-off while the server cannot be reached: 50 ms doubling to 2 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(50u64 << failures.min(5)).min(Duration::from_secs(2))
}

async fn poll_loop(
    shared: Arc<Shared>,
    queue: String,
    slots: Arc<Semaphore>,
    reports: mpsc::UnboundedSender<Report>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let mut failures = 0u32;
    let wait_ms = shared.options.poll_wait.as_millis() as u64;
    loop {
        // As many tasks as there are free slots, waiting for one if none is free.
        let first = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return Ok(()),
            },
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let mut held = vec![first];
        while let Ok(slot) = slots.clone().try_acquire_owned() {
            held.push(slot);
        }
        let body = json!({"worker": shared.options.name, "max": held.len(), "wait_ms": wait_ms});
        let asked = std::time::Instant::now();
        let request = shared
            .post(&format!("/v1/queues/{queue}/poll"), &body)
            .send();
        let response = tokio::select! {
            r = request => r,
            // A poll dropped mid-way may have leased tasks: they return to the queue
            // after their heartbeat timeout.
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let polled = match response {
            Ok(r) if r.status().is_success() => r.json::<Polled>().await.ok(),
            Ok(r) if matches!(r.status().as_u16(), 400..=499) => {
                let status = r.status().as_u16();
                let message = r.text().await.unwrap_or_default();
                return Err(WorkerError::Refused {
                    queue,
                    status,
                    message,
                });
            }
            Ok(r) => {
                tracing::warn!(status = r.status().as_u16(), queue, "poll failed; retrying");
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, queue, "poll failed; retrying");
                None
            }
        };
        let Some(polled) = polled else {
            drop(held);
            failures += 1;
            tokio::time::sleep(backoff(failures)).await;
            continue;
        };
        failures = 0;
        if polled.tasks.is_empty() && asked.elapsed() < Duration::from_millis(100) {
            // An empty answer before the wait was up: the server is shutting down (its
            // polls are released). Not a tight loop meanwhile.
            drop(held);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        for task in polled.tasks {
            let Some(slot) = held.pop() else {
                break; // The server never sends more than asked.
            };
            tokio::spawn(execute(
                shared.clone(),
                queue.clone(),
                task,
                slot,
                reports.clone(),
            ));
        }
    }
}

/// Runs one task: its body with heartbeats alongside, then its report.
async fn execute(
    shared: Arc<Shared>,
    queue: String,
    task: PolledTask,
    slot: OwnedSemaphorePermit,
    reports: mpsc::UnboundedSender<Report>,
) {
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let ctx = TaskContext::new(
        task.run_id.clone(),
        task.idempotency_key.clone(),
        task.attempt,
        cancel_rx,
    );
    let token = task.token.clone();
    let outcome = match codec::encode(&task.args, || "task arguments".to_string()) {
        Err(e) => Err(e.to_string()),
        Ok(args) => run_task(&task.task, &args, ctx),
    };
    let report = match outcome {
        Err(message) => fail_body(&token, &message),
        Ok(future) => {
            let mut running = tokio::spawn(future);
            let heartbeat = Duration::from_millis(task.heartbeat_timeout_ms.max(30) / 3);
            let mut lost = false;
            let finished = loop {
                tokio::select! {
                    finished = &mut running => break finished,
                    _ = tokio::time::sleep(heartbeat) => {
                        match beat(&shared, &queue, &token).await {
                            Beat::Go => {}
                            Beat::Cancel => { cancel_tx.send_replace(true); }
                            Beat::Lost => { lost = true; cancel_tx.send_replace(true); }
                        }
                    }
                }
            };
            if lost {
                // Another lease owns the task: the report would be refused.
                shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
            match finished {
                Ok(result) => {
                    let output = result.output.map_err(|e| e.to_string()).and_then(|bytes| {
                        let text = codec::to_json(&bytes).map_err(|e| e.to_string())?;
                        serde_json::from_str::<Value>(&text).map_err(|e| e.to_string())
                    });
                    match output {
                        Ok(output) => (json!({"token": token, "output": output}), false),
                        Err(message) => fail_body(&token, &message),
                    }
                }
                Err(join) if join.is_panic() => fail_body(&token, "the task panicked"),
                Err(_) => fail_body(&token, "the task was aborted"),
            }
        }
    };
    let (body, failed) = report;
    let _ = reports.send(Report {
        body,
        failed,
        _slot: slot,
    });
}

/// A retryable failure report, and that it is one.
fn fail_body(token: &str, message: &str) -> (Value, bool) {
    (
        json!({"token": token, "error": message, "retryable": true}),
        true,
    )
}

enum Beat {
    Go,
    Cancel,
    Lost,
}

async fn beat(shared: &Shared, queue: &str, token: &str) -> Beat {
    let response = shared
        .post(
            &format!("/v1/queues/{queue}/heartbeat"),
            &json!({"token": token}),
        )
        .send()
        .await;
    match response {
        Ok(r) if r.status().is_success() => match r.json::<Value>().await {
            Ok(answer) if answer["cancel_requested"] == true => Beat::Cancel,
            _ => Beat::Go,
        },
        Ok(r) if matches!(r.status().as_u16(), 409 | 410) => Beat::Lost,
        // Unreachable, restarting (503) or another trouble: the next beat tries again.
        _ => Beat::Go,
    }
}

async fn report_loop(
    shared: Arc<Shared>,
    queue: String,
    mut reports: mpsc::UnboundedReceiver<Report>,
) {
    let path = format!("/v1/queues/{queue}/report");
    while let Some(first) = reports.recv().await {
        let mut batch = vec![first];
        while batch.len() < 1000 {
            match reports.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        // Reports the server took in but could not make durable (its engine stopped:
        // `report_not_durable`, 503) are sent again, as after the server was away.
        let mut failures = 0u32;
        while !batch.is_empty() {
            let body = json!({"reports": batch.iter().map(|r| &r.body).collect::<Vec<_>>()});
            let answer = loop {
                match shared.post(&path, &body).send().await {
                    Ok(r) if r.status().is_success() => break r.json::<Value>().await.ok(),
                    Ok(r) if r.status().is_client_error() => {
                        tracing::warn!(status = r.status().as_u16(), queue, "reports refused");
                        break None;
                    }
                    // The server is away (restarting?): its leases survive a restart, so
                    // keep trying for as long as a lease could.
                    _ if failures < 40 => {
                        failures += 1;
                        tokio::time::sleep(backoff(failures)).await;
                    }
                    _ => break None,
                }
            };
            let results = answer
                .as_ref()
                .and_then(|a| a["results"].as_array())
                .cloned()
                .unwrap_or_default();
            let mut again = Vec::new();
            for (i, report) in batch.into_iter().enumerate() {
                let counter = match results.get(i) {
                    Some(r) if r.get("result").is_some() && report.failed => {
                        &shared.counters.failed
                    }
                    Some(r) if r.get("result").is_some() => &shared.counters.completed,
                    Some(r) if r["status"] == 503 && failures < 40 => {
                        again.push(report);
                        continue;
                    }
                    _ => &shared.counters.refused,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            if !again.is_empty() {
                failures += 1;
                tokio::time::sleep(backoff(failures)).await;
            }
            batch = again;
        }
        // Dropping the batch frees its slots.
    }
}
