//! A run's life after its steps: typed callback completions (a value that does not fit
//! the awaited type is refused and the token stays open).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use flow::WaitForCallback;
use flow::{task, workflow, CallbackError, Engine, FlowError, RunStatus, TaskContext};
use serde::{Deserialize, Serialize};
use support::{eventually, TempJournal};

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
