//! Durable-execution semantics on a real engine: attempts interrupted by the engine's end
//! count as failed attempts (and at-most-once tasks are not run again), failure-rate
//! tolerances are exact, and a map's concurrency limit must be at least 1.
//!
//! A "crash" here is the engine ending while an attempt runs (`Engine::shutdown` aborts
//! it without writing anything about it, as a kill would), then the journal reopened by a
//! new engine.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use flow::{task, workflow, Engine, EventKind, RunStatus, TaskFailure};

fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flow-semantics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.redb"));
    Engine::remove_journal(&path).unwrap();
    path
}

fn builder() -> flow::EngineBuilder {
    Engine::builder()
        .register::<poisoned>()
        .register::<zero_limit>()
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_brings_the_engine_down_every_time_ends_after_its_attempts() {
    let path = temp_db("poison");
    let mut crashes = 0;
    loop {
        let engine = builder().open(&path).await.unwrap();
        if crashes == 0 {
            // Past the engine's opening millisecond, so the first attempt is a plain one
            // (work due by then is treated as possibly begun by an earlier engine).
            tokio::time::sleep(Duration::from_millis(5)).await;
            engine.start("poison", poisoned()).await.unwrap();
        }
        let seen = POISON_BEGUN.load(Ordering::SeqCst);
        if !attempt_began(&engine, "poison", &POISON_BEGUN, seen).await {
            let run = engine.handle::<poisoned>("poison").unwrap();
            let out = run.result().await.unwrap();
            assert_eq!(
                out,
                Err(TaskFailure::Interrupted {
                    task: "semantics::poison".into(),
                    attempt: 3
                })
            );
            let history = engine.history("poison").await.unwrap();
            let interrupted: Vec<u32> = history
                .iter()
                .filter_map(|e| match &e.kind {
                    EventKind::AttemptFailed { attempt, error, .. }
                        if error.contains("interrupted") =>
                    {
                        Some(*attempt)
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(interrupted, vec![1, 2, 3], "{history:#?}");
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
    Engine::remove_journal(&path).unwrap();
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
