//! Runs: start one by workflow name, read one, list them a page at a time.

use axum::extract::State;
use axum::Json;
use flow_runtime::{codec, Engine, ListQuery, MAX_PAGE_RUNS};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::views::{self, RunFilter, STATUS_NAMES};

/// `POST /v1/runs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartRequest {
    workflow: String,
    run_id: String,
    /// The workflow's input; absent means `null` (a workflow without arguments).
    #[serde(default)]
    input: Value,
}

/// Starts a run (idempotent: the same run ID, workflow and input again answer with the
/// existing run) and answers with it.
pub(crate) async fn start(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<StartRequest>,
) -> Result<Json<Value>, ApiError> {
    let engine = &state.engine;
    if !engine
        .workflows()
        .iter()
        .any(|w| w.name == request.workflow)
    {
        return Err(unknown_workflow(engine, &request.workflow));
    }
    let input = codec::encode(&request.input, || {
        format!("input of workflow `{}`", request.workflow)
    })
    .map_err(flow_runtime::FlowError::from)?;
    engine
        .start_encoded(&request.run_id, &request.workflow, &input)
        .await?;
    Ok(Json(run_view(engine, &request.run_id).await?))
}

pub(super) fn unknown_workflow(engine: &Engine, name: &str) -> ApiError {
    let known: Vec<&str> = engine.workflows().iter().map(|w| w.name).collect();
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "unknown_workflow",
        format!(
            "no workflow `{name}` is registered in this server; it serves: {} \
             (GET /v1/workflows lists them with their input types)",
            if known.is_empty() {
                "none".to_string()
            } else {
                format!("`{}`", known.join("`, `"))
            }
        ),
    )
}

/// `GET /v1/runs/{run_id}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(views::run_json(&state.engine, &run_id).await?))
}

async fn run_view(engine: &Engine, run_id: &str) -> Result<Value, ApiError> {
    Ok(views::run_json(engine, run_id).await?)
}

/// `GET /v1/runs` query parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    status: Option<String>,
    workflow: Option<String>,
    version: Option<u32>,
    created_after_ms: Option<u64>,
    created_before_ms: Option<u64>,
    after: Option<String>,
    limit: Option<usize>,
}

/// Runs in run ID order, a page at a time, filtered by status, workflow and creation time.
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let status = match params.status.as_deref() {
        None => None,
        Some(name) => Some(views::status_kind(name).ok_or_else(|| {
            let names: Vec<&str> = STATUS_NAMES.iter().map(|(n, _)| *n).collect();
            ApiError::bad_request(
                "invalid_status",
                format!(
                    "`{name}` is not a run status; use one of: {}",
                    names.join(", ")
                ),
            )
        })?),
    };
    let limit = params.limit.unwrap_or(flow_runtime::DEFAULT_PAGE_RUNS);
    if !(1..=MAX_PAGE_RUNS).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("`limit` must be between 1 and {MAX_PAGE_RUNS}"),
        ));
    }
    let created_ms = (params.created_after_ms.is_some() || params.created_before_ms.is_some())
        .then(|| {
            params.created_after_ms.unwrap_or(0)..params.created_before_ms.unwrap_or(u64::MAX)
        });
    let filter = RunFilter {
        query: ListQuery {
            after: params.after,
            limit: Some(limit),
            workflow: params.workflow,
            version: params.version,
            status,
        },
        created_ms,
    };
    Ok(Json(views::list_json(&state.engine, &filter).await?))
}
