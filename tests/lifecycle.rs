//! A run's life around its steps: typed callback completions (a value that does not fit
//! the awaited type is refused and the token stays open); retention and purge (finished
//! runs deleted with everything keyed by them, durably, also across crashes); redrive
//! (a failed or cancelled run resumed at its last step) and fork (a new run from the
//! state before any step), also across crashes.

#[path = "support/sealed.rs"]
mod sealed;
mod support;

use std::collections::{BTreeMap, BTreeSet};
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
        .register::<fragile>()
        .register::<gated>()
        .register::<ledger>()
        .register::<mapped>()
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

// ---------------------------------------------------------------------------------------
// Redrive.

/// Inputs for which `fragile` still has its bug.
static BROKEN: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());
/// How many times `counted_double` ran, by argument.
static DOUBLED: Mutex<BTreeMap<u64, usize>> = Mutex::new(BTreeMap::new());
/// Inputs for which `wait_at_gate` does not return yet.
static CLOSED: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());

#[task]
async fn counted_double(x: u64) -> u64 {
    *DOUBLED.lock().unwrap().entry(x).or_default() += 1;
    x * 2
}

#[task]
async fn wait_at_gate(x: u64) -> u64 {
    while CLOSED.lock().unwrap().contains(&x) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    x
}

/// Fails (its step panics) after its first step while its input is in `BROKEN`.
#[workflow]
async fn fragile(x: u64) -> u64 {
    let a = counted_double(x).await;
    if BROKEN.lock().unwrap().contains(&x) {
        panic!("a bug, fixed in the next release");
    }
    let b = counted_double(a).await;
    a + b
}

/// Waits at its gate; cancelled there, it ends as cancelled (`u64` cannot carry it).
#[workflow]
async fn gated(x: u64) -> u64 {
    let doubled = counted_double(x).await;
    wait_at_gate(doubled).await
}

fn doubled(x: u64) -> usize {
    DOUBLED.lock().unwrap().get(&x).copied().unwrap_or(0)
}

/// Starts `fragile(x)` with its bug and waits until it failed.
async fn failed_fragile(engine: &Engine, run: &str, x: u64) {
    BROKEN.lock().unwrap().insert(x);
    let handle = engine.start(run, fragile(x)).await.unwrap();
    let error = handle.result().await.unwrap_err();
    assert!(error.to_string().contains("a bug"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_resumes_a_failed_run_at_its_step_without_running_committed_steps_again() {
    let journal = TempJournal::new("redrive-failed");
    let engine = builder().open(journal.path()).await.unwrap();
    failed_fragile(&engine, "fragile", 3).await;
    assert!(matches!(
        engine.status("fragile").await.unwrap(),
        RunStatus::Failed { .. }
    ));
    BROKEN.lock().unwrap().remove(&3);
    engine.redrive("fragile").await.unwrap();
    let handle = engine.handle::<fragile>("fragile").unwrap();
    assert_eq!(handle.result().await.unwrap(), 6 + 12);
    assert_eq!(doubled(3), 1, "the committed step ran again");
    assert_eq!(doubled(6), 1);
    let history = engine.history("fragile").await.unwrap();
    let redriven: Vec<_> = history
        .iter()
        .filter(|e| matches!(&e.kind, flow::EventKind::RunRedriven { ended } if ended.contains("failed")))
        .collect();
    assert_eq!(redriven.len(), 1, "{history:#?}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_gives_a_cancelled_step_a_fresh_attempt() {
    let journal = TempJournal::new("redrive-cancelled");
    let engine = builder().open(journal.path()).await.unwrap();
    CLOSED.lock().unwrap().insert(18_002);
    let handle = engine.start("gated", gated(9_001)).await.unwrap();
    eventually("the first step", || doubled(9_001) == 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    engine.cancel("gated").await.unwrap();
    assert!(handle.result().await.is_err());
    assert_eq!(engine.status("gated").await.unwrap(), RunStatus::Cancelled);
    CLOSED.lock().unwrap().remove(&18_002);
    engine.redrive("gated").await.unwrap();
    assert_eq!(handle.result().await.unwrap(), 18_002);
    assert_eq!(doubled(9_001), 1, "the committed step ran again");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_refuses_runs_that_did_not_fail_and_writes_nothing() {
    let journal = TempJournal::new("redrive-refused");
    let engine = builder().open(journal.path()).await.unwrap();
    engine
        .start("done", short(1))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    let waiting = engine.start("waiting", await_count()).await.unwrap();
    let token = waiting_token(&engine, "waiting").await;
    let before = journal_files(journal.path());
    for run in ["done", "waiting"] {
        let error = engine.redrive(run).await.unwrap_err();
        assert!(
            matches!(&error, FlowError::NotRedrivable { run_id, .. } if run_id == run),
            "{error}"
        );
    }
    assert!(matches!(
        engine.redrive("nobody").await.unwrap_err(),
        FlowError::UnknownRun { .. }
    ));
    assert!(journal_files(journal.path()) == before, "a refusal wrote");
    engine.complete(&token, Ok(1u64)).await.unwrap();
    waiting.result().await.unwrap().unwrap();
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_survives_a_crash_at_every_commit() {
    let dir = ScratchDir::new("redrive-crash");
    // Commits from the redrive to the end, uninterrupted.
    let path = dir.journal("reference");
    let engine = builder().open(&path).await.unwrap();
    failed_fragile(&engine, "run", 20).await;
    engine.shutdown().await;
    drop(engine);
    BROKEN.lock().unwrap().remove(&20);
    let (counting, commits) = Commits::counting(builder());
    let engine = counting.open(&path).await.unwrap();
    engine.redrive("run").await.unwrap();
    let handle = engine.handle::<fragile>("run").unwrap();
    assert_eq!(handle.result().await.unwrap(), 40 + 80);
    engine.shutdown().await;
    let total = commits.get();
    assert!(total >= 2, "the redrive and the run's end: {total}");

    for k in 1..=total {
        let x = 100 + k;
        let path = dir.journal(&format!("crash-{k}"));
        let engine = builder().open(&path).await.unwrap();
        failed_fragile(&engine, "run", x).await;
        engine.shutdown().await;
        drop(engine);
        BROKEN.lock().unwrap().remove(&x);

        let (halting, commits) = halting(builder(), k);
        let engine = halting.open(&path).await.unwrap();
        engine.redrive("run").await.unwrap();
        assert_eq!(commits.wait_for(k, Duration::from_secs(5)).await, k);
        engine.shutdown().await;
        drop(engine);

        let engine = builder().open(&path).await.unwrap();
        let handle = engine.handle::<fragile>("run").unwrap();
        let out = tokio::time::timeout(Duration::from_secs(20), handle.result())
            .await
            .unwrap_or_else(|_| panic!("no result after a crash at commit {k}"))
            .unwrap();
        assert_eq!(out, 2 * x + 4 * x, "crash at commit {k}");
        assert_eq!(
            doubled(x),
            1,
            "crash at commit {k}: the committed step ran again"
        );
        let history = engine.history("run").await.unwrap();
        let redrives = history
            .iter()
            .filter(|e| matches!(e.kind, flow::EventKind::RunRedriven { .. }))
            .count();
        assert_eq!(redrives, 1, "crash at commit {k}");
        engine.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------
// Fork.

/// Three steps, with locals that change at each: `seen` holds every value so far.
#[workflow]
async fn ledger(start: u64) -> Vec<u64> {
    let mut seen = vec![start];
    let mut acc = start;
    for _ in 0..3 {
        acc = counted_double(acc).await;
        seen.push(acc);
    }
    seen
}

#[workflow]
async fn mapped(n: u64) -> u64 {
    let first = counted_double(n).await;
    let items = flow::map(vec![1u64, 2], 2, double).await;
    let last = double(first).await;
    first + items.iter().sum::<u64>() + last
}

fn forked_events(history: &[flow::HistoryEvent]) -> Vec<(String, u64)> {
    history
        .iter()
        .filter_map(|e| match &e.kind {
            flow::EventKind::RunForked { from, step } => Some((from.clone(), *step)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_starts_a_new_run_from_the_state_before_each_step() {
    let journal = TempJournal::new("fork");
    let engine = builder().open(journal.path()).await.unwrap();
    let run = engine.start("ledger", ledger(1000)).await.unwrap();
    let expected = vec![1000, 2000, 4000, 8000];
    assert_eq!(run.result().await.unwrap(), expected);
    let source_history = engine.history("ledger").await.unwrap();
    for step in 0..3u64 {
        let id = format!("ledger-from-{step}");
        let before: Vec<usize> = [1000, 2000, 4000].iter().map(|x| doubled(*x)).collect();
        engine.fork("ledger", step, id.as_str()).await.unwrap();
        let fork = engine.handle::<ledger>(&id).unwrap();
        // The locals before the step (`seen` with `step + 1` values) come back.
        assert_eq!(
            fork.result().await.unwrap(),
            expected,
            "fork at step {step}"
        );
        let after: Vec<usize> = [1000, 2000, 4000].iter().map(|x| doubled(*x)).collect();
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            let rerun = usize::from(i as u64 >= step);
            assert_eq!(
                a - b,
                rerun,
                "fork at step {step}: step {i} ran {} times",
                a - b
            );
        }
        let history = engine.history(&id).await.unwrap();
        assert_eq!(forked_events(&history), vec![("ledger".to_string(), step)]);
        let completed: Vec<u64> = history
            .iter()
            .filter_map(|e| match e.kind {
                flow::EventKind::StepCompleted { step, .. } => Some(step),
                _ => None,
            })
            .collect();
        assert_eq!(
            completed,
            (step..3).collect::<Vec<_>>(),
            "fork at step {step}"
        );
    }
    // The source is as it was.
    assert_eq!(engine.history("ledger").await.unwrap(), source_history);
    // A fork of a fork, at or after its fork step.
    engine
        .fork("ledger-from-1", 2, "ledger-again")
        .await
        .unwrap();
    let again = engine.handle::<ledger>("ledger-again").unwrap();
    assert_eq!(again.result().await.unwrap(), expected);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_refuses_what_it_cannot_start_and_writes_nothing() {
    let journal = TempJournal::new("fork-refused");
    let engine = builder().open(journal.path()).await.unwrap();
    engine
        .start("ledger", ledger(50))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    engine
        .start("mapped", mapped(60))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    engine
        .start("taken", short(1))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    engine.shutdown().await;
    drop(engine);
    // A map whose items a flow version from before they were kept deleted when it ended
    // (a map with its items is forked from: tests/map_items.rs).
    {
        let db = redb::Database::open(journal.path()).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let table = redb::TableDefinition::<(&str, u64, u32), sealed::Sealed<&[u8]>>::new(
                "flow_map_items",
            );
            let mut table = txn.open_table(table).unwrap();
            table
                .retain_in(("mapped", 1, 0)..=("mapped", 1, u32::MAX), |_, _| false)
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let engine = builder().open(journal.path()).await.unwrap();
    let before = journal_files(journal.path());
    let refusals = [
        engine.fork("ledger", 3, "new").await.unwrap_err(),
        engine.fork("mapped", 1, "new").await.unwrap_err(),
        engine.fork("ledger", 0, "taken").await.unwrap_err(),
        engine.fork("nobody", 0, "new").await.unwrap_err(),
        engine.fork("ledger", 0, "").await.unwrap_err(),
    ];
    assert!(
        matches!(&refusals[0], FlowError::ForkRefused { step: 3, reason, .. } if reason.contains("0 to 2")),
        "{}",
        refusals[0]
    );
    assert!(
        matches!(&refusals[1], FlowError::ForkRefused { reason, .. } if reason.contains("map")),
        "{}",
        refusals[1]
    );
    assert!(
        matches!(refusals[2], FlowError::RunIdConflict { .. }),
        "{}",
        refusals[2]
    );
    assert!(
        matches!(refusals[3], FlowError::UnknownRun { .. }),
        "{}",
        refusals[3]
    );
    assert!(
        matches!(refusals[4], FlowError::InvalidRunId { .. }),
        "{}",
        refusals[4]
    );
    assert!(journal_files(journal.path()) == before, "a refusal wrote");
    // The step after the map can be forked from: the map's result is a saved local.
    engine.fork("mapped", 2, "after-map").await.unwrap();
    let fork = engine.handle::<mapped>("after-map").unwrap();
    assert_eq!(fork.result().await.unwrap(), 120 + 2 + 4 + 240);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_survives_a_crash_at_every_commit() {
    let dir = ScratchDir::new("fork-crash");
    let expected = |x: u64| vec![x, 2 * x, 4 * x, 8 * x];
    let path = dir.journal("reference");
    let engine = builder().open(&path).await.unwrap();
    engine
        .start("source", ledger(7))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    engine.shutdown().await;
    drop(engine);
    let (counting, commits) = Commits::counting(builder());
    let engine = counting.open(&path).await.unwrap();
    engine.fork("source", 1, "fork").await.unwrap();
    let out = engine
        .handle::<ledger>("fork")
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(out, expected(7));
    engine.shutdown().await;
    let total = commits.get();
    assert!(total >= 3, "the fork's start and its steps: {total}");

    for k in 1..=total {
        let path = dir.journal(&format!("crash-{k}"));
        let engine = builder().open(&path).await.unwrap();
        engine
            .start("source", ledger(7))
            .await
            .unwrap()
            .result()
            .await
            .unwrap();
        engine.shutdown().await;
        drop(engine);

        let (halting, commits) = halting(builder(), k);
        let engine = halting.open(&path).await.unwrap();
        engine.fork("source", 1, "fork").await.unwrap();
        assert_eq!(commits.wait_for(k, Duration::from_secs(5)).await, k);
        engine.shutdown().await;
        drop(engine);

        let engine = builder().open(&path).await.unwrap();
        let handle = engine.handle::<ledger>("fork").unwrap();
        let out = tokio::time::timeout(Duration::from_secs(20), handle.result())
            .await
            .unwrap_or_else(|_| panic!("no result after a crash at commit {k}"))
            .unwrap();
        assert_eq!(out, expected(7), "crash at commit {k}");
        let history = engine.history("fork").await.unwrap();
        assert_eq!(forked_events(&history).len(), 1, "crash at commit {k}");
        let mut completed: Vec<u64> = history
            .iter()
            .filter_map(|e| match e.kind {
                flow::EventKind::StepCompleted { step, .. } => Some(step),
                _ => None,
            })
            .collect();
        completed.dedup();
        assert_eq!(completed, vec![1, 2], "crash at commit {k}: {history:#?}");
        engine.shutdown().await;
    }
}
