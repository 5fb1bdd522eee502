//! A map's and a batch's items in a run's history and exports: shown with their names
//! and arguments once the map finished, also after a crash and a reopen; compared item by
//! item when an exported run is replayed; forked from; deleted with the run.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use flow::testing::{Divergence, RecordedRun};
use flow::{task, workflow, Engine, EngineBuilder, EventKind, HistoryEvent, OpExt, OpRequest};
use redb::{ReadableDatabase, ReadableTableMetadata};
use serde::Deserialize;
use support::{halting, Commits, ScratchDir};

/// Items shipped so far, in every test of this file (each test uses its own items).
static SHIPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn shipped(prefix: &str) -> usize {
    SHIPPED
        .lock()
        .unwrap()
        .iter()
        .filter(|i| i.starts_with(prefix))
        .count()
}

#[task]
async fn dispatch_item(item: String) -> String {
    SHIPPED.lock().unwrap().push(item.clone());
    format!("shipped {item}")
}

#[task]
async fn weigh(item: String) -> u32 {
    item.len() as u32
}

/// A map of named items (step 0), a batch (step 1), then a signal (step 2).
#[workflow]
async fn dispatch(items: Vec<String>) -> (Vec<String>, u32) {
    let names = items.clone();
    let shipped = flow::map(items, 2, |x: String| {
        dispatch_item(x.clone()).named(format!("ship {x}"))
    })
    .await;
    let batch = flow::all(names.iter().map(|i| weigh(i.clone())).collect::<Vec<_>>()).await;
    let total: u32 = batch.successes().map(|(_, w)| *w).sum();
    let _ = flow::signal::<bool>("done").await;
    (shipped, total)
}

/// Ships each item upper-cased: different arguments in the map (step 0).
#[workflow]
async fn dispatch_loud(items: Vec<String>) -> (Vec<String>, u32) {
    let names = items.clone();
    let shipped = flow::map(items, 2, |x: String| {
        dispatch_item(x.to_uppercase()).named(format!("ship {x}"))
    })
    .await;
    let batch = flow::all(names.iter().map(|i| weigh(i.clone())).collect::<Vec<_>>()).await;
    let total: u32 = batch.successes().map(|(_, w)| *w).sum();
    let _ = flow::signal::<bool>("done").await;
    (shipped, total)
}

/// Weighs each item twice over: different arguments in the batch (step 1).
#[workflow]
async fn dispatch_heavy(items: Vec<String>) -> (Vec<String>, u32) {
    let names = items.clone();
    let shipped = flow::map(items, 2, |x: String| {
        dispatch_item(x.clone()).named(format!("ship {x}"))
    })
    .await;
    let batch = flow::all(names.iter().map(|i| weigh(i.repeat(2))).collect::<Vec<_>>()).await;
    let total: u32 = batch.successes().map(|(_, w)| *w).sum();
    let _ = flow::signal::<bool>("done").await;
    (shipped, total)
}

/// The arguments of a `ship` or `weigh` call, as the task encodes them.
#[derive(Debug, Deserialize)]
struct ItemArgs {
    item: String,
}

fn items(prefix: &str) -> Vec<String> {
    (0..5).map(|i| format!("{prefix}-{i}")).collect()
}

fn builder() -> EngineBuilder {
    Engine::builder().register::<dispatch>()
}

/// The request of step `step`'s `StepScheduled` event.
fn scheduled(history: &[HistoryEvent], step: u64) -> OpRequest {
    history
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::StepScheduled {
                step: s, request, ..
            } if *s == step => Some(request.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no StepScheduled event for step {step}"))
}

/// The (name, task, item argument) of each item of a map or batch request.
fn item_calls(request: &OpRequest) -> Vec<(Option<String>, String, String)> {
    let (OpRequest::Map { items, .. } | OpRequest::Batch { items, .. }) = request else {
        panic!("not a map or batch: {request:?}");
    };
    items
        .iter()
        .map(|item| {
            let (item, name) = item.clone().unnamed();
            let OpRequest::Task {
                name: task, args, ..
            } = item
            else {
                panic!("not a task call: {item:?}");
            };
            let args: ItemArgs = flow::codec::decode(&args, || "args".into()).unwrap();
            (
                name,
                task.rsplit("::").next().unwrap().to_string(),
                args.item,
            )
        })
        .collect()
}

/// Checks that the history shows the map's (step 0) and the batch's (step 1) items.
fn assert_items_shown(history: &[HistoryEvent], prefix: &str) {
    let expected = items(prefix);
    let map = item_calls(&scheduled(history, 0));
    let want: Vec<_> = expected
        .iter()
        .map(|i| {
            (
                Some(format!("ship {i}")),
                "dispatch_item".to_string(),
                i.clone(),
            )
        })
        .collect();
    assert_eq!(map, want);
    let batch = item_calls(&scheduled(history, 1));
    let want: Vec<_> = expected
        .iter()
        .map(|i| (None, "weigh".to_string(), i.clone()))
        .collect();
    assert_eq!(batch, want);
}

/// Waits until the run awaits its signal (step 2 scheduled).
async fn awaiting_signal(engine: &Engine, run: &str) {
    for _ in 0..500 {
        let history = engine.history(run).await.unwrap();
        let waiting = history
            .iter()
            .any(|e| matches!(&e.kind, EventKind::StepScheduled { step: 2, .. }));
        if waiting {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("run `{run}` never awaited its signal");
}

fn expected_output(prefix: &str) -> (Vec<String>, u32) {
    let items = items(prefix);
    let total = items.iter().map(|i| i.len() as u32).sum();
    (
        items.iter().map(|i| format!("shipped {i}")).collect(),
        total,
    )
}

/// Rows of the closed journal's `flow_map_items` table.
fn map_item_rows(path: &Path) -> u64 {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let table = redb::TableDefinition::<(&str, u64, u32), &[u8]>::new("flow_map_items");
    txn.open_untyped_table(table).unwrap().len().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_shows_every_item_of_a_finished_map_and_batch() {
    let dir = ScratchDir::new("map-items-history");
    let engine = builder().open(dir.journal("history")).await.unwrap();
    let run = engine.start("h", dispatch(items("hist"))).await.unwrap();
    awaiting_signal(&engine, "h").await;
    // Both finished: the run waits for its signal.
    assert_items_shown(&engine.history("h").await.unwrap(), "hist");
    engine.signal("h", "done", &true).await.unwrap();
    assert_eq!(run.result().await.unwrap(), expected_output("hist"));
    let history = engine.history("h").await.unwrap();
    assert_items_shown(&history, "hist");
    // The labels still count the items.
    let names: Vec<_> = history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepScheduled { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["map(5)", "batch(5)", "signal:done"]);
    assert_eq!(shipped("hist"), 5);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_run_compares_map_and_batch_items_on_replay() {
    let dir = ScratchDir::new("map-items-export");
    let engine = builder().open(dir.journal("export")).await.unwrap();
    let run = engine.start("e", dispatch(items("exp"))).await.unwrap();
    awaiting_signal(&engine, "e").await;
    engine.signal("e", "done", &true).await.unwrap();
    run.result().await.unwrap();
    let file = dir.file("e.flowrun");
    let exported = engine.export("e", &file).await.unwrap();
    engine.shutdown().await;

    let recorded = RecordedRun::from_file(&file).unwrap();
    assert_eq!(recorded, exported);
    let map = recorded.steps[0].request.as_ref().unwrap();
    assert_eq!(item_calls(map).len(), 5);
    recorded.replay::<dispatch>().unwrap();

    // A changed argument of a map item: a divergence at the map's step.
    match recorded.replay::<dispatch_loud>().unwrap_err() {
        Divergence::DifferentArguments {
            index,
            name,
            recorded,
            current,
        } => {
            assert_eq!((index, name.as_str()), (0, "map(5)"));
            assert_eq!(item_calls(&recorded)[0].2, "exp-0");
            assert_eq!(item_calls(&current)[0].2, "EXP-0");
        }
        other => panic!("{other:?}"),
    }
    // A changed argument of a batch item: at the batch's step.
    match recorded.replay::<dispatch_heavy>().unwrap_err() {
        Divergence::DifferentArguments {
            index,
            name,
            recorded,
            current,
        } => {
            assert_eq!((index, name.as_str()), (1, "batch(5)"));
            assert_eq!(item_calls(&recorded)[4].2, "exp-4");
            assert_eq!(item_calls(&current)[4].2, "exp-4exp-4");
        }
        other => panic!("{other:?}"),
    }
}

/// An engine stopped after each of its commits, then the journal reopened: the finished
/// map's items (still in the journal) are not taken for a running map (no item ships
/// again once the map resumed the run), and the history and export show them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_are_shown_after_a_crash_and_the_finished_map_does_not_run_again() {
    let dir = ScratchDir::new("map-items-crash");
    // Commits until the run awaits its signal, uninterrupted.
    let (counting, commits) = Commits::counting(builder());
    let engine = counting.open(dir.journal("reference")).await.unwrap();
    engine.start("c", dispatch(items("ref"))).await.unwrap();
    awaiting_signal(&engine, "c").await;
    let total = commits.get();
    engine.shutdown().await;
    assert!(
        total >= 4,
        "a start, map turns, a batch, a signal wait: {total}"
    );

    for k in 1..=total {
        let prefix = format!("crash{k}");
        let path = dir.journal(&format!("crash-{k}"));
        let (halting, commits) = halting(builder(), k);
        let engine = halting.open(&path).await.unwrap();
        engine.start("c", dispatch(items(&prefix))).await.unwrap();
        assert_eq!(commits.wait_for(k, Duration::from_secs(5)).await, k);
        engine.shutdown().await;
        drop(engine);

        let engine = builder().open(&path).await.unwrap();
        awaiting_signal(&engine, "c").await;
        // The map is done: whatever shipped so far is all that ever ships.
        let shipped_before = shipped(&prefix);
        assert!(shipped_before >= 5, "crash at commit {k}: {shipped_before}");
        engine.shutdown().await;
        drop(engine);

        // Reopened once more with the map long finished: the run goes on from its signal.
        let engine = builder().open(&path).await.unwrap();
        assert_items_shown(&engine.history("c").await.unwrap(), &prefix);
        engine.signal("c", "done", &true).await.unwrap();
        let output = engine
            .handle::<dispatch>("c")
            .unwrap()
            .result()
            .await
            .unwrap_or_else(|e| panic!("crash at commit {k}: {e}"));
        assert_eq!(output, expected_output(&prefix), "crash at commit {k}");
        assert_eq!(shipped(&prefix), shipped_before, "crash at commit {k}");
        let file = dir.file(&format!("crash-{k}.flowrun"));
        engine.export("c", &file).await.unwrap();
        engine.shutdown().await;
        let recorded = RecordedRun::from_file(&file).unwrap();
        assert_eq!(
            item_calls(recorded.steps[0].request.as_ref().unwrap()).len(),
            5
        );
        recorded.replay::<dispatch>().unwrap();
        assert!(matches!(
            recorded.replay::<dispatch_loud>(),
            Err(Divergence::DifferentArguments { index: 0, .. })
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_deletes_the_items_of_finished_maps() {
    let dir = ScratchDir::new("map-items-purge");
    let path = dir.journal("purge");
    let engine = builder().open(&path).await.unwrap();
    for run in ["p", "kept"] {
        let handle = engine.start(run, dispatch(items(run))).await.unwrap();
        awaiting_signal(&engine, run).await;
        engine.signal(run, "done", &true).await.unwrap();
        handle.result().await.unwrap();
    }
    engine.shutdown().await;
    drop(engine);
    // Both runs' map and batch items: 2 × (5 + 5).
    assert_eq!(map_item_rows(&path), 20);

    let engine = builder().open(&path).await.unwrap();
    engine.purge("p").await.unwrap();
    assert_items_shown(&engine.history("kept").await.unwrap(), "kept");
    engine.shutdown().await;
    drop(engine);
    assert_eq!(map_item_rows(&path), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_step_is_forked_with_its_items() {
    let dir = ScratchDir::new("map-items-fork");
    let engine = builder().open(dir.journal("fork")).await.unwrap();
    let run = engine.start("src", dispatch(items("fork"))).await.unwrap();
    awaiting_signal(&engine, "src").await;
    engine.signal("src", "done", &true).await.unwrap();
    run.result().await.unwrap();
    assert_eq!(shipped("fork"), 5);

    for step in [0, 1] {
        let forked = format!("fork-{step}");
        engine.fork("src", step, forked.as_str()).await.unwrap();
        awaiting_signal(&engine, &forked).await;
        engine.signal(&forked, "done", &true).await.unwrap();
        let handle = engine.handle::<dispatch>(&forked).unwrap();
        assert_eq!(
            handle.result().await.unwrap(),
            expected_output("fork"),
            "fork at step {step}"
        );
        // The forked step's items are in the new run's history too.
        let history = engine.history(&forked).await.unwrap();
        let batch = item_calls(&scheduled(&history, 1));
        assert_eq!(batch.len(), 5, "fork at step {step}");
        assert_eq!(batch[2].2, "fork-2");
    }
    assert_items_shown(&engine.history("fork-0").await.unwrap(), "fork");
    // Forked at the map, every item shipped afresh; at the batch, none.
    assert_eq!(shipped("fork"), 10);
    let names: BTreeMap<_, _> = engine
        .history("fork-0")
        .await
        .unwrap()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::BranchNamed { step, branch, name } => Some(((*step, *branch), name.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(names.get(&(0, 3)).map(String::as_str), Some("ship fork-3"));
    engine.shutdown().await;
}

/// `dispatch` with its map's items shipped upper-cased.
#[workflow(name = "dispatch", version = 2)]
async fn dispatch_v2_loud(items: Vec<String>) -> (Vec<String>, u32) {
    let names = items.clone();
    let shipped = flow::map(items, 2, |x: String| {
        dispatch_item(x.to_uppercase()).named(format!("ship {x}"))
    })
    .await;
    let batch = flow::all(names.iter().map(|i| weigh(i.clone())).collect::<Vec<_>>()).await;
    let total: u32 = batch.successes().map(|(_, w)| *w).sum();
    let _ = flow::signal::<bool>("done").await;
    (shipped, total)
}

/// `dispatch` with the same awaits, and a total counted twice after them.
#[workflow(name = "dispatch", version = 2)]
async fn dispatch_v2_same(items: Vec<String>) -> (Vec<String>, u32) {
    let names = items.clone();
    let shipped = flow::map(items, 2, |x: String| {
        dispatch_item(x.clone()).named(format!("ship {x}"))
    })
    .await;
    let batch = flow::all(names.iter().map(|i| weigh(i.clone())).collect::<Vec<_>>()).await;
    let total: u32 = batch.successes().map(|(_, w)| *w).sum();
    let _ = flow::signal::<bool>("done").await;
    (shipped, total * 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_compares_the_items_of_finished_maps() {
    let dir = ScratchDir::new("map-items-upgrade");
    let path = dir.journal("upgrade");
    let engine = builder().open(&path).await.unwrap();
    engine.start("u", dispatch(items("upg"))).await.unwrap();
    awaiting_signal(&engine, "u").await;
    engine.shutdown().await;
    drop(engine);

    let engine = builder()
        .register::<dispatch_v2_loud>()
        .open(&path)
        .await
        .unwrap();
    let refused = engine
        .upgrade::<dispatch_v2_loud>("u", flow::Upgrade::new())
        .await
        .unwrap_err();
    let message = refused.to_string();
    assert!(
        message.contains("step 0") && message.contains("other arguments"),
        "{message}"
    );
    engine.shutdown().await;
    drop(engine);

    let engine = builder()
        .register::<dispatch_v2_same>()
        .open(&path)
        .await
        .unwrap();
    engine
        .upgrade::<dispatch_v2_same>("u", flow::Upgrade::new())
        .await
        .unwrap();
    engine.signal("u", "done", &true).await.unwrap();
    let (outputs, total) = engine
        .handle::<dispatch_v2_same>("u")
        .unwrap()
        .result()
        .await
        .unwrap();
    let (want_shipped, want_total) = expected_output("upg");
    assert_eq!((outputs, total), (want_shipped, want_total * 2));
    assert_eq!(shipped("upg"), 5);
    engine.shutdown().await;
}
