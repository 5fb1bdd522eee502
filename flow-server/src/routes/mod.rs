//! The endpoints under `/v1`, one file per resource, and `/metrics` (`metrics.rs`);
//! `openapi.rs` documents each.

mod callbacks;
mod control;
mod graph;
mod history;
mod locals;
mod queues;
mod runs;
mod workflows;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use flow_runtime::Engine;

use crate::error::ApiError;

/// What every handler gets.
#[derive(Clone)]
pub(crate) struct AppState {
    pub engine: Engine,
    /// The console's counts of runs per status.
    pub counts: crate::console::counts::CountCache,
}

/// The API's routes, with JSON answers for unknown paths and methods.
pub(crate) fn routes(engine: Engine) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(crate::metrics::metrics))
        .route("/v1/workflows", get(workflows::list))
        .route("/v1/workflows/{name}/graph", get(graph::workflow_graph))
        .route("/v1/runs", get(runs::list).post(runs::start))
        .route("/v1/runs/{run_id}", get(runs::get))
        .route("/v1/runs/{run_id}/history", get(history::page))
        .route("/v1/runs/{run_id}/graph", get(graph::run_graph))
        .route("/v1/runs/{run_id}/locals", get(locals::locals))
        .route("/v1/runs/{run_id}/recording", get(history::recording))
        .route("/v1/runs/{run_id}/signals/{name}", post(control::signal))
        .route("/v1/runs/{run_id}/cancel", post(control::cancel))
        .route("/v1/runs/{run_id}/redrive", post(control::redrive))
        .route("/v1/callbacks/{token}/complete", post(callbacks::complete))
        .route("/v1/callbacks/{token}/fail", post(callbacks::fail))
        .route(
            "/v1/callbacks/{token}/heartbeat",
            post(callbacks::heartbeat),
        )
        .route("/v1/queues", get(queues::list))
        .route("/v1/queues/{queue}/poll", post(queues::poll))
        .route("/v1/queues/{queue}/heartbeat", post(queues::heartbeat))
        .route("/v1/queues/{queue}/complete", post(queues::complete))
        .route("/v1/queues/{queue}/fail", post(queues::fail))
        .route("/v1/queues/{queue}/report", post(queues::report))
        .merge(crate::console::routes())
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(AppState {
            engine,
            counts: Default::default(),
        })
}

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "no endpoint at this path; /v1/openapi.json lists the endpoints",
    )
}

async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take this method; /v1/openapi.json lists the methods of \
         each endpoint",
    )
}
