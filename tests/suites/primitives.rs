// The primitives suite, run on each store: included by `tests/primitives.rs` (journal
// files) and `tests/primitives_postgres.rs` (PostgreSQL), each of which defines the
// `store` module it opens journals through.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flow::{task, workflow, CallbackError, Either, Engine, EventKind, FlowError, RunStatus};
use flow::{MapFailed, TaskContext, TaskFailure, WaitForCallback, Workflow};

#[path = "../support/sealed.rs"]
mod sealed;

use store::{temp_db, OpenJournal};

fn builder() -> flow::EngineBuilder {
    Engine::builder()
        .register::<square_all>()
        .register::<limited>()
        .register::<crashy_map>()
        .register::<tolerant>()
        .register::<tolerant_counts>()
        .register::<child_map>()
        .register::<square_child>()
        .register::<approval>()
        .register::<race_task_timer>()
        .register::<race_signal_timer>()
        .register::<race_children>()
        .register::<slow_child>()
        .register::<long_sleep>()
        .register::<compensating>()
        .register::<parent_of_slow>()
        .register::<poller>()
        .register::<big_map>()
        .register::<empty_and_sleeps>()
        .register::<slow_children_map>()
        .register::<callback_or_timer>()
        .register::<signals_in_a_map>()
        .register::<callback_on_a_sleep>()
        .register::<approval_with_heartbeat>()
}

/// Waits until the engine halted after its `k`-th commit (`reached` counts them), or
/// until run `id` ended first: a run can take fewer commits than the reference run, when
/// items or branches that finish together are judged in one transition.
async fn wait_for_halt(engine: &Engine, id: &str, reached: &AtomicU64, k: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while reached.load(Ordering::SeqCst) < k && Instant::now() < deadline {
        if let Ok(status) = engine.status(id).await {
            if !matches!(status, RunStatus::Running | RunStatus::Waiting) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Counts task executions per (test, item).
static EXECUTIONS: Mutex<BTreeMap<(String, u64), u32>> = Mutex::new(BTreeMap::new());

fn executions(test: &str) -> BTreeMap<u64, u32> {
    EXECUTIONS
        .lock()
        .unwrap()
        .iter()
        .filter(|((t, _), _)| t == test)
        .map(|((_, i), n)| (*i, *n))
        .collect()
}

#[task]
async fn square(test: String, x: u64) -> u64 {
    *EXECUTIONS.lock().unwrap().entry((test, x)).or_default() += 1;
    tokio::time::sleep(Duration::from_millis(x % 5)).await;
    x * x
}

#[workflow]
async fn square_all(test: String, n: u64) -> Vec<u64> {
    let squares = flow::map(0..n, 4, |x| square(test.clone(), x)).await;
    squares
}

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MAX_RUNNING: AtomicUsize = AtomicUsize::new(0);

#[task]
async fn gauge(x: u64) -> u64 {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    MAX_RUNNING.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    x + 1
}

#[workflow]
async fn limited(n: u64) -> Vec<u64> {
    let out = flow::map(0..n, 3, gauge).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn map_keeps_order_and_the_concurrency_limit() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine.start("limited", limited(40)).await.unwrap();
    let out = run.result().await.unwrap();
    assert_eq!(out, (1..=40).collect::<Vec<u64>>());
    let max = MAX_RUNNING.load(Ordering::SeqCst);
    assert!(max <= 3, "at most 3 items ran at once, saw {max}");
    assert!(max >= 2, "items ran concurrently, saw {max}");
    let history = run.history().await.unwrap();
    let items = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::MapItemCompleted { .. }))
        .count();
    assert_eq!(items, 40);
    assert!(history.iter().any(|e| matches!(
        &e.kind,
        EventKind::StepScheduled { name, .. } if name == "map(40)"
    )));

    // Plain (non-engine) use gives the same output.
    assert_eq!(limited(40).await, out);
    engine.shutdown().await;
}

#[workflow]
async fn crashy_map(test: String, n: u64) -> Vec<u64> {
    let squares = flow::map(0..n, 4, |x| square(test.clone(), x)).await;
    let total = flow::map(squares, 2, |x| square(test.clone(), x + 1000)).await;
    total
}

/// Map crash-safety: stop after each of several commits, reopen, finish. Finished items
/// are never rerun: an item runs again only if it was in flight at the crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn map_resumes_after_a_crash_without_rerunning_finished_items() {
    let n = 12u64;
    let expected: Vec<u64> = (0..n).map(|x| (x * x + 1000) * (x * x + 1000)).collect();
    // Reference: count the commits of an uninterrupted run.
    let commits = Arc::new(AtomicU64::new(0));
    let counter = commits.clone();
    let path = temp_db("crashy-map-reference");
    let engine = builder()
        .on_commit(move |t| counter.store(t, Ordering::SeqCst))
        .open_journal(&path)
        .await
        .unwrap();
    let run = engine
        .start("run", crashy_map("ref".into(), n))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), expected);
    engine.shutdown().await;
    let total = commits.load(Ordering::SeqCst);
    assert!(total > 4, "a map commits as items finish ({total} commits)");

    for k in 1..total {
        let test = format!("crash-{k}");
        let path = temp_db(&test);
        let reached = Arc::new(AtomicU64::new(0));
        let counter = reached.clone();
        let engine = builder()
            .halt_after_commits(k)
            .on_commit(move |t| counter.store(t, Ordering::SeqCst))
            .open_journal(&path)
            .await
            .unwrap();
        let _ = engine.start("run", crashy_map(test.clone(), n)).await;
        wait_for_halt(&engine, "run", &reached, k).await;
        engine.shutdown().await;
        // Which items were committed at the crash: read with an engine that cannot drive
        // the run (its workflow is not registered, so the run waits untouched).
        let reader = Engine::builder().open_journal(&path).await.unwrap();
        let committed: Vec<u64> = reader
            .history("run")
            .await
            .unwrap()
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::MapItemCompleted { step: 0, item, .. } => Some(item as u64),
                EventKind::MapItemCompleted { item, .. } => Some(item as u64 + 1000),
                _ => None,
            })
            .collect();
        reader.shutdown().await;
        let done_before = executions(&test);

        let engine = builder().open_journal(&path).await.unwrap();
        let handle = engine.handle::<crashy_map>("run").unwrap();
        let out = tokio::time::timeout(Duration::from_secs(20), handle.result())
            .await
            .unwrap_or_else(|_| panic!("crash at {k}: run did not finish"))
            .unwrap();
        assert_eq!(out, expected, "crash at {k}");
        let history = engine.history("run").await.unwrap();
        let mut completed: BTreeMap<(u64, u32), usize> = BTreeMap::new();
        for e in &history {
            if let EventKind::MapItemCompleted { step, item, .. } = e.kind {
                *completed.entry((step, item)).or_default() += 1;
            }
        }
        assert_eq!(completed.len(), 2 * n as usize, "crash at {k}");
        assert!(
            completed.values().all(|c| *c == 1),
            "crash at {k}: every item committed once"
        );
        // Items committed before the crash never ran again; the others ran at most once
        // more than before (those in flight at the crash are run again).
        let after = executions(&test);
        for (item, runs) in &after {
            let before = done_before.get(item).copied().unwrap_or(0);
            let key = *item;
            let squared_key = committed.iter().any(|c| {
                // Step 1 items are keyed by their input (x*x + 1000), step 0 by x.
                (*c < 1000 && *c == key) || (*c >= 1000 && (c - 1000) * (c - 1000) + 1000 == key)
            });
            if squared_key {
                assert_eq!(*runs, before, "crash at {k}: committed item {item} reran");
            }
            assert!(
                *runs >= 1 && *runs <= before + 1,
                "crash at {k}: item {item} ran {runs} times"
            );
        }
        engine.shutdown().await;
        store::remove(&path);
    }
}

#[task(retry(max_attempts = 2, initial = "1ms"))]
async fn flaky(x: u64, bad: Vec<u64>) -> Result<u64, String> {
    if bad.contains(&x) {
        Err(format!("item {x} is bad"))
    } else {
        Ok(x * 10)
    }
}

#[task]
async fn slow_ok(x: u64) -> Result<u64, String> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(x)
}

#[workflow]
async fn tolerant(bad: Vec<u64>, allowed: u32) -> Result<Vec<Result<u64, String>>, MapFailed> {
    let out = flow::map(0..10u64, 3, |x| flaky(x, bad.clone()))
        .tolerate_failures(allowed)
        .await;
    out
}

/// [`tolerant`] without `MapFailed::first_error`: which failure the engine judges first
/// depends on scheduling, so runs compared across crashes compare the rest.
#[workflow]
async fn tolerant_counts(
    bad: Vec<u64>,
    allowed: u32,
) -> Result<Vec<Result<u64, String>>, (u32, u32, u32)> {
    let out = flow::map(0..10u64, 3, |x| flaky(x, bad.clone()))
        .tolerate_failures(allowed)
        .await;
    out.map_err(|e| (e.failed, e.total, e.tolerated))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tolerated_failures_are_values_and_too_many_fail_the_map() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine.start("ok", tolerant(vec![2, 5], 2)).await.unwrap();
    let out = run.result().await.unwrap().unwrap();
    assert_eq!(out[2], Err("item 2 is bad".into()));
    assert_eq!(out[3], Ok(30));
    let failed_items = run
        .history()
        .await
        .unwrap()
        .iter()
        .filter(|e| {
            matches!(
                &e.kind,
                EventKind::MapItemCompleted {
                    failure: Some(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(failed_items, 2);

    let run = engine
        .start("too-many", tolerant(vec![1, 2, 3], 2))
        .await
        .unwrap();
    let err = run.result().await.unwrap().unwrap_err();
    assert_eq!(err.failed, 3);
    assert_eq!(err.tolerated, 2);
    assert_eq!(err.total, 10);
    assert!(err.first_error.contains("is bad"), "{err}");
    let history = run.history().await.unwrap();
    assert!(history.iter().any(|e| matches!(
        e.kind,
        EventKind::MapFailed {
            failed: 3,
            tolerated: 2,
            ..
        }
    )));
    // Each failing item was retried once (max_attempts = 2) before counting as failed.
    let attempts = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::AttemptFailed { .. }))
        .count();
    assert!(attempts >= 6, "{attempts} failed attempts");
    engine.shutdown().await;
}

#[test]
fn tolerance_rate_rounds_down_and_the_smaller_limit_wins() {
    let t = flow::Tolerance {
        max_failures: Some(5),
        max_failure_rate: Some(0.1),
    };
    assert_eq!(t.allowed(100), 5);
    assert_eq!(t.allowed(30), 3);
    assert_eq!(t.allowed(9), 0);
}

#[workflow]
async fn square_child(x: u64) -> u64 {
    let out = square("child-map".to_string(), x).await;
    out
}

#[workflow]
async fn child_map(n: u64) -> Vec<u64> {
    let out = flow::map(0..n, 2, square_child).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_over_child_workflows() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine.start("parent", child_map(5)).await.unwrap();
    assert_eq!(run.result().await.unwrap(), vec![0, 1, 4, 9, 16]);
    let runs = engine.list().await.unwrap();
    let children: Vec<_> = runs
        .iter()
        .filter(|r| r.run_id.starts_with("parent/"))
        .collect();
    assert_eq!(children.len(), 5);
    assert!(children.iter().all(|r| r.status == RunStatus::Completed));
    engine.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Callback tokens.

/// Tokens handed out by `send_for_approval`, by run ID.
static TOKENS: Mutex<BTreeMap<String, Vec<String>>> = Mutex::new(BTreeMap::new());

#[task]
async fn send_for_approval(order: u64) -> u64 {
    let ctx = TaskContext::current().expect("runs in the engine");
    let token = ctx
        .callback_token()
        .expect("a callback task has a token")
        .to_string();
    TOKENS
        .lock()
        .unwrap()
        .entry(ctx.run_id.clone())
        .or_default()
        .push(token);
    order
}

#[workflow]
async fn approval(order: u64, timeout_ms: u64) -> Result<String, CallbackError> {
    let answer = send_for_approval(order)
        .wait_for_callback::<String>(Duration::from_millis(timeout_ms))
        .await;
    answer
}

async fn token_of(run: &str) -> String {
    for _ in 0..2000 {
        if let Some(token) = TOKENS.lock().unwrap().get(run).and_then(|t| t.last()) {
            return token.clone();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("no token for {run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_completes_once_and_bad_tokens_are_refused() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine.start("cb-ok", approval(7, 60_000)).await.unwrap();
    let token = token_of("cb-ok").await;
    assert!(token.len() >= 32 + 7, "128 bits, hex: {token}");
    for _ in 0..500 {
        if run.status().await.unwrap() == RunStatus::Waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The task returned; the run waits (out of memory) for the token.
    assert_eq!(run.status().await.unwrap(), RunStatus::Waiting);
    engine
        .complete(&token, Ok("approved".to_string()))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), Ok("approved".to_string()));
    let history = run.history().await.unwrap();
    assert!(history
        .iter()
        .any(|e| matches!(e.kind, EventKind::CallbackWaiting { .. })));
    assert!(history
        .iter()
        .any(|e| matches!(e.kind, EventKind::CallbackCompleted { ok: true, .. })));

    let used = engine.complete(&token, Ok(1u8)).await.unwrap_err();
    assert!(
        matches!(used, FlowError::InvalidCallbackToken { .. }),
        "{used}"
    );
    assert!(used.to_string().contains("already"), "{used}");
    let unknown = engine
        .complete("flowcb_00000000000000000000000000000000", Ok(1u8))
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, FlowError::InvalidCallbackToken { .. }),
        "{unknown}"
    );

    let run = engine.start("cb-no", approval(8, 60_000)).await.unwrap();
    let token = token_of("cb-no").await;
    engine
        .complete::<String>(&token, Err("too expensive".into()))
        .await
        .unwrap();
    assert_eq!(
        run.result().await.unwrap(),
        Err(CallbackError::Rejected("too expensive".into()))
    );

    let run = engine.start("cb-late", approval(9, 80)).await.unwrap();
    let token = token_of("cb-late").await;
    assert_eq!(
        run.result().await.unwrap(),
        Err(CallbackError::TimedOut {
            after: Duration::from_millis(80)
        })
    );
    let late = engine
        .complete(&token, Ok("x".to_string()))
        .await
        .unwrap_err();
    assert!(
        matches!(late, FlowError::InvalidCallbackToken { .. }),
        "{late}"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_token_survives_a_restart() {
    let path = temp_db("callback-restart");
    let engine = builder().open_journal(&path).await.unwrap();
    engine
        .start("cb-restart", approval(1, 60_000))
        .await
        .unwrap();
    let token = token_of("cb-restart").await;
    // Let the task's success (CallbackWaiting) be committed, then stop.
    for _ in 0..500 {
        let h = engine.history("cb-restart").await.unwrap();
        if h.iter()
            .any(|e| matches!(e.kind, EventKind::CallbackWaiting { .. }))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    engine.shutdown().await;

    let engine = builder().open_journal(&path).await.unwrap();
    engine
        .complete(&token, Ok("after restart".to_string()))
        .await
        .unwrap();
    let run = engine.handle::<approval>("cb-restart").unwrap();
    assert_eq!(run.result().await.unwrap(), Ok("after restart".to_string()));
    // The task ran once: the token it handed out is the one that completed the step.
    assert_eq!(TOKENS.lock().unwrap()["cb-restart"].len(), 1);
    engine.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Races.

static LOSER_SAW_CANCEL: AtomicUsize = AtomicUsize::new(0);

#[task]
async fn stubborn(ms: u64) -> u64 {
    let ctx = TaskContext::current();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(ms) {
        if ctx.as_ref().is_some_and(|c| c.is_cancelled()) {
            LOSER_SAW_CANCEL.fetch_add(1, Ordering::SeqCst);
            return 0;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    ms
}

#[workflow]
async fn race_task_timer(task_ms: u64, timer_ms: u64) -> String {
    match flow::select!(
        stubborn(task_ms),
        flow::sleep(Duration::from_millis(timer_ms))
    )
    .await
    {
        Either::Left(v) => format!("task {v}"),
        Either::Right(()) => "timer".to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_first_wins_and_the_losing_task_is_told() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine
        .start("slow-task", race_task_timer(5_000, 30))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), "timer");
    for _ in 0..500 {
        if LOSER_SAW_CANCEL.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        LOSER_SAW_CANCEL.load(Ordering::SeqCst),
        1,
        "loser saw is_cancelled"
    );
    let history = run.history().await.unwrap();
    assert!(history
        .iter()
        .any(|e| matches!(e.kind, EventKind::RaceWon { winner: 1, .. })));

    let run = engine
        .start("fast-task", race_task_timer(10, 60_000))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), "task 10");
    // The losing timer was dropped: nothing is left in the journal for the run.
    assert_eq!(run.status().await.unwrap(), RunStatus::Completed);
    engine.shutdown().await;
}

#[workflow]
async fn race_signal_timer(timer_ms: u64) -> Option<String> {
    let first = flow::select!(
        flow::signal::<String>("go"),
        flow::sleep(Duration::from_millis(timer_ms))
    )
    .await;
    match first {
        Either::Left(v) => Some(v),
        Either::Right(()) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_signal_against_timer_survives_a_restart() {
    let path = temp_db("race-restart");
    let engine = builder().open_journal(&path).await.unwrap();
    engine
        .start("sig", race_signal_timer(60_000))
        .await
        .unwrap();
    engine.start("timer", race_signal_timer(150)).await.unwrap();
    engine.shutdown().await;

    let engine = builder().open_journal(&path).await.unwrap();
    engine
        .signal("sig", "go", &"now".to_string())
        .await
        .unwrap();
    let sig = engine.handle::<race_signal_timer>("sig").unwrap();
    assert_eq!(sig.result().await.unwrap(), Some("now".into()));
    let timer = engine.handle::<race_signal_timer>("timer").unwrap();
    assert_eq!(timer.result().await.unwrap(), None);
    engine.shutdown().await;
}

#[workflow]
async fn slow_child(ms: u64) -> u64 {
    flow::sleep(Duration::from_millis(ms)).await;
    ms
}

#[workflow]
async fn race_children(a: u64, b: u64) -> (usize, u64) {
    let winner = flow::race(vec![slow_child(a), slow_child(b)]).await;
    winner
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_cancels_losing_child_runs() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine
        .start("kids", race_children(60_000, 20))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), (1, 20));
    let loser = engine.handle::<slow_child>("kids/0.0").unwrap();
    for _ in 0..500 {
        if loser.status().await.unwrap() == RunStatus::Cancelled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(loser.status().await.unwrap(), RunStatus::Cancelled);
    engine.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Run-level timeout and cancellation of child runs.

#[workflow]
async fn long_sleep(ms: u64) -> u64 {
    flow::sleep(Duration::from_millis(ms)).await;
    ms
}

#[task]
async fn wait_long(ms: u64) -> Result<u64, TaskFailure> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

#[task]
async fn undo(ms: u64) -> u64 {
    ms + 1
}

#[workflow]
async fn compensating(ms: u64) -> Result<u64, String> {
    match wait_long(ms).await {
        Ok(v) => Ok(v),
        Err(TaskFailure::Cancelled { .. }) => {
            let undone = undo(ms).await;
            Err(format!("compensated {undone}"))
        }
        Err(other) => Err(other.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_timeout_cancels_and_survives_a_restart() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine
        .start_with_timeout("t", long_sleep(60_000), Duration::from_millis(50))
        .await
        .unwrap();
    let err = run.result().await.unwrap_err();
    assert_eq!(run.status().await.unwrap(), RunStatus::Cancelled, "{err}");
    let history = run.history().await.unwrap();
    assert!(history
        .iter()
        .any(|e| matches!(e.kind, EventKind::RunTimedOut { .. })));

    // The workflow may compensate, as with `engine.cancel`.
    let run = engine
        .start_with_timeout("c", compensating(60_000), Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(
        run.result().await.unwrap(),
        Err("compensated 60001".to_string())
    );
    // A run that finishes in time is not affected.
    let run = engine
        .start_with_timeout("quick", long_sleep(10), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), 10);
    engine.shutdown().await;

    // Durable: the deadline passes while no engine runs.
    let path = temp_db("run-timeout");
    let engine = builder().open_journal(&path).await.unwrap();
    engine
        .start_with_timeout("d", long_sleep(60_000), Duration::from_millis(100))
        .await
        .unwrap();
    engine.shutdown().await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let engine = builder().open_journal(&path).await.unwrap();
    let run = engine.handle::<long_sleep>("d").unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), run.result())
        .await
        .expect("timed out run settles after reopen");
    assert_eq!(run.status().await.unwrap(), RunStatus::Cancelled);
    engine.shutdown().await;
}

#[workflow]
async fn parent_of_slow(ms: u64) -> u64 {
    let out = slow_child(ms).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_parent_cancels_its_child() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine.start("p", parent_of_slow(60_000)).await.unwrap();
    let child = engine.handle::<slow_child>("p/0").unwrap();
    for _ in 0..500 {
        if child.status().await.unwrap() == RunStatus::Waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    engine.cancel("p").await.unwrap();
    let _ = run.result().await;
    assert_eq!(run.status().await.unwrap(), RunStatus::Cancelled);
    for _ in 0..500 {
        if child.status().await.unwrap() == RunStatus::Cancelled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(child.status().await.unwrap(), RunStatus::Cancelled);
    engine.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Continue-as-new.

#[task]
async fn poll_once(round: u64) -> u64 {
    round * 2
}

#[workflow]
async fn poller(round: u64, total: u64) -> u64 {
    let seen = poll_once(round).await;
    if round + 1 >= total {
        return seen;
    }
    flow::continue_as_new((round + 1, total)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_as_new_keeps_the_history_short() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine.start("poll", poller(0, 50)).await.unwrap();
    assert_eq!(run.result().await.unwrap(), 98);
    let history = run.history().await.unwrap();
    assert!(history.len() < 10, "history was dropped: {history:#?}");
    assert!(matches!(
        history[0].kind,
        EventKind::ContinuedAsNew {
            steps_before: 49,
            ..
        }
    ));
    // Idempotent start still compares the original input.
    engine.start("poll", poller(0, 50)).await.unwrap();
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_as_new_resumes_after_a_crash_at_every_commit() {
    let total = {
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        let engine = builder()
            .on_commit(move |t| counter.store(t, Ordering::SeqCst))
            .open_in_memory()
            .await
            .unwrap();
        let run = engine.start("run", poller(0, 4)).await.unwrap();
        assert_eq!(run.result().await.unwrap(), 6);
        engine.shutdown().await;
        commits.load(Ordering::SeqCst)
    };
    for k in 1..total {
        let path = temp_db(&format!("can-{k}"));
        let reached = Arc::new(AtomicU64::new(0));
        let counter = reached.clone();
        let engine = builder()
            .halt_after_commits(k)
            .on_commit(move |t| counter.store(t, Ordering::SeqCst))
            .open_journal(&path)
            .await
            .unwrap();
        let _ = engine.start("run", poller(0, 4)).await;
        wait_for_halt(&engine, "run", &reached, k).await;
        engine.shutdown().await;
        let engine = builder().open_journal(&path).await.unwrap();
        let run = engine.handle::<poller>("run").unwrap();
        let out = tokio::time::timeout(Duration::from_secs(10), run.result())
            .await
            .unwrap_or_else(|_| panic!("crash at {k}: did not finish"))
            .unwrap();
        assert_eq!(out, 6, "crash at {k}");
        engine.shutdown().await;
        store::remove(&path);
    }
}

// ---------------------------------------------------------------------------------------
// Scale: 10,000 items in one run.

static INC_RUNS: AtomicU64 = AtomicU64::new(0);

#[task]
async fn inc(x: u32) -> u32 {
    INC_RUNS.fetch_add(1, Ordering::SeqCst);
    x + 1
}

#[workflow]
async fn big_map(n: u32) -> u64 {
    let out = flow::map(0..n, 64, inc).await;
    out.iter().map(|x| *x as u64).sum()
}

/// 10,000 items in one run, stopped half-way (as by a crash) and resumed: the result is
/// right, and only items in flight at the crash (at most 64) ran twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn map_of_ten_thousand_items_survives_a_crash() {
    let n = 10_000u32;
    let path = temp_db("big-map");
    let commits = Arc::new(AtomicU64::new(0));
    let counter = commits.clone();
    let engine = builder()
        .halt_after_commits(60)
        .on_commit(move |t| counter.store(t, Ordering::SeqCst))
        .open_journal(&path)
        .await
        .unwrap();
    let started = Instant::now();
    let _ = engine.start("big", big_map(n)).await;
    for _ in 0..20_000 {
        if commits.load(Ordering::SeqCst) >= 60 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    engine.shutdown().await;
    let before_crash = INC_RUNS.load(Ordering::SeqCst);
    assert!(before_crash < n as u64, "the crash came mid-map");

    let counter = commits.clone();
    let engine = builder()
        .on_commit(move |t| counter.store(t, Ordering::SeqCst))
        .open_journal(&path)
        .await
        .unwrap();
    let run = engine.handle::<big_map>("big").unwrap();
    let sum = run.result().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(sum, (1..=n as u64).sum::<u64>());
    let runs = INC_RUNS.load(Ordering::SeqCst);
    assert!(
        runs <= n as u64 + 64,
        "{runs} executions: only the items in flight at the crash ran again"
    );
    let history = engine.history("big").await.unwrap();
    let items = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::MapItemCompleted { .. }))
        .count();
    assert_eq!(items, n as usize, "each item committed once");
    engine.shutdown().await;
    let bytes = store::size(&path);
    eprintln!(
        "map of 10,000 items with a crash after commit 60: {elapsed:?}, {runs} executions \
         ({before_crash} before the crash), {} commits after it, journal {bytes} bytes",
        commits.load(Ordering::SeqCst)
    );
    store::remove(&path);
}

// ---------------------------------------------------------------------------------------
// Edge cases.

#[workflow]
async fn empty_and_sleeps(naps: Vec<u64>) -> (usize, usize) {
    let none = flow::map(Vec::<u64>::new(), 4, square_child).await;
    let slept = flow::map(naps, 2, |ms| flow::sleep(Duration::from_millis(ms))).await;
    (none.len(), slept.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_maps_and_maps_of_sleeps() {
    let engine = builder().open_in_memory().await.unwrap();
    let started = Instant::now();
    let run = engine
        .start("naps", empty_and_sleeps(vec![40, 40, 40, 40]))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), (0, 4));
    // A sleep's deadline is fixed when the map is built, so waiting for room does not
    // push it back.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(35), "{elapsed:?}");
    engine.shutdown().await;
}

#[workflow]
async fn slow_children_map(n: u64) -> Vec<u64> {
    let out = flow::map(0..n, 3, |_| slow_child(60_000)).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_map_cancels_its_open_child_runs() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine.start("m", slow_children_map(10)).await.unwrap();
    for _ in 0..500 {
        if engine.list().await.unwrap().len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    engine.cancel("m").await.unwrap();
    let _ = run.result().await;
    assert_eq!(run.status().await.unwrap(), RunStatus::Cancelled);
    for _ in 0..500 {
        let runs = engine.list().await.unwrap();
        if runs.iter().all(|r| r.status == RunStatus::Cancelled) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let runs = engine.list().await.unwrap();
    assert_eq!(runs.len(), 4, "only 3 children were started (the limit)");
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Cancelled),
        "{runs:?}"
    );
    engine.shutdown().await;
}

#[workflow]
async fn callback_or_timer(ms: u64) -> Option<String> {
    let first = flow::select!(
        send_for_approval(1).wait_for_callback::<String>(Duration::from_secs(60)),
        flow::sleep(Duration::from_millis(ms))
    )
    .await;
    match first {
        Either::Left(answer) => answer.ok(),
        Either::Right(()) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_that_loses_a_race_refuses_its_token() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine
        .start("cb-race", callback_or_timer(50))
        .await
        .unwrap();
    let token = token_of("cb-race").await;
    assert_eq!(run.result().await.unwrap(), None);
    let err = engine
        .complete(&token, Ok("late".to_string()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, FlowError::InvalidCallbackToken { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("over"), "{err}");

    let run = engine
        .start("cb-race-win", callback_or_timer(60_000))
        .await
        .unwrap();
    let token = token_of("cb-race-win").await;
    engine
        .complete(&token, Ok("yes".to_string()))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), Some("yes".into()));
    engine.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Crash at every commit: the engine freezes right after its k-th durable commit, the file
// is reopened by a new engine, `poke` plays the outside world, and the run must end as an
// uninterrupted run does.

type Poke = fn(Engine, String) -> futures_lite::BoxedPoke;

mod futures_lite {
    /// What a `poke` returns.
    pub type BoxedPoke = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

async fn crash_everywhere<W>(
    name: &str,
    make: impl Fn() -> W,
    timeout: Option<Duration>,
    poke: Poke,
) -> Vec<<W as Workflow>::Output>
where
    W: Workflow,
    <W as Workflow>::Output: PartialEq + std::fmt::Debug,
{
    async fn start<W: Workflow>(
        engine: &Engine,
        id: &str,
        call: W,
        timeout: Option<Duration>,
    ) -> Result<flow::RunHandle<W>, FlowError> {
        match timeout {
            Some(t) => engine.start_with_timeout(id, call, t).await,
            None => engine.start(id, call).await,
        }
    }
    let commits = Arc::new(AtomicU64::new(0));
    let counter = commits.clone();
    let engine = builder()
        .on_commit(move |t| counter.store(t, Ordering::SeqCst))
        .open_in_memory()
        .await
        .unwrap();
    let id = format!("{name}-reference");
    let run = start(&engine, &id, make(), timeout).await.unwrap();
    poke(engine.clone(), id.clone()).await;
    let expected = run.result().await;
    engine.shutdown().await;
    let total = commits.load(Ordering::SeqCst);
    let mut outputs = Vec::new();
    for k in 1..total {
        let id = format!("{name}-{k}");
        let path = temp_db(&id);
        let reached = Arc::new(AtomicU64::new(0));
        let counter = reached.clone();
        let engine = builder()
            .halt_after_commits(k)
            .on_commit(move |t| counter.store(t, Ordering::SeqCst))
            .open_journal(&path)
            .await
            .unwrap();
        let _ = start(&engine, &id, make(), timeout).await;
        let poker = tokio::spawn(poke(engine.clone(), id.clone()));
        wait_for_halt(&engine, &id, &reached, k).await;
        poker.abort();
        engine.shutdown().await;

        let engine = builder().open_journal(&path).await.unwrap();
        let run = engine.handle::<W>(&id).unwrap();
        let poker = tokio::spawn(poke(engine.clone(), id.clone()));
        let Ok(out) = tokio::time::timeout(Duration::from_secs(20), run.result()).await else {
            let runs = engine.list().await.unwrap();
            let history = engine.history(&id).await.unwrap();
            panic!("{name}: crash at {k}: run did not finish: {runs:#?} {history:#?}");
        };
        poker.abort();
        match (&out, &expected) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{name}: crash at {k}"),
            (Err(_), Err(_)) => assert_eq!(
                run.status().await.unwrap(),
                RunStatus::Cancelled,
                "{name}: crash at {k}"
            ),
            _ => panic!("{name}: crash at {k}: {out:?} vs {expected:?}"),
        }
        let history = engine.history(&id).await.unwrap();
        let mut completed = BTreeMap::new();
        for e in &history {
            if let EventKind::StepCompleted { step, .. } = e.kind {
                *completed.entry(step).or_insert(0) += 1;
            }
        }
        assert!(
            completed.values().all(|n| *n == 1),
            "{name}: crash at {k}: a step completed twice"
        );
        let races = history
            .iter()
            .filter(|e| matches!(e.kind, EventKind::RaceWon { .. }))
            .count();
        assert!(races <= 1, "{name}: crash at {k}: race decided twice");
        if let Ok(out) = out {
            outputs.push(out);
        }
        engine.shutdown().await;
        store::remove(&path);
    }
    outputs
}

fn no_poke(_: Engine, _: String) -> futures_lite::BoxedPoke {
    Box::pin(async {})
}

/// Completes the run's callback token once it was handed out (again after a restart: a
/// completion that was committed before the crash is refused as used).
fn approve_token(engine: Engine, run: String) -> futures_lite::BoxedPoke {
    Box::pin(async move {
        let token = token_of(&run).await;
        match engine.complete(&token, Ok("ok".to_string())).await {
            Ok(()) => {}
            Err(FlowError::InvalidCallbackToken { reason }) => {
                assert!(reason.contains("already"), "{reason}")
            }
            // The engine was halted under it (the crash).
            Err(_) => {}
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_is_decided_once_across_crashes() {
    let outputs = crash_everywhere("race", || race_task_timer(5, 60_000), None, no_poke).await;
    assert!(outputs.iter().all(|o| o == "task 5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tolerant_map_across_crashes() {
    let outputs = crash_everywhere(
        "tolerant",
        || tolerant_counts(vec![1, 2, 3], 2),
        None,
        no_poke,
    )
    .await;
    assert!(outputs.iter().all(|o| *o == Err((3, 10, 2))), "{outputs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_across_crashes() {
    let outputs = crash_everywhere("cbx", || approval(5, 60_000), None, approve_token).await;
    assert!(!outputs.is_empty());
    for out in outputs {
        assert_eq!(out, Ok("ok".to_string()));
    }
    // Every attempt of a callback task sees the same token.
    for (run, tokens) in TOKENS.lock().unwrap().iter() {
        if run.starts_with("cbx-") {
            assert!(tokens.windows(2).all(|w| w[0] == w[1]), "{run}: {tokens:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_timeout_across_crashes() {
    crash_everywhere(
        "deadline",
        || long_sleep(60_000),
        Some(Duration::from_millis(100)),
        no_poke,
    )
    .await;
}

#[workflow]
async fn signals_in_a_map(names: Vec<String>) -> Vec<u32> {
    let out = flow::map(names, 2, |n| flow::signal::<u32>(&n)).await;
    out
}

#[workflow]
async fn callback_on_a_sleep(ms: u64) -> Result<u32, CallbackError> {
    let out = flow::sleep(Duration::from_millis(ms))
        .wait_for_callback::<u32>(Duration::from_secs(1))
        .await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_map_items_and_callbacks_fault_with_a_clear_error() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine
        .start("sig-map", signals_in_a_map(vec!["a".into()]))
        .await
        .unwrap();
    match run.status().await.unwrap() {
        RunStatus::Faulted { error } => assert!(
            error.contains("a map item must be a task call, a child workflow or a sleep"),
            "{error}"
        ),
        other => panic!("{other:?}"),
    }
    let run = engine
        .start("cb-sleep", callback_on_a_sleep(5))
        .await
        .unwrap();
    match run.status().await.unwrap() {
        RunStatus::Faulted { error } => {
            assert!(error.contains("needs a #[task] call"), "{error}")
        }
        other => panic!("{other:?}"),
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_races_and_child_maps_across_crashes() {
    let outputs = crash_everywhere("kids", || race_children(60_000, 20), None, no_poke).await;
    assert!(outputs.iter().all(|o| *o == (1, 20)));
    let outputs = crash_everywhere("kidmap", || child_map(4), None, no_poke).await;
    assert!(outputs.iter().all(|o| *o == vec![0, 1, 4, 9]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_as_new_with_a_run_timeout() {
    // The deadline stays with the run through its generations.
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine
        .start_with_timeout("poll-t", poller(0, 1_000_000), Duration::from_millis(100))
        .await
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), run.result())
        .await
        .expect("the run timed out");
    assert_eq!(run.status().await.unwrap(), RunStatus::Cancelled);
    let history = run.history().await.unwrap();
    assert!(matches!(history[0].kind, EventKind::ContinuedAsNew { .. }));
    assert!(history
        .iter()
        .any(|e| matches!(e.kind, EventKind::RunTimedOut { .. })));
    engine.shutdown().await;
}

#[workflow]
async fn approval_with_heartbeat(order: u64) -> Result<String, CallbackError> {
    let answer = send_for_approval(order)
        .wait_for_callback::<String>(Duration::from_secs(60))
        .heartbeat(Duration::from_millis(100))
        .await;
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_heartbeats_keep_it_alive_and_silence_times_it_out() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine
        .start("hb-alive", approval_with_heartbeat(1))
        .await
        .unwrap();
    let token = token_of("hb-alive").await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(400) {
        engine.heartbeat(&token).await.unwrap();
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    engine
        .complete(&token, Ok("alive".to_string()))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), Ok("alive".to_string()));
    let used = engine.heartbeat(&token).await.unwrap_err();
    assert!(
        matches!(used, FlowError::InvalidCallbackToken { .. }),
        "{used}"
    );

    let run = engine
        .start("hb-silent", approval_with_heartbeat(2))
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        run.result().await.unwrap(),
        Err(CallbackError::HeartbeatTimedOut {
            after: Duration::from_millis(100)
        })
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    engine.shutdown().await;
}

/// A finished run leaves no bookkeeping behind: no cancellation, nudge count, run
/// deadline, timer or `ACTIVE` mark, however it ended, and no pending step once it
/// completed (the commit skips deleting rows a run cannot have, so this checks that it
/// never skips one it has).
/// Read with redb directly, by the journal's table names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_runs_leave_no_bookkeeping_rows() {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};

    let path = temp_db("tidy");
    let engine = builder().open_journal(&path).await.unwrap();
    let plain = engine.start("plain", square_child(3)).await.unwrap();
    let in_time = engine
        .start_with_timeout("in-time", long_sleep(10), Duration::from_secs(60))
        .await
        .unwrap();
    let timed_out = engine
        .start_with_timeout("timed-out", long_sleep(60_000), Duration::from_millis(50))
        .await
        .unwrap();
    let compensated = engine
        .start_with_timeout(
            "compensated",
            compensating(60_000),
            Duration::from_millis(50),
        )
        .await
        .unwrap();
    let cancelled = engine.start("cancelled", long_sleep(60_000)).await.unwrap();
    let signalled = engine
        .start("signalled", race_signal_timer(60_000))
        .await
        .unwrap();
    engine.cancel("cancelled").await.unwrap();
    engine
        .signal("signalled", "go", &"now".to_string())
        .await
        .unwrap();
    assert_eq!(plain.result().await.unwrap(), 9);
    assert_eq!(in_time.result().await.unwrap(), 10);
    assert!(timed_out.result().await.is_err());
    assert_eq!(
        compensated.result().await.unwrap(),
        Err("compensated 60001".to_string())
    );
    assert!(cancelled.result().await.is_err());
    assert_eq!(signalled.result().await.unwrap(), Some("now".into()));
    engine.shutdown().await;

    let ids = [
        "plain",
        "in-time",
        "timed-out",
        "compensated",
        "cancelled",
        "signalled",
    ];
    let db = redb::Database::open(store::redb_file(&path)).unwrap();
    let txn = db.begin_read().unwrap();
    let mut left = Vec::new();
    for table in ["flow_cancels", "flow_active"] {
        let def: TableDefinition<&str, ()> = TableDefinition::new(table);
        for id in ids {
            if txn.open_table(def).unwrap().get(id).unwrap().is_some() {
                left.push(format!("{table}: {id}"));
            }
        }
    }
    for table in ["flow_nudges", "flow_run_deadlines"] {
        let def: TableDefinition<&str, sealed::Sealed<u64>> = TableDefinition::new(table);
        for id in ids {
            if txn.open_table(def).unwrap().get(id).unwrap().is_some() {
                left.push(format!("{table}: {id}"));
            }
        }
    }
    // A run that ends without completing keeps its pending step (what it was waiting
    // for when it ended); a completed one has none.
    let pending: TableDefinition<&str, sealed::Sealed<&[u8]>> =
        TableDefinition::new("flow_pending");
    for id in ["plain", "in-time", "compensated", "signalled"] {
        if txn.open_table(pending).unwrap().get(id).unwrap().is_some() {
            left.push(format!("flow_pending: {id}"));
        }
    }
    let timers: TableDefinition<(u64, &str), ()> = TableDefinition::new("flow_timers");
    for entry in txn.open_table(timers).unwrap().iter().unwrap() {
        let (key, _) = entry.unwrap();
        let (_, run) = key.value();
        if ids.contains(&run) {
            left.push(format!("flow_timers: {run}"));
        }
    }
    assert!(left.is_empty(), "rows left by finished runs: {left:?}");
}

/// `RunHandle::result` never misses a run's end, however the call races with it: before
/// the run's first step, while its driver is live (the waiter then skips reading and
/// relies on being told), after the driver left for a timer or a signal, after the end;
/// from the handle `start` returned and from a fresh one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_never_missed_whenever_they_are_asked_for() {
    const RUNS: u64 = 1_500;
    let engine = builder().open_in_memory().await.unwrap();
    let mut waits = tokio::task::JoinSet::new();
    for i in 0..RUNS {
        let engine = engine.clone();
        // Spread the calls over the runs' lifetimes (deterministically).
        let delay = Duration::from_micros((i * 7919) % 3000);
        waits.spawn(async move {
            let id = format!("r{i}");
            let right = match i % 3 {
                0 => {
                    let run = engine.start(id, square_child(i)).await.unwrap();
                    tokio::time::sleep(delay).await;
                    run.result().await.unwrap() == i * i
                }
                1 => {
                    engine.start(id.clone(), long_sleep(i % 4)).await.unwrap();
                    tokio::time::sleep(delay).await;
                    let run = engine.handle::<long_sleep>(&id).unwrap();
                    run.result().await.unwrap() == i % 4
                }
                _ => {
                    let run = engine
                        .start(id.clone(), race_signal_timer(60_000))
                        .await
                        .unwrap();
                    tokio::time::sleep(delay).await;
                    engine.signal(&id, "go", &"x".to_string()).await.unwrap();
                    run.result().await.unwrap() == Some("x".to_string())
                }
            };
            (i, right)
        });
    }
    let finished = tokio::time::timeout(Duration::from_secs(60), async {
        let mut finished = 0;
        while let Some(joined) = waits.join_next().await {
            let (i, right) = joined.unwrap();
            assert!(right, "run {i}: wrong result");
            finished += 1;
        }
        finished
    })
    .await
    .expect("a result() call missed its run's end");
    assert_eq!(finished, RUNS);
    engine.shutdown().await;
}
