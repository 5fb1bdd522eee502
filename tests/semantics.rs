//! Durable-execution semantics on a real engine: attempts interrupted by the engine's end
//! count as failed attempts (and at-most-once tasks are not run again), an attempt in
//! progress shows in the run's view, a map's concurrency limit must be at least 1, a child
//! workflow's `Err` is a failed item of a tolerant map, and waiting for a condition
//! survives a crash at every commit (the engine halted after its k-th commit, then the
//! journal reopened by a new engine).
//!
//! A "crash" here is the engine ending while an attempt runs (`Engine::shutdown` aborts
//! it without writing anything about it, as a kill would), then the journal reopened by a
//! new engine.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flow::{task, workflow, Engine, EventKind, RunStatus, TaskFailure, Workflow};

mod support;
use support::{halting, Commits, ScratchDir};

fn builder() -> flow::EngineBuilder {
    Engine::builder()
        .register::<poisoned>()
        .register::<pay>()
        .register::<survives_two_crashes>()
        .register::<held>()
        .register::<zero_limit>()
        .register::<checked_child>()
        .register::<tolerant_children>()
        .register::<wait_until_ready>()
}

#[task]
async fn double(x: u64) -> u64 {
    x * 2
}

#[workflow]
async fn zero_limit(n: u64) -> Vec<u64> {
    flow::map(0..n, 0, double).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_with_a_concurrency_limit_of_zero_is_refused_at_the_call() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine.start("zero", zero_limit(3)).await;
    let error = match run {
        Ok(run) => run.result().await.unwrap_err(),
        Err(e) => e,
    };
    let text = error.to_string();
    assert!(text.contains("max_in_flight of at least 1"), "{text}");
    engine.shutdown().await;
    // As plain code, the same refusal.
    let plain = std::panic::catch_unwind(|| flow::map(0..3u64, 0, double));
    assert!(plain.is_err());
}

#[workflow]
async fn checked_child(x: u64) -> Result<u64, String> {
    if x % 2 == 1 {
        return Err(format!("{x} is odd"));
    }
    Ok(double(x).await)
}

#[workflow]
async fn tolerant_children(n: u64, tolerated: u32) -> Result<Vec<Result<u64, String>>, String> {
    flow::map(0..n, 2, checked_child)
        .tolerate_failures(tolerated)
        .await
        .map_err(|e| format!("{} of {} failed", e.failed, e.total))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_returns_err_is_a_failed_map_item() {
    let engine = builder().open_in_memory().await.unwrap();
    let ok = engine.start("children-ok", tolerant_children(4, 2)).await;
    let ok = ok.unwrap().result().await.unwrap();
    assert_eq!(
        ok,
        Ok(vec![
            Ok(0),
            Err("1 is odd".into()),
            Ok(4),
            Err("3 is odd".into())
        ])
    );
    let failed = engine
        .start("children-too-many", tolerant_children(4, 1))
        .await;
    let failed = failed.unwrap().result().await.unwrap();
    assert!(
        matches!(&failed, Err(e) if e.starts_with("2 of 4")),
        "{failed:?}"
    );
    let history = engine.history("children-too-many").await.unwrap();
    assert!(
        history.iter().any(|e| matches!(&e.kind,
            EventKind::MapItemCompleted { failure: Some(f), .. } if f.contains("returned Err"))),
        "{history:#?}"
    );
    engine.shutdown().await;
    // As plain code, the same outcome.
    let plain = tolerant_children(4, 1).await;
    assert!(
        matches!(&plain, Err(e) if e.starts_with("2 of 4")),
        "{plain:?}"
    );
}

/// Runs `make(key)` on an engine halted after its `k`-th commit, then on a reopened
/// engine to its end, for every `k` an uninterrupted run commits; returns each key and
/// output (the uninterrupted run's first, under key `ref`).
async fn crash_at_every_commit<W: Workflow>(
    name: &str,
    make: impl Fn(String) -> W,
) -> Vec<(String, W::Output)> {
    let (reference, commits) = Commits::counting(builder());
    let engine = reference.open_in_memory().await.unwrap();
    let key = format!("{name}-ref");
    let run = engine.start("run", make(key.clone())).await.unwrap();
    let mut outputs = vec![(key, run.result().await.unwrap())];
    engine.shutdown().await;
    let total = commits.get();
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
        outputs.push((key, out));
        engine.shutdown().await;
        Engine::remove_journal(&path).unwrap();
    }
    outputs
}

/// Checks of each job so far.
static CHECKS: Mutex<BTreeMap<String, u32>> = Mutex::new(BTreeMap::new());

/// Whether the job is ready: from its `ready_at`-th check on.
#[task]
async fn is_ready(job: String, ready_at: u32) -> bool {
    let mut checks = CHECKS.lock().unwrap();
    let n = checks.entry(job).or_default();
    *n += 1;
    *n >= ready_at
}

/// Waiting for a condition: check, then sleep durably with a growing delay, at most
/// `max_checks` times.
#[workflow]
async fn wait_until_ready(job: String, ready_at: u32, max_checks: u32) -> Result<u32, String> {
    let mut delay = Duration::from_millis(1);
    let mut checks = 0;
    loop {
        checks += 1;
        if is_ready(job.clone(), ready_at).await {
            return Ok(checks);
        }
        if checks == max_checks {
            return Err(format!("{job} not ready after {checks} checks"));
        }
        flow::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(8));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_condition_checks_with_back_off_up_to_a_limit() {
    let engine = builder().open_in_memory().await.unwrap();
    let gave_up = engine
        .start("never", wait_until_ready("never".into(), 100, 4))
        .await;
    assert_eq!(
        gave_up.unwrap().result().await.unwrap(),
        Err("never not ready after 4 checks".to_string())
    );
    let history = engine.history("never").await.unwrap();
    let sleeps: Vec<u64> = history
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::TimerFired { deadline_ms, .. } => Some(deadline_ms),
            _ => None,
        })
        .collect();
    assert_eq!(sleeps.len(), 3, "{history:#?}");
    engine.shutdown().await;

    let outputs = crash_at_every_commit("ready", |job| wait_until_ready(job, 3, 10)).await;
    for (job, out) in outputs {
        assert_eq!(out, Ok(3), "{job}");
        // A check that was interrupted runs again, so a job may be checked once more.
        assert!((3..=4).contains(&CHECKS.lock().unwrap()[&job]), "{job}");
    }
}

// ---------------------------------------------------------------------------------------
// Interrupted attempts

/// Attempts of `poison` that began.
static POISON_BEGUN: AtomicU32 = AtomicU32::new(0);

/// Never returns: the engine always ends under it (a poison input, an out-of-memory).
#[task(retry(max_attempts = 3, initial = "1ms"))]
async fn poison() -> Result<u64, TaskFailure> {
    POISON_BEGUN.fetch_add(1, Ordering::SeqCst);
    std::future::pending().await
}

#[workflow]
async fn poisoned() -> Result<u64, TaskFailure> {
    poison().await
}

/// Waits until `counter` passes `seen` (an attempt began) or the run settles; true if
/// an attempt began.
async fn attempt_began(engine: &Engine, id: &str, counter: &AtomicU32, seen: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if counter.load(Ordering::SeqCst) > seen {
            return true;
        }
        if let Ok(status) = engine.status(id).await {
            if !matches!(status, RunStatus::Running | RunStatus::Waiting) {
                return false;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("run {id}: no attempt began and the run did not settle");
}

/// The attempts of step `step` the history says were interrupted.
fn interrupted_attempts(history: &[flow::HistoryEvent], step: u64) -> Vec<u32> {
    history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AttemptFailed {
                step: s,
                attempt,
                error,
                ..
            } if *s == step && error.contains("was interrupted") => Some(*attempt),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_brings_the_engine_down_every_time_ends_after_its_attempts() {
    let dir = ScratchDir::new("poison");
    let path = dir.journal("poison");
    let mut crashes = 0;
    loop {
        // A new engine takes work due in its opening millisecond for its own: open it
        // strictly after the last one's work, as a real restart would.
        tokio::time::sleep(Duration::from_millis(2)).await;
        // Read before opening: the engine resumes the run as it opens.
        let seen = POISON_BEGUN.load(Ordering::SeqCst);
        let engine = builder().open(&path).await.unwrap();
        if crashes == 0 {
            engine.start("poison", poisoned()).await.unwrap();
        }
        if !attempt_began(&engine, "poison", &POISON_BEGUN, seen).await {
            let run = engine.handle::<poisoned>("poison").unwrap();
            let out = run.result().await.unwrap();
            assert_eq!(
                out,
                Err(TaskFailure::Interrupted {
                    task: "poison".into(),
                    attempt: 3
                })
            );
            let history = engine.history("poison").await.unwrap();
            assert_eq!(
                interrupted_attempts(&history, 0),
                vec![1, 2, 3],
                "{history:#?}"
            );
            engine.shutdown().await;
            break;
        }
        engine.shutdown().await;
        crashes += 1;
        assert!(
            crashes <= 4,
            "the task was run again after its last attempt"
        );
    }
    // The first attempt ran without a start record, so it ran once more with one.
    assert_eq!(crashes, 4);
    assert_eq!(POISON_BEGUN.load(Ordering::SeqCst), 4);
}

/// Executions of `hangs_twice` by key.
static HANGS: Mutex<BTreeMap<String, u32>> = Mutex::new(BTreeMap::new());

fn executions(key: &str) -> u32 {
    HANGS.lock().unwrap().get(key).copied().unwrap_or(0)
}

/// Hangs (the engine ends under it) on its first two executions for a key; then returns
/// the attempt number it ran as.
#[task(retry(max_attempts = 4, initial = "1ms"))]
async fn hangs_twice(key: String) -> Result<u32, TaskFailure> {
    let n = {
        let mut hangs = HANGS.lock().unwrap();
        let n = hangs.entry(key).or_default();
        *n += 1;
        *n
    };
    if n <= 2 {
        std::future::pending::<()>().await;
    }
    Ok(flow::TaskContext::current().map_or(0, |ctx| ctx.attempt))
}

#[workflow]
async fn survives_two_crashes(key: String) -> Result<u32, TaskFailure> {
    hangs_twice(key).await
}

/// Opens `path` (after a restart's pause), waits until `hangs_twice` ran `n` times for
/// `key`, and ends the engine under it.
async fn crash_during_execution(path: &std::path::Path, key: &str, n: u32, start: bool) {
    tokio::time::sleep(Duration::from_millis(2)).await;
    let engine = builder().open(path).await.unwrap();
    if start {
        engine
            .start("run", survives_two_crashes(key.to_string()))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while executions(key) < n {
        assert!(
            Instant::now() < deadline,
            "{key}: execution {n} never began"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    engine.shutdown().await;
}

/// The recovery of an interrupted attempt, crashed after each of its commits in turn:
/// the first engine's attempt (not recorded) is interrupted, the second engine records
/// the attempt's start and is interrupted too, and a third engine, halted after its k-th
/// commit, judges the interrupted attempt and runs the next; a fourth finishes. The
/// interrupted attempt is counted once, never run again under its number, and the run
/// ends with the attempt after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_attempt_is_counted_once_whatever_commit_recovery_ends_after() {
    let dir = ScratchDir::new("interrupted");
    let mut covered = None;
    for k in 1..20 {
        let key = format!("interrupted-{k}");
        let path = dir.journal(&key);
        crash_during_execution(&path, &key, 1, true).await;
        crash_during_execution(&path, &key, 2, false).await;

        tokio::time::sleep(Duration::from_millis(2)).await;
        let (halted, reached) = halting(builder(), k);
        let engine = halted.open(&path).await.unwrap();
        let run = engine.handle::<survives_two_crashes>("run").unwrap();
        let finished = tokio::select! {
            out = run.result() => out.ok(),
            _ = reached.wait_for(k, Duration::from_secs(10)) => None,
        };
        engine.shutdown().await;

        tokio::time::sleep(Duration::from_millis(2)).await;
        let engine = builder().open(&path).await.unwrap();
        let run = engine.handle::<survives_two_crashes>("run").unwrap();
        let out = tokio::time::timeout(Duration::from_secs(20), run.result())
            .await
            .unwrap_or_else(|_| panic!("{key}: the run did not finish"))
            .unwrap();
        let history = engine.history("run").await.unwrap();
        engine.shutdown().await;

        let interrupted = interrupted_attempts(&history, 0);
        // Attempt 1 was interrupted under its start record; attempt 2 too if the third
        // engine ended after recording its start (it may not have begun: that cannot be
        // told apart).
        assert!(
            interrupted == vec![1] || interrupted == vec![1, 2],
            "{key}: interrupted attempts {interrupted:?}: {history:#?}"
        );
        let last = interrupted.len() as u32 + 1;
        assert_eq!(out, Ok(last), "{key}: {history:#?}");
        // Attempt 1 ran twice (once unrecorded), then one execution per later attempt
        // that began (an attempt 2 counted as interrupted may never have begun).
        let ran = executions(&key);
        assert!(
            ran == 3 || (interrupted.len() == 2 && ran == 4),
            "{key}: {ran} executions, interrupted {interrupted:?}"
        );
        let started: Vec<u32> = history
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::AttemptStarted { attempt, .. } => Some(attempt),
                _ => None,
            })
            .collect();
        assert_eq!(
            started,
            (1..=last).collect::<Vec<_>>(),
            "{key}: {history:#?}"
        );
        if finished.is_some() {
            // The halted engine finished before its k-th commit: every commit was covered.
            covered = Some(k);
            break;
        }
    }
    // The recovery commits the interruption (with the next attempt's start), then the
    // result: at least two points to crash at.
    let covered = covered.expect("the recovery took more than 19 commits");
    assert!(
        covered > 2,
        "the recovery committed only {} times",
        covered - 1
    );
}

/// Side effects of `charge_once`, by key.
static CHARGES: Mutex<BTreeMap<String, u32>> = Mutex::new(BTreeMap::new());

fn charges(key: &str) -> u32 {
    CHARGES.lock().unwrap().get(key).copied().unwrap_or(0)
}

/// Must never run twice for a key; hangs (the engine ends under it) when `hang` is set.
#[task(at_most_once)]
async fn charge_once(key: String, hang: bool) -> Result<u64, TaskFailure> {
    *CHARGES.lock().unwrap().entry(key).or_default() += 1;
    if hang {
        std::future::pending::<()>().await;
    }
    Ok(7)
}

#[workflow]
async fn pay(key: String, hang: bool) -> String {
    match charge_once(key, hang).await {
        Ok(cents) => format!("charged {cents}"),
        Err(e) => format!("unsure, ask the bank: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_at_most_once_task_is_not_run_again_and_reaches_the_workflow() {
    let journal = support::TempJournal::new("at-most-once");
    let engine = builder().open(journal.path()).await.unwrap();
    engine.start("pay", pay("hang".into(), true)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while charges("hang") == 0 {
        assert!(Instant::now() < deadline, "the attempt never began");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    engine.shutdown().await;

    let engine = builder().open(journal.path()).await.unwrap();
    let out = engine.handle::<pay>("pay").unwrap().result().await.unwrap();
    assert_eq!(
        out,
        "unsure, ask the bank: attempt 1 of task `charge_once` was interrupted: the engine \
         stopped while it ran"
    );
    assert_eq!(charges("hang"), 1, "an at-most-once attempt ran again");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_at_most_once_task_never_runs_twice_whatever_commit_the_engine_ends_after() {
    let outputs = crash_at_every_commit("pay", |key| pay(key, false)).await;
    assert_eq!(outputs[0].1, "charged 7");
    let mut unsure = 0;
    for (key, out) in &outputs {
        assert!(charges(key) <= 1, "{key}: the task ran twice");
        match out.as_str() {
            "charged 7" => assert_eq!(charges(key), 1, "{key}"),
            other => {
                assert!(other.contains("was interrupted"), "{key}: {other}");
                unsure += 1;
            }
        }
    }
    // The engine that ends right after recording the start cannot know whether the
    // attempt ran: at-most-once gives up on it.
    assert!(
        unsure >= 1,
        "no crash fell between the start record and the result"
    );
}

// ---------------------------------------------------------------------------------------
// An attempt in progress

/// Lets `wait_for_release` attempts go on, by key.
static RELEASE: Mutex<BTreeMap<String, tokio::sync::oneshot::Sender<()>>> =
    Mutex::new(BTreeMap::new());
/// Where released attempts wait, by key.
static WAITING: Mutex<BTreeMap<String, tokio::sync::oneshot::Receiver<()>>> =
    Mutex::new(BTreeMap::new());

/// Blocks until the test releases it; fails its first attempt, then succeeds.
#[task(retry(max_attempts = 3, initial = "1ms"))]
async fn wait_for_release(key: String) -> Result<u32, String> {
    let attempt = flow::TaskContext::current().map_or(0, |ctx| ctx.attempt);
    let released = WAITING.lock().unwrap().remove(&format!("{key}-{attempt}"));
    if let Some(released) = released {
        let _ = released.await;
    }
    if attempt == 1 {
        return Err("first attempt fails".into());
    }
    Ok(attempt)
}

#[workflow]
async fn held(key: String) -> Result<u32, String> {
    wait_for_release(key).await
}

/// Makes attempt `attempt` of `key` wait for [`release`].
fn hold(key: &str, attempt: u32) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let slot = format!("{key}-{attempt}");
    RELEASE.lock().unwrap().insert(slot.clone(), tx);
    WAITING.lock().unwrap().insert(slot, rx);
}

fn release(key: &str, attempt: u32) {
    let tx = RELEASE.lock().unwrap().remove(&format!("{key}-{attempt}"));
    tx.expect("held").send(()).unwrap();
}

/// Waits until the run shows `attempt` in progress; returns what it shows.
async fn shown_in_progress(engine: &Engine, id: &str, attempt: u32) -> flow::AttemptInProgress {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let running = engine.attempts_in_progress(id).await.unwrap();
        if let Some(shown) = running.iter().find(|a| a.attempt == attempt) {
            assert_eq!(running.len(), 1, "{running:?}");
            return shown.clone();
        }
        assert!(
            Instant::now() < deadline,
            "attempt {attempt} never showed: {running:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_in_progress_shows_with_its_number_and_start() {
    let journal = support::TempJournal::new("in-progress");
    let engine = builder().open(journal.path()).await.unwrap();
    hold("held", 1);
    hold("held", 2);
    let began = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let run = engine.start("held", held("held".into())).await.unwrap();

    let first = shown_in_progress(&engine, "held", 1).await;
    assert_eq!((first.step, first.branch), (0, 0));
    assert_eq!(first.task, "wait_for_release");
    assert!(first.started_at_ms >= began, "{first:?}");
    // The journal has nothing of the attempt yet: the view is the engine's memory.
    let history = engine.history("held").await.unwrap();
    assert!(
        !history
            .iter()
            .any(|e| matches!(e.kind, EventKind::AttemptStarted { .. })),
        "{history:#?}"
    );
    assert_eq!(engine.status("held").await.unwrap(), RunStatus::Running);

    release("held", 1);
    let second = shown_in_progress(&engine, "held", 2).await;
    assert!(second.started_at_ms >= first.started_at_ms, "{second:?}");
    release("held", 2);
    assert_eq!(run.result().await.unwrap(), Ok(2));
    assert!(engine
        .attempts_in_progress("held")
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        engine.attempts_in_progress("nobody").await,
        Err(flow::FlowError::UnknownRun { .. })
    ));
    engine.shutdown().await;
}
