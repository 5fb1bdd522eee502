//! A run's life around its steps: typed callback completions (a value that does not fit
//! the awaited type is refused and the token stays open); retention and purge (finished
//! runs deleted with everything keyed by them, durably, also across crashes).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use flow::WaitForCallback;
use flow::{task, workflow, CallbackError, Engine, FlowError, RunStatus, TaskContext};
use redb::{ReadableDatabase, ReadableTableMetadata, TableHandle};
use serde::{Deserialize, Serialize};
use support::{eventually, halting, Commits, ScratchDir, TempJournal};

// ---------------------------------------------------------------------------------------
// Typed callbacks.

/// Tokens handed out by `hand_out_token`, by run ID.
static TOKENS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

#[task]
async fn hand_out_token() {
    let ctx = TaskContext::current().expect("runs in the engine");
    let token = ctx.callback_token().expect("a callback task has a token");
    TOKENS
        .lock()
        .unwrap()
        .insert(ctx.run_id.clone(), token.to_string());
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Approval {
    by: String,
    level: u8,
}

#[workflow]
async fn await_count() -> Result<u64, CallbackError> {
    hand_out_token()
        .wait_for_callback::<u64>(Duration::from_secs(600))
        .await
}

#[workflow]
async fn await_approval() -> Result<Approval, CallbackError> {
    hand_out_token()
        .wait_for_callback::<Approval>(Duration::from_secs(600))
        .await
}

fn builder() -> flow::EngineBuilder {
    Engine::builder()
        .register::<await_count>()
        .register::<await_approval>()
        .register::<busy>()
        .register::<short>()
        .register::<kept>()
}

/// The token run `run` handed out, once its step waits for it.
async fn waiting_token(engine: &Engine, run: &str) -> String {
    eventually("the callback's token", || {
        TOKENS.lock().unwrap().contains_key(run)
    })
    .await;
    for _ in 0..500 {
        if engine.status(run).await.unwrap() == RunStatus::Waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(engine.status(run).await.unwrap(), RunStatus::Waiting);
    TOKENS.lock().unwrap()[run].clone()
}

/// The bytes of the journal and its write-ahead log.
fn journal_files(path: &Path) -> Vec<Vec<u8>> {
    let mut log = path.as_os_str().to_owned();
    log.push("-wal");
    [path.to_path_buf(), log.into()]
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_that_does_not_fit_the_awaited_type_is_refused_and_the_token_stays_open() {
    let journal = TempJournal::new("typed-callback");
    let engine = builder().open(journal.path()).await.unwrap();
    let run = engine.start("count", await_count()).await.unwrap();
    let token = waiting_token(&engine, "count").await;

    let before = journal_files(journal.path());
    // -1 must not be read as some u64.
    let error = engine.complete(&token, Ok(-1i64)).await.unwrap_err();
    assert!(
        matches!(&error, FlowError::CallbackTypeMismatch { sent, awaited, .. }
            if sent == "i64" && awaited == "u64"),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("`i64`") && message.contains("`u64`"),
        "{message}"
    );
    // Nor a text, nor a struct.
    for error in [
        engine.complete(&token, Ok("12")).await.unwrap_err(),
        engine
            .complete(
                &token,
                Ok(Approval {
                    by: "x".into(),
                    level: 1,
                }),
            )
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(error, FlowError::CallbackTypeMismatch { .. }),
            "{error}"
        );
    }
    assert!(
        journal_files(journal.path()) == before,
        "a refusal wrote to the journal"
    );
    assert_eq!(engine.status("count").await.unwrap(), RunStatus::Waiting);

    // The token is still open: a value of the awaited type completes it (a u8 fits a u64).
    engine.complete(&token, Ok(41u8)).await.unwrap();
    assert_eq!(run.result().await.unwrap(), Ok(41));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn struct_callbacks_are_checked_field_by_field_and_rejections_are_not_typed() {
    #[derive(Serialize)]
    struct WrongLevel {
        by: String,
        level: i32,
    }
    let journal = TempJournal::new("typed-callback-struct");
    let engine = builder().open(journal.path()).await.unwrap();
    let run = engine.start("approval", await_approval()).await.unwrap();
    let token = waiting_token(&engine, "approval").await;
    let error = engine
        .complete(
            &token,
            Ok(WrongLevel {
                by: "ann".into(),
                level: -3,
            }),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("Approval"), "{error}");
    assert!(error.to_string().contains("WrongLevel"), "{error}");
    let fits = Approval {
        by: "ann".into(),
        level: 3,
    };
    engine.complete(&token, Ok(fits.clone())).await.unwrap();
    assert_eq!(run.result().await.unwrap(), Ok(fits));

    // An error outcome carries no value to check.
    let run = engine.start("rejected", await_approval()).await.unwrap();
    let token = waiting_token(&engine, "rejected").await;
    engine
        .complete::<()>(&token, Err("no".into()))
        .await
        .unwrap();
    assert_eq!(
        run.result().await.unwrap(),
        Err(CallbackError::Rejected("no".into()))
    );
    // A used token is refused as used, whatever the value.
    let used = engine.complete(&token, Ok(-1i64)).await.unwrap_err();
    assert!(
        matches!(used, FlowError::InvalidCallbackToken { .. }),
        "{used}"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_awaited_type_survives_a_restart() {
    let journal = TempJournal::new("typed-callback-restart");
    let engine = builder().open(journal.path()).await.unwrap();
    engine.start("restarted", await_count()).await.unwrap();
    let token = waiting_token(&engine, "restarted").await;
    engine.shutdown().await;
    drop(engine);

    let engine = builder().open(journal.path()).await.unwrap();
    let error = engine.complete(&token, Ok(-1i64)).await.unwrap_err();
    assert!(
        matches!(error, FlowError::CallbackTypeMismatch { .. }),
        "{error}"
    );
    engine.complete(&token, Ok(7u64)).await.unwrap();
    let run = engine.handle::<await_count>("restarted").unwrap();
    assert_eq!(run.result().await.unwrap(), Ok(7));
    engine.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Retention and purge.

#[task]
async fn double(x: u64) -> u64 {
    x * 2
}

/// Leaves something in most of the journal's per-run tables: locals, history, branch
/// records, map items, a callback token (and its type), inbox messages it never reads.
#[workflow]
async fn busy(n: u64) -> Result<u64, CallbackError> {
    let doubled = double(n).await;
    let items = flow::map(vec![1u64, 2, 3], 2, double).await;
    let bonus = hand_out_token()
        .wait_for_callback::<u64>(Duration::from_secs(600))
        .await?;
    Ok(doubled + items.iter().sum::<u64>() + bonus)
}

#[workflow]
async fn short(n: u64) -> u64 {
    double(n).await
}

#[workflow]
async fn kept(n: u64) -> u64 {
    double(n).await
}

/// Rows of every table of the closed journal at `path`, by table, leaving out the
/// journal's own metadata and the retention settings: what runs left behind.
fn leftover_rows(path: &Path) -> BTreeMap<String, u64> {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let mut rows = BTreeMap::new();
    for table in txn.list_tables().unwrap() {
        let name = table.name().to_string();
        if name == "flow_meta" || name == "flow_retention" {
            continue;
        }
        let len = txn.open_untyped_table(table).unwrap().len().unwrap();
        if len > 0 {
            rows.insert(name, len);
        }
    }
    rows
}

/// Waits until `run` is gone from the journal.
async fn deleted(engine: &Engine, run: &str) {
    for _ in 0..500 {
        match engine.status(run).await {
            Err(FlowError::UnknownRun { .. }) => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(other) => panic!("{other}"),
        }
    }
    panic!("run `{run}` was not deleted");
}

/// Runs `busy` to its end in `engine`, leaving an unread signal in its inbox.
async fn finish_busy(engine: &Engine, run: &str) {
    let handle = engine.start(run, busy(5)).await.unwrap();
    let token = waiting_token(engine, run).await;
    engine.signal(run, "never-read", &1u8).await.unwrap();
    engine.complete(&token, Ok(100u64)).await.unwrap();
    assert_eq!(handle.result().await.unwrap(), Ok(10 + 12 + 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_zero_deletes_a_finished_run_with_everything_keyed_by_it() {
    let journal = TempJournal::new("retention-zero");
    let engine = builder()
        .retention(Some(Duration::ZERO))
        .open(journal.path())
        .await
        .unwrap();
    finish_busy(&engine, "busy-1").await;
    deleted(&engine, "busy-1").await;
    assert!(engine.list().await.unwrap().is_empty());
    assert!(matches!(
        engine.history("busy-1").await,
        Err(FlowError::UnknownRun { .. })
    ));
    // Its token went with it.
    let token = TOKENS.lock().unwrap()["busy-1"].clone();
    let refused = engine.complete(&token, Ok(1u64)).await.unwrap_err();
    assert!(
        refused.to_string().contains("no callback was issued"),
        "{refused}"
    );
    engine.shutdown().await;
    drop(engine);
    assert_eq!(leftover_rows(journal.path()), BTreeMap::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_overrides_the_engine_retention_and_none_keeps() {
    let journal = TempJournal::new("retention-override");
    let open = || {
        builder()
            .retention(Some(Duration::ZERO))
            .retention_of::<kept>(None)
            .retention_of::<short>(Some(Duration::from_millis(300)))
            .open(journal.path())
    };
    let engine = open().await.unwrap();
    let kept_run = engine.start("kept", kept(1)).await.unwrap();
    let short_run = engine.start("short", short(2)).await.unwrap();
    assert_eq!(kept_run.result().await.unwrap(), 2);
    assert_eq!(short_run.result().await.unwrap(), 4);
    // Not yet: its retention is 300 ms.
    assert!(engine.status("short").await.is_ok());
    deleted(&engine, "short").await;
    // The expiry was set when the run finished; the kept run has none.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(engine.status("kept").await.unwrap(), RunStatus::Completed);
    engine.shutdown().await;
    drop(engine);

    // The default (keep for ever) leaves runs as they are.
    let engine = builder().open(journal.path()).await.unwrap();
    engine
        .start("default", short(3))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        engine.status("default").await.unwrap(),
        RunStatus::Completed
    );
    assert_eq!(engine.status("kept").await.unwrap(), RunStatus::Completed);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_refuses_a_run_that_is_not_finished_and_deletes_one_that_is() {
    let journal = TempJournal::new("purge");
    let engine = builder().open(journal.path()).await.unwrap();
    let run = engine.start("waiting", await_count()).await.unwrap();
    let token = waiting_token(&engine, "waiting").await;

    let before = journal_files(journal.path());
    let refused = engine.purge("waiting").await.unwrap_err();
    assert!(
        matches!(&refused, FlowError::RunNotSettled { run_id, .. } if run_id == "waiting"),
        "{refused}"
    );
    assert!(refused.to_string().contains("waiting"), "{refused}");
    assert!(journal_files(journal.path()) == before, "a refusal wrote");
    assert!(matches!(
        engine.purge("nobody").await.unwrap_err(),
        FlowError::UnknownRun { .. }
    ));

    engine.complete(&token, Ok(3u64)).await.unwrap();
    assert_eq!(run.result().await.unwrap(), Ok(3));
    finish_busy(&engine, "busy-2").await;
    engine.purge("waiting").await.unwrap();
    engine.purge("busy-2").await.unwrap();
    assert!(matches!(
        engine.status("waiting").await,
        Err(FlowError::UnknownRun { .. })
    ));
    assert!(matches!(
        engine.purge("waiting").await.unwrap_err(),
        FlowError::UnknownRun { .. }
    ));
    engine.shutdown().await;
    drop(engine);
    assert_eq!(leftover_rows(journal.path()), BTreeMap::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_survives_a_crash_at_every_commit() {
    let dir = ScratchDir::new("retention-crash");
    let retained = || builder().retention(Some(Duration::ZERO));
    // Commits of an uninterrupted run: its start and steps, and its deletion.
    let path = dir.journal("reference");
    let (counting, commits) = Commits::counting(retained());
    let engine = counting.open(&path).await.unwrap();
    engine
        .start("run", short(4))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    deleted(&engine, "run").await;
    engine.shutdown().await;
    let total = commits.get();
    assert!(total >= 3, "a start, an end and a deletion: {total}");

    for k in 1..=total {
        let path = dir.journal(&format!("crash-{k}"));
        let (halting, commits) = halting(retained(), k);
        let engine = halting.open(&path).await.unwrap();
        let _ = engine.start("run", short(4)).await;
        assert_eq!(commits.wait_for(k, Duration::from_secs(5)).await, k);
        engine.shutdown().await;
        drop(engine);

        let engine = retained().open(&path).await.unwrap();
        deleted(&engine, "run").await;
        engine.shutdown().await;
        drop(engine);
        assert_eq!(leftover_rows(&path), BTreeMap::new(), "crash at commit {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_from_before_retention_gets_its_tables_when_opened() {
    let journal = TempJournal::new("retention-old-journal");
    let engine = builder().open(journal.path()).await.unwrap();
    engine
        .start("old", short(1))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    engine.shutdown().await;
    drop(engine);
    // What an older flow left: the same format, without the tables added since.
    {
        let db = redb::Database::open(journal.path()).unwrap();
        let txn = db.begin_write().unwrap();
        for table in [
            "flow_token_types",
            "flow_retention",
            "flow_run_expiries",
            "flow_expiries",
            "flow_run_tokens",
        ] {
            let untyped = redb::TableDefinition::<&str, &[u8]>::new(table);
            assert!(txn.delete_table(untyped).unwrap(), "{table} existed");
        }
        txn.commit().unwrap();
    }
    let engine = builder()
        .retention(Some(Duration::ZERO))
        .open(journal.path())
        .await
        .unwrap();
    // The run that finished before keeps its place; new ones are deleted.
    assert_eq!(engine.status("old").await.unwrap(), RunStatus::Completed);
    engine
        .start("new", short(2))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    deleted(&engine, "new").await;
    engine.purge("old").await.unwrap();
    engine.shutdown().await;
    drop(engine);
    assert_eq!(leftover_rows(journal.path()), BTreeMap::new());
}
