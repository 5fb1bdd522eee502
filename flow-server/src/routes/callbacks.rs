//! Completing the callback tokens runs hand out (`wait_for_callback`). The token in the
//! path is the credential: these endpoints need no API token, so a token can travel in
//! an email link.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, NoBody};

#[derive(Serialize)]
pub(crate) struct Done {
    /// What was stored: `completed`, `failed` or `heartbeat`.
    accepted: &'static str,
}

/// `POST /v1/callbacks/{token}/complete`: the body is the value the waiting step gets.
pub(crate) async fn complete(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
    ApiJson(value): ApiJson<Value>,
) -> Result<Json<Done>, ApiError> {
    state.engine.complete(&token, Ok(value)).await?;
    Ok(Json(Done {
        accepted: "completed",
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Failure {
    error: String,
}

/// `POST /v1/callbacks/{token}/fail`: the step gets `Err(CallbackError::Rejected(error))`.
pub(crate) async fn fail(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
    ApiJson(failure): ApiJson<Failure>,
) -> Result<Json<Done>, ApiError> {
    state
        .engine
        .complete::<()>(&token, Err(failure.error))
        .await?;
    Ok(Json(Done { accepted: "failed" }))
}

/// `POST /v1/callbacks/{token}/heartbeat`: the callback's heartbeat deadline moves on.
pub(crate) async fn heartbeat(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
    _: NoBody,
) -> Result<Json<Done>, ApiError> {
    state.engine.heartbeat(&token).await?;
    Ok(Json(Done {
        accepted: "heartbeat",
    }))
}
