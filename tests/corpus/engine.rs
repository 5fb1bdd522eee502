//! Corpus workflows on the real engine, with their journal where a [`Journals`] keeps
//! it, stopped (as if the process died) right after a chosen durable commit and finished
//! by a new engine that reopens the journal.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::IntoFuture;
use std::time::Duration;

use flow::testing::StepRecord;
use flow::{Engine, EventKind, HistoryEvent, OpRequest, RunStatus, Workflow};

use super::store::{Journal, Journals};
use crate::support::{halting, Commits};

/// Where a run on the engine is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// Nowhere: one engine runs it to the end.
    Never,
    /// Once, right after the engine's `k`-th commit (from 1); a second engine finishes.
    AfterCommit(u64),
    /// At every step boundary: each engine stops right after the commit that ends the
    /// step it found due, and the next one reopens the journal, until the run has ended.
    ///
    /// A reopened engine records the start of every attempt it finds due (in one commit)
    /// before it begins them, and an engine that finds a start it did not write counts
    /// that attempt as interrupted, by design. So an engine stops only once each of those
    /// attempts has ended: after the commits they can take ([`commits_to_end`]); a step
    /// that ends in fewer goes on past its boundary, on to attempts it did not record.
    AtEveryStep,
}

/// What a run on the engine did.
pub struct EngineRun<O> {
    /// The workflow's output.
    pub output: O,
    /// Its steps in the order they completed, each with the operation it awaited
    /// (a step completed twice shows twice).
    pub steps: Vec<StepRecord>,
    /// The run's history, as the last engine read it.
    pub history: Vec<HistoryEvent>,
    /// The commits of the first engine: all the run's when it was not stopped.
    pub commits: u64,
}

/// The id of every run: one run per journal.
const RUN: &str = "run";

/// How long a halted engine may take to reach its commit, and a reopened one to finish.
const HALT_LIMIT: Duration = Duration::from_secs(5);
const FINISH_LIMIT: Duration = Duration::from_secs(20);

/// Runs `make()` on the engine in a new journal of `journals`, stopped at `crash`.
pub async fn run<W, F>(journals: &Journals, make: F, crash: Crash) -> EngineRun<W::Output>
where
    W: Workflow,
    F: Fn() -> W,
{
    let name = W::NAME;
    let journal = journals.create(name);
    let builder = || Engine::builder().register::<W>();
    let (first, commits) = match crash {
        Crash::Never => Commits::counting(builder()),
        Crash::AfterCommit(k) => halting(builder(), k),
        // The first engine's attempts are not recorded: it may stop anywhere.
        Crash::AtEveryStep => halting(builder(), 1),
    };
    let engine = journal.open(first).await.unwrap();
    let started = engine.start(RUN, make()).await;
    let first_commits = match crash {
        Crash::Never => {
            started.unwrap();
            let output = finish::<W>(&engine, "an uninterrupted run").await;
            let history = engine.history(RUN).await.unwrap();
            engine.shutdown().await;
            journal.remove();
            return EngineRun {
                output,
                steps: steps(&history),
                history,
                commits: commits.get(),
            };
        }
        Crash::AfterCommit(k) => halt(&engine, &commits, k, name).await,
        Crash::AtEveryStep => halt(&engine, &commits, 1, name).await,
    };
    let mut due = due_step(&engine).await;
    engine.shutdown().await;
    if crash == Crash::AtEveryStep {
        for reopened in 1.. {
            assert!(reopened < 1000, "{name}: the run never ended");
            let Some(request) = due else { break };
            let k = 1 + commits_to_end(&request);
            let (halting, commits) = halting(builder(), k);
            let engine = reopen(&journal, halting, name).await;
            halt(&engine, &commits, k, name).await;
            due = due_step(&engine).await;
            engine.shutdown().await;
        }
    }
    let engine = reopen(&journal, builder(), name).await;
    let output = finish::<W>(&engine, &format!("a crash ({crash:?})")).await;
    let history = engine.history(RUN).await.unwrap();
    engine.shutdown().await;
    journal.remove();
    EngineRun {
        output,
        steps: steps(&history),
        history,
        commits: first_commits,
    }
}

/// Opens `journal` again after a crash.
async fn reopen(journal: &Journal, builder: flow::EngineBuilder, name: &str) -> Engine {
    journal
        .open(builder)
        .await
        .unwrap_or_else(|e| panic!("{name}: reopening the journal: {e}"))
}

/// Waits for the halted `engine` to reach its `k`-th commit, or for the run to end
/// before (a reopened engine has fewer commits left); returns its commits.
async fn halt(engine: &Engine, commits: &Commits, k: u64, name: &str) -> u64 {
    let deadline = tokio::time::Instant::now() + HALT_LIMIT;
    while commits.get() < k && tokio::time::Instant::now() < deadline {
        if ended(engine).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let reached = commits.get();
    assert!(
        reached <= k,
        "{name}: halted engine committed {reached} > {k}"
    );
    reached
}

/// The operation of the step the run awaits, if it has not ended.
async fn due_step(engine: &Engine) -> Option<OpRequest> {
    if ended(engine).await {
        return None;
    }
    let mut due = None;
    for event in engine.history(RUN).await.ok()? {
        match event.kind {
            EventKind::StepScheduled { request, .. } => due = Some(request),
            EventKind::StepCompleted { .. } => due = None,
            _ => {}
        }
    }
    due
}

/// The most commits after the starts a reopened engine records for `request` (one
/// commit) until all its attempts have ended: at least one of them ends in each, and a
/// map's items that wait for a free slot have their starts recorded one by one.
pub fn commits_to_end(request: &OpRequest) -> u64 {
    match request {
        OpRequest::Named { op, .. } => commits_to_end(op),
        OpRequest::All(ops) | OpRequest::Race(ops) | OpRequest::FirstOk(ops) => {
            ops.iter().map(commits_to_end).sum()
        }
        OpRequest::Map { items, .. } | OpRequest::Batch { items, .. } => {
            2 * items.iter().map(commits_to_end).sum::<u64>()
        }
        _ => 1,
    }
}

/// Whether the run has ended (or was never started).
async fn ended(engine: &Engine) -> bool {
    !matches!(
        engine.status(RUN).await,
        Ok(RunStatus::Running | RunStatus::Waiting)
    )
}

/// The run's output, once it has finished.
async fn finish<W: Workflow>(engine: &Engine, after: &str) -> W::Output {
    let handle = engine.handle::<W>(RUN).unwrap();
    tokio::time::timeout(FINISH_LIMIT, handle.result())
        .await
        .unwrap_or_else(|_| panic!("{}: the run did not finish after {after}", W::NAME))
        .unwrap_or_else(|e| panic!("{}: the run failed after {after}: {e}", W::NAME))
}

/// The completed steps of `history`, each with the request its scheduling recorded.
pub fn steps(history: &[HistoryEvent]) -> Vec<StepRecord> {
    let mut scheduled = BTreeMap::new();
    let mut steps = Vec::new();
    for event in history {
        match &event.kind {
            EventKind::StepScheduled { step, request, .. } => {
                scheduled.insert(*step, request.clone());
            }
            EventKind::StepCompleted { step, output } => steps.push(StepRecord {
                request: scheduled
                    .get(step)
                    .unwrap_or_else(|| panic!("step {step} completed, never scheduled"))
                    .clone(),
                output: output.clone(),
            }),
            _ => {}
        }
    }
    steps
}

/// Asserts that each step number appears in exactly one `StepCompleted`, contiguously.
pub fn assert_steps_committed_once(history: &[HistoryEvent], what: &str) {
    let mut completed: BTreeMap<u64, usize> = BTreeMap::new();
    for e in history {
        if let EventKind::StepCompleted { step, .. } = e.kind {
            *completed.entry(step).or_default() += 1;
        }
    }
    for (step, n) in &completed {
        assert_eq!(*n, 1, "{what}: step {step} completed {n} times");
    }
    let steps: Vec<u64> = completed.keys().copied().collect();
    assert_eq!(
        steps,
        (0..steps.len() as u64).collect::<Vec<_>>(),
        "{what}: steps not contiguous"
    );
}

/// Runs `make()` uninterrupted to count its commits, then crashes it after every
/// commit: each time the output must equal the plain async function's, and every step
/// must be committed exactly once.
pub async fn crash_at_every_commit<W, F>(journals: &Journals, make: F)
where
    W: Workflow + IntoFuture<Output = <W as Workflow>::Output>,
    <W as Workflow>::Output: PartialEq + Debug,
    F: Fn() -> W,
{
    let name = W::NAME;
    let expected = make().await;
    let reference = run(journals, &make, Crash::Never).await;
    assert_eq!(
        reference.output, expected,
        "{name}: uninterrupted engine run"
    );
    let total = reference.commits;
    assert!(
        total >= 2,
        "{name}: a run commits at least its start and its end"
    );
    for k in 1..total {
        let crashed = run(journals, &make, Crash::AfterCommit(k)).await;
        assert_eq!(
            crashed.commits, k,
            "{name}: the run ended before commit {k}"
        );
        assert_eq!(
            crashed.output, expected,
            "{name}: output after a crash at commit {k}"
        );
        assert_steps_committed_once(&crashed.history, &format!("{name} crashed at commit {k}"));
    }
}
