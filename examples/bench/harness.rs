//! Driving many runs through an engine, and journal files.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flow::{Engine, FlowError, Workflow};
use tokio::sync::Semaphore;

/// A path for a new journal called `name` in `dir`, with no file there yet.
pub fn fresh_journal(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.redb"));
    let _ = std::fs::remove_file(&path);
    path
}

/// Starts runs `ids` (named `{prefix}-{i}`, built by `make(i)`) with at most `in_flight`
/// of them between `engine.start(..)` and, if `wait`, `handle.result()` (a semaphore
/// bounds them). Returns each run's latency, sorted: from its `start` call to its result
/// (or to its durable start when not waiting).
pub async fn drive<W: Workflow>(
    engine: &Engine,
    prefix: &str,
    ids: Range<usize>,
    in_flight: usize,
    wait: bool,
    make: impl Fn(u64) -> W,
) -> Result<Vec<Duration>, FlowError> {
    let permits = Arc::new(Semaphore::new(in_flight.max(1)));
    let mut runs = Vec::with_capacity(ids.len());
    for i in ids {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let engine = engine.clone();
        let run_id = format!("{prefix}-{i:08}");
        let call = make(i as u64);
        runs.push(tokio::spawn(async move {
            let started = Instant::now();
            let handle = engine.start(run_id, call).await?;
            if wait {
                handle.result().await?;
            }
            drop(permit);
            Ok::<_, FlowError>(started.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(runs.len());
    for run in runs {
        latencies.push(run.await.expect("a benchmark run task panicked")?);
    }
    latencies.sort();
    Ok(latencies)
}
