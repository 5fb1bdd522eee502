//! `EngineBuilder::inspect_only`: an engine that opens a journal to look at it, without
//! the workflows' code, shows each run as stored, refuses every write, drives nothing,
//! and leaves the runs as they were for the next engine.

#[path = "support/disk.rs"]
mod disk;
mod support;

use std::path::Path;

use disk::{CutMode, Disk, Image};
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
    let before = files(journal.path());

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
    drop(inspector);
    assert!(
        files(journal.path()) == before,
        "an inspect-only open changed the journal's or the log's bytes"
    );

    // The next engine finds the run as it was, and drives it on.
    let engine = builder().open(journal.path()).await.unwrap();
    assert_eq!(engine.history("waiting").await.unwrap(), history);
    engine.signal("waiting", "go", &5u32).await.unwrap();
    let waiting = engine.handle::<wait_for_go>("waiting").unwrap();
    assert_eq!(waiting.result().await.unwrap(), 15);
    engine.shutdown().await;
}

/// The bytes of the journal file and of its log (empty if it has none).
fn files(journal: &Path) -> (Vec<u8>, Vec<u8>) {
    let mut log = journal.as_os_str().to_owned();
    log.push("-wal");
    (
        std::fs::read(journal).unwrap(),
        std::fs::read(&log).unwrap_or_default(),
    )
}

#[tokio::test]
async fn an_inspecting_engine_shows_a_crashed_journal_with_its_log_and_writes_nothing() {
    let journal = TempJournal::new("inspect-crashed");
    // What `kill -9` leaves (the power-loss tests' simulated disk): the runs are in the
    // log only, and redb's file was not closed.
    let disk = Disk::new(Image::default(), CutMode::DropUnsynced, 0);
    let engine = builder()
        .backend(disk.backend())
        .log_backend(disk.log_backend())
        .open_in_memory()
        .await
        .unwrap();
    engine.start("a", wait_for_go(1)).await.unwrap();
    engine.start("b", wait_for_go(2)).await.unwrap();
    wait_until_waiting(&engine, "b").await;
    let killed = disk.written_image();
    engine.shutdown().await;
    drop(engine);
    let mut log = journal.path().as_os_str().to_owned();
    log.push("-wal");
    std::fs::write(journal.path(), &killed.journal).unwrap();
    std::fs::write(&log, &killed.log).unwrap();
    let before = files(journal.path());

    // The inspector replays the log (in memory) and shows the runs it holds.
    let inspector = Engine::builder()
        .inspect_only()
        .open(journal.path())
        .await
        .unwrap();
    let runs: Vec<String> = inspector
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(runs, ["a", "b"]);
    assert_eq!(inspector.status("b").await.unwrap(), RunStatus::Waiting);
    // While it looks, no engine can open the journal.
    let second = builder().open(journal.path()).await.unwrap_err();
    assert!(
        matches!(second, FlowError::DatabaseAlreadyOpen { .. }),
        "{second}"
    );
    inspector.shutdown().await;
    drop(inspector);
    assert!(
        files(journal.path()) == before,
        "an inspect-only open of a crashed journal changed its bytes"
    );

    // The next engine recovers the journal for real and drives the runs.
    let engine = builder().open(journal.path()).await.unwrap();
    engine.signal("a", "go", &10u32).await.unwrap();
    let a = engine.handle::<wait_for_go>("a").unwrap();
    assert_eq!(a.result().await.unwrap(), 11);
    engine.shutdown().await;
}

#[tokio::test]
async fn an_inspect_only_open_of_a_missing_journal_creates_nothing() {
    let journal = TempJournal::new("inspect-missing");
    let refused = Engine::builder()
        .inspect_only()
        .open(journal.path())
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("there is no journal"),
        "{refused}"
    );
    assert!(!journal.path().exists());
    let mut log = journal.path().as_os_str().to_owned();
    log.push("-wal");
    assert!(!Path::new(&log).exists());
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
