//! What a run tells `tracing`: a span per run (run ID, workflow, version) and per task attempt
//! (step, branch, task, attempt), with events for the start, a failed attempt and its
//! retry, and the run's end. (Its own test binary: it installs the global subscriber.)

use std::io::Write;
use std::sync::{Arc, Mutex};

use flow::{task, workflow, Engine};

/// Fails its first attempt, then succeeds.
#[task(retry(max_attempts = 3, initial = "1ms"))]
async fn traced_flaky(x: u64) -> Result<u64, String> {
    let attempt = flow::TaskContext::current().map_or(1, |c| c.attempt);
    if attempt == 1 {
        Err("first attempt fails".into())
    } else {
        Ok(x + 1)
    }
}

/// On version 2, so that the span's version is the run's, not a default.
#[workflow(version = 2)]
async fn traced_order(x: u64) -> Result<u64, String> {
    traced_flaky(x).await
}

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_a_retry_shows_as_spans_and_events() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("flow_runtime=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let engine = Engine::builder()
        .register::<traced_order>()
        .open_in_memory()
        .await
        .unwrap();
    let run = engine.start("traced-1", traced_order(41)).await.unwrap();
    assert_eq!(run.result().await.unwrap(), Ok(42));
    engine.shutdown().await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
            .to_string()
    };
    let started = line("run started");
    assert!(started.contains("run_id=traced-1"), "{started}");
    assert!(started.contains("workflow=\"traced_order\""), "{started}");
    assert!(started.contains("version=2"), "{started}");
    let attempt = line("attempt started");
    assert!(
        attempt.contains(
            "run{run_id=traced-1 workflow=\"traced_order\" version=2}:attempt{step=0 branch=0 \
             task=\"traced_flaky\" attempt=1}"
        ),
        "{attempt}"
    );
    // The driver judges attempts: the retry is the run's event, naming the attempt.
    let retry = line("task attempt failed; retrying");
    for field in [
        "run{run_id=traced-1 workflow=\"traced_order\" version=2}",
        "task=\"traced_flaky\" attempt=1",
        "error=\"first attempt fails\"",
    ] {
        assert!(retry.contains(field), "{field:?} missing: {retry}");
    }
    let success = line("task attempt succeeded");
    assert!(success.contains("attempt=2"), "{success}");
    let completed = line("run completed");
    assert!(completed.contains("run_id=traced-1"), "{completed}");
}
