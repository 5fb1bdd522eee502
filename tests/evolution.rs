//! Stored values across code changes, with runs in flight: a run starts under one
//! definition of its types, the engine stops while it waits at a step, and the journal is
//! reopened with the types changed. Each pair of modules below defines one workflow twice
//! (same registered name, same body, so the same fingerprint) over two versions of its
//! types. Also: typed signals refused at send, and stored values read as JSON without
//! their types (`flow::codec::to_json`).

use std::path::PathBuf;
use std::time::Duration;

use flow::{codec, workflow, Engine, EventKind, FlowError, RunStatus, Workflow};
use serde::{Deserialize, Serialize};

fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flow-evolution-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.redb"));
    Engine::remove_journal(&path).unwrap();
    path
}

async fn wait_until_waiting(engine: &Engine, run_id: &str) {
    for _ in 0..2000 {
        if engine.status(run_id).await.unwrap() == RunStatus::Waiting {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("run `{run_id}` never waited");
}

/// Starts `input` under `Old`, stops the engine while the run waits for its `go` signal
/// (the input is held as a saved local across that wait), reopens with `New` and lets the
/// run finish; returns its result under `New` and the journal's path.
async fn across<Old: Workflow, New: Workflow>(
    name: &str,
    call: Old,
) -> (Result<New::Output, FlowError>, PathBuf) {
    let path = temp_db(name);
    let engine = Engine::builder()
        .register::<Old>()
        .open(&path)
        .await
        .unwrap();
    engine.start("r", call).await.unwrap();
    wait_until_waiting(&engine, "r").await;
    engine.shutdown().await;

    let engine = Engine::builder()
        .register::<New>()
        .open(&path)
        .await
        .unwrap();
    engine.signal("r", "go", &1u32).await.unwrap();
    let result = engine.handle::<New>("r").unwrap().result().await;
    engine.shutdown().await;
    (result, path)
}

macro_rules! holder {
    ($name:literal) => {
        /// Holds its input across a signal wait, then returns it.
        // The second definition of each pair only resumes runs: it never calls `holder`.
        #[allow(dead_code)]
        #[workflow(name = $name)]
        pub async fn holder(value: Value) -> Value {
            let go = flow::signal::<u32>("go").await;
            let _ = go;
            value
        }
    };
}

mod added_v1 {
    use super::*;
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Value {
        pub id: u64,
        pub note: String,
    }
    holder!("evolve_added");
}

mod added_v2 {
    use super::*;
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Value {
        pub id: u64,
        pub note: String,
        #[serde(default)]
        pub priority: u8,
        pub tag: Option<String>,
    }
    holder!("evolve_added");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_added_with_a_default_reads_as_its_default() {
    let old = added_v1::Value {
        id: 7,
        note: "gift".into(),
    };
    let (result, _) =
        across::<added_v1::holder, added_v2::holder>("added", added_v1::holder(old)).await;
    assert_eq!(
        result.unwrap(),
        added_v2::Value {
            id: 7,
            note: "gift".into(),
            priority: 0,
            tag: None,
        }
    );
}

mod removed_v1 {
    use super::*;
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Value {
        pub id: u64,
        pub legacy: Vec<String>,
        pub note: String,
    }
    holder!("evolve_removed");
}

mod removed_v2 {
    use super::*;
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Value {
        pub id: u64,
        pub note: String,
    }
    holder!("evolve_removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_field_is_ignored() {
    let old = removed_v1::Value {
        id: 3,
        legacy: vec!["a".into(), "b".into()],
        note: "n".into(),
    };
    let (result, _) =
        across::<removed_v1::holder, removed_v2::holder>("removed", removed_v1::holder(old)).await;
    assert_eq!(
        result.unwrap(),
        removed_v2::Value {
            id: 3,
            note: "n".into()
        }
    );
}

mod variant_v1 {
    use super::*;
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum Value {
        Pending,
        Paid { cents: u64 },
    }
    holder!("evolve_variant");
}

mod variant_v2 {
    use super::*;
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum Value {
        Refunded { reason: String },
        Pending,
        Paid { cents: u64 },
    }
    holder!("evolve_variant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variant_added_even_before_the_others_keeps_stored_variants() {
    let old = variant_v1::Value::Paid { cents: 1999 };
    let (result, _) =
        across::<variant_v1::holder, variant_v2::holder>("variant", variant_v1::holder(old)).await;
    assert_eq!(result.unwrap(), variant_v2::Value::Paid { cents: 1999 });
}

mod reordered_v1 {
    use super::*;
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Value {
        pub id: u64,
        pub count: u32,
        pub note: String,
    }
    holder!("evolve_reordered");
}

mod reordered_v2 {
    use super::*;
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Value {
        pub note: String,
        pub count: u32,
        pub id: u64,
    }
    holder!("evolve_reordered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_fields_keep_their_values() {
    let old = reordered_v1::Value {
        id: 1,
        count: 2,
        note: "three".into(),
    };
    let (result, _) = across::<reordered_v1::holder, reordered_v2::holder>(
        "reordered",
        reordered_v1::holder(old),
    )
    .await;
    assert_eq!(
        result.unwrap(),
        reordered_v2::Value {
            note: "three".into(),
            count: 2,
            id: 1
        }
    );
}

mod retyped_v1 {
    use super::*;
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Value {
        pub delta: i64,
    }
    holder!("evolve_retyped");
}

mod retyped_v2 {
    use super::*;
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Value {
        pub delta: u64,
    }
    holder!("evolve_retyped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_change_is_an_error_and_keeps_the_stored_value() {
    let old = retyped_v1::Value { delta: -7 };
    let (result, path) =
        across::<retyped_v1::holder, retyped_v2::holder>("retyped", retyped_v1::holder(old)).await;
    let error = result.unwrap_err().to_string();
    assert!(error.contains("does not fit the type"), "{error}");
    assert!(error.contains("-7"), "{error}");

    // Nothing was deleted: the stored input still reads as it was written.
    let engine = Engine::builder().open(&path).await.unwrap();
    let history = engine.history("r").await.unwrap();
    let Some(EventKind::RunStarted { input, .. }) = history.first().map(|e| &e.kind) else {
        panic!("no RunStarted event: {history:?}");
    };
    assert_eq!(codec::to_json(input).unwrap(), r#"{"delta":-7}"#);
    assert!(
        codec::decode::<retyped_v1::Value>(input, String::new).is_ok(),
        "the old type still reads it"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_of_the_postcard_format_is_refused_untouched() {
    let path = temp_db("format-2");
    let engine = Engine::builder()
        .register::<added_v1::holder>()
        .open(&path)
        .await
        .unwrap();
    let old = added_v1::Value {
        id: 1,
        note: "in flight".into(),
    };
    engine.start("r", added_v1::holder(old)).await.unwrap();
    wait_until_waiting(&engine, "r").await;
    engine.shutdown().await;
    // Format 2: the same tables and records, user values in postcard.
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("flow_meta");
            let mut meta = txn.open_table(meta).unwrap();
            meta.insert("format", 2u32.to_le_bytes().as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let error = Engine::builder()
        .register::<added_v1::holder>()
        .open(&path)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            FlowError::UnsupportedFormat {
                found: 2,
                expected: 4,
                ..
            }
        ),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("format 2") && text.contains("format 4"),
        "{text}"
    );
    assert!(text.contains("nothing was changed"), "{text}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the refusal wrote nothing"
    );
}

// ---- Values of the wrong type: errors, never other values ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Decision {
    Approved { by: String },
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum LookAlike {
    Yes { name: String },
    No,
}

#[test]
fn mismatched_types_are_errors() {
    let neg = codec::encode(&-5i32, String::new).unwrap();
    assert!(codec::decode::<u32>(&neg, String::new).is_err());
    let yes = codec::encode(&true, String::new).unwrap();
    assert!(codec::decode::<u64>(&yes, String::new).is_err());
    let look = codec::encode(&LookAlike::Yes { name: "ann".into() }, String::new).unwrap();
    assert!(codec::decode::<Decision>(&look, String::new).is_err());
    let no = codec::encode(&LookAlike::No, String::new).unwrap();
    assert!(codec::decode::<Decision>(&no, String::new).is_err());
    let big = codec::encode(&300u32, String::new).unwrap();
    assert!(codec::decode::<u8>(&big, String::new).is_err());
    let text = codec::encode("12", String::new).unwrap();
    assert!(codec::decode::<u32>(&text, String::new).is_err());
    let float = codec::encode(&1.5f64, String::new).unwrap();
    assert!(codec::decode::<u64>(&float, String::new).is_err());
    // Trailing bytes are not ignored.
    let mut two = codec::encode(&1u8, String::new).unwrap();
    two.push(0x01);
    assert!(codec::decode::<u8>(&two, String::new).is_err());
}

#[test]
fn to_json_renders_any_value_without_its_type() {
    #[derive(Serialize)]
    struct Line {
        sku: String,
        quantity: u32,
    }
    #[derive(Serialize)]
    struct Order {
        id: u64,
        lines: Vec<Line>,
        decision: Decision,
        status: LookAlike,
        note: Option<String>,
        by_code: std::collections::BTreeMap<u32, String>,
        ratio: f64,
        winner: flow::Either<u8, String>,
    }
    let order = Order {
        id: 42,
        lines: vec![Line {
            sku: "A-1".into(),
            quantity: 2,
        }],
        decision: Decision::Approved { by: "bo".into() },
        status: LookAlike::No,
        note: None,
        by_code: [(7, "seven".to_string())].into(),
        ratio: f64::NAN,
        winner: flow::Either::Right("late".into()),
    };
    let bytes = codec::encode(&order, String::new).unwrap();
    assert_eq!(
        codec::to_json(&bytes).unwrap(),
        r#"{"id":42,"lines":[{"sku":"A-1","quantity":2}],"decision":{"Approved":{"by":"bo"}},"status":"No","note":null,"by_code":{"7":"seven"},"ratio":"NaN","winner":[1,"late"]}"#
    );
    assert!(codec::to_json(&[0xc1]).is_err(), "0xc1 is never valid");
}

// ---- Typed signals ----

/// Waits for a `u32` and a `Decision`; both names are literals, so they are all it waits
/// for.
#[workflow]
async fn typed_waits(start: u32) -> String {
    let n = flow::signal::<u32>("count").await;
    let decision = flow::signal::<Decision>("approval").await;
    format!("{} {n} {decision:?}", start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_that_do_not_fit_are_refused_at_send() {
    let path = temp_db("typed-signals");
    let engine = Engine::builder()
        .register::<typed_waits>()
        .open(&path)
        .await
        .unwrap();
    let run = engine.start("t", typed_waits(1)).await.unwrap();

    let error = engine.signal("t", "count", &-5i32).await.unwrap_err();
    assert!(
        matches!(error, FlowError::SignalTypeMismatch { .. }),
        "{error}"
    );
    let text = error.to_string();
    assert!(text.contains("`i32`") && text.contains("`u32`"), "{text}");
    assert!(engine.signal("t", "count", &true).await.is_err());
    let look = LookAlike::Yes { name: "x".into() };
    let error = engine.signal("t", "approval", &look).await.unwrap_err();
    assert!(error.to_string().contains("LookAlike"), "{error}");
    assert!(error.to_string().contains("Decision"), "{error}");

    let error = engine
        .signal("t", "aproval", &Decision::Rejected)
        .await
        .unwrap_err();
    assert!(matches!(error, FlowError::UnknownSignal { .. }), "{error}");
    assert!(error.to_string().contains("`count`, `approval`"), "{error}");

    // Nothing refused reached the run: it takes the right values in order.
    engine.signal("t", "count", &5u32).await.unwrap();
    engine
        .signal("t", "approval", &Decision::Approved { by: "ann".into() })
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), r#"1 5 Approved { by: "ann" }"#);
    engine.shutdown().await;
}
