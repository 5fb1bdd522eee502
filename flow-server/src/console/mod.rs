//! The web console: a single-page application served at `/`, its HTML, CSS and
//! JavaScript built into the binary (no build step), reading and acting through the same
//! `/v1` API as any client.
//!
//! Security design:
//! - The assets hold no data, so they are served without the API token (a browser's
//!   address bar cannot send one); every piece of data comes from `/v1`, which the guard
//!   (`auth.rs`) protects as for any client. The page asks for the token once and keeps it
//!   in the tab's `sessionStorage`, sending it as `Authorization: Bearer`.
//! - Cross-site request forgery: the server has no cookies and no form posts. Every
//!   action is a `fetch` POST with `Content-Type: application/json` (and the bearer token
//!   when the server has one), which another origin cannot send without a CORS preflight
//!   that the server never grants; a plain HTML form cannot set that content type, so the
//!   guard refuses it.
//! - Injection: the scripts build the page with `textContent` and DOM nodes only, never
//!   `innerHTML` with data; a `Content-Security-Policy` allowing only the console's own
//!   scripts and styles (no inline script) backs that up, and `frame-ancestors 'none'`
//!   keeps the console out of other sites' frames (against clickjacking of its buttons).
//!
//! One concept per file under `assets/`: `api.js` (requests, the token), `dom.js`
//! (building elements, formatting), `runs.js` (the runs page), `run.js` (a run's page),
//! `graph.js` (the state graph as SVG, laid out in layers), `timeline.js` (the history as
//! a timeline), `actions.js` (signal, cancel, redrive, complete a callback), `travel.js`
//! (time travel: locals at a step), `queues.js` (the task queues of remote tasks, their
//! workers), `app.js` (routing).

pub(crate) mod counts;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::routes::AppState;

/// One file of the console: its path under `/console/` (or `/` for the page), its media
/// type and its bytes.
struct Asset {
    path: &'static str,
    media_type: &'static str,
    body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        media_type: "text/html; charset=utf-8",
        body: include_str!("assets/index.html"),
    },
    Asset {
        path: "/console/console.css",
        media_type: "text/css; charset=utf-8",
        body: include_str!("assets/console.css"),
    },
    Asset {
        path: "/console/app.js",
        media_type: JS,
        body: include_str!("assets/app.js"),
    },
    Asset {
        path: "/console/api.js",
        media_type: JS,
        body: include_str!("assets/api.js"),
    },
    Asset {
        path: "/console/dom.js",
        media_type: JS,
        body: include_str!("assets/dom.js"),
    },
    Asset {
        path: "/console/runs.js",
        media_type: JS,
        body: include_str!("assets/runs.js"),
    },
    Asset {
        path: "/console/run.js",
        media_type: JS,
        body: include_str!("assets/run.js"),
    },
    Asset {
        path: "/console/graph.js",
        media_type: JS,
        body: include_str!("assets/graph.js"),
    },
    Asset {
        path: "/console/timeline.js",
        media_type: JS,
        body: include_str!("assets/timeline.js"),
    },
    Asset {
        path: "/console/actions.js",
        media_type: JS,
        body: include_str!("assets/actions.js"),
    },
    Asset {
        path: "/console/travel.js",
        media_type: JS,
        body: include_str!("assets/travel.js"),
    },
    Asset {
        path: "/console/queues.js",
        media_type: JS,
        body: include_str!("assets/queues.js"),
    },
];

/// The policy every console file is served with: only the console's own scripts, styles
/// and API; no inline script, no plugins, no frames around it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Whether `path` is one of the console's files, which need no API token (they hold no
/// data).
pub(crate) fn is_asset(path: &str) -> bool {
    ASSETS.iter().any(|a| a.path == path)
}

/// The console's routes: `GET` of each file.
pub(crate) fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for asset in ASSETS {
        router = router.route(asset.path, get(move || serve(asset)));
    }
    router.route("/v1/run_counts", get(counts::run_counts))
}

async fn serve(asset: &'static Asset) -> Response {
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.media_type));
    headers.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
