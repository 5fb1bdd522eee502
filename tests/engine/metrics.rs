//! `Engine::metrics`: exact counts of runs by how they ended (children and redriven runs
//! included), task attempts and retries, commits, runs in progress and the journal's sizes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flow::{task, workflow, Engine, Metrics, TaskMetrics, WorkflowMetrics};
use tokio::sync::Semaphore;

use crate::support::TempJournal;

/// Fails its first attempt of each call, then adds one.
#[task(name = "metrics::flaky", retry(max_attempts = 3, initial = "1ms"))]
async fn metrics_flaky(x: u64) -> Result<u64, String> {
    match flow::TaskContext::current().map_or(1, |c| c.attempt) {
        1 => Err("first attempt fails".into()),
        _ => Ok(x + 1),
    }
}

/// Always refuses, with no retry: the workflow gets the `Err`.
#[task(name = "metrics::refuse", retry(max_attempts = 1))]
async fn metrics_refuse(x: u64) -> Result<u64, String> {
    Err(format!("{x} is refused"))
}

/// Panics; its output cannot carry the failure, so the run fails (as a run does whose
/// workflow body panics).
#[task(name = "metrics::crash", retry(max_attempts = 1))]
async fn metrics_crash(_x: u64) -> u64 {
    panic!("crash")
}

/// Lets the test see a run while its attempt runs: waits for a permit.
static GATE: Semaphore = Semaphore::const_new(0);
static GATED_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

#[task(name = "metrics::gated")]
async fn metrics_gated(x: u64) -> u64 {
    GATED_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
    GATE.acquire().await.expect("the gate stays open").forget();
    x
}

#[workflow(name = "metrics::order")]
async fn metrics_order(x: u64) -> Result<u64, String> {
    metrics_flaky(x).await
}

/// Awaits a child run of `metrics::order`.
#[workflow(name = "metrics::parent")]
async fn metrics_parent(x: u64) -> Result<u64, String> {
    metrics_order(x).await
}

#[workflow(name = "metrics::refused")]
async fn metrics_refused(x: u64) -> Result<u64, String> {
    metrics_refuse(x).await
}

#[workflow(name = "metrics::crashes")]
async fn metrics_crashes(x: u64) -> u64 {
    metrics_crash(x).await
}

#[workflow(name = "metrics::sleeper")]
async fn metrics_sleeper() {
    flow::sleep(Duration::from_secs(3600)).await;
}

/// Faults at its first step: a map item cannot be a signal.
#[workflow(name = "metrics::faults")]
async fn metrics_faults() -> Vec<u32> {
    let out = flow::map(vec!["a".to_string()], 1, |n| flow::signal::<u32>(&n)).await;
    out
}

#[workflow(name = "metrics::gated")]
async fn metrics_gated_run(x: u64) -> u64 {
    metrics_gated(x).await
}

fn workflow_metrics<'a>(metrics: &'a Metrics, name: &str) -> &'a WorkflowMetrics {
    metrics
        .workflows
        .iter()
        .find(|w| w.workflow == name)
        .unwrap_or_else(|| panic!("no metrics for workflow {name}: {metrics:#?}"))
}

fn task_metrics<'a>(metrics: &'a Metrics, name: &str) -> &'a TaskMetrics {
    metrics
        .tasks
        .iter()
        .find(|t| t.task == name)
        .unwrap_or_else(|| panic!("no metrics for task {name}"))
}

/// `started, completed, returned_err, failed, cancelled, faulted`.
fn counts(w: &WorkflowMetrics) -> [u64; 6] {
    [
        w.started,
        w.completed,
        w.returned_err,
        w.failed,
        w.cancelled,
        w.faulted,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_runs_attempts_retries_and_commits_exactly() {
    let journal = TempJournal::new("metrics");
    let engine = Engine::builder()
        .register::<metrics_order>()
        .register::<metrics_refused>()
        .register::<metrics_crashes>()
        .register::<metrics_sleeper>()
        .register::<metrics_faults>()
        .register::<metrics_gated_run>()
        .register::<metrics_parent>()
        .open(journal.path())
        .await
        .unwrap();

    let fresh = engine.metrics();
    assert_eq!(counts(workflow_metrics(&fresh, "metrics::order")), [0; 6]);
    assert_eq!(fresh.runs_in_progress, 0);

    for id in ["order-1", "order-2"] {
        let run = engine.start(id, metrics_order(1)).await.unwrap();
        assert_eq!(run.result().await.unwrap(), Ok(2));
    }
    let run = engine.start("refused-1", metrics_refused(7)).await.unwrap();
    assert_eq!(run.result().await.unwrap(), Err("7 is refused".into()));
    let run = engine.start("crash-1", metrics_crashes(1)).await.unwrap();
    assert!(run.result().await.is_err());
    // Redriven, it fails again: a second end, not a second start.
    engine.redrive("crash-1").await.unwrap();
    assert!(run.result().await.is_err());
    // A child run is a start of its own workflow.
    let run = engine.start("parent-1", metrics_parent(1)).await.unwrap();
    assert_eq!(run.result().await.unwrap(), Ok(2));
    let run = engine.start("faults-1", metrics_faults()).await.unwrap();
    assert!(run.result().await.is_err());
    let sleeper = engine.start("sleeper-1", metrics_sleeper()).await.unwrap();
    engine.cancel("sleeper-1").await.unwrap();
    assert!(sleeper.result().await.is_err());
    // The same start again is not a new run.
    engine.start("order-1", metrics_order(1)).await.unwrap();

    // A run whose attempt is running is in progress; waiting runs are not.
    let gated = engine.start("gated-1", metrics_gated_run(5)).await.unwrap();
    while GATED_ATTEMPTS.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(engine.metrics().runs_in_progress, 1);
    GATE.add_permits(1);
    assert_eq!(gated.result().await.unwrap(), 5);

    let m = engine.metrics();
    assert_eq!(m.runs_in_progress, 0);
    // started, completed, returned_err, failed, cancelled, faulted
    for (name, expected) in [
        ("metrics::order", [3, 3, 0, 0, 0, 0]),
        ("metrics::parent", [1, 1, 0, 0, 0, 0]),
        ("metrics::refused", [1, 0, 1, 0, 0, 0]),
        ("metrics::crashes", [1, 0, 0, 2, 0, 0]),
        ("metrics::sleeper", [1, 0, 0, 0, 1, 0]),
        ("metrics::faults", [1, 0, 0, 0, 0, 1]),
        ("metrics::gated", [1, 1, 0, 0, 0, 0]),
    ] {
        assert_eq!(counts(workflow_metrics(&m, name)), expected, "{name}");
    }
    // Registered workflows only, in name order.
    let names: Vec<&str> = m.workflows.iter().map(|w| w.workflow.as_str()).collect();
    assert_eq!(
        names,
        [
            "metrics::crashes",
            "metrics::faults",
            "metrics::gated",
            "metrics::order",
            "metrics::parent",
            "metrics::refused",
            "metrics::sleeper"
        ]
    );

    let flaky = task_metrics(&m, "metrics::flaky");
    assert_eq!((flaky.attempt_seconds.count, flaky.retries), (6, 3));
    let refuse = task_metrics(&m, "metrics::refuse");
    assert_eq!((refuse.attempt_seconds.count, refuse.retries), (1, 0));
    let crash = task_metrics(&m, "metrics::crash");
    assert_eq!((crash.attempt_seconds.count, crash.retries), (2, 0));
    // The gated attempt waited for the test's check: it took a measurable time.
    let gated = &task_metrics(&m, "metrics::gated").attempt_seconds;
    assert_eq!(gated.count, 1);
    assert!(gated.sum > 0.0, "{gated:?}");
    assert_eq!(
        gated.buckets.last().unwrap().1,
        1,
        "300 s is the last bound"
    );
    // Every histogram is cumulative, and ends at its count.
    for t in &m.tasks {
        let h = &t.attempt_seconds;
        assert!(h.buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{h:?}");
        assert!(h.buckets.last().unwrap().1 <= h.count);
    }

    // Each run's transitions were committed: at least one change per run's start and one
    // per end, in batches whose sizes add up.
    let commits = &m.commits;
    assert!(commits.batch_size.count > fresh.commits.batch_size.count);
    assert_eq!(commits.duration_seconds.count, commits.batch_size.count);
    assert!(commits.batch_size.sum >= commits.batch_size.count as f64);
    assert!(commits.duration_seconds.sum > 0.0);

    // Sizes of the files, read now.
    let journal_bytes = m.journal_bytes.expect("a journal on a file has a size");
    assert!(journal_bytes > 0);
    assert!(m.log_bytes.is_some_and(|bytes| bytes > 0), "{m:?}");
    engine.shutdown().await;

    // Counters belong to an engine: a new one starts at zero; in memory there are no files.
    let memory = Engine::builder()
        .register::<metrics_order>()
        .open_in_memory()
        .await
        .unwrap();
    let run = memory.start("order-1", metrics_order(1)).await.unwrap();
    assert_eq!(run.result().await.unwrap(), Ok(2));
    let m = memory.metrics();
    assert_eq!(
        counts(workflow_metrics(&m, "metrics::order")),
        [1, 1, 0, 0, 0, 0]
    );
    assert_eq!(task_metrics(&m, "metrics::flaky").retries, 1);
    assert_eq!((m.journal_bytes, m.log_bytes), (None, None));
    memory.shutdown().await;
}
