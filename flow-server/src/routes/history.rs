//! `GET /v1/runs/{run_id}/history`: a run's events, a page at a time.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::views::history_json;

/// Events per page unless `limit` says otherwise.
const DEFAULT_PAGE_EVENTS: usize = 100;
/// Most events one page returns.
const MAX_PAGE_EVENTS: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryParams {
    /// Only events after this sequence number (the previous page's `next`).
    after: Option<u64>,
    limit: Option<usize>,
}

/// The run's events after `after`, oldest first. The engine reads a run's history
/// whole; the page bounds what is rendered and sent.
pub(crate) async fn page(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE_EVENTS);
    if !(1..=MAX_PAGE_EVENTS).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("`limit` must be between 1 and {MAX_PAGE_EVENTS}"),
        ));
    }
    let history = state.engine.history(&run_id).await?;
    Ok(Json(history_json(&history, params.after, limit)))
}

/// `GET /v1/runs/{run_id}/recording`: the run's recording, the bytes
/// `Engine::export` writes to a file, for `flow::testing::RecordedRun::from_file` (or
/// `from_bytes`) to replay against changed code in a test.
pub(crate) async fn recording(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::header::CONTENT_TYPE;
    use axum::response::IntoResponse;
    let history = state.engine.history(&run_id).await?;
    let bytes = flow_runtime::testing::RecordedRun::from_history(&history).to_bytes();
    Ok(([(CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}
