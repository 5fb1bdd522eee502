//! `GET /v1/runs/{run_id}/locals`: time travel, a run's saved locals as they were when
//! each of its steps was scheduled, beside the step's request and output.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::views::locals_json;

/// Steps per page unless `limit` says otherwise.
const DEFAULT_PAGE_STEPS: u64 = 20;
/// Most steps one page returns.
const MAX_PAGE_STEPS: u64 = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocalsParams {
    /// Just this step (numbered from 0).
    step: Option<u64>,
    /// Without `step`: the steps from this one on (the previous page's `next`).
    from: Option<u64>,
    limit: Option<u64>,
}

/// With `?step=K`, step K's locals (`404 unknown_step` for a step the journal has no
/// state of); otherwise a page of steps, `{"steps": [...], "next": step or null}`.
pub(crate) async fn locals(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    ApiQuery(params): ApiQuery<LocalsParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE_STEPS);
    if !(1..=MAX_PAGE_STEPS).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("`limit` must be between 1 and {MAX_PAGE_STEPS}"),
        ));
    }
    if params.step.is_some() && (params.from.is_some() || params.limit.is_some()) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "give either `step` (one step) or `from` and `limit` (a page of steps), not both",
        ));
    }
    let page = match params.step {
        Some(step) => step..step + 1,
        None => {
            let from = params.from.unwrap_or(0);
            from..from.saturating_add(limit)
        }
    };
    let answer = locals_json(&state.engine, &run_id, page).await?;
    match params.step {
        None => Ok(Json(answer)),
        Some(step) => match answer["steps"].get(0) {
            Some(one) => Ok(Json(one.clone())),
            None => Err(ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "unknown_step",
                format!(
                    "run `{run_id}` has no saved state for step {step}: the step is not \
                     scheduled yet, is from before the run's last continue-as-new, or was \
                     recorded by a flow version that did not keep step states; GET \
                     /v1/runs/{{run_id}}/locals lists the steps it has"
                ),
            )),
        },
    }
}
