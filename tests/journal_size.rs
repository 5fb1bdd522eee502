//! The journal file's size when runs are deleted as they finish: it does not grow from
//! one cycle of runs to the next, and once the engine is idle a file that is mostly
//! free pages is compacted back to what the journal holds (`compact_when_idle`), with
//! every row as it was. The benchmark's row 7 is the long version (a million runs).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use flow::{task, workflow, Engine, EngineBuilder, ListQuery};
use support::TempJournal;

#[task]
async fn bump(x: u64) -> u64 {
    x + 1
}

#[workflow]
async fn three_bumps(x: u64) -> u64 {
    let a = bump(x).await;
    let b = bump(a).await;
    bump(b).await
}

/// How long the engine waits, idle, before compacting.
const IDLE: Duration = Duration::from_millis(50);

fn builder() -> EngineBuilder {
    Engine::builder()
        .register::<three_bumps>()
        .retention(Some(Duration::ZERO))
        .compact_when_idle(Some(IDLE))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// Runs `ids` to their end, `in_flight` at a time. Each run's result is awaited right
/// after its start: a run deleted as it finishes is unknown to a later `result` call.
async fn run_all(engine: &Engine, ids: std::ops::Range<u64>, in_flight: usize) {
    let ids: Vec<u64> = ids.collect();
    for chunk in ids.chunks(in_flight) {
        let mut tasks = tokio::task::JoinSet::new();
        for &i in chunk {
            let engine = engine.clone();
            tasks.spawn(async move {
                let handle = engine
                    .start(&format!("run-{i}"), three_bumps(i))
                    .await
                    .unwrap();
                assert_eq!(handle.result().await.unwrap(), i + 3);
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    }
}

/// Waits until every finished run is deleted.
async fn drained(engine: &Engine) {
    let query = ListQuery {
        limit: Some(1),
        ..ListQuery::default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !engine.list_page(&query).await.unwrap().runs.is_empty() {
        assert!(Instant::now() < deadline, "finished runs were not deleted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the file's size has not changed for several idle periods (the engine
/// compacts after one); returns it.
async fn settled_len(path: &Path) -> u64 {
    let mut len = file_len(path);
    let mut still = 0;
    while still < 6 {
        tokio::time::sleep(IDLE).await;
        let now = file_len(path);
        if now == len {
            still += 1;
        } else {
            (len, still) = (now, 0);
        }
    }
    len
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_does_not_grow_across_cycles_of_deleted_runs() {
    let journal = TempJournal::new("size-cycles");
    let engine = builder().open(journal.path()).await.unwrap();
    const CYCLE: u64 = 400;
    let mut sizes = Vec::new();
    let mut peaks = Vec::new();
    for cycle in 0..5 {
        run_all(&engine, cycle * CYCLE..(cycle + 1) * CYCLE, 50).await;
        drained(&engine).await;
        peaks.push(file_len(journal.path()));
        sizes.push(settled_len(journal.path()).await);
    }
    engine.shutdown().await;
    for (cycle, size) in sizes.iter().enumerate().skip(1) {
        assert!(
            *size <= sizes[0],
            "after cycle {cycle} the file is {size} bytes, after the first {} \
             (sizes {sizes:?}, before compaction {peaks:?})",
            sizes[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_engine_compacts_a_file_of_mostly_free_pages() {
    let journal = TempJournal::new("size-compact");
    // Never compacted: the file keeps its high-water mark once the runs are deleted.
    let engine = builder()
        .compact_when_idle(None)
        .open(journal.path())
        .await
        .unwrap();
    run_all(&engine, 0..1500, 500).await;
    drained(&engine).await;
    let kept = settled_len(journal.path()).await;
    engine.shutdown().await;
    drop(engine);
    assert!(
        kept >= 1 << 20,
        "1,500 runs, 500 at a time, should have grown the file past 1 MiB: {kept} bytes"
    );

    // Reopened with compaction, it shrinks once the engine has been idle.
    let engine = builder().open(journal.path()).await.unwrap();
    let compacted = settled_len(journal.path()).await;
    assert!(
        compacted * 4 <= kept,
        "the idle engine left the file at {compacted} bytes (it was {kept})"
    );
    // Compacting moved pages, not rows: the journal still works, and holds no runs.
    run_all(&engine, 2000..2010, 10).await;
    drained(&engine).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_moves_pages_and_keeps_every_row() {
    let journal = TempJournal::new("size-keeps");
    // Runs kept, then most of them purged: the file is mostly free pages.
    let open = || {
        Engine::builder()
            .register::<three_bumps>()
            .compact_when_idle(Some(IDLE))
            .open(journal.path())
    };
    let engine = open().await.unwrap();
    run_all(&engine, 0..600, 200).await;
    for i in 0..600u64 {
        if i % 10 != 0 {
            engine.purge(&format!("run-{i}")).await.unwrap();
        }
    }
    let kept: Vec<String> = (0..600u64)
        .filter(|i| i % 10 == 0)
        .map(|i| format!("run-{i}"))
        .collect();
    let mut histories = Vec::new();
    for run in &kept {
        histories.push(engine.history(run).await.unwrap());
    }
    let before = file_len(journal.path());
    let after = settled_len(journal.path()).await;
    assert!(after < before, "not compacted: {before} -> {after} bytes");
    // The same runs with the same histories, in this engine and after a reopen.
    assert_eq!(engine_runs(&engine).await, sorted(&kept));
    for (run, history) in kept.iter().zip(&histories) {
        assert_eq!(&engine.history(run).await.unwrap(), history, "{run}");
    }
    engine.shutdown().await;
    drop(engine);
    let engine = open().await.unwrap();
    assert_eq!(engine_runs(&engine).await, sorted(&kept));
    for (run, history) in kept.iter().zip(&histories) {
        assert_eq!(&engine.history(run).await.unwrap(), history, "{run}");
    }
    engine.shutdown().await;
}

async fn engine_runs(engine: &Engine) -> Vec<String> {
    let mut ids: Vec<String> = engine
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[String]) -> Vec<String> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids
}
