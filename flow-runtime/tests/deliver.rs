//! `Engine::deliver`: requests from outside a run applied once per request ID, across
//! retries, refusals, reopens and a killed engine's replayed log; and `Engine::wait`
//! with `RunDescription::into_result`.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flow::{
    codec, route_key, task, token_route, workflow, CallbackError, Delivery, Engine, EngineBuilder,
    EventKind, FlowError, RunDescription, RunStatus, TaskContext, WaitForCallback, Workflow,
};
use redb::StorageBackend;

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

/// Tokens handed out by `hand_out`, by run ID.
static TOKENS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

#[task]
async fn hand_out(order: u64) -> u64 {
    let ctx = TaskContext::current().expect("runs in the engine");
    let token = ctx.callback_token().expect("a callback task has a token");
    TOKENS
        .lock()
        .unwrap()
        .insert(ctx.run_id.clone(), token.to_string());
    order
}

#[workflow]
async fn approval(order: u64) -> Result<String, CallbackError> {
    let answer = hand_out(order)
        .wait_for_callback::<String>(Duration::from_secs(600))
        .await;
    answer
}

#[task(retry(max_attempts = 1))]
async fn crash(_x: u64) -> u64 {
    panic!("crash")
}

/// Fails: its task panics and a `u64` cannot carry the failure.
#[workflow]
async fn failing(x: u64) -> u64 {
    crash(x).await
}

fn builder() -> EngineBuilder {
    Engine::builder()
        .register::<collect>()
        .register::<approval>()
        .register::<failing>()
}

fn item(run_id: &str, value: u32) -> Delivery {
    Delivery::Signal {
        run_id: run_id.to_string(),
        name: "item".to_string(),
        payload: codec::encode(&value, String::new).unwrap(),
        sent_type: std::any::type_name::<u32>().to_string(),
    }
}

/// How many signals the run's history says it received.
async fn received(engine: &Engine, run_id: &str) -> usize {
    let history = engine.history(run_id).await.unwrap();
    history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::SignalReceived { .. }))
        .count()
}

async fn token_of(run: &str) -> String {
    for _ in 0..5000 {
        if let Some(token) = TOKENS.lock().unwrap().get(run) {
            return token.clone();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("no token for {run}");
}

async fn result_of(engine: &Engine, run_id: &str) -> Vec<u32> {
    engine
        .handle::<collect>(run_id)
        .unwrap()
        .result()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_is_applied_once() {
    let engine = builder().open_in_memory().await.unwrap();
    engine.start("c", collect(2)).await.unwrap();
    engine.deliver("r1", item("c", 1)).await.unwrap();
    // The same request again (a retry after a lost answer): nothing changes.
    engine.deliver("r1", item("c", 1)).await.unwrap();
    assert_eq!(received(&engine, "c").await, 1);
    // Another request ID is another signal.
    engine.deliver("r2", item("c", 2)).await.unwrap();
    assert_eq!(result_of(&engine, "c").await, [1, 2]);
    assert_eq!(received(&engine, "c").await, 2);
    assert_eq!(engine.deliveries().await.unwrap(), ["r1", "r2"]);

    // Applied once already: still `Ok` though the run has finished since.
    engine.deliver("r2", item("c", 2)).await.unwrap();
    // A new request for the finished run is refused, and not recorded.
    let error = engine.deliver("r3", item("c", 3)).await.unwrap_err();
    assert!(matches!(error, FlowError::RunFinished { .. }), "{error}");
    assert_eq!(engine.deliveries().await.unwrap(), ["r1", "r2"]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delivery_records_nothing() {
    let engine = builder().open_in_memory().await.unwrap();
    let error = engine.deliver("r", item("later", 7)).await.unwrap_err();
    assert!(matches!(error, FlowError::UnknownRun { .. }), "{error}");
    let error = engine
        .deliver(
            "r",
            Delivery::Cancel {
                run_id: "later".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(error, FlowError::UnknownRun { .. }), "{error}");
    assert!(engine.deliveries().await.unwrap().is_empty());

    engine.start("later", collect(1)).await.unwrap();
    // A value of the wrong type is refused as `Engine::signal` refuses it.
    let wrong = Delivery::Signal {
        run_id: "later".into(),
        name: "item".into(),
        payload: codec::encode("seven", String::new).unwrap(),
        sent_type: "&str".into(),
    };
    let error = engine.deliver("r", wrong).await.unwrap_err();
    assert!(
        matches!(error, FlowError::SignalTypeMismatch { .. }),
        "{error}"
    );
    assert!(engine.deliveries().await.unwrap().is_empty());

    // The same ID, judged anew now that the run exists: applied.
    engine.deliver("r", item("later", 7)).await.unwrap();
    engine.deliver("r", item("later", 8)).await.unwrap();
    assert_eq!(result_of(&engine, "later").await, [7]);
    assert_eq!(received(&engine, "later").await, 1);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_ids_are_applied_again() {
    let engine = builder().open_in_memory().await.unwrap();
    engine.start("f", collect(2)).await.unwrap();
    engine.deliver("r1", item("f", 1)).await.unwrap();
    engine.deliver("other", item("f", 5)).await.unwrap();
    engine
        .forget_deliveries(vec!["r1".into(), "never".into()])
        .await
        .unwrap();
    assert_eq!(engine.deliveries().await.unwrap(), ["other"]);
    // What `forget_deliveries` documents: the ID is a new request again.
    engine.start("g", collect(2)).await.unwrap();
    engine.deliver("r1", item("g", 1)).await.unwrap();
    engine.deliver("r1", item("g", 1)).await.unwrap();
    engine.forget_deliveries(vec!["r1".into()]).await.unwrap();
    engine.deliver("r1", item("g", 1)).await.unwrap();
    assert_eq!(result_of(&engine, "g").await, [1, 1]);
    engine.forget_deliveries(Vec::new()).await.unwrap();
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_and_cancellations_are_delivered_once() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine.start("cb", approval(1)).await.unwrap();
    let token = token_of("cb").await;
    assert_eq!(token_route(&token), Some(route_key("cb")));
    for _ in 0..2000 {
        if run.status().await.unwrap() == RunStatus::Waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    engine
        .deliver(
            "h1",
            Delivery::Heartbeat {
                token: token.clone(),
            },
        )
        .await
        .unwrap();
    let completion = Delivery::Complete {
        token: token.clone(),
        result: Ok(codec::encode("yes", String::new).unwrap()),
        sent_type: "&str".into(),
    };
    engine.deliver("k1", completion.clone()).await.unwrap();
    // A second completion of a single-use token would be refused: the same request is not.
    engine.deliver("k1", completion.clone()).await.unwrap();
    assert_eq!(run.result().await.unwrap(), Ok("yes".to_string()));
    let error = engine.deliver("k2", completion).await.unwrap_err();
    assert!(
        matches!(error, FlowError::InvalidCallbackToken { .. }),
        "{error}"
    );
    let error = engine
        .complete(&token, Ok::<_, String>("again"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, FlowError::InvalidCallbackToken { .. }),
        "{error}"
    );
    let history = run.history().await.unwrap();
    let completions = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::CallbackCompleted { .. }))
        .count();
    assert_eq!(completions, 1);

    // A rejection, and a completion with a value of the wrong type.
    let run = engine.start("cb2", approval(2)).await.unwrap();
    let token = token_of("cb2").await;
    let wrong = Delivery::Complete {
        token: token.clone(),
        result: Ok(codec::encode(&7u32, String::new).unwrap()),
        sent_type: "u32".into(),
    };
    let error = engine.deliver("k3", wrong).await.unwrap_err();
    assert!(
        matches!(error, FlowError::CallbackTypeMismatch { .. }),
        "{error}"
    );
    let reject = Delivery::Complete {
        token,
        result: Err("no".into()),
        sent_type: String::new(),
    };
    engine.deliver("k3", reject).await.unwrap();
    assert_eq!(
        run.result().await.unwrap(),
        Err(CallbackError::Rejected("no".into()))
    );

    // A cancellation, twice under one ID.
    engine.start("x", collect(1)).await.unwrap();
    let cancel = Delivery::Cancel { run_id: "x".into() };
    engine.deliver("x1", cancel.clone()).await.unwrap();
    engine.deliver("x1", cancel).await.unwrap();
    let description = engine.wait("x").await.unwrap();
    assert_eq!(description.summary.status, RunStatus::Cancelled);
    let history = engine.history("x").await.unwrap();
    let requests = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::CancelRequested))
        .count();
    assert_eq!(requests, 1);
    engine.shutdown().await;
}

/// The error `into_result::<W>` gives for `description`, whose status `is` accepts.
fn refusal<W: Workflow>(description: RunDescription, is: impl Fn(&RunStatus) -> bool) -> FlowError {
    let status = &description.summary.status;
    assert!(is(status), "{status:?}");
    match description.into_result::<W>() {
        Err(error) => error,
        Ok(output) => panic!("an output: {}", output.is_some()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_and_into_result_judge_every_ending() {
    let engine = builder().open_in_memory().await.unwrap();
    engine.start("done", collect(1)).await.unwrap();
    let running = engine.describe("done").await.unwrap();
    assert_eq!(running.into_result::<collect>().unwrap(), None);
    engine.signal("done", "item", &4u32).await.unwrap();
    let description = engine.wait("done").await.unwrap();
    assert_eq!(description.summary.status, RunStatus::Completed);
    assert_eq!(
        description.clone().into_result::<collect>().unwrap(),
        Some(vec![4])
    );
    let error = description.into_result::<failing>().unwrap_err();
    assert!(matches!(error, FlowError::WrongWorkflow { .. }), "{error}");

    engine.start("failed", failing(1)).await.unwrap();
    let description = engine.wait("failed").await.unwrap();
    let error = refusal::<failing>(description, |s| matches!(s, RunStatus::Failed { .. }));
    assert!(matches!(error, FlowError::RunFailed { .. }), "{error}");

    engine.start("cancelled", collect(1)).await.unwrap();
    engine.cancel("cancelled").await.unwrap();
    let description = engine.wait("cancelled").await.unwrap();
    let error = refusal::<collect>(description, |s| *s == RunStatus::Cancelled);
    assert!(matches!(error, FlowError::RunCancelled { .. }), "{error}");

    let error = engine.wait("nobody").await.unwrap_err();
    assert!(matches!(error, FlowError::UnknownRun { .. }), "{error}");
    engine.shutdown().await;

    // A run this engine cannot drive: `wait` returns it blocked.
    let files = Files::default();
    let engine = on(builder(), &files).await;
    engine.start("blocked", collect(1)).await.unwrap();
    engine.shutdown().await;
    let engine = on(Engine::builder(), &files).await;
    let description = engine.wait("blocked").await.unwrap();
    let error = refusal::<collect>(description, |s| matches!(s, RunStatus::Blocked { .. }));
    assert!(matches!(error, FlowError::RunBlocked { .. }), "{error}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_survive_a_kill_and_a_reopen() {
    let files = Files::default();
    let engine = on(builder(), &files).await;
    engine.start("c", collect(3)).await.unwrap();
    engine.deliver("r1", item("c", 1)).await.unwrap();
    engine.deliver("gone", item("c", 9)).await.unwrap();
    engine.forget_deliveries(vec!["gone".into()]).await.unwrap();
    // What `kill -9` leaves: every write made so far, no checkpoint, the log to replay.
    let killed = files.image();
    engine.shutdown().await;

    // The journal file alone has not got them: they are in the log only, so what
    // follows replays it.
    let journal_only = killed.image();
    // The log's header (its first 4 KiB), its records zeroed.
    journal_only.0.lock().unwrap()[1][4096..].fill(0);
    let engine = on(builder(), &journal_only).await;
    assert!(engine.deliveries().await.unwrap().is_empty());
    engine.shutdown().await;

    let engine = on(builder(), &killed).await;
    assert_eq!(engine.deliveries().await.unwrap(), ["r1"]);
    engine.deliver("r1", item("c", 1)).await.unwrap();
    engine.deliver("r2", item("c", 2)).await.unwrap();
    let killed_again = killed.image();
    engine.shutdown().await;

    // Replayed twice over (a second kill): still each request once.
    let engine = on(builder(), &killed_again).await;
    engine.deliver("r1", item("c", 1)).await.unwrap();
    engine.deliver("r2", item("c", 2)).await.unwrap();
    assert_eq!(result_of(&engine, "c").await, [1, 9, 2]);
    engine.shutdown().await;

    // After a clean shutdown (checkpointed, empty log).
    let engine = on(builder(), &killed_again).await;
    engine.deliver("r1", item("c", 1)).await.unwrap();
    assert_eq!(engine.deliveries().await.unwrap(), ["r1", "r2"]);
    assert_eq!(received(&engine, "c").await, 3);
    assert_eq!(result_of(&engine, "c").await, [1, 9, 2]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_from_before_deliveries_gets_the_table_when_opened() {
    let dir = std::env::temp_dir().join(format!("flow-deliver-old-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("journal.redb");
    let engine = builder().open(&path).await.unwrap();
    engine.start("old", collect(1)).await.unwrap();
    engine.shutdown().await;
    drop(engine);
    // What flow left before deliveries: the same format, without their table.
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let table = redb::TableDefinition::<&str, ()>::new("flow_deliveries");
        assert!(txn.delete_table(table).unwrap(), "the table existed");
        txn.commit().unwrap();
    }
    // Looked at without a write: no deliveries.
    let engine = Engine::builder().inspect_only().open(&path).await.unwrap();
    assert!(engine.deliveries().await.unwrap().is_empty());
    engine.shutdown().await;
    drop(engine);
    let engine = builder().open(&path).await.unwrap();
    assert!(engine.deliveries().await.unwrap().is_empty());
    engine.deliver("r1", item("old", 3)).await.unwrap();
    engine.deliver("r1", item("old", 3)).await.unwrap();
    assert_eq!(result_of(&engine, "old").await, [3]);
    assert_eq!(engine.deliveries().await.unwrap(), ["r1"]);
    engine.shutdown().await;
    drop(engine);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A journal and its log in memory, behind one lock so that an image of both is taken
/// at one instant (what a killed process leaves).
#[derive(Debug, Clone, Default)]
struct Files(Arc<Mutex<[Vec<u8>; 2]>>);

impl Files {
    fn file(&self, which: usize) -> MemFile {
        MemFile(self.clone(), which)
    }

    /// A copy of both files as they are now.
    fn image(&self) -> Files {
        Files(Arc::new(Mutex::new(self.0.lock().unwrap().clone())))
    }
}

/// Opens an engine on `files`.
async fn on(builder: EngineBuilder, files: &Files) -> Engine {
    builder
        .backend(files.file(0))
        .log_backend(files.file(1))
        .open_in_memory()
        .await
        .unwrap()
}

#[derive(Debug)]
struct MemFile(Files, usize);

fn out_of_range() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "out of range")
}

impl StorageBackend for MemFile {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.0 .0.lock().unwrap()[self.1].len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let files = self.0 .0.lock().unwrap();
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let bytes = files[self.1]
            .get(start..start + out.len())
            .ok_or_else(out_of_range)?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let len = usize::try_from(len).map_err(|_| out_of_range())?;
        self.0 .0.lock().unwrap()[self.1].resize(len, 0);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut files = self.0 .0.lock().unwrap();
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let file = &mut files[self.1];
        if file.len() < start + data.len() {
            file.resize(start + data.len(), 0);
        }
        file[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn close(&self) -> Result<(), io::Error> {
        Ok(())
    }
}
