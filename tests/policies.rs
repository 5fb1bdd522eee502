//! Completion policies for parallel work on a real engine, each crashed after every
//! commit (the engine halted after its k-th commit, the journal reopened by a new
//! engine): a minimum of successes and fail-fast on a map and on `flow::all` of branches
//! of different types (the batch says why it completed and how each branch ended;
//! branches stopped early are cancelled durably and never run again), failure rates, the
//! first success (`flow::first_ok`), a concurrency limit on a join, and names on
//! operations in the journal's history. The same workflows under `testing::Driver` and
//! as plain code.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use flow::testing::{Driver, Restore};
use flow::{
    task, workflow, Batch, BranchStatus, Completion, Engine, EventKind, HistoryEvent, OpExt,
    RunStatus, Workflow,
};

mod support;
use support::{halting, Commits, ScratchDir};

fn builder() -> flow::EngineBuilder {
    Engine::builder()
        .register::<first_three>()
        .register::<fail_fast_map>()
        .register::<failure_rate>()
        .register::<mixed_min_successes>()
        .register::<mixed_fail_fast>()
        .register::<idle_child>()
        .register::<checked_child>()
        .register::<first_success>()
        .register::<limited_join>()
        .register::<named_steps>()
}

/// Executions of each (run key, item), across engines.
static RAN: Mutex<BTreeMap<(String, u32), u32>> = Mutex::new(BTreeMap::new());

fn ran(key: &str, item: u32) -> u32 {
    let ran = RAN.lock().unwrap();
    ran.get(&(key.to_string(), item)).copied().unwrap_or(0)
}

/// Succeeds with `item * 10` or fails, once (no retries), and counts its executions.
#[task(retry(max_attempts = 1))]
async fn attempt(key: String, item: u32, ok: bool) -> Result<u32, String> {
    *RAN.lock().unwrap().entry((key, item)).or_default() += 1;
    if ok {
        Ok(item * 10)
    } else {
        Err(format!("item {item} failed"))
    }
}

type Statuses = Vec<BranchStatus<Result<u32, String>>>;

fn indexed(pattern: Vec<bool>) -> Vec<(u32, bool)> {
    pattern
        .into_iter()
        .enumerate()
        .map(|(i, ok)| (i as u32, ok))
        .collect()
}

/// A map, one item at a time, that completes once three items succeeded.
#[workflow]
async fn first_three(key: String, pattern: Vec<bool>) -> Batch<Statuses> {
    flow::map(indexed(pattern), 1, |(i, ok)| attempt(key.clone(), i, ok))
        .min_successes(3)
        .await
}

/// A map that fails at its first failed item.
#[workflow]
async fn fail_fast_map(key: String, pattern: Vec<bool>) -> Result<Vec<u32>, String> {
    let outputs = flow::map(indexed(pattern), 1, |(i, ok)| attempt(key.clone(), i, ok))
        .fail_fast()
        .await
        .map_err(|e| format!("{} of {} failed: {}", e.failed, e.total, e.first_error))?;
    Ok(outputs.into_iter().map(|o| o.unwrap_or(0)).collect())
}

/// A batch of `n` items, the first `failing` of them failing, that tolerates a failure
/// rate.
#[workflow]
async fn failure_rate(key: String, n: u32, failing: u32, rate: f64) -> (Completion, usize) {
    let batch = flow::map(0..n, 10, |i| attempt(key.clone(), i, i >= failing))
        .batch()
        .tolerate_failure_rate(rate)
        .await;
    (batch.completion, batch.failures())
}

/// Waits for a signal nobody sends: runs until it is cancelled.
#[workflow]
async fn idle_child(x: u64) -> u64 {
    let more: u64 = flow::signal::<u64>("never").await;
    x + more
}

/// Returns `Err` for odd numbers.
#[workflow]
async fn checked_child(x: u32) -> Result<u32, String> {
    if x % 2 == 1 {
        return Err(format!("{x} is odd"));
    }
    attempt(format!("child-{x}"), x, true).await
}

const FOREVER: Duration = Duration::from_secs(3600);

type Mixed = Batch<(
    BranchStatus<Result<u32, String>>,
    BranchStatus<u64>,
    BranchStatus<()>,
    BranchStatus<Result<u32, String>>,
)>;

/// Branches of four types, three at a time, complete once two succeeded: the child run
/// and the sleep, still running then, are cancelled.
#[workflow]
async fn mixed_min_successes(key: String) -> Mixed {
    flow::all((
        attempt(key.clone(), 0, true),
        idle_child(7),
        flow::sleep(FOREVER),
        attempt(key, 3, true),
    ))
    .max_in_flight(3)
    .min_successes(2)
    .await
}

type MixedFailFast = Batch<(
    BranchStatus<Result<u32, String>>,
    BranchStatus<()>,
    BranchStatus<u64>,
)>;

/// Two at a time, fail fast: the failing task stops the batch; the sleep is cancelled
/// and the child run never starts.
#[workflow]
async fn mixed_fail_fast(key: String) -> MixedFailFast {
    flow::all((attempt(key, 0, false), flow::sleep(FOREVER), idle_child(1)))
        .max_in_flight(2)
        .fail_fast()
        .await
}

/// Fails at once, or succeeds with `item * 10` after a while (so failures are committed
/// before the success).
#[task(retry(max_attempts = 1))]
async fn from_mirror(key: String, item: u32, ok: bool) -> Result<u32, String> {
    if ok {
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    attempt(key, item, ok).await
}

/// The first branch to succeed, or every error.
#[workflow]
async fn first_success(key: String, pattern: Vec<bool>) -> Result<(usize, u32), Vec<String>> {
    let calls: Vec<_> = indexed(pattern)
        .into_iter()
        .map(|(i, ok)| from_mirror(key.clone(), i, ok))
        .collect();
    flow::first_ok(calls).await
}

/// Tasks of each run key running now, and the most at once.
static GAUGE: Mutex<BTreeMap<String, (u32, u32)>> = Mutex::new(BTreeMap::new());

#[task]
async fn gauged(key: String, n: u32) -> u32 {
    {
        let mut gauge = GAUGE.lock().unwrap();
        let (now, most) = gauge.entry(key.clone()).or_default();
        *now += 1;
        *most = (*most).max(*now);
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    GAUGE.lock().unwrap().entry(key).or_default().0 -= 1;
    n
}

/// A join of five branches, at most two at a time.
#[workflow]
async fn limited_join(key: String) -> (u32, u32, u32, u32, u32) {
    flow::join!(
        gauged(key.clone(), 1),
        gauged(key.clone(), 2),
        gauged(key.clone(), 3),
        gauged(key.clone(), 4),
        gauged(key, 5)
    )
    .max_in_flight(2)
    .await
}

/// Named operations: a sleep, a join branch, map items and a child run.
#[workflow]
async fn named_steps(key: String) -> Result<u32, String> {
    flow::sleep(Duration::from_millis(1))
        .named("cool-down")
        .await;
    let (first, ()) = flow::join!(
        attempt(key.clone(), 1, true).named("first"),
        flow::sleep(Duration::from_millis(1))
    )
    .await;
    let items = flow::map(vec![2u32, 3], 2, |i| {
        attempt(key.clone(), i, true).named(format!("item-{i}"))
    })
    .await;
    let child = checked_child(4).named("sub-run").await?;
    Ok(first? + items.into_iter().map(|i| i.unwrap_or(0)).sum::<u32>() + child)
}

/// Named operations the test driver performs (no child run).
#[workflow]
async fn named_locally(key: String) -> Result<u32, String> {
    flow::sleep(Duration::from_millis(1))
        .named("cool-down")
        .await;
    let first = attempt(key.clone(), 1, true).named("first").await?;
    let batch = flow::all(vec![attempt(key, 2, true).named("second")])
        .fail_fast()
        .await;
    Ok(first
        + batch
            .successes()
            .map(|(_, v)| v.clone().unwrap_or(0))
            .sum::<u32>())
}

/// Runs `make(key)` uninterrupted, then on an engine halted after its `k`-th commit and
/// a reopened one, for every `k`; checks each output equals the uninterrupted one and
/// calls `check(engine, key)` on the reopened engine once the run finished.
async fn crash_at_every_commit<W, C>(name: &str, make: impl Fn(String) -> W, check: C)
where
    W: Workflow,
    W::Output: PartialEq + std::fmt::Debug,
    C: for<'a> AsyncCheck<'a>,
{
    let (reference, commits) = Commits::counting(builder());
    let engine = reference.open_in_memory().await.unwrap();
    let key = format!("{name}-ref");
    let run = engine.start("run", make(key.clone())).await.unwrap();
    let expected = run.result().await.unwrap();
    check.check(&engine, &key).await;
    engine.shutdown().await;
    let total = commits.get();
    assert!(total >= 2, "{name}: only {total} commits");
    let dir = ScratchDir::new(name);
    for k in 1..total {
        let key = format!("{name}-{k}");
        let path = dir.journal(&key);
        let (halted, reached) = halting(builder(), k);
        let engine = halted.open(&path).await.unwrap();
        let _ = engine.start("run", make(key.clone())).await;
        reached.wait_for(k, Duration::from_secs(10)).await;
        engine.shutdown().await;
        tokio::time::sleep(Duration::from_millis(2)).await;

        let engine = builder().open(&path).await.unwrap();
        let run = engine.handle::<W>("run").unwrap();
        let out = tokio::time::timeout(Duration::from_secs(20), run.result())
            .await
            .unwrap_or_else(|_| panic!("{name}: run did not finish after a crash at {k}"))
            .unwrap();
        assert_eq!(out, expected, "{name}: crash at commit {k}");
        check.check(&engine, &key).await;
        engine.shutdown().await;
        Engine::remove_journal(&path).unwrap();
    }
}

/// A check run on the engine that finished a run (an async closure, spelled out).
trait AsyncCheck<'a> {
    fn check(
        &'a self,
        engine: &'a Engine,
        key: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>;
}

impl<'a, F, Fut> AsyncCheck<'a> for F
where
    F: Fn(&'a Engine, &'a str) -> Fut,
    Fut: std::future::Future<Output = ()> + 'a,
{
    fn check(
        &'a self,
        engine: &'a Engine,
        key: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>> {
        Box::pin(self(engine, key))
    }
}

async fn no_check(_: &Engine, _: &str) {}

async fn history(engine: &Engine, run: &str) -> Vec<HistoryEvent> {
    engine.history(run).await.unwrap()
}

const PATTERN: [bool; 7] = [true, false, true, false, true, true, true];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_completes_at_its_minimum_of_successes_and_never_starts_the_rest() {
    async fn rest_never_ran(engine: &Engine, key: &str) {
        assert_eq!((ran(key, 5), ran(key, 6)), (0, 0), "{key}");
        let events = history(engine, "run").await;
        assert!(
            events.iter().any(|e| matches!(
                e.kind,
                EventKind::BatchCompleted {
                    completion: Completion::MinSuccessesReached,
                    succeeded: 3,
                    failed: 2,
                    ..
                }
            )),
            "{events:#?}"
        );
    }
    crash_at_every_commit(
        "min-successes",
        |key| first_three(key, PATTERN.to_vec()),
        rest_never_ran,
    )
    .await;

    let engine = builder().open_in_memory().await.unwrap();
    let run = engine
        .start("one", first_three("one".into(), PATTERN.to_vec()))
        .await
        .unwrap();
    let batch = run.result().await.unwrap();
    assert_eq!(batch.completion, Completion::MinSuccessesReached);
    assert_eq!(
        batch.successes().map(|(i, _)| i).collect::<Vec<_>>(),
        [0, 2, 4]
    );
    assert_eq!(batch.branches[0], BranchStatus::Succeeded(Ok(0)));
    match &batch.branches[1] {
        BranchStatus::Failed { error, output } => {
            assert!(error.contains("item 1 failed"), "{error}");
            assert_eq!(output, &Some(Err("item 1 failed".to_string())));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        batch.branches[5..],
        [BranchStatus::NotStarted, BranchStatus::NotStarted]
    );
    // Too few can succeed: the map runs to its end.
    let run = engine
        .start("few", first_three("few".into(), vec![true, false, true]))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap().completion, Completion::AllDone);
    engine.shutdown().await;

    // The test driver stops where the engine does; as plain code every item runs.
    let mut driver = Driver::new();
    let driven = driver
        .run(
            first_three("driver".into(), PATTERN.to_vec()),
            Restore::EveryStep,
        )
        .await
        .unwrap();
    assert_eq!(driven, batch);
    assert_eq!(ran("driver", 5), 0);
    let plain = first_three("plain".into(), PATTERN.to_vec()).await;
    assert_eq!(plain.completion, Completion::MinSuccessesReached);
    assert_eq!(plain.successes().count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_fast_map_stops_at_its_first_failure() {
    let pattern = vec![true, true, false, true, true];
    async fn rest_never_ran(_: &Engine, key: &str) {
        assert_eq!((ran(key, 3), ran(key, 4)), (0, 0), "{key}");
    }
    crash_at_every_commit(
        "fail-fast-map",
        |key| fail_fast_map(key, pattern.clone()),
        rest_never_ran,
    )
    .await;
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine
        .start("one", fail_fast_map("one".into(), pattern.clone()))
        .await
        .unwrap();
    let out = run.result().await.unwrap();
    assert!(
        matches!(&out, Err(e) if e.starts_with("1 of 5 failed") && e.contains("item 2 failed")),
        "{out:?}"
    );
    let run = engine
        .start("ok", fail_fast_map("ok".into(), vec![true, true]))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), Ok(vec![0, 10]));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_rate_is_exact() {
    let engine = builder().open_in_memory().await.unwrap();
    // 0.29 of 100 tolerates 29 failures exactly, not 28.
    let run = engine
        .start("29", failure_rate("29".into(), 100, 29, 0.29))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), (Completion::AllDone, 29));
    let run = engine
        .start("30", failure_rate("30".into(), 100, 30, 0.29))
        .await
        .unwrap();
    let (completion, failed) = run.result().await.unwrap();
    assert_eq!(completion, Completion::FailureToleranceExceeded);
    assert!(failed >= 30, "{failed}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_of_different_types_complete_at_a_minimum_and_are_cancelled_durably() {
    async fn cancelled_child(engine: &Engine, key: &str) {
        // The cancellation is committed with the batch's end; the child run ends soon after.
        let mut status = engine.status("run/0.1").await.unwrap();
        for _ in 0..500 {
            if status == RunStatus::Cancelled {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            status = engine.status("run/0.1").await.unwrap();
        }
        assert_eq!(status, RunStatus::Cancelled, "{key}");
        // At least once: a crash may cut an attempt short, never more than once here.
        assert!(ran(key, 0) <= 2, "{key}: ran {} times", ran(key, 0));
    }
    crash_at_every_commit("mixed-min", mixed_min_successes, cancelled_child).await;
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine
        .start("one", mixed_min_successes("one".into()))
        .await
        .unwrap();
    let batch = run.result().await.unwrap();
    assert_eq!(batch.completion, Completion::MinSuccessesReached);
    assert_eq!(
        batch.branches,
        (
            BranchStatus::Succeeded(Ok(0)),
            BranchStatus::Cancelled,
            BranchStatus::Cancelled,
            BranchStatus::Succeeded(Ok(30)),
        )
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_of_different_types_fail_fast_and_the_rest_never_start() {
    async fn child_never_started(engine: &Engine, key: &str) {
        let child = engine.status("run/0.2").await;
        assert!(child.is_err(), "{key}: the child run exists: {child:?}");
    }
    crash_at_every_commit("mixed-fail-fast", mixed_fail_fast, child_never_started).await;
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine.start("one", mixed_fail_fast("one".into())).await;
    let batch = run.unwrap().result().await.unwrap();
    assert_eq!(batch.completion, Completion::FailureToleranceExceeded);
    assert!(batch.branches.0.is_failed(), "{batch:?}");
    assert_eq!(batch.branches.1, BranchStatus::Cancelled);
    assert_eq!(batch.branches.2, BranchStatus::NotStarted);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_success_wins_and_all_failures_are_reported() {
    crash_at_every_commit(
        "first-ok",
        |key| first_success(key, vec![false, false, true]),
        no_check,
    )
    .await;
    crash_at_every_commit(
        "first-ok-none",
        |key| first_success(key, vec![false, false]),
        no_check,
    )
    .await;
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine
        .start("one", first_success("one".into(), vec![false, false, true]))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), Ok((2, 20)));
    let run = engine
        .start("none", first_success("none".into(), vec![false, false]))
        .await
        .unwrap();
    let all_failed = Err(vec![
        "item 0 failed".to_string(),
        "item 1 failed".to_string(),
    ]);
    assert_eq!(run.result().await.unwrap(), all_failed);
    // A race would have taken the first to finish, an `Err`.
    engine.shutdown().await;

    let mut driver = Driver::new();
    let pattern = vec![false, true, true];
    let driven = driver
        .run(
            first_success("driver-first-ok".into(), pattern.clone()),
            Restore::EveryStep,
        )
        .await;
    assert_eq!(driven.unwrap(), Ok((1, 10)));
    assert_eq!(
        ran("driver-first-ok", 2),
        0,
        "the driver stops at the first success"
    );
    assert_eq!(
        first_success("plain-first-ok".into(), vec![false, false]).await,
        all_failed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_runs_at_most_its_limit_at_once() {
    crash_at_every_commit("limited-join", limited_join, no_check).await;
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine
        .start("one", limited_join("one".into()))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), (1, 2, 3, 4, 5));
    assert_eq!(GAUGE.lock().unwrap()["one"], (0, 2));
    engine.shutdown().await;
    let plain = limited_join("plain".into()).await;
    assert_eq!(plain, (1, 2, 3, 4, 5));
    assert_eq!(GAUGE.lock().unwrap()["plain"], (0, 2));
    let driven = Driver::new()
        .run(limited_join("driver".into()), Restore::EveryStep)
        .await;
    assert_eq!(driven.unwrap(), (1, 2, 3, 4, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_journaled_and_shown_in_the_history() {
    async fn names_in_history(engine: &Engine, key: &str) {
        let events = history(engine, "run").await;
        let scheduled: Vec<(u64, &str)> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::StepScheduled { step, name, .. } => Some((*step, name.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            scheduled,
            [
                (0, "cool-down"),
                (1, "join(2)"),
                (2, "map(2)"),
                (3, "sub-run")
            ],
            "{key}"
        );
        let branches: Vec<(u64, u32, &str)> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::BranchNamed { step, branch, name } => {
                    Some((*step, *branch, name.as_str()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            branches,
            [(1, 0, "first"), (2, 0, "item-2"), (2, 1, "item-3")],
            "{key}"
        );
        // A named child run keeps its run ID.
        assert_eq!(engine.status("run/3").await.unwrap(), RunStatus::Completed);
    }
    crash_at_every_commit("names", named_steps, names_in_history).await;
    let mut driver = Driver::new();
    let driven = driver.run(named_locally("driver-names".into()), Restore::EveryStep);
    assert_eq!(driven.await.unwrap(), Ok(30));
    let steps: Vec<String> = driver.steps.iter().map(|s| s.request.label()).collect();
    assert_eq!(steps, ["cool-down", "first", "batch(1)"]);
    assert_eq!(named_steps("plain".into()).await, Ok(10 + 20 + 30 + 40));
}
