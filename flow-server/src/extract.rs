//! Request extractors whose refusals are [`ApiError`]s (axum's own answer in plain text).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body parsed as a `T` (its `Content-Type` is checked for every POST by
/// `auth::guard`).
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
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

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the request body is over the {}-byte limit (the engine's payload limit); \
                 store large data elsewhere and pass a reference",
                flow_runtime::MAX_PAYLOAD_BYTES
            ),
        );
    }
    ApiError::bad_request(
        "unreadable_body",
        format!("the request body could not be read ({rejection}); send it again"),
    )
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
