//! `GET /v1/workflows`: the workflows a client can start, with the input and signals
//! each takes.

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::AppState;

#[derive(Serialize)]
pub(crate) struct WorkflowView {
    name: &'static str,
    version: u32,
    input_type: &'static str,
    signals: Vec<SignalView>,
    /// False when the workflow may wait for signals not listed (names not written as
    /// literals in its body).
    signals_closed: bool,
}

#[derive(Serialize)]
struct SignalView {
    name: &'static str,
    /// The awaited type, when the workflow spells it out.
    #[serde(rename = "type")]
    ty: Option<&'static str>,
}

#[derive(Serialize)]
pub(crate) struct WorkflowList {
    workflows: Vec<WorkflowView>,
}

pub(crate) async fn list(State(state): State<AppState>) -> Json<WorkflowList> {
    let workflows = state
        .engine
        .workflows()
        .into_iter()
        .map(|w| WorkflowView {
            name: w.name,
            version: w.version,
            input_type: w.input_type,
            signals: w
                .signals
                .sites
                .iter()
                .map(|site| SignalView {
                    name: site.name,
                    ty: site.ty.map(|ty| (ty.name)()),
                })
                .collect(),
            signals_closed: w.signals.closed,
        })
        .collect();
    Json(WorkflowList { workflows })
}
