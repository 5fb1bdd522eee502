//! `GET /v1/run_counts`: how many runs stand in each status, per workflow and in all.
//!
//! Counting reads every run, which on a journal of a million runs takes seconds, so the
//! counts are computed in the background and kept: a request gets the latest counts at
//! once (with the time they were taken), and starts a new count when they are older than
//! ten times the last count took (at least two seconds), so that a large journal is not
//! scanned back to back. A request waits for a running count at most
//! [`WAIT_FOR_COUNT`], which is all a small journal needs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::Json;
use flow_runtime::{Engine, ListQuery, StatusKind, MAX_PAGE_RUNS};
use serde::Serialize;
use tokio::sync::watch;

use crate::error::ApiError;
use crate::routes::AppState;
use crate::views::STATUS_NAMES;

/// Longest a request waits for a count in progress before answering with the last one.
pub(crate) const WAIT_FOR_COUNT: Duration = Duration::from_millis(100);
/// Counts younger than this are served without counting again.
const MIN_AGE: Duration = Duration::from_secs(2);

/// Counts per status name.
type ByStatus = BTreeMap<&'static str, u64>;

/// One finished count.
#[derive(Clone, Serialize)]
pub(crate) struct Counts {
    /// Runs per status, every status present (0 for none).
    pub total: ByStatus,
    /// Runs per status for each workflow with runs (statuses without runs left out).
    pub by_workflow: BTreeMap<String, ByStatus>,
    /// When the count finished (ms since the Unix epoch).
    pub as_of_ms: u64,
    /// How long the count took, in milliseconds.
    pub took_ms: u64,
    #[serde(skip)]
    finished: Option<Instant>,
    #[serde(skip)]
    took: Duration,
}

/// The latest counts and whether a count is running; shared by the server's handlers.
#[derive(Clone, Default)]
pub(crate) struct CountCache {
    inner: Arc<Mutex<CacheState>>,
}

#[derive(Default)]
struct CacheState {
    latest: Option<Counts>,
    /// Set while a count runs: it turns `true` when the count is stored.
    running: Option<watch::Receiver<bool>>,
}

impl CountCache {
    /// The latest counts, starting a new count when they are stale and waiting for it
    /// up to `wait`.
    pub(crate) async fn get(&self, engine: &Engine, wait: Duration) -> Option<Counts> {
        let mut done = {
            let mut state = self.inner.lock().expect("count cache poisoned");
            let fresh = state.latest.as_ref().is_some_and(|c| {
                c.finished
                    .is_some_and(|at| at.elapsed() < MIN_AGE.max(c.took * 10))
            });
            if fresh {
                return state.latest.clone();
            }
            match &state.running {
                Some(running) => running.clone(),
                None => {
                    let (tx, rx) = watch::channel(false);
                    state.running = Some(rx.clone());
                    let engine = engine.clone();
                    let cache = self.clone();
                    tokio::spawn(async move {
                        let counted = count(&engine).await;
                        let mut state = cache.inner.lock().expect("count cache poisoned");
                        if let Ok(counts) = counted {
                            state.latest = Some(counts);
                        } else if let Err(e) = counted {
                            tracing::warn!(error = %e, "counting runs for the console failed");
                        }
                        state.running = None;
                        let _ = tx.send(true);
                    });
                    rx
                }
            }
        };
        let _ = tokio::time::timeout(wait, done.wait_for(|d| *d)).await;
        self.inner
            .lock()
            .expect("count cache poisoned")
            .latest
            .clone()
    }
}

/// Counts every run, a page at a time, yielding between pages.
async fn count(engine: &Engine) -> Result<Counts, flow_runtime::FlowError> {
    let started = Instant::now();
    let mut total: ByStatus = STATUS_NAMES.iter().map(|(name, _)| (*name, 0)).collect();
    let mut by_workflow: BTreeMap<String, ByStatus> = BTreeMap::new();
    let mut query = ListQuery {
        limit: Some(MAX_PAGE_RUNS),
        ..ListQuery::default()
    };
    loop {
        let page = engine.list_page(&query).await?;
        for run in &page.runs {
            let name = status_name(StatusKind::of(&run.status));
            *total.entry(name).or_default() += 1;
            if let Some(counts) = by_workflow.get_mut(&run.workflow) {
                *counts.entry(name).or_default() += 1;
            } else {
                by_workflow.insert(run.workflow.clone(), BTreeMap::from([(name, 1)]));
            }
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
        tokio::task::yield_now().await;
    }
    let took = started.elapsed();
    Ok(Counts {
        total,
        by_workflow,
        as_of_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        took_ms: took.as_millis() as u64,
        finished: Some(Instant::now()),
        took,
    })
}

fn status_name(kind: StatusKind) -> &'static str {
    STATUS_NAMES
        .iter()
        .find(|(_, k)| *k == kind)
        .map_or("unknown", |(name, _)| name)
}

/// `GET /v1/run_counts`: `{"counts": Counts or null}`; null while the first count of a
/// large journal is still running (ask again).
pub(crate) async fn run_counts(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let counts = state.counts.get(&state.engine, WAIT_FOR_COUNT).await;
    Ok(Json(serde_json::json!({ "counts": counts })))
}
