//! Durable HTTP calls: a ready-made task that sends one HTTP request (feature `http`).
//!
//! Build a request with [`get`], [`post`], [`put`], [`patch`], [`delete`] or
//! [`request`], and `.await` it inside a `#[workflow]` like any task call: the response
//! (status, headers, body) is journaled, so a resumed run reads it back and a call that
//! completed is never sent again, even after a crash or a restart of the engine.
//!
//! ```no_run
//! use flow::http::{self, HttpError};
//! use flow::workflow;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Order { id: u64, cents: u64 }
//!
//! #[workflow]
//! async fn place(order_id: u64) -> Result<String, HttpError> {
//!     let order = Order { id: order_id, cents: 1999 };
//!     let created = http::post("http://127.0.0.1:8080/orders").json(&order)?.await?;
//!     match http::get(format!("http://127.0.0.1:8080/orders/{order_id}")).await {
//!         Ok(found) => Ok(found.text()?.to_string()),
//!         Err(HttpError::Status { status: 404, .. }) => Ok(created.text()?.to_string()),
//!         Err(e) => Err(e),
//!     }
//! }
//! ```
//!
//! Retries (see [`HttpRequest::retry`] for the policy): an attempt that cannot connect,
//! times out, loses its connection while reading, or is answered 429 or 5xx is retried
//! with back-off; a `Retry-After` header (seconds or an HTTP date) makes the engine wait at
//! least that long, up to the policy's `max_interval`. Any other non-2xx answer, and the
//! last retryable one, reaches the workflow as [`HttpError::Status`]; an answer over
//! [`HttpRequest::max_response_bytes`] as [`HttpError::TooLarge`] (not retried).
//!
//! Every attempt of one call sends the header `Idempotency-Key` with the call's
//! [`TaskContext::idempotency_key`] (stable across retries and crashes) unless the
//! request sets that header itself: a server that honours it can drop the duplicate an
//! interrupted attempt (sent, then the engine died before journaling the answer) leads to.
//!
//! Plain `http://` only: no TLS backend is linked.

use std::future::IntoFuture;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::codec::{self, CodecError, MAX_PAYLOAD_BYTES};
use crate::op::{DurableOp, OpRequest};
use crate::task::{
    erased_failure_output, erased_run, AttemptClass, BoxFuture, RetryPolicy, Task, TaskContext,
    TaskFailure, TaskPolicy, TaskRegistration,
};

/// The registered task name of an HTTP call, as the journal and the history show it.
pub const TASK_NAME: &str = "flow::http::request";

/// Time an attempt may take (connecting, sending, reading the whole answer) unless the
/// request sets [`HttpRequest::timeout`]: 30 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest answer body an attempt accepts unless the request sets
/// [`HttpRequest::max_response_bytes`]: 1 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

/// The highest [`HttpRequest::max_response_bytes`] accepted (larger values are lowered to
/// it): the answer is journaled (its body as a binary, byte for byte), so this keeps a
/// whole answer, headers included, under [`MAX_PAYLOAD_BYTES`].
pub const MAX_RESPONSE_BYTES_LIMIT: u64 = MAX_PAYLOAD_BYTES as u64 - 1024 * 1024;

/// Extra time the engine gives an attempt beyond the request's own timeout before it
/// declares [`TaskFailure::TimedOut`]: the client's timeout should always fire first.
const ENGINE_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// The retry policy of a request that sets none: 5 attempts in all, 500 ms before the
/// first retry, doubling up to 30 s, ±10 % jitter.
pub fn default_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        initial_interval: Duration::from_millis(500),
        backoff_rate: 2.0,
        max_interval: Duration::from_secs(30),
        jitter: 0.1,
    }
}

/// One HTTP request, as journaled: build it with [`get`], [`post`], ... and `.await` it
/// (in a `#[workflow]` it is a durable task call; elsewhere it just sends the request
/// once, without retries).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[must_use = "an HTTP request does nothing unless awaited"]
pub struct HttpRequest {
    /// The method, e.g. `"GET"`.
    pub method: String,
    /// The absolute `http://` URL.
    pub url: String,
    /// Headers in the order they are sent; a name may repeat.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    #[serde(with = "serde_bytes")]
    pub body: Option<Vec<u8>>,
    /// Time one attempt may take, connecting and reading the whole answer included.
    pub timeout: Duration,
    /// The largest answer body accepted; a larger one fails with [`HttpError::TooLarge`].
    pub max_response_bytes: u64,
    /// Retries of this call (see [`default_retry`]).
    pub retry: RetryPolicy,
}

/// A request with `method` to `url`, no headers, no body and the default timeout, size
/// limit and retries.
pub fn request(method: impl Into<String>, url: impl Into<String>) -> HttpRequest {
    HttpRequest {
        method: method.into(),
        url: url.into(),
        headers: Vec::new(),
        body: None,
        timeout: DEFAULT_TIMEOUT,
        max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        retry: default_retry(),
    }
}

/// A `GET` request to `url`.
pub fn get(url: impl Into<String>) -> HttpRequest {
    request("GET", url)
}

/// A `POST` request to `url`.
pub fn post(url: impl Into<String>) -> HttpRequest {
    request("POST", url)
}

/// A `PUT` request to `url`.
pub fn put(url: impl Into<String>) -> HttpRequest {
    request("PUT", url)
}

/// A `PATCH` request to `url`.
pub fn patch(url: impl Into<String>) -> HttpRequest {
    request("PATCH", url)
}

/// A `DELETE` request to `url`.
pub fn delete(url: impl Into<String>) -> HttpRequest {
    request("DELETE", url)
}

impl HttpRequest {
    /// Adds the header `name: value` (after any already set, so a name may repeat).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body to `value` as JSON, and `Content-Type: application/json` unless a
    /// content type is set. Fails with [`HttpError::InvalidRequest`] if `value` does not
    /// serialize as JSON (e.g. a map with non-string keys).
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, HttpError> {
        let body = serde_json::to_vec(value).map_err(|e| HttpError::InvalidRequest {
            url: self.url.clone(),
            message: format!("the JSON body does not serialize: {e}"),
        })?;
        self.body = Some(body);
        Ok(self.default_content_type("application/json"))
    }

    /// Sets the body to `text`, and `Content-Type: text/plain; charset=utf-8` unless a
    /// content type is set.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.body = Some(text.into().into_bytes());
        self.default_content_type("text/plain; charset=utf-8")
    }

    /// Sets the body to raw `bytes` (set a `Content-Type` header yourself).
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some(bytes.into());
        self
    }

    /// Sets the time one attempt may take, connecting and reading the whole answer
    /// included ([`DEFAULT_TIMEOUT`] otherwise). An attempt over it fails with
    /// [`HttpError::Timeout`] and is retried.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the largest answer body accepted ([`DEFAULT_MAX_RESPONSE_BYTES`] otherwise;
    /// values over [`MAX_RESPONSE_BYTES_LIMIT`] are lowered to it). A larger answer fails
    /// with [`HttpError::TooLarge`], which is not retried.
    pub fn max_response_bytes(mut self, limit: u64) -> Self {
        self.max_response_bytes = limit.min(MAX_RESPONSE_BYTES_LIMIT);
        self
    }

    /// Sets this call's retry policy ([`default_retry`] otherwise); `max_attempts: 1`
    /// sends the request once.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The task policy this call is journaled with: its retries, and an attempt timeout a
    /// little over the request's own so that the client reports the timeout first.
    pub fn task_policy(&self) -> TaskPolicy {
        TaskPolicy {
            retry: self.retry.clone(),
            timeout: Some(self.timeout.saturating_add(ENGINE_TIMEOUT_MARGIN)),
        }
    }

    fn default_content_type(self, value: &str) -> Self {
        if self.has_header("content-type") {
            self
        } else {
            self.header("Content-Type", value)
        }
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

/// An answer with a 2xx status, as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponse {
    /// The status code, e.g. `200`.
    pub status: u16,
    /// The headers in the order received, names in lower case; a value that is not
    /// valid UTF-8 is kept with its invalid bytes replaced by U+FFFD.
    pub headers: Vec<(String, String)>,
    /// The body, exactly as received.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (any case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    /// The body as UTF-8 text; [`HttpError::Decode`] if it is not valid UTF-8.
    pub fn text(&self) -> Result<&str, HttpError> {
        std::str::from_utf8(&self.body).map_err(|e| HttpError::Decode {
            message: format!("the response body is not UTF-8 text: {e}"),
        })
    }

    /// The body parsed as JSON into `T`; [`HttpError::Decode`] if it does not parse.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| HttpError::Decode {
            message: format!(
                "the response body is not the expected JSON ({}): {e}",
                std::any::type_name::<T>()
            ),
        })
    }
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Why an HTTP call failed, as the workflow sees it (and the journal keeps it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum HttpError {
    /// The server answered with a status outside 2xx: one that is not retried (e.g.
    /// 404), or the last attempt's 429 or 5xx.
    #[error("{method} {url} answered status {status}: {}", preview(body))]
    Status {
        /// The method sent.
        method: String,
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
        /// The answer's headers, names in lower case.
        headers: Vec<(String, String)>,
        /// The answer's body (up to the request's size limit).
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
        /// The answer's `Retry-After`, if it had a readable one.
        retry_after: Option<Duration>,
    },
    /// No connection could be made, or it broke before the answer was complete (e.g.
    /// nothing listens at the address, DNS failed, the server closed the connection).
    /// Retried.
    #[error("{method} {url} failed: {message}; check that the server is up and the URL right")]
    Connect {
        /// The method sent.
        method: String,
        /// The URL requested.
        url: String,
        /// The client's description of the failure.
        message: String,
    },
    /// The attempt took longer than the request's timeout. Retried.
    #[error(
        "{method} {url} timed out after {after:?}; raise `.timeout(..)` if the server is slow"
    )]
    Timeout {
        /// The method sent.
        method: String,
        /// The URL requested.
        url: String,
        /// The request's timeout.
        after: Duration,
    },
    /// The answer's body is larger than the request's `max_response_bytes`. Not retried:
    /// the same request would get the same answer.
    #[error(
        "{method} {url}: the answer's body is larger than the limit of {limit} bytes \
         (at least {received} bytes); raise `.max_response_bytes(..)` to accept it"
    )]
    TooLarge {
        /// The method sent.
        method: String,
        /// The URL requested.
        url: String,
        /// The request's limit.
        limit: u64,
        /// How many bytes were announced or read when the call gave up.
        received: u64,
    },
    /// The request cannot be sent as built (a bad URL, method or header, a body that
    /// does not serialize, a TLS URL without a TLS backend). Not retried.
    #[error("invalid HTTP request to {url}: {message}")]
    InvalidRequest {
        /// The URL requested.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// A response body is not what [`HttpResponse::text`] or [`HttpResponse::json`]
    /// expected. Never returned by the call itself.
    #[error("{message}")]
    Decode {
        /// What is wrong.
        message: String,
    },
    /// The engine ended the call: an attempt overran the engine's timeout, panicked, was
    /// interrupted, or the run was cancelled.
    #[error(transparent)]
    Task(#[from] TaskFailure),
}

impl HttpError {
    /// Whether an attempt that failed this way is retried (while attempts are left):
    /// connection failures, timeouts, 429 and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            HttpError::Connect { .. } | HttpError::Timeout { .. } => true,
            HttpError::Status { status, .. } => *status == 429 || (500..600).contains(status),
            _ => false,
        }
    }

    /// The status code, for [`HttpError::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The first 200 characters of a body, for messages.
fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut short: String = text.chars().take(200).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    if short.is_empty() {
        short.push_str("(empty body)");
    }
    short
}

/// The delay a `Retry-After` value asks for: whole seconds, or an HTTP date (a date in
/// the past asks for none).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// One client for the process. Idle connections are not kept: a pooled connection is
/// bound to the tokio runtime that opened it, and engines (and tests) may run on several.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new())
    })
}

/// Sends `req` once and reads the answer: what one attempt does.
async fn send(req: HttpRequest) -> Result<HttpResponse, HttpError> {
    let invalid = |message: String| HttpError::InvalidRequest {
        url: req.url.clone(),
        message,
    };
    let method = reqwest::Method::from_bytes(req.method.as_bytes())
        .map_err(|_| invalid(format!("`{}` is not an HTTP method", req.method)))?;
    let url =
        reqwest::Url::parse(&req.url).map_err(|e| invalid(format!("not an absolute URL: {e}")))?;
    if url.scheme() != "http" {
        return Err(invalid(format!(
            "scheme `{}` is not supported: flow::http sends plain `http://` only",
            url.scheme()
        )));
    }
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &req.headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("`{name}` is not a valid header name")))?;
        let value = reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| invalid(format!("the value of header `{name}` is not valid")))?;
        headers.append(name, value);
    }
    if !req.has_header("idempotency-key") {
        if let Some(ctx) = TaskContext::current() {
            if let Ok(key) = reqwest::header::HeaderValue::from_str(&ctx.idempotency_key) {
                headers.insert("idempotency-key", key);
            }
        }
    }
    let mut builder = client()
        .request(method, url)
        .headers(headers)
        .timeout(req.timeout);
    if let Some(body) = &req.body {
        builder = builder.body(body.clone());
    }
    let failed = |e: reqwest::Error| {
        if e.is_timeout() {
            HttpError::Timeout {
                method: req.method.clone(),
                url: req.url.clone(),
                after: req.timeout,
            }
        } else if e.is_builder() {
            invalid(error_chain(&e))
        } else {
            HttpError::Connect {
                method: req.method.clone(),
                url: req.url.clone(),
                message: error_chain(&e),
            }
        }
    };
    let mut response = builder.send().await.map_err(failed)?;
    let too_large = |received: u64| HttpError::TooLarge {
        method: req.method.clone(),
        url: req.url.clone(),
        limit: req.max_response_bytes,
        received,
    };
    if let Some(announced) = response.content_length() {
        if announced > req.max_response_bytes {
            return Err(too_large(announced));
        }
    }
    let status = response.status().as_u16();
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(n, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (n.as_str().to_string(), value)
        })
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        let received = (body.len() + chunk.len()) as u64;
        if received > req.max_response_bytes {
            return Err(too_large(received));
        }
        body.extend_from_slice(&chunk);
    }
    if (200..300).contains(&status) {
        return Ok(HttpResponse {
            status,
            headers,
            body,
        });
    }
    let retry_after =
        header_value(&headers, "retry-after").and_then(|v| parse_retry_after(v, SystemTime::now()));
    Err(HttpError::Status {
        method: req.method,
        url: req.url,
        status,
        headers,
        body,
        retry_after,
    })
}

/// An error and its sources, one line: reqwest's top-level message alone is vague.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl Task for HttpRequest {
    const NAME: &'static str = TASK_NAME;
    type Output = Result<HttpResponse, HttpError>;

    fn policy() -> TaskPolicy {
        TaskPolicy {
            retry: default_retry(),
            timeout: Some(DEFAULT_TIMEOUT + ENGINE_TIMEOUT_MARGIN),
        }
    }

    fn run(self) -> BoxFuture<Self::Output> {
        Box::pin(send(self))
    }

    fn classify(output: &Self::Output) -> AttemptClass {
        match output {
            Ok(_) => AttemptClass::Success,
            Err(e) if e.is_retryable() => AttemptClass::Retryable(e.to_string()),
            Err(e) => AttemptClass::NonRetryable(e.to_string()),
        }
    }

    fn from_failure(failure: TaskFailure) -> Option<Self::Output> {
        Some(Err(HttpError::Task(failure)))
    }

    fn retry_delay(output: &Self::Output) -> Option<Duration> {
        match output {
            Err(HttpError::Status { retry_after, .. }) => *retry_after,
            _ => None,
        }
    }
}

impl DurableOp for HttpRequest {
    type Output = Result<HttpResponse, HttpError>;

    fn failure(output: &Self::Output) -> Option<String> {
        output.as_ref().err().map(ToString::to_string)
    }

    fn into_request(self) -> Result<OpRequest, CodecError> {
        let policy = self.task_policy();
        Ok(OpRequest::Task {
            name: TASK_NAME.to_string(),
            args: codec::encode(&self, || format!("arguments of task `{TASK_NAME}`"))?,
            policy,
        })
    }
}

impl IntoFuture for HttpRequest {
    type Output = Result<HttpResponse, HttpError>;
    type IntoFuture = BoxFuture<Self::Output>;

    /// Outside a workflow: sends the request once (no retries, nothing journaled).
    fn into_future(self) -> Self::IntoFuture {
        Task::run(self)
    }
}

inventory::submit! {
    TaskRegistration {
        name: TASK_NAME,
        run: erased_run::<HttpRequest>,
        failure_output: erased_failure_output::<HttpRequest>,
        defined_at: concat!(module_path!(), "::HttpRequest (", file!(), ":", line!(), ")"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_journaled_byte_for_byte_and_read_back() {
        let response = HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/octet-stream".into())],
            body: vec![0xff; 10_000],
        };
        let bytes = codec::encode(&response, String::new).unwrap();
        // Bytes of 0xff as integers would take two bytes each.
        assert!(bytes.len() < 10_100, "{} bytes", bytes.len());
        let back: HttpResponse = codec::decode(&bytes, String::new).unwrap();
        assert_eq!(back, response);
        let request = post("http://127.0.0.1:1/x").body(vec![0xfe; 1000]);
        let bytes = codec::encode(&request, String::new).unwrap();
        assert!(bytes.len() < 1_300, "{} bytes", bytes.len());
        let back: HttpRequest = codec::decode(&bytes, String::new).unwrap();
        assert_eq!(back.body, request.body);
        let bodiless = get("http://127.0.0.1:1/x");
        let bytes = codec::encode(&bodiless, String::new).unwrap();
        let back: HttpRequest = codec::decode(&bytes, String::new).unwrap();
        assert_eq!(back.body, None);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn retryable_errors_are_connection_timeout_429_and_5xx() {
        let status = |status| HttpError::Status {
            method: "GET".into(),
            url: "http://x/".into(),
            status,
            headers: vec![],
            body: vec![],
            retry_after: None,
        };
        let retried: Vec<u16> = [200, 400, 404, 408, 429, 500, 503, 599]
            .into_iter()
            .filter(|s| status(*s).is_retryable())
            .collect();
        assert_eq!(retried, vec![429, 500, 503, 599]);
        let too_large = HttpError::TooLarge {
            method: "GET".into(),
            url: "http://x/".into(),
            limit: 1,
            received: 2,
        };
        assert!(!too_large.is_retryable());
        assert_eq!(
            HttpRequest::classify(&Err(too_large.clone())),
            AttemptClass::NonRetryable(too_large.to_string())
        );
    }

    #[test]
    fn builder_sets_body_headers_and_limits() {
        let req = post("http://127.0.0.1:1/x")
            .json(&serde_json::json!({"a": 1}))
            .unwrap()
            .header("X-One", "1")
            .timeout(Duration::from_secs(3))
            .max_response_bytes(u64::MAX);
        assert_eq!(req.body.as_deref(), Some(&br#"{"a":1}"#[..]));
        assert_eq!(
            req.headers,
            vec![
                ("Content-Type".to_string(), "application/json".to_string()),
                ("X-One".to_string(), "1".to_string())
            ]
        );
        assert_eq!(req.max_response_bytes, MAX_RESPONSE_BYTES_LIMIT);
        assert_eq!(req.task_policy().timeout, Some(Duration::from_secs(8)));
        let typed = get("http://h/")
            .header("content-type", "text/csv")
            .text("a,b");
        assert_eq!(typed.headers.len(), 1, "an explicit content type is kept");
        // A journaled request reads back equal.
        let bytes = codec::encode(&req, || "request".into()).unwrap();
        let back: HttpRequest = codec::decode(&bytes, || "request".into()).unwrap();
        assert_eq!(back, req);
    }
}
