//! Durable-execution semantics on a real engine: a map's concurrency limit must be at
//! least 1, a child workflow's `Err` is a failed item of a tolerant map, and waiting for a
//! condition survives a crash at every commit (the engine halted after its k-th commit,
//! then the journal reopened by a new engine).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use flow::{task, workflow, Engine, EventKind, Workflow};

mod support;
use support::{halting, Commits, ScratchDir};

fn builder() -> flow::EngineBuilder {
    Engine::builder()
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
