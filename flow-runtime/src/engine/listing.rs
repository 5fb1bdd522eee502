//! Listing runs a page at a time: a journal can hold millions of runs, so a listing reads
//! a bounded number per call and hands back a cursor to go on from.

use crate::engine::Engine;
use crate::error::FlowError;
use crate::history::{RunStatus, RunSummary};
use crate::store::{status_code, IndexKey, Journal, StoredStatus};

/// The stored status whose runs hold every run of status `kind`; `None` for a status
/// the engine derives (a blocked run is stored running or waiting).
fn stored_status_code(kind: StatusKind) -> Option<u8> {
    let stored = match kind {
        StatusKind::Running => StoredStatus::Running,
        StatusKind::Waiting => StoredStatus::Waiting,
        StatusKind::Completed | StatusKind::ReturnedErr => StoredStatus::Completed,
        StatusKind::Failed => StoredStatus::Failed(String::new()),
        StatusKind::Cancelled => StoredStatus::Cancelled,
        StatusKind::Faulted => StoredStatus::Faulted(String::new()),
        StatusKind::Blocked => return None,
    };
    Some(status_code(&stored))
}

/// Runs per page unless [`ListQuery::limit`] says otherwise.
pub const DEFAULT_PAGE_RUNS: usize = 100;
/// Most runs one page returns, whatever the query asks.
pub const MAX_PAGE_RUNS: usize = 10_000;

/// Which runs [`Engine::list_page`] returns: a page of at most `limit` runs, in run ID
/// order, after the cursor `after`, keeping those that match the filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Start after this run ID: the previous page's [`RunPage::next`]. `None`: from the
    /// first run.
    pub after: Option<String>,
    /// Most runs to return (default 100, at most 10,000).
    pub limit: Option<usize>,
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs on this version of their workflow (with `workflow`, the runs still on
    /// one version of it).
    pub version: Option<u32>,
    /// Only runs whose status is of this kind.
    pub status: Option<StatusKind>,
}

/// A [`RunStatus`] without its details, to filter by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatusKind {
    /// [`RunStatus::Running`].
    Running,
    /// [`RunStatus::Waiting`].
    Waiting,
    /// [`RunStatus::Completed`].
    Completed,
    /// [`RunStatus::ReturnedErr`].
    ReturnedErr,
    /// [`RunStatus::Failed`].
    Failed,
    /// [`RunStatus::Cancelled`].
    Cancelled,
    /// [`RunStatus::Faulted`].
    Faulted,
    /// [`RunStatus::Blocked`].
    Blocked,
}

impl StatusKind {
    /// The kind of `status`.
    pub fn of(status: &RunStatus) -> Self {
        match status {
            RunStatus::Running => StatusKind::Running,
            RunStatus::Waiting => StatusKind::Waiting,
            RunStatus::Completed => StatusKind::Completed,
            RunStatus::ReturnedErr => StatusKind::ReturnedErr,
            RunStatus::Failed { .. } => StatusKind::Failed,
            RunStatus::Cancelled => StatusKind::Cancelled,
            RunStatus::Faulted { .. } => StatusKind::Faulted,
            RunStatus::Blocked { .. } => StatusKind::Blocked,
        }
    }
}

/// One page of runs from [`Engine::list_page`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPage {
    /// The matching runs, in run ID order.
    pub runs: Vec<RunSummary>,
    /// The cursor for the next page (put it in [`ListQuery::after`]); `None` once the
    /// journal has no runs after this page.
    pub next: Option<String>,
}

impl Engine {
    /// One page of runs, in run ID order. Memory is bounded by the page size. A filter by
    /// status or workflow reads the journal's index of it (only the runs it may match);
    /// other filters, and the `blocked` status, read the runs they skip too (in chunks of
    /// the page size), so such a page may read far more runs than it returns.
    ///
    /// ```no_run
    /// # async fn demo(engine: flow_runtime::Engine) -> Result<(), flow_runtime::FlowError> {
    /// use flow_runtime::{ListQuery, StatusKind};
    /// let mut query = ListQuery { status: Some(StatusKind::Failed), ..Default::default() };
    /// loop {
    ///     let page = engine.list_page(&query).await?;
    ///     for run in &page.runs {
    ///         println!("{} {}", run.run_id, run.status);
    ///     }
    ///     match page.next {
    ///         Some(cursor) => query.after = Some(cursor),
    ///         None => break,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_page(&self, query: &ListQuery) -> Result<RunPage, FlowError> {
        let limit = query
            .limit
            .unwrap_or(DEFAULT_PAGE_RUNS)
            .clamp(1, MAX_PAGE_RUNS);
        let mut cursor = query.after.clone();
        let mut runs = Vec::new();
        // A status or workflow filter reads that index of the journal, when it keeps one:
        // the runs it may match, not every run.
        let index = match (query.status.and_then(stored_status_code), &query.workflow) {
            (Some(code), _) => Some(IndexKey::Status(code)),
            (None, Some(workflow)) => Some(IndexKey::Workflow(workflow)),
            (None, None) => None,
        };
        loop {
            let store = &self.core().store;
            let indexed = match index {
                Some(key) => store.runs_indexed(key, cursor.as_deref(), limit)?,
                None => None,
            };
            let chunk = match indexed {
                Some(chunk) => chunk,
                None => store.runs_after(cursor.as_deref(), limit)?,
            };
            let exhausted = chunk.len() < limit;
            for (run_id, header, output) in chunk {
                cursor = Some(run_id.clone());
                if query
                    .workflow
                    .as_ref()
                    .is_some_and(|w| *w != header.workflow)
                {
                    continue;
                }
                if query.version.is_some_and(|v| v != header.version) {
                    continue;
                }
                let status = self.status_of(&run_id, &header, output.as_deref());
                if query.status.is_some_and(|k| k != StatusKind::of(&status)) {
                    continue;
                }
                runs.push(RunSummary {
                    status,
                    run_id,
                    workflow: header.workflow,
                    version: header.version,
                    created_at_ms: header.created_at_ms,
                    updated_at_ms: header.updated_at_ms,
                    steps: header.steps,
                });
                if runs.len() == limit {
                    // Whether more follow is known only by looking; the next call finds out.
                    return Ok(RunPage { runs, next: cursor });
                }
            }
            if exhausted {
                return Ok(RunPage { runs, next: None });
            }
        }
    }
}

/// How many runs of one version of a workflow stand where: the answer to "can this
/// version's code be removed?" ([`Engine::count_runs`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// Runs not finished: running, waiting, faulted or blocked. They need this version's
    /// code (or an upgrade) to go on; its code can be removed once this is 0.
    pub unfinished: u64,
    /// Runs that ended (completed, returned `Err`, failed, cancelled).
    pub finished: u64,
    /// Every counted run by the kind of its status.
    pub by_status: std::collections::BTreeMap<StatusKind, u64>,
}

impl Engine {
    /// Counts the runs on version `version` of workflow `workflow`, by status: how many
    /// runs are still on version 1? Reads every run, page by page (see
    /// [`list_page`](Self::list_page)).
    ///
    /// ```no_run
    /// # async fn demo(engine: flow_runtime::Engine) -> Result<(), flow_runtime::FlowError> {
    /// let v1 = engine.count_runs("place_order", 1).await?;
    /// if v1.unfinished == 0 {
    ///     println!("version 1 of place_order can be removed");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn count_runs(&self, workflow: &str, version: u32) -> Result<RunCounts, FlowError> {
        let mut query = ListQuery {
            limit: Some(MAX_PAGE_RUNS),
            workflow: Some(workflow.to_string()),
            version: Some(version),
            ..ListQuery::default()
        };
        let mut counts = RunCounts::default();
        loop {
            let page = self.list_page(&query).await?;
            for run in &page.runs {
                match run.status.is_finished() {
                    true => counts.finished += 1,
                    false => counts.unfinished += 1,
                }
                *counts
                    .by_status
                    .entry(StatusKind::of(&run.status))
                    .or_default() += 1;
            }
            match page.next {
                Some(cursor) => query.after = Some(cursor),
                None => return Ok(counts),
            }
        }
    }
}
