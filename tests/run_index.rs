//! The journal's run indexes (by status, by workflow): a filtered listing reads them, so
//! they must always hold exactly the runs `RUNS` holds, with their current status; a
//! journal written before they existed gets them built when opened for writing, and is
//! listed correctly (by scanning) when only inspected.

mod support;

use std::time::Duration;

use flow::{workflow, Engine, ListQuery, StatusKind};
use redb::ReadableDatabase;
use support::TempJournal;

#[workflow]
async fn wait_for_go(start: u32) -> u32 {
    let go: u32 = flow::signal("go").await;
    start + go
}

#[workflow]
async fn at_once(x: u32) -> u32 {
    x + 1
}

fn builder() -> flow::EngineBuilder {
    Engine::builder()
        .register::<wait_for_go>()
        .register::<at_once>()
}

/// The IDs of every run of the listing `query` asks for, page by page (pages of 3, so
/// that cursors inside the index are crossed).
async fn ids(engine: &Engine, status: Option<StatusKind>, workflow: Option<&str>) -> Vec<String> {
    let mut query = ListQuery {
        status,
        workflow: workflow.map(str::to_string),
        limit: Some(3),
        ..ListQuery::default()
    };
    let mut out = Vec::new();
    loop {
        let page = engine.list_page(&query).await.unwrap();
        out.extend(page.runs.into_iter().map(|r| r.run_id));
        match page.next {
            Some(next) => query.after = Some(next),
            None => return out,
        }
    }
}

/// The same listing computed from every run, the way a listing without an index reads.
async fn scanned(
    engine: &Engine,
    status: Option<StatusKind>,
    workflow: Option<&str>,
) -> Vec<String> {
    engine
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| status.is_none_or(|s| StatusKind::of(&r.status) == s))
        .filter(|r| workflow.is_none_or(|w| r.workflow == w))
        .map(|r| r.run_id)
        .collect()
}

async fn wait_waiting(engine: &Engine, run: &str) {
    for _ in 0..500 {
        if engine.status(run).await.unwrap() == flow::RunStatus::Waiting {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{run} never waited");
}

async fn check_all(engine: &Engine) {
    for status in [
        None,
        Some(StatusKind::Waiting),
        Some(StatusKind::Completed),
        Some(StatusKind::Cancelled),
        Some(StatusKind::Running),
    ] {
        for workflow in [None, Some("wait_for_go"), Some("at_once"), Some("nothing")] {
            assert_eq!(
                ids(engine, status, workflow).await,
                scanned(engine, status, workflow).await,
                "status {status:?}, workflow {workflow:?}"
            );
        }
    }
}

#[tokio::test]
async fn filtered_listings_follow_every_status_change_and_deletion() {
    let journal = TempJournal::new("run-index");
    let engine = builder().open(journal.path()).await.unwrap();
    for i in 0..7 {
        engine
            .start(format!("w-{i}"), wait_for_go(i))
            .await
            .unwrap();
        let done = engine.start(format!("a-{i}"), at_once(i)).await.unwrap();
        assert_eq!(done.result().await.unwrap(), i + 1);
    }
    for i in 0..7 {
        wait_waiting(&engine, &format!("w-{i}")).await;
    }
    assert_eq!(
        ids(&engine, Some(StatusKind::Waiting), None).await,
        (0..7).map(|i| format!("w-{i}")).collect::<Vec<_>>()
    );
    check_all(&engine).await;

    // Waiting → completed, waiting → cancelled, and a deleted run, move or leave.
    let handle = engine.handle::<wait_for_go>("w-2").unwrap();
    engine.signal("w-2", "go", &5u32).await.unwrap();
    assert_eq!(handle.result().await.unwrap(), 7);
    engine.cancel("w-4").await.unwrap();
    for _ in 0..500 {
        if engine.status("w-4").await.unwrap() == flow::RunStatus::Cancelled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine.purge("a-3").await.unwrap();
    assert_eq!(
        ids(&engine, Some(StatusKind::Completed), Some("wait_for_go")).await,
        ["w-2"]
    );
    assert_eq!(
        ids(&engine, Some(StatusKind::Cancelled), None).await,
        ["w-4"]
    );
    assert!(!ids(&engine, None, Some("at_once"))
        .await
        .contains(&"a-3".to_string()));
    check_all(&engine).await;

    // Reopened (the log replayed or checkpointed), the indexes hold the same.
    engine.shutdown().await;
    let engine = builder().open(journal.path()).await.unwrap();
    check_all(&engine).await;
    engine.shutdown().await;
    assert_eq!(format_of(journal.path()), 4);
}

#[tokio::test]
async fn a_journal_without_indexes_is_scanned_then_indexed() {
    let journal = TempJournal::new("run-index-old");
    let engine = builder().open(journal.path()).await.unwrap();
    for i in 0..5 {
        engine
            .start(format!("w-{i}"), wait_for_go(i))
            .await
            .unwrap();
        engine.start(format!("a-{i}"), at_once(i)).await.unwrap();
    }
    for i in 0..5 {
        wait_waiting(&engine, &format!("w-{i}")).await;
    }
    engine.shutdown().await;

    // Make it a journal written before the indexes existed.
    {
        let db = redb::Database::open(journal.path()).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(redb::TableDefinition::<(u8, &str), ()>::new(
            "flow_runs_by_status",
        ))
        .unwrap();
        txn.delete_table(redb::TableDefinition::<(&str, &str), ()>::new(
            "flow_runs_by_workflow",
        ))
        .unwrap();
        let mut meta = txn
            .open_table(redb::TableDefinition::<&str, &[u8]>::new("flow_meta"))
            .unwrap();
        meta.remove("run_indexes_built").unwrap();
        meta.insert("format", 3u32.to_le_bytes().as_slice())
            .unwrap();
        drop(meta);
        txn.commit().unwrap();
    }

    // Inspected (read-only), it is listed by scanning.
    let inspector = Engine::builder()
        .inspect_only()
        .open(journal.path())
        .await
        .unwrap();
    assert_eq!(
        ids(&inspector, Some(StatusKind::Waiting), None).await.len(),
        5
    );
    check_all(&inspector).await;
    inspector.shutdown().await;

    assert_eq!(
        format_of(journal.path()),
        3,
        "inspecting changed the format"
    );

    // Opened for writing, it is indexed (and moved to format 4), and listed the same.
    let engine = builder().open(journal.path()).await.unwrap();
    check_all(&engine).await;
    engine.signal("w-0", "go", &1u32).await.unwrap();
    engine
        .handle::<wait_for_go>("w-0")
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(
        ids(&engine, Some(StatusKind::Completed), Some("wait_for_go")).await,
        ["w-0"]
    );
    check_all(&engine).await;
    engine.shutdown().await;
    assert_eq!(format_of(journal.path()), 4);
}

/// The format version a journal's meta table records.
fn format_of(path: &std::path::Path) -> u32 {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn
        .open_table(redb::TableDefinition::<&str, &[u8]>::new("flow_meta"))
        .unwrap();
    let bytes = meta.get("format").unwrap().unwrap().value().to_vec();
    u32::from_le_bytes(bytes.try_into().unwrap())
}

/// A format-3 journal whose indexes a build without them let go stale (a run that
/// completed still indexed as waiting, a run indexed that no longer exists) is rebuilt
/// from its runs on its first writable open, not trusted.
#[tokio::test]
async fn stale_indexes_of_a_format_3_journal_are_rebuilt() {
    let journal = TempJournal::new("run-index-stale");
    let engine = builder().open(journal.path()).await.unwrap();
    for i in 0..4 {
        engine
            .start(format!("w-{i}"), wait_for_go(i))
            .await
            .unwrap();
    }
    for i in 0..4 {
        wait_waiting(&engine, &format!("w-{i}")).await;
    }
    engine.shutdown().await;
    {
        let db = redb::Database::open(journal.path()).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut by_status = txn
                .open_table(redb::TableDefinition::<(u8, &str), ()>::new(
                    "flow_runs_by_status",
                ))
                .unwrap();
            // Status code 2 is completed: w-1 claimed completed, and a run that is gone.
            by_status.insert((2u8, "w-1"), ()).unwrap();
            by_status.insert((1u8, "ghost"), ()).unwrap();
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("flow_meta"))
                .unwrap();
            meta.insert("format", 3u32.to_le_bytes().as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let engine = builder().open(journal.path()).await.unwrap();
    assert!(ids(&engine, Some(StatusKind::Completed), None)
        .await
        .is_empty());
    assert_eq!(
        ids(&engine, Some(StatusKind::Waiting), None).await,
        ["w-0", "w-1", "w-2", "w-3"]
    );
    check_all(&engine).await;
    engine.shutdown().await;
    assert_eq!(format_of(journal.path()), 4);
}
