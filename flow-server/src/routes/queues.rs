//! The worker protocol of remote tasks (`#[task(queue = "...")]`): workers in any
//! language poll a queue for tasks, heartbeat them and report them, with the API token
//! like every endpoint but the callbacks'. The engine side is `Engine::poll_tasks` and
//! its siblings; these handlers only translate JSON.
//!
//! - `GET /v1/queues`: the declared queues, their pending and leased tasks, live workers.
//! - `POST /v1/queues/{queue}/poll` `{worker, max, wait_ms}`: a long poll; answers the
//!   moment a task arrives, with up to `max` of them.
//! - `POST /v1/queues/{queue}/heartbeat` `{token}`: `{cancel_requested, heartbeat_deadline_ms}`.
//! - `POST /v1/queues/{queue}/complete` `{token, output}`.
//! - `POST /v1/queues/{queue}/fail` `{token, error, retryable, retry_after_ms}`.
//! - `POST /v1/queues/{queue}/report` `{reports: [...]}`: many completions and failures
//!   in one request, each answered on its own.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use flow_runtime::{Completed, FlowError, LeasedTask, QueueInfo, MAX_POLL_TASKS, MAX_POLL_WAIT};
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};

/// The wait of a poll that names none, in milliseconds.
const DEFAULT_WAIT_MS: u64 = 30_000;

/// The most reports one `report` request carries.
pub(crate) const MAX_REPORTS: usize = 1000;

#[derive(Serialize)]
pub(crate) struct QueueList {
    queues: Vec<QueueInfo>,
}

/// `GET /v1/queues`.
pub(crate) async fn list(State(state): State<AppState>) -> Json<QueueList> {
    Json(QueueList {
        queues: state.engine.queues(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Poll {
    /// A name for the worker, shown by `GET /v1/queues`.
    #[serde(default)]
    worker: Option<String>,
    /// Most tasks to take (1 to 1000, default 1).
    #[serde(default)]
    max: Option<u64>,
    /// How long to wait for a task, in ms (0 to 60000, default 30000).
    #[serde(default)]
    wait_ms: Option<u64>,
}

/// One task, as a poll hands it out.
#[derive(Serialize)]
pub(crate) struct TaskView {
    token: String,
    queue: String,
    task: String,
    run_id: String,
    idempotency_key: String,
    attempt: u32,
    args: Box<RawValue>,
    heartbeat_timeout_ms: u64,
    heartbeat_deadline_ms: u64,
    deadline_ms: u64,
}

#[derive(Serialize)]
pub(crate) struct Tasks {
    tasks: Vec<TaskView>,
}

fn view(task: LeasedTask) -> Result<TaskView, ApiError> {
    let json = flow_runtime::codec::to_json(&task.args).map_err(FlowError::from)?;
    let args = RawValue::from_string(json).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("a task's arguments did not render as JSON ({e}); report this as a bug"),
        )
    })?;
    Ok(TaskView {
        token: task.token,
        queue: task.queue,
        task: task.task,
        run_id: task.run_id,
        idempotency_key: task.idempotency_key,
        attempt: task.attempt,
        args,
        heartbeat_timeout_ms: millis(task.heartbeat_timeout),
        heartbeat_deadline_ms: task.heartbeat_deadline_ms,
        deadline_ms: task.deadline_ms,
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `POST /v1/queues/{queue}/poll`.
pub(crate) async fn poll(
    State(state): State<AppState>,
    ApiPath(queue): ApiPath<String>,
    ApiJson(poll): ApiJson<Poll>,
) -> Result<Json<Tasks>, ApiError> {
    let max = poll.max.unwrap_or(1);
    if max == 0 || max > MAX_POLL_TASKS as u64 {
        return Err(ApiError::bad_request(
            "invalid_max",
            format!("`max` must be between 1 and {MAX_POLL_TASKS}"),
        ));
    }
    let wait_ms = poll.wait_ms.unwrap_or(DEFAULT_WAIT_MS);
    if wait_ms > millis(MAX_POLL_WAIT) {
        return Err(ApiError::bad_request(
            "invalid_wait",
            format!(
                "`wait_ms` must be at most {} (poll again after an empty answer)",
                millis(MAX_POLL_WAIT)
            ),
        ));
    }
    let worker = poll.worker.unwrap_or_default();
    if worker.len() > 200 {
        return Err(ApiError::bad_request(
            "invalid_worker",
            "`worker` must be a name of at most 200 bytes",
        ));
    }
    let tasks = state
        .engine
        .poll_tasks(
            &queue,
            &worker,
            max as usize,
            Duration::from_millis(wait_ms),
        )
        .await?;
    let tasks = tasks.into_iter().map(view).collect::<Result<_, _>>()?;
    Ok(Json(Tasks { tasks }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Heartbeat {
    token: String,
}

#[derive(Serialize)]
pub(crate) struct Beat {
    cancel_requested: bool,
    heartbeat_deadline_ms: u64,
}

/// `POST /v1/queues/{queue}/heartbeat`.
pub(crate) async fn heartbeat(
    State(state): State<AppState>,
    ApiPath(queue): ApiPath<String>,
    ApiJson(beat): ApiJson<Heartbeat>,
) -> Result<Json<Beat>, ApiError> {
    let answer = state.engine.heartbeat_task(&queue, &beat.token)?;
    Ok(Json(Beat {
        cancel_requested: answer.cancel_requested,
        heartbeat_deadline_ms: answer.heartbeat_deadline_ms,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Complete {
    token: String,
    output: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Fail {
    token: String,
    error: String,
    #[serde(default = "yes")]
    retryable: bool,
    #[serde(default)]
    retry_after_ms: Option<u64>,
}

fn yes() -> bool {
    true
}

#[derive(Serialize)]
pub(crate) struct Reported {
    /// `accepted`, or `duplicate` for a repeat of the accepted report.
    result: Completed,
}

/// `POST /v1/queues/{queue}/complete`.
pub(crate) async fn complete(
    State(state): State<AppState>,
    ApiPath(queue): ApiPath<String>,
    ApiJson(done): ApiJson<Complete>,
) -> Result<Json<Reported>, ApiError> {
    let result = state
        .engine
        .complete_task(&queue, &done.token, &done.output)
        .await?;
    Ok(Json(Reported { result }))
}

/// `POST /v1/queues/{queue}/fail`.
pub(crate) async fn fail(
    State(state): State<AppState>,
    ApiPath(queue): ApiPath<String>,
    ApiJson(failed): ApiJson<Fail>,
) -> Result<Json<Reported>, ApiError> {
    Ok(Json(Reported {
        result: fail_one(&state, &queue, &failed).await?,
    }))
}

async fn fail_one(state: &AppState, queue: &str, failed: &Fail) -> Result<Completed, FlowError> {
    state
        .engine
        .fail_task(
            queue,
            &failed.token,
            &failed.error,
            failed.retryable,
            failed.retry_after_ms.map(Duration::from_millis),
        )
        .await
}

/// One report of a batch: a completion (with `output`) or a failure (with `error`).
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Report {
    Complete(Complete),
    Fail(Fail),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reports {
    reports: Vec<Report>,
}

/// The answer to one report of a batch.
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum ReportResult {
    Done {
        result: Completed,
    },
    Refused {
        status: u16,
        code: &'static str,
        message: String,
    },
}

#[derive(Serialize)]
pub(crate) struct ReportResults {
    results: Vec<ReportResult>,
}

/// `POST /v1/queues/{queue}/report`: each report is judged alone (one refused report
/// does not hold back the others); the answers come in the reports' order.
pub(crate) async fn report(
    State(state): State<AppState>,
    ApiPath(queue): ApiPath<String>,
    ApiJson(batch): ApiJson<Reports>,
) -> Result<Json<ReportResults>, ApiError> {
    if batch.reports.len() > MAX_REPORTS {
        return Err(ApiError::bad_request(
            "too_many_reports",
            format!("send at most {MAX_REPORTS} reports per request"),
        ));
    }
    // Every report is taken in on the first poll of `join_all`, then all wait for their
    // commits together: a batch's reports share the group commits that follow.
    let results = join_all(batch.reports.iter().map(|report| {
        let (state, queue) = (&state, queue.as_str());
        async move {
            match report {
                Report::Complete(done) => {
                    state
                        .engine
                        .complete_task(queue, &done.token, &done.output)
                        .await
                }
                Report::Fail(failed) => fail_one(state, queue, failed).await,
            }
        }
    }))
    .await
    .into_iter()
    .map(|result| match result {
        Ok(result) => ReportResult::Done { result },
        Err(error) => {
            let error = ApiError::from(error);
            ReportResult::Refused {
                status: error.status.as_u16(),
                code: error.code,
                message: error.message,
            }
        }
    })
    .collect();
    Ok(Json(ReportResults { results }))
}
