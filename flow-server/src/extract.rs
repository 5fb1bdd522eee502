//! Request extractors whose refusals are [`ApiError`]s (axum's own answer in plain text).

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use flow_runtime::MAX_PAYLOAD_BYTES;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body parsed as a `T` (its `Content-Type` is checked for every POST by
/// `auth::guard`).
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                "empty_body",
                "the request body is empty; send a JSON value (see /v1/openapi.json)",
            ));
        }
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            let what = if e.is_data() {
                "does not have the expected shape"
            } else {
                "is not valid JSON"
            };
            ApiError::bad_request(
                "malformed_body",
                format!("the request body {what} ({e}); see /v1/openapi.json for the schema"),
            )
        })
    }
}

/// Refuses a request whose body is not declared as JSON. Besides naming the format, the
/// header keeps web pages out: a cross-site `application/json` request needs a CORS
/// preflight, which this server never grants.
pub(crate) fn require_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if declared.as_deref() == Some("application/json") {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "send `Content-Type: application/json` with every POST (also with an empty \
         object as the body where none is needed)",
    ))
}

/// Most bytes of an oversized body read (and dropped) before the refusal, so that a
/// client still sending it reads the answer instead of a reset connection.
const MAX_DRAINED_BYTES: usize = 4 * MAX_PAYLOAD_BYTES;

/// The request's body, refused when it is over the engine's payload limit.
async fn read_body(req: Request) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_DRAINED_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = req.into_body();
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request(
                "unreadable_body",
                format!("the request body could not be read ({e}); send it again"),
            )
        })?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(chunk.len());
        if seen > MAX_DRAINED_BYTES {
            break;
        }
        if seen <= MAX_PAYLOAD_BYTES {
            bytes.extend_from_slice(&chunk);
        }
    }
    if seen > MAX_PAYLOAD_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "the request body is over the {MAX_PAYLOAD_BYTES}-byte limit (the engine's \
             payload limit); store large data elsewhere and pass a reference"
        ),
    )
}

/// No body (or an empty JSON object), for endpoints that take none; read whole so that
/// the connection stays usable.
pub(crate) struct NoBody;

impl<S: Send + Sync> FromRequest<S> for NoBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(NoBody);
        }
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(serde_json::Value::Object(fields)) if fields.is_empty() => Ok(NoBody),
            _ => Err(ApiError::bad_request(
                "unexpected_body",
                "this endpoint takes no body; send none, or `{}`",
            )),
        }
    }
}

/// Query parameters parsed as a `T`.
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e: QueryRejection| {
                ApiError::bad_request(
                    "malformed_query",
                    format!(
                        "the query parameters are not valid ({}); see /v1/openapi.json for \
                         the parameters this endpoint takes",
                        e.body_text()
                    ),
                )
            })
    }
}

/// Path parameters parsed as a `T`.
pub(crate) struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::from_request_parts(parts, state)
            .await
            .map(|Path(p)| ApiPath(p))
            .map_err(|e: PathRejection| {
                ApiError::bad_request(
                    "malformed_path",
                    format!(
                        "the URL path is not valid ({}); percent-encode run IDs, names and \
                         tokens as UTF-8",
                        e.body_text()
                    ),
                )
            })
    }
}
