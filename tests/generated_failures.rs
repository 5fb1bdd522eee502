//! Property test: with generated inputs and generated transient task failures (each call
//! fails its first k attempts, k drawn per run), a workflow with retries returns exactly
//! what it returns without failures, every failed attempt is in the history, and every
//! step is committed once.

use std::collections::BTreeMap;

use flow::{task, workflow, Engine, EventKind, TaskContext};
use proptest::prelude::*;

/// Fails while the attempt number is at most `fail_first`, then adds `x + 1`.
#[task(retry(max_attempts = 4, initial = "1ms", backoff = 1.0))]
async fn flaky_inc(x: i64, fail_first: u32) -> Result<i64, String> {
    let attempt = TaskContext::current()
        .map(|c| c.attempt)
        .unwrap_or(u32::MAX);
    if attempt <= fail_first {
        return Err(format!("transient failure on attempt {attempt}"));
    }
    Ok(x + 1)
}

#[workflow]
async fn accumulate(start: i64, failures: Vec<u32>) -> Result<i64, String> {
    let mut acc = start;
    for f in failures {
        acc = flaky_inc(acc, f).await?;
        if acc % 5 == 0 {
            acc = flaky_inc(acc * 2, 0).await?;
        }
    }
    Ok(acc)
}

/// The same computation without a workflow or failures.
fn expected(start: i64, failures: &[u32]) -> Result<i64, String> {
    let mut acc = start;
    for _ in failures {
        acc += 1;
        if acc % 5 == 0 {
            acc = acc * 2 + 1;
        }
    }
    Ok(acc)
}

#[test]
fn retried_runs_match_failure_free_runs() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = rt
        .block_on(Engine::builder().register::<accumulate>().open_in_memory())
        .unwrap();
    let case = std::sync::atomic::AtomicU32::new(0);
    proptest!(ProptestConfig::with_cases(32), |(start in -50i64..50, failures in proptest::collection::vec(0u32..4, 0..6))| {
        let n = case.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let run_id = format!("case-{n}");
        let (out, history) = rt.block_on(async {
            let out = engine.start(&run_id, accumulate(start, failures.clone())).await.unwrap().result().await.unwrap();
            (out, engine.history(&run_id).await.unwrap())
        });
        // A call that fails 3 times still succeeds on its 4th and last attempt.
        prop_assert_eq!(&out, &expected(start, &failures));
        let failed_attempts = history.iter().filter(|e| matches!(e.kind, EventKind::AttemptFailed { .. })).count();
        prop_assert_eq!(failed_attempts as u32, failures.iter().sum::<u32>());
        let mut completed = BTreeMap::new();
        for e in &history {
            if let EventKind::StepCompleted { step, .. } = e.kind {
                *completed.entry(step).or_insert(0) += 1;
            }
        }
        prop_assert!(completed.values().all(|&n| n == 1), "a step completed twice: {:?}", completed);
    });
    rt.block_on(engine.shutdown());
}
