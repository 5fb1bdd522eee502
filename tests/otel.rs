//! The OpenTelemetry export (`flow::otel`, cargo feature `otel`): every span of a run,
//! from each engine that drove it, lands in the one trace its run ID names, with the
//! run's and the attempt's attributes. (Its own test binary: it installs the global
//! subscriber.)

mod support;

use std::collections::BTreeMap;

use flow::{task, workflow, Engine, RunStatus};
use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use support::TempJournal;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Fails its first attempt, then succeeds.
#[task(retry(max_attempts = 3, initial = "1ms"))]
async fn otel_flaky(x: u64) -> Result<u64, String> {
    let attempt = flow::TaskContext::current().map_or(1, |c| c.attempt);
    if attempt == 1 {
        Err("first attempt fails".into())
    } else {
        Ok(x + 1)
    }
}

#[task]
async fn otel_add(x: u64, y: u64) -> u64 {
    x + y
}

/// A task with a retry, a wait for a signal (across which the engine restarts), a task.
#[workflow(version = 3)]
async fn otel_order(x: u64) -> Result<u64, String> {
    let a = otel_flaky(x).await?;
    let extra: u64 = flow::signal("extra").await;
    Ok(otel_add(a, extra).await)
}

fn attrs(span: &SpanData) -> BTreeMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| {
            let value = match &kv.value {
                Value::String(s) => s.to_string(),
                other => other.to_string(),
            };
            (kv.key.to_string(), value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_spans_share_one_trace_across_an_engine_restart() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing_subscriber::registry()
        .with(flow::otel::layer(provider.tracer("flow-test")))
        .init();

    let journal = TempJournal::new("otel");
    let open = || {
        Engine::builder()
            .register::<otel_order>()
            .open(journal.path())
    };
    // First engine: the retried task, then the run waits for its signal.
    let engine = open().await.unwrap();
    engine.start("order-1", otel_order(10)).await.unwrap();
    for _ in 0..500 {
        if engine.status("order-1").await.unwrap() == RunStatus::Waiting {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(engine.status("order-1").await.unwrap(), RunStatus::Waiting);
    engine.shutdown().await;
    drop(engine);
    // A second engine (as after a restart) finishes it.
    let engine = open().await.unwrap();
    engine.signal("order-1", "extra", &5u64).await.unwrap();
    let handle = engine.handle::<otel_order>("order-1").unwrap();
    assert_eq!(handle.result().await.unwrap(), Ok(16));
    engine.shutdown().await;
    drop(engine);
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let trace = flow::otel::trace_id("order-1");
    let root = flow::otel::root_span_id("order-1");
    let runs: Vec<&SpanData> = spans.iter().filter(|s| s.name == "run").collect();
    // A driver per wake-up: at least one in each engine.
    assert!(runs.len() >= 2, "run spans: {runs:#?}");
    for run in &runs {
        assert_eq!(run.span_context.trace_id(), trace, "{run:#?}");
        assert_eq!(run.parent_span_id, root, "{run:#?}");
        let a = attrs(run);
        assert_eq!(a["run_id"], "order-1", "{a:?}");
        assert_eq!(a["workflow"], "otel_order", "{a:?}");
        assert_eq!(a["version"], "3", "{a:?}");
    }
    let run_ids: Vec<SpanId> = runs.iter().map(|s| s.span_context.span_id()).collect();
    let attempts: Vec<&SpanData> = spans.iter().filter(|s| s.name == "attempt").collect();
    // otel_flaky twice (the first attempt fails), otel_add once.
    let seen: Vec<(String, String, String)> = attempts
        .iter()
        .map(|s| {
            let a = attrs(s);
            (a["task"].clone(), a["step"].clone(), a["attempt"].clone())
        })
        .collect();
    for expected in [
        ("otel_flaky", "0", "1"),
        ("otel_flaky", "0", "2"),
        ("otel_add", "2", "1"),
    ] {
        let expected = (
            expected.0.to_string(),
            expected.1.to_string(),
            expected.2.to_string(),
        );
        assert!(seen.contains(&expected), "{expected:?} not in {seen:?}");
    }
    for attempt in &attempts {
        assert_eq!(attempt.span_context.trace_id(), trace, "{attempt:#?}");
        assert!(
            run_ids.contains(&attempt.parent_span_id),
            "an attempt's parent is one of the run's spans: {attempt:#?}"
        );
    }
    // Another run is another trace.
    assert_ne!(flow::otel::trace_id("order-2"), trace);
    provider.shutdown().unwrap();
}
