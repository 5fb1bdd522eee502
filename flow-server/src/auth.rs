//! Who may call the server: the checks every request passes before its handler runs.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::extract::require_json_content_type;

/// The callback endpoints' prefix: a callback token in the path is their credential.
pub(crate) const CALLBACKS_PREFIX: &str = "/v1/callbacks/";

/// What requests must show.
#[derive(Clone)]
pub(crate) struct Guard {
    /// The API token, if the server has one.
    pub token: Option<Arc<str>>,
    /// Whether requests may name any host (a server told to run open).
    pub any_host: bool,
}

/// Refuses a request that lacks the API token (except callback completions), that names
/// a host other than loopback on a server without a token, or that posts anything but
/// JSON.
pub(crate) async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    if let Err(error) = check(&guard, &request) {
        let unauthorized = error.status == StatusCode::UNAUTHORIZED;
        let mut response = error.into_response();
        if unauthorized {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        return response;
    }
    next.run(request).await
}

fn check(guard: &Guard, request: &Request) -> Result<(), ApiError> {
    let callback = request.uri().path().starts_with(CALLBACKS_PREFIX);
    // The console's files hold no data (what it shows comes from the guarded API).
    let console_file =
        request.method() == Method::GET && crate::console::is_asset(request.uri().path());
    match &guard.token {
        Some(token) if !callback && !console_file => check_bearer(token, request)?,
        Some(_) => {}
        None if guard.any_host => {}
        None => check_loopback_host(request)?,
    }
    if request.method() == Method::POST {
        require_json_content_type(request.headers())?;
    }
    Ok(())
}

fn check_bearer(token: &str, request: &Request) -> Result<(), ApiError> {
    let sent = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match sent {
        Some(sent) if same_secret(sent.trim().as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the API token is wrong; send the server's token as `Authorization: Bearer TOKEN`",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "this server needs an API token; send it as `Authorization: Bearer TOKEN`",
        )),
    }
}

/// Compares in time that does not depend on where the two differ, so that timing does
/// not reveal the token a byte at a time.
fn same_secret(sent: &[u8], token: &[u8]) -> bool {
    if sent.len() != token.len() {
        return false;
    }
    sent.iter()
        .zip(token)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// Without a token, the server trusts that only this machine reaches it; a web page
/// could still make a browser send requests to it under a domain that resolves to
/// loopback (DNS rebinding), but such requests name that domain as their host.
fn check_loopback_host(request: &Request) -> Result<(), ApiError> {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().host())
        .unwrap_or("");
    if is_loopback_host(host) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "foreign_host",
        format!(
            "this server has no API token, so it answers only requests addressed to a \
             loopback host (127.0.0.1, [::1], localhost), not `{host}`; give the server a \
             token to serve other hosts"
        ),
    ))
}

fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_told_apart() {
        for host in [
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "[::1]:80",
            "127.9.9.9",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example:8080",
            "10.0.0.1",
            "",
            "[::2]:80",
            "localhost.evil",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abcdef", b"abcdef"));
        assert!(!same_secret(b"abcdeg", b"abcdef"));
        assert!(!same_secret(b"abcde", b"abcdef"));
    }
}
