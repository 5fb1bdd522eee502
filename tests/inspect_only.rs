//! `EngineBuilder::inspect_only`: an engine that opens a journal to look at it, without
//! the workflows' code, shows each run as stored, refuses every write, drives nothing,
//! and leaves the runs as they were for the next engine.

mod support;

use flow::{workflow, Engine, FlowError, ListQuery, RunStatus};
use support::TempJournal;

#[workflow]
async fn wait_for_go(start: u32) -> u32 {
    let go: u32 = flow::signal("go").await;
    start + go
}

fn builder() -> flow::EngineBuilder {
    Engine::builder().register::<wait_for_go>()
}

#[tokio::test]
async fn an_inspecting_engine_reads_runs_as_stored_and_writes_nothing() {
    let journal = TempJournal::new("inspect-only");
    let engine = builder().open(journal.path()).await.unwrap();
    let done = engine.start("done", wait_for_go(1)).await.unwrap();
    engine.signal("done", "go", &2u32).await.unwrap();
    assert_eq!(done.result().await.unwrap(), 3);
    engine.start("waiting", wait_for_go(10)).await.unwrap();
    wait_until_waiting(&engine, "waiting").await;
    let history = engine.history("waiting").await.unwrap();
    engine.shutdown().await;

    // No workflow registered: the waiting run is shown waiting, not blocked.
    let inspector = Engine::builder()
        .inspect_only()
        .open(journal.path())
        .await
        .unwrap();
    let runs = inspector.list().await.unwrap();
    let statuses: Vec<(&str, &RunStatus)> = runs
        .iter()
        .map(|r| (r.run_id.as_str(), &r.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("done", &RunStatus::Completed),
            ("waiting", &RunStatus::Waiting)
        ]
    );
    let page = inspector
        .list_page(&ListQuery {
            status: Some(flow::StatusKind::Waiting),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.runs.len(), 1);
    let described = inspector.describe("done").await.unwrap();
    assert_eq!(
        flow::codec::to_json(&described.output.unwrap()).unwrap(),
        "3"
    );
    assert_eq!(inspector.history("waiting").await.unwrap(), history);

    // Writes are refused, saying why.
    let refused = inspector.signal("waiting", "go", &5u32).await.unwrap_err();
    assert!(
        matches!(&refused, FlowError::EngineStopped { reason } if reason.contains("inspect_only")),
        "{refused}"
    );
    assert!(matches!(
        inspector.cancel("waiting").await,
        Err(FlowError::EngineStopped { .. })
    ));
    // It holds the journal like any engine.
    let second = builder().open(journal.path()).await.unwrap_err();
    assert!(
        matches!(second, FlowError::DatabaseAlreadyOpen { .. }),
        "{second}"
    );
    inspector.shutdown().await;

    // The next engine finds the run as it was, and drives it on.
    let engine = builder().open(journal.path()).await.unwrap();
    assert_eq!(engine.history("waiting").await.unwrap(), history);
    engine.signal("waiting", "go", &5u32).await.unwrap();
    let waiting = engine.handle::<wait_for_go>("waiting").unwrap();
    assert_eq!(waiting.result().await.unwrap(), 15);
    engine.shutdown().await;
}

/// Polls until run `run_id` waits (10 s at most).
async fn wait_until_waiting(engine: &Engine, run_id: &str) {
    for _ in 0..1000 {
        if engine.status(run_id).await.unwrap() == RunStatus::Waiting {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("run {run_id} never waited");
}
