//! The write-ahead log: what a killed engine leaves is replayed exactly once, a clean
//! shutdown leaves the journal file whole on its own, and a failed log write stops
//! writes until the journal is reopened, losing nothing acknowledged.
//!
//! The journal and its log live on the simulated disk of the power-loss tests
//! (`support/disk.rs`), whose images are what a killed process or a power cut leaves.

#[path = "support/disk.rs"]
mod disk;
mod support;

use std::sync::atomic::Ordering;

use disk::{CutMode, Disk, Image};
use flow::{workflow, Engine, EngineBuilder, FlowError, HistoryEvent};
use support::flaky::Flaky;
use support::{exec_log, workload};

/// Collects `count` signals called "item", in the order they came.
#[workflow]
async fn collect(count: u32) -> Vec<u32> {
    let mut items = Vec::new();
    for _ in 0..count {
        let item = flow::signal::<u32>("item").await;
        items.push(item);
    }
    items
}

fn on_disk(disk: &Disk) -> EngineBuilder {
    Engine::builder()
        .register::<collect>()
        .backend(disk.backend())
        .log_backend(disk.log_backend())
}

/// Starts "c" (five items) and sends it `items`; returns the engine, still running.
async fn engine_with_three_items(disk: &Disk) -> Engine {
    let engine = on_disk(disk).open_in_memory().await.unwrap();
    engine.start("c", collect(5)).await.unwrap();
    for item in [1u32, 2, 3] {
        engine.signal("c", "item", &item).await.unwrap();
    }
    engine
}

/// Reopens `image`, sends the last two items and returns what "c" collected.
async fn finish_on(image: Image) -> Vec<u32> {
    let disk = Disk::new(image, CutMode::DropUnsynced, 0);
    let engine = on_disk(&disk).open_in_memory().await.unwrap();
    for item in [4u32, 5] {
        engine.signal("c", "item", &item).await.unwrap();
    }
    let items = engine
        .handle::<collect>("c")
        .unwrap()
        .result()
        .await
        .unwrap();
    engine.shutdown().await;
    items
}

/// A killed engine's journal file without its log: refused (the log may hold
/// acknowledged changes), and left as it was.
async fn assert_refused_without_log(killed: &Image) {
    let journal_only = Image {
        journal: killed.journal.clone(),
        log: Vec::new(),
    };
    let disk = Disk::new(journal_only, CutMode::DropUnsynced, 0);
    let error = on_disk(&disk).open_in_memory().await.unwrap_err();
    assert!(matches!(error, FlowError::LogDamaged { .. }), "{error}");
    assert_eq!(disk.written_image().journal, killed.journal);
    assert!(disk.written_image().log.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_engine_is_replayed_exactly_once() {
    let disk = Disk::new(Image::default(), CutMode::DropUnsynced, 0);
    let engine = engine_with_three_items(&disk).await;
    // What `kill -9` leaves: every write the process made, no shutdown.
    let killed = disk.written_image();
    engine.shutdown().await;

    // The journal file alone has not got the run: it is in the log only, so what
    // follows exercises the replay. Without its log, the journal is refused.
    assert_refused_without_log(&killed).await;

    assert_eq!(finish_on(killed.clone()).await, [1, 2, 3, 4, 5]);
    // Replaying twice (a crash during the first replay's checkpoint leaves the same
    // image) changes nothing either.
    let disk = Disk::new(killed, CutMode::DropUnsynced, 0);
    let engine = on_disk(&disk).open_in_memory().await.unwrap();
    let reopened = disk.written_image();
    drop(engine);
    assert_eq!(finish_on(reopened).await, [1, 2, 3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_keeps_every_acknowledged_signal() {
    let disk = Disk::new(Image::default(), CutMode::ScrambleUnsynced, 7);
    let engine = engine_with_three_items(&disk).await;
    disk.cut_after_calls(1);
    // The next write cuts the power; whatever it was, it was not acknowledged.
    let _ = engine.signal("c", "item", &99u32).await;
    assert!(disk.is_cut());
    let image = disk.boot_image();
    drop(engine);
    let items = finish_on(image).await;
    assert!(
        items == [1, 2, 3, 4, 5] || items == [1, 2, 3, 99, 4],
        "collected {items:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_leaves_the_journal_file_whole() {
    let dir = support::ScratchDir::new("wal-shutdown");
    let path = dir.file("journal.redb");
    let log = dir.file("journal.redb-wal");
    let engine = Engine::builder()
        .register::<collect>()
        .open(&path)
        .await
        .unwrap();
    engine.start("c", collect(2)).await.unwrap();
    engine.signal("c", "item", &1u32).await.unwrap();
    engine.signal("c", "item", &2u32).await.unwrap();
    let run = engine.handle::<collect>("c").unwrap();
    assert_eq!(run.result().await.unwrap(), [1, 2]);
    assert!(
        std::fs::metadata(&log).unwrap().len() > 0,
        "commits use the log"
    );
    engine.shutdown().await;
    assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);

    // The journal file, copied alone, is the whole journal.
    let copy = dir.file("copy.redb");
    std::fs::copy(&path, &copy).unwrap();
    let engine = Engine::builder()
        .register::<collect>()
        .open(&copy)
        .await
        .unwrap();
    let run = engine.handle::<collect>("c").unwrap();
    assert_eq!(run.result().await.unwrap(), [1, 2]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_log_write_stops_writes_until_the_journal_is_reopened() {
    let (journal, log) = (Flaky::default(), Flaky::default());
    let open = || {
        Engine::builder()
            .register::<collect>()
            .backend(journal.clone())
            .log_backend(log.clone())
            .open_in_memory()
    };
    let engine = open().await.unwrap();
    engine.start("c", collect(2)).await.unwrap();
    engine.signal("c", "item", &1u32).await.unwrap();

    log.failing.store(true, Ordering::SeqCst);
    let refused = engine.signal("c", "item", &2u32).await.unwrap_err();
    assert!(matches!(refused, FlowError::Storage { .. }), "{refused}");
    log.failing.store(false, Ordering::SeqCst);
    // The log may hold the refused batch (its write went through, its sync did not), and
    // redb lacks the batches that were waiting to be shown to readers: nothing more is
    // written or read until a reopen has replayed the log.
    let after = engine.start("d", collect(1)).await.unwrap_err();
    assert!(
        after.to_string().contains("open the journal again"),
        "{after}"
    );
    let read = engine.status("c").await.unwrap_err();
    assert!(
        read.to_string().contains("open the journal again"),
        "{read}"
    );
    engine.shutdown().await;

    let engine = open().await.unwrap();
    let items = engine.handle::<collect>("c").unwrap();
    engine.signal("c", "item", &3u32).await.unwrap();
    let items = items.result().await.unwrap();
    // The second signal's outcome was unknown to its sender: either is right.
    assert!(items == [1, 2] || items == [1, 3], "collected {items:?}");
    assert!(engine.status("d").await.is_err());
    engine.shutdown().await;
}

/// How an engine's life ends.
#[derive(Clone, Copy)]
enum End {
    /// Like `kill -9`: every write it made, no shutdown.
    Killed,
    ShutDown,
}

/// The journal and log an engine leaves, on a disk holding `image`, after starting "c"
/// and sending it `items`.
async fn left_after(image: Image, items: &[u32], end: End) -> Image {
    let disk = Disk::new(image, CutMode::DropUnsynced, 0);
    let engine = on_disk(&disk).open_in_memory().await.unwrap();
    engine.start("c", collect(5)).await.unwrap();
    for item in items {
        engine.signal("c", "item", item).await.unwrap();
    }
    match end {
        End::Killed => disk.written_image(),
        End::ShutDown => {
            engine.shutdown().await;
            disk.written_image()
        }
    }
}

fn reason_of(error: FlowError) -> String {
    match error {
        FlowError::LogMismatch { reason, .. } => reason,
        other => panic!("expected a log mismatch, got: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_beside_a_new_journal_is_refused_and_left_alone() {
    let killed = left_after(Image::default(), &[1, 2], End::Killed).await;
    // The journal file was deleted (a new one is created), its log was not.
    let stray = Image {
        journal: Vec::new(),
        log: killed.log.clone(),
    };
    let disk = Disk::new(stray, CutMode::DropUnsynced, 0);
    let error = on_disk(&disk).open_in_memory().await.unwrap_err();
    assert!(error.to_string().contains("delete the log"), "{error}");
    assert_eq!(reason_of(error), "the log belongs to another journal");
    assert_eq!(disk.written_image().log, killed.log, "the log was changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_older_than_its_log_is_refused() {
    let first = left_after(Image::default(), &[1], End::ShutDown).await;
    let second = left_after(first.clone(), &[2], End::ShutDown).await;
    let killed = left_after(second, &[3], End::Killed).await;
    let restored = Image {
        journal: first.journal,
        log: killed.log.clone(),
    };
    let disk = Disk::new(restored, CutMode::DropUnsynced, 0);
    let error = on_disk(&disk).open_in_memory().await.unwrap_err();
    assert!(reason_of(error).contains("older"));
    // With the journal file that goes with it, the same log replays.
    assert_eq!(finish_on(killed).await, [1, 2, 3, 4, 5]);
}

/// Every run's summary (status, step count, times) and whole history, by run ID.
async fn journal_contents(engine: &Engine) -> Vec<(String, String, Vec<HistoryEvent>)> {
    let mut contents = Vec::new();
    for run in engine.list().await.unwrap() {
        let history = engine.history(&run.run_id).await.unwrap();
        contents.push((run.run_id.clone(), format!("{run:?}"), history));
    }
    contents.sort_by(|a, b| a.0.cmp(&b.0));
    contents
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_the_log_rebuilds_the_journal_exactly() {
    exec_log::log_to_memory();
    exec_log::set_epoch("replay-", 0);
    let disk = Disk::new(Image::default(), CutMode::DropUnsynced, 0);
    let engine = workload::register(on_disk(&disk))
        .open_in_memory()
        .await
        .unwrap();
    // Concurrent runs (batches of several changes, retries, compensations) and signals.
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..30 {
        let engine = engine.clone();
        runs.spawn(async move {
            let (kind, job) = workload::job("replay-", i);
            workload::start(&engine, kind, &job).await.unwrap();
            workload::result(&engine, kind, &job.run).await.unwrap();
        });
    }
    let collected = engine.start("c", collect(5)).await.unwrap();
    for item in 1..=5u32 {
        engine.signal("c", "item", &item).await.unwrap();
    }
    assert_eq!(collected.result().await.unwrap(), [1, 2, 3, 4, 5]);
    while let Some(run) = runs.join_next().await {
        run.unwrap();
    }
    let killed = disk.written_image();
    let live = journal_contents(&engine).await;
    engine.shutdown().await;
    assert_eq!(live.len(), 31);

    // The journal file alone has none of it: everything below comes from the log.
    assert_refused_without_log(&killed).await;

    let disk = Disk::new(killed, CutMode::DropUnsynced, 0);
    let engine = workload::register(on_disk(&disk))
        .open_in_memory()
        .await
        .unwrap();
    let replayed = journal_contents(&engine).await;
    engine.shutdown().await;
    assert_eq!(replayed.len(), live.len());
    for (live, replayed) in live.iter().zip(&replayed) {
        assert_eq!(live, replayed, "run {} differs after the replay", live.0);
    }
}
