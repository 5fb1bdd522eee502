//! Outside events for a run: signals, cancellation and redrive.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use super::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, NoBody};

#[derive(Serialize)]
pub(crate) struct Accepted {
    run_id: String,
    /// What was stored: `signal`, `cancel` or `redrive`.
    accepted: &'static str,
}

/// `POST /v1/runs/{run_id}/signals/{name}`: the body is the signal's payload, checked
/// against the type the run's workflow awaits under that name.
pub(crate) async fn signal(
    State(state): State<AppState>,
    ApiPath((run_id, name)): ApiPath<(String, String)>,
    ApiJson(payload): ApiJson<Value>,
) -> Result<Json<Accepted>, ApiError> {
    state.engine.signal(&run_id, &name, &payload).await?;
    Ok(Json(Accepted {
        run_id,
        accepted: "signal",
    }))
}

/// `POST /v1/runs/{run_id}/cancel`.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    _: NoBody,
) -> Result<Json<Accepted>, ApiError> {
    state.engine.cancel(&run_id).await?;
    Ok(Json(Accepted {
        run_id,
        accepted: "cancel",
    }))
}

/// `POST /v1/runs/{run_id}/redrive`: a failed, cancelled (or timed-out) or faulted run
/// goes again at the step it ended in (`Engine::redrive`).
pub(crate) async fn redrive(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    _: NoBody,
) -> Result<Json<Accepted>, ApiError> {
    state.engine.redrive(&run_id).await?;
    Ok(Json(Accepted {
        run_id,
        accepted: "redrive",
    }))
}
