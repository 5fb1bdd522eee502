//! What the API shows of runs and their histories, as JSON: stored user values rendered
//! with `codec::to_json`, statuses as snake_case names.
//!
//! Public so that a program with the journal at hand (the `flow` command line's
//! `--journal`) shows runs exactly as the server does: each function here builds the body
//! of one endpoint's answer from an [`Engine`].

use std::collections::BTreeMap;

use flow_runtime::{
    codec, Engine, EventKind, FlowError, HistoryEvent, ListQuery, RunStatus, RunSummary, StatusKind,
};
use serde::Serialize;
use serde_json::{Map, Value};

/// A stored user value as JSON (a value that no longer decodes is shown as a string
/// saying so, rather than failing the whole answer).
pub fn render(bytes: &[u8]) -> Value {
    match codec::to_json(bytes).map(|text| serde_json::from_str(&text)) {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => Value::String(format!("(not renderable as JSON: {e})")),
        Err(e) => Value::String(format!("(not decodable: {e})")),
    }
}

/// The status names the API uses, also as the `status` filter of a listing.
pub const STATUS_NAMES: [(&str, StatusKind); 8] = [
    ("running", StatusKind::Running),
    ("waiting", StatusKind::Waiting),
    ("completed", StatusKind::Completed),
    ("returned_err", StatusKind::ReturnedErr),
    ("failed", StatusKind::Failed),
    ("cancelled", StatusKind::Cancelled),
    ("faulted", StatusKind::Faulted),
    ("blocked", StatusKind::Blocked),
];

/// The status kind called `name` in the API (`running`, `waiting`, ...).
pub fn status_kind(name: &str) -> Option<StatusKind> {
    STATUS_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, kind)| *kind)
}

fn status_name(status: &RunStatus) -> &'static str {
    let kind = StatusKind::of(status);
    STATUS_NAMES
        .iter()
        .find(|(_, k)| *k == kind)
        .map_or("unknown", |(name, _)| name)
}

fn status_reason(status: &RunStatus) -> Option<String> {
    match status {
        RunStatus::Failed { error } | RunStatus::Faulted { error } => Some(error.clone()),
        RunStatus::Blocked { reason } => Some(reason.clone()),
        _ => None,
    }
}

/// One run as a listing shows it.
#[derive(Serialize)]
pub(crate) struct SummaryView {
    run_id: String,
    workflow: String,
    version: u32,
    status: &'static str,
    /// Why the run failed, faulted or is blocked.
    reason: Option<String>,
    created_at_ms: u64,
    updated_at_ms: u64,
    steps: u64,
}

impl From<RunSummary> for SummaryView {
    fn from(run: RunSummary) -> Self {
        SummaryView {
            status: status_name(&run.status),
            reason: status_reason(&run.status),
            run_id: run.run_id,
            workflow: run.workflow,
            created_at_ms: run.created_at_ms,
            updated_at_ms: run.updated_at_ms,
            steps: run.steps,
            version: run.version,
        }
    }
}

/// One run with its values and the step it waits on.
#[derive(Serialize)]
pub(crate) struct RunView {
    #[serde(flatten)]
    pub summary: SummaryView,
    pub input: Value,
    pub output: Value,
    pub pending: Option<PendingView>,
}

/// The durable operation a run waits on, from its history.
#[derive(Serialize, Default, Clone)]
pub(crate) struct PendingView {
    step: u64,
    /// What is awaited (task or workflow name, `sleep`, `signal:NAME`, `join(N)`).
    name: String,
    scheduled_at_ms: u64,
    /// The latest attempt the history records (none before the first attempt ends).
    attempt: Option<u32>,
    /// The latest failed attempt's error.
    last_error: Option<String>,
    /// When the next attempt runs, after a failed one.
    retry_at_ms: Option<u64>,
}

/// The step a run waits on: the latest scheduled step its history does not complete.
pub(crate) fn pending_step(history: &[HistoryEvent]) -> Option<PendingView> {
    let mut open: BTreeMap<u64, PendingView> = BTreeMap::new();
    // The steps open when the run last ended.
    let mut ended: BTreeMap<u64, PendingView> = BTreeMap::new();
    for event in history {
        match &event.kind {
            EventKind::StepScheduled { step, name, .. } => {
                open.insert(
                    *step,
                    PendingView {
                        step: *step,
                        name: name.clone(),
                        scheduled_at_ms: event.at_ms,
                        ..PendingView::default()
                    },
                );
            }
            EventKind::AttemptStarted { step, attempt, .. } => {
                if let Some(p) = open.get_mut(step) {
                    p.attempt = p.attempt.max(Some(*attempt));
                }
            }
            EventKind::AttemptFailed {
                step,
                attempt,
                error,
                retry_at_ms,
                ..
            } => {
                if let Some(p) = open.get_mut(step) {
                    p.attempt = p.attempt.max(Some(*attempt));
                    p.last_error = Some(error.clone());
                    p.retry_at_ms = *retry_at_ms;
                }
            }
            EventKind::StepCompleted { step, .. } => {
                open.remove(step);
            }
            // A run that failed or was cancelled may be redriven at the step it ended in.
            EventKind::RunFailed { .. } | EventKind::RunCancelled => {
                ended = std::mem::take(&mut open);
            }
            EventKind::RunRedriven { .. } => {
                // Its attempts start afresh.
                for (step, mut pending) in std::mem::take(&mut ended) {
                    pending.attempt = None;
                    pending.last_error = None;
                    pending.retry_at_ms = None;
                    open.entry(step).or_insert(pending);
                }
            }
            EventKind::RunCompleted { .. } | EventKind::ContinuedAsNew { .. } => {
                open.clear();
                ended.clear();
            }
            _ => {}
        }
    }
    open.into_values().next_back()
}

/// Run `run_id` as `GET /v1/runs/{run_id}` shows it: its summary, input and output as
/// JSON, and the step it waits on (`pending`, null once it finished).
///
/// Errors: [`FlowError::UnknownRun`]; a storage error.
pub async fn run_json(engine: &Engine, run_id: &str) -> Result<Value, FlowError> {
    let run = engine.describe(run_id).await?;
    let pending = if run.summary.status.is_finished() {
        None
    } else {
        pending_step(&engine.history(run_id).await?)
    };
    let view = RunView {
        input: run.input.as_deref().map_or(Value::Null, render),
        output: run.output.as_deref().map_or(Value::Null, render),
        summary: run.summary.into(),
        pending,
    };
    Ok(serde_json::to_value(view).unwrap_or(Value::Null))
}

/// Which runs [`list_json`] shows: those of the engine's [`ListQuery`] (cursor, limit,
/// workflow, version, status), created in `created_ms`.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// The engine's filters and cursor; `limit` is the most runs on the page.
    pub query: ListQuery,
    /// Creation times (ms since the Unix epoch) to keep; `None` keeps all.
    pub created_ms: Option<std::ops::Range<u64>>,
}

/// A page of runs as `GET /v1/runs` shows it: `{"runs": [...], "next": cursor or null}`.
/// The engine filters by workflow, version and status; the creation time is filtered
/// here, page after page, until this page is full or the runs run out.
///
/// Errors: a storage error.
pub async fn list_json(engine: &Engine, filter: &RunFilter) -> Result<Value, FlowError> {
    let limit = filter
        .query
        .limit
        .unwrap_or(flow_runtime::DEFAULT_PAGE_RUNS)
        .clamp(1, flow_runtime::MAX_PAGE_RUNS);
    let created = filter.created_ms.clone().unwrap_or(0..u64::MAX);
    let mut query = filter.query.clone();
    query.limit = Some(limit);
    let mut runs = Vec::new();
    let next = loop {
        let page = engine.list_page(&query).await?;
        let mut full = None;
        for run in page.runs {
            if created.contains(&run.created_at_ms) {
                let run_id = run.run_id.clone();
                runs.push(SummaryView::from(run));
                if runs.len() == limit {
                    full = Some(run_id);
                    break;
                }
            }
        }
        if full.is_some() {
            break full;
        }
        match page.next {
            Some(cursor) => query.after = Some(cursor),
            None => break None,
        }
    };
    Ok(serde_json::json!({"runs": runs, "next": next}))
}

/// A page of `history` as `GET /v1/runs/{run_id}/history` shows it: at most `limit`
/// events after sequence number `after`, `{"events": [...], "next": seq or null}`.
pub fn history_json(history: &[HistoryEvent], after: Option<u64>, limit: usize) -> Value {
    let mut rest = history
        .iter()
        .filter(|e| after.is_none_or(|after| e.seq > after));
    let events: Vec<_> = rest.by_ref().take(limit).collect();
    let next = match rest.next() {
        Some(_) => events.last().map(|e| e.seq),
        None => None,
    };
    let events: Vec<Value> = events.into_iter().map(event_view).collect();
    serde_json::json!({"events": events, "next": next})
}

/// Steps `steps` of run `run_id` as `GET /v1/runs/{run_id}/locals` shows them:
/// `{"run_id", "steps": [...], "next": step or null}`, each step with the graph state it
/// was scheduled at (`state`), the machine's program counter then (`pc`), its saved locals then (`[{"slot", "name", "type", "value"}]`, null when the journal
/// did not keep them; a local's `name` and `type` are its source's, null when this engine
/// cannot tell: see `StepLocals::names`), its `StepScheduled` event (what it asked for) and its `StepCompleted`
/// event (its output; null while it is pending). Steps past the run's last are left out.
///
/// Errors: [`FlowError::UnknownRun`]; a storage error.
pub async fn locals_json(
    engine: &Engine,
    run_id: &str,
    steps: std::ops::Range<u64>,
) -> Result<Value, FlowError> {
    let scheduled = engine.describe(run_id).await?.summary.steps;
    let history = engine.history(run_id).await?;
    let end = steps.end.min(scheduled);
    let mut found: BTreeMap<u64, (Option<&HistoryEvent>, Option<&HistoryEvent>)> = BTreeMap::new();
    for event in &history {
        match &event.kind {
            EventKind::StepScheduled { step, .. } if (steps.start..end).contains(step) => {
                // A redriven or upgraded run may schedule a step again: the latest counts.
                found.entry(*step).or_default().0 = Some(event);
            }
            EventKind::StepCompleted { step, .. } if (steps.start..end).contains(step) => {
                found.entry(*step).or_default().1 = Some(event);
            }
            _ => {}
        }
    }
    let mut states: BTreeMap<u64, flow_runtime::StepLocals> = engine
        .step_locals_range_with_history(run_id, steps.start..end, Some(&history))
        .await?
        .into_iter()
        .collect();
    let mut out = Vec::new();
    for step in steps.start..end {
        let (scheduled_event, completed) = found.get(&step).copied().unwrap_or_default();
        let at = states.remove(&step);
        let (name, graph_state) = match scheduled_event.map(|e| &e.kind) {
            Some(EventKind::StepScheduled { name, state, .. }) => {
                (Some(name.clone()), Some(*state))
            }
            _ => (None, None),
        };
        let locals = at.as_ref().map(|at| {
            at.slots
                .iter()
                .zip(&at.names)
                .map(|((slot, bytes), info)| {
                    serde_json::json!({
                        "slot": slot,
                        "name": info.map(|info| info.name),
                        "type": info.and_then(|info| info.ty),
                        "value": render(bytes),
                    })
                })
                .collect::<Vec<_>>()
        });
        out.push(serde_json::json!({
            "step": step,
            "state": graph_state,
            "pc": at.as_ref().map(|at| at.pc),
            "name": name,
            "locals": locals,
            "scheduled": scheduled_event.map(event_view),
            "completed": completed.map(event_view),
        }));
    }
    let next = (end < scheduled && !steps.is_empty()).then_some(end);
    Ok(serde_json::json!({"run_id": run_id, "steps": out, "next": next}))
}

/// The fields of history events that hold encoded user values.
const VALUE_FIELDS: [&str; 3] = ["input", "output", "args"];

/// A history event as JSON: `{seq, at_ms, type, ...the event's fields}`, its encoded
/// values rendered as JSON.
pub fn event_view(event: &HistoryEvent) -> Value {
    let mut out = Map::new();
    out.insert("seq".into(), event.seq.into());
    out.insert("at_ms".into(), event.at_ms.into());
    match serde_json::to_value(&event.kind) {
        // A unit variant: its name.
        Ok(Value::String(name)) => {
            out.insert("type".into(), Value::String(name));
        }
        // Any other: `{Variant: fields}`.
        Ok(Value::Object(tagged)) => {
            for (name, fields) in tagged {
                out.insert("type".into(), Value::String(name));
                match rendered(fields) {
                    // A field named like the envelope's (`SignalReceived`'s inbox `seq`)
                    // must not overwrite it.
                    Value::Object(fields) => {
                        for (key, value) in fields {
                            let key = match key.as_str() {
                                "seq" if out["type"] == "SignalReceived" => "inbox_seq".into(),
                                "seq" | "at_ms" | "type" => format!("field_{key}"),
                                _ => key,
                            };
                            out.insert(key, value);
                        }
                    }
                    other => {
                        out.insert("value".into(), other);
                    }
                }
            }
        }
        Ok(other) => {
            out.insert("value".into(), other);
        }
        Err(e) => {
            out.insert("type".into(), Value::String(format!("(unrenderable: {e})")));
        }
    }
    Value::Object(out)
}

/// `value` with the byte arrays under [`VALUE_FIELDS`] rendered as the values they encode.
fn rendered(value: Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, field)| {
                    let field = match as_bytes(&field) {
                        Some(bytes) if VALUE_FIELDS.contains(&key.as_str()) => render(&bytes),
                        _ => rendered(field),
                    };
                    (key, field)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(rendered).collect()),
        other => other,
    }
}

fn as_bytes(value: &Value) -> Option<Vec<u8>> {
    value
        .as_array()?
        .iter()
        .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_runtime::OpRequest;

    fn event(seq: u64, kind: EventKind) -> HistoryEvent {
        HistoryEvent {
            seq,
            at_ms: 1000 + seq,
            kind,
        }
    }

    fn scheduled(seq: u64, step: u64, name: &str) -> HistoryEvent {
        let request = OpRequest::Sleep { until_ms: 0 };
        let name = name.to_string();
        event(
            seq,
            EventKind::StepScheduled {
                step,
                state: 0,
                name,
                request,
            },
        )
    }

    #[test]
    fn the_pending_step_carries_its_latest_attempt_and_error() {
        let mut history = vec![
            scheduled(0, 0, "charge"),
            event(
                1,
                EventKind::StepCompleted {
                    step: 0,
                    output: vec![],
                },
            ),
            scheduled(2, 1, "reserve"),
            event(
                3,
                EventKind::AttemptStarted {
                    step: 1,
                    branch: 0,
                    attempt: 1,
                },
            ),
            event(
                4,
                EventKind::AttemptFailed {
                    step: 1,
                    branch: 0,
                    attempt: 1,
                    error: "out of stock".into(),
                    retry_at_ms: Some(5000),
                },
            ),
        ];
        let pending = serde_json::to_value(pending_step(&history)).unwrap();
        assert_eq!(
            pending,
            serde_json::json!({"step": 1, "name": "reserve", "scheduled_at_ms": 1002,
                "attempt": 1, "last_error": "out of stock", "retry_at_ms": 5000})
        );
        history.push(event(
            5,
            EventKind::StepCompleted {
                step: 1,
                output: vec![],
            },
        ));
        assert!(pending_step(&history).is_none());
        history.push(scheduled(6, 2, "ship"));
        history.push(event(7, EventKind::RunCancelled));
        assert!(pending_step(&history).is_none());
        // Redriven, the run waits on the step it ended in again, with fresh attempts.
        history.push(event(
            8,
            EventKind::RunRedriven {
                ended: "cancelled".into(),
            },
        ));
        let pending = pending_step(&history).expect("the step is open again");
        assert_eq!((pending.step, pending.name.as_str()), (2, "ship"));
        history.push(event(9, EventKind::RunCompleted { output: vec![] }));
        assert!(pending_step(&history).is_none());
    }

    #[test]
    fn events_render_their_stored_values() {
        let output = codec::encode(&vec![1u32, 2], String::new).unwrap();
        let view = event_view(&event(3, EventKind::RunCompleted { output }));
        assert_eq!(
            view,
            serde_json::json!({"seq": 3, "at_ms": 1003, "type": "RunCompleted", "output": [1, 2]})
        );
        // The signal's inbox position keeps out of the event's own `seq`.
        let signal = EventKind::SignalReceived {
            name: "go".into(),
            seq: 0,
        };
        assert_eq!(
            event_view(&event(5, signal)),
            serde_json::json!({"seq": 5, "at_ms": 1005, "type": "SignalReceived",
                "name": "go", "inbox_seq": 0})
        );
        let view = event_view(&event(4, EventKind::CancelRequested));
        assert_eq!(
            view,
            serde_json::json!({"seq": 4, "at_ms": 1004, "type": "CancelRequested"})
        );
    }
}
