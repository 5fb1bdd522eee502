//! `GET /v1/workflows/{name}/graph` and `GET /v1/runs/{run_id}/graph`: a workflow's
//! state graph as compiled (one state per await site), and a run's path through it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use flow_runtime::{GraphMarks, RegisteredWorkflow, StateGraph};
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GraphParams {
    /// The version to draw; the newest registered when absent.
    version: Option<u32>,
}

/// A state graph with a run's marks, in three forms: the data, Mermaid and DOT.
#[derive(Serialize)]
pub(crate) struct GraphView {
    workflow: &'static str,
    version: u32,
    states: Vec<StateView>,
    /// `[from, to]`, each `"start"`, `"end"` or a state's `id`.
    transitions: Vec<[String; 2]>,
    mermaid: String,
    dot: String,
}

#[derive(Serialize)]
struct StateView {
    id: String,
    name: &'static str,
    line: u32,
    visited: bool,
    current: bool,
}

/// The workflow `name`'s graph (version `?version=`, else the newest).
pub(crate) async fn workflow_graph(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(params): ApiQuery<GraphParams>,
) -> Result<Json<GraphView>, ApiError> {
    let registered = registered(&state, &name, params.version)?;
    Ok(Json(view(&registered, &GraphMarks::default())))
}

/// Run `run_id`'s graph: the graph of the version it runs on, with the states its steps
/// were scheduled at marked visited and the one it waits at marked current.
pub(crate) async fn run_graph(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
) -> Result<Json<GraphView>, ApiError> {
    let summary = state.engine.describe(&run_id).await?.summary;
    let registered = registered(&state, &summary.workflow, Some(summary.version))?;
    let marks = GraphMarks::from_history(&state.engine.history(&run_id).await?);
    Ok(Json(view(&registered, &marks)))
}

fn registered(
    state: &AppState,
    name: &str,
    version: Option<u32>,
) -> Result<RegisteredWorkflow, ApiError> {
    let versions: Vec<RegisteredWorkflow> = state
        .engine
        .workflows()
        .into_iter()
        .filter(|w| w.name == name)
        .collect();
    if versions.is_empty() {
        return Err(super::runs::unknown_workflow(&state.engine, name));
    }
    let found = match version {
        Some(v) => versions.iter().find(|w| w.version == v),
        None => versions.iter().max_by_key(|w| w.version),
    };
    found.copied().ok_or_else(|| {
        let listed: Vec<String> = versions.iter().map(|w| w.version.to_string()).collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_version",
            format!(
                "workflow `{name}` version {} is not registered in this server; it registers \
                 version {}",
                version.unwrap_or_default(),
                listed.join(", ")
            ),
        )
    })
}

fn view(registered: &RegisteredWorkflow, marks: &GraphMarks) -> GraphView {
    let graph = registered.graph;
    let node = |id: u32| match id {
        StateGraph::START => "start".to_string(),
        StateGraph::END => "end".to_string(),
        i => format!("s{i}"),
    };
    GraphView {
        workflow: registered.name,
        version: registered.version,
        states: graph
            .states
            .iter()
            .enumerate()
            .map(|(i, s)| StateView {
                id: node(i as u32),
                name: s.name,
                line: s.line,
                visited: marks.visited.contains(&(i as u32)),
                current: marks.current == Some(i as u32),
            })
            .collect(),
        transitions: graph
            .transitions
            .iter()
            .map(|&(from, to)| [node(from), node(to)])
            .collect(),
        mermaid: graph.to_mermaid_marked(marks),
        dot: graph.to_dot(marks),
    }
}
