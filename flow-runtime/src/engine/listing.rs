//! Listing runs a page at a time: a journal can hold millions of runs, so a listing reads
//! a bounded number per call and hands back a cursor to go on from.

use crate::engine::Engine;
use crate::error::FlowError;
use crate::history::{RunStatus, RunSummary};
use crate::store::Journal;

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
    /// Only runs whose status is of this kind.
    pub status: Option<StatusKind>,
}

/// A [`RunStatus`] without its details, to filter by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// One page of runs, in run ID order. Memory is bounded by the page size; with a
    /// filter, the runs it skips are read too (in chunks of the page size), so a page of a
    /// rare status may read far more runs than it returns.
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
        loop {
            let chunk = self.core().store.runs_after(cursor.as_deref(), limit)?;
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
                let status = self.status_of(&run_id, &header, output.as_deref());
                if query.status.is_some_and(|k| k != StatusKind::of(&status)) {
                    continue;
                }
                runs.push(RunSummary {
                    status,
                    run_id,
                    workflow: header.workflow,
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
