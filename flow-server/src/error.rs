//! The one error answer of the API: an HTTP status and a JSON body `{code, message}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use flow_runtime::{CodecError, FlowError};
use serde::Serialize;

/// Longest error message sent, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 2048;

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
    /// An error answer. A message over [`MAX_MESSAGE_BYTES`] is cut there (it may quote
    /// the request, which can be megabytes long).
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_MESSAGE_BYTES {
            let mut end = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str("… (message cut)");
        }
        ApiError {
            status,
            code,
            message,
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
        let message = match &error {
            // The engine's wording names Rust APIs; these say the same for HTTP callers.
            FlowError::UnknownRun { run_id } => format!(
                "no run `{run_id}` in this journal; check the run ID (GET /v1/runs lists the runs)"
            ),
            FlowError::SignalTypeMismatch {
                run_id,
                signal,
                expected,
                ..
            } => format!(
                "signal `{signal}` for run `{run_id}` was refused: its JSON payload does not \
                 fit what the workflow waits for ({expected}); nothing was stored: send a \
                 value of the awaited type (GET /v1/workflows lists each signal's type)"
            ),
            _ => error.to_string(),
        };
        let (status, code) = match &error {
            FlowError::UnknownRun { .. } => (StatusCode::NOT_FOUND, "unknown_run"),
            FlowError::UnknownWorkflow { .. } => (StatusCode::NOT_FOUND, "unknown_workflow"),
            FlowError::InvalidRunId { .. } => (StatusCode::BAD_REQUEST, "invalid_run_id"),
            FlowError::InputTypeMismatch { .. } => (StatusCode::BAD_REQUEST, "input_type_mismatch"),
            FlowError::SignalTypeMismatch { .. } => {
                (StatusCode::BAD_REQUEST, "signal_type_mismatch")
            }
            FlowError::UnknownSignal { .. } => (StatusCode::BAD_REQUEST, "unknown_signal"),
            FlowError::RunIdConflict { .. } => (StatusCode::CONFLICT, "run_id_conflict"),
            FlowError::WrongWorkflow { .. } => (StatusCode::CONFLICT, "wrong_workflow"),
            FlowError::RunFinished { .. } => (StatusCode::CONFLICT, "run_finished"),
            FlowError::NotFaulted { .. } => (StatusCode::CONFLICT, "not_faulted"),
            FlowError::NotRedrivable { .. } => (StatusCode::CONFLICT, "not_redrivable"),
            FlowError::RedriveNeedsChild { .. } => (StatusCode::CONFLICT, "redrive_needs_child"),
            FlowError::InvalidCallbackToken { .. } => (StatusCode::GONE, "invalid_callback_token"),
            FlowError::UnknownQueue { .. } => (StatusCode::NOT_FOUND, "unknown_queue"),
            FlowError::InvalidTaskToken { .. } => (StatusCode::BAD_REQUEST, "invalid_task_token"),
            FlowError::StaleTaskToken { .. } => (StatusCode::CONFLICT, "stale_task_token"),
            FlowError::TaskTokenGone { .. } => (StatusCode::GONE, "task_token_gone"),
            FlowError::QueuesRecovering => (StatusCode::SERVICE_UNAVAILABLE, "queues_recovering"),
            FlowError::WrongQueue { .. } => (StatusCode::CONFLICT, "wrong_queue"),
            FlowError::TaskOutputMismatch { .. } => {
                (StatusCode::BAD_REQUEST, "task_output_mismatch")
            }
            FlowError::TaskAlreadyReported { .. } => {
                (StatusCode::CONFLICT, "task_already_reported")
            }
            FlowError::TaskReportNotDurable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "report_not_durable")
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
