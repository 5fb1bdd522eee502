//! The one error answer of the API: an HTTP status and a JSON body `{code, message}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use flow_runtime::{CodecError, FlowError};
use serde::Serialize;

/// An error answer: the status, a stable machine-readable `code`, and a `message` that
/// says what went wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable code, snake_case (e.g. `unknown_run`).
    pub code: &'static str,
    /// What went wrong and what to do.
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// An error answer.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// A 400 answer: the request is malformed.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            code: self.code,
            message: &self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<FlowError> for ApiError {
    fn from(error: FlowError) -> Self {
        let message = error.to_string();
        let (status, code) = match &error {
            FlowError::UnknownRun { .. } => (StatusCode::NOT_FOUND, "unknown_run"),
            FlowError::UnknownWorkflow { .. } => (StatusCode::NOT_FOUND, "unknown_workflow"),
            FlowError::InvalidRunId { .. } => (StatusCode::BAD_REQUEST, "invalid_run_id"),
            FlowError::InputTypeMismatch { .. } => {
                (StatusCode::BAD_REQUEST, "input_type_mismatch")
            }
            FlowError::SignalTypeMismatch { .. } => {
                (StatusCode::BAD_REQUEST, "signal_type_mismatch")
            }
            FlowError::UnknownSignal { .. } => (StatusCode::BAD_REQUEST, "unknown_signal"),
            FlowError::RunIdConflict { .. } => (StatusCode::CONFLICT, "run_id_conflict"),
            FlowError::WrongWorkflow { .. } => (StatusCode::CONFLICT, "wrong_workflow"),
            FlowError::RunFinished { .. } => (StatusCode::CONFLICT, "run_finished"),
            FlowError::NotFaulted { .. } => (StatusCode::CONFLICT, "not_faulted"),
            FlowError::InvalidCallbackToken { .. } => {
                (StatusCode::GONE, "invalid_callback_token")
            }
            FlowError::Codec(CodecError::TooLarge { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            FlowError::Codec(_) => (StatusCode::BAD_REQUEST, "unencodable_value"),
            FlowError::EngineStopped { .. } => (StatusCode::SERVICE_UNAVAILABLE, "engine_stopped"),
            // The journal's own trouble (storage, corruption): not the caller's fault.
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "engine_error"),
        };
        ApiError::new(status, code, message)
    }
}
