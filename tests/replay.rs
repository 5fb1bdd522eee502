//! `flow::testing::RecordedRun`: replaying recorded runs against changed code.

mod support;

use flow::testing::{Divergence, RecordedRun, RecordingError, TestEnv};
use flow::{task, workflow, Engine, FlowError};
use support::ScratchDir;

#[task]
async fn hold(sku: String, qty: u32) -> Result<String, String> {
    Ok(format!("res-{sku}-{qty}"))
}

#[task]
async fn notify(msg: String) -> bool {
    !msg.is_empty()
}

#[workflow]
async fn order_v1(sku: String, qty: u32) -> Result<String, String> {
    let r = hold(sku, qty).await?;
    notify(format!("reserved {r}")).await;
    Ok(r)
}

/// Same calls, different code between steps (allowed: only awaits are compared).
#[workflow]
async fn order_v2(sku: String, qty: u32) -> Result<String, String> {
    let sku = sku.trim().to_string();
    let r = hold(sku, qty).await?;
    let message = format!("reserved {}", r);
    notify(message).await;
    Ok(r)
}

/// Reserves twice the quantity: different arguments.
#[workflow]
async fn order_v3(sku: String, qty: u32) -> Result<String, String> {
    let r = hold(sku, qty * 2).await?;
    notify(format!("reserved {r}")).await;
    Ok(r)
}

/// Notifies before reserving: a different step.
#[workflow]
async fn order_v4(sku: String, qty: u32) -> Result<String, String> {
    notify(format!("reserving {sku}")).await;
    let r = hold(sku, qty).await?;
    Ok(r)
}

/// Returns something else.
#[workflow]
async fn order_v5(sku: String, qty: u32) -> Result<String, String> {
    let r = hold(sku, qty).await?;
    notify(format!("reserved {r}")).await;
    Ok(r.to_uppercase())
}

#[tokio::test]
async fn compatible_code_replays_cleanly() {
    let recorded = RecordedRun::capture(order_v1("kb".into(), 2))
        .await
        .unwrap();
    assert_eq!(recorded.steps.len(), 2);
    recorded.replay::<order_v1>().unwrap();
    recorded.replay::<order_v2>().unwrap();
}

#[tokio::test]
async fn divergences_are_reported_at_the_first_difference() {
    let recorded = RecordedRun::capture(order_v1("kb".into(), 2))
        .await
        .unwrap();
    assert!(matches!(
        recorded.replay::<order_v3>(),
        Err(Divergence::DifferentArguments { index: 0, .. })
    ));
    let e = recorded.replay::<order_v4>().unwrap_err();
    assert!(
        matches!(&e, Divergence::DifferentStep { index: 0, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("`hold`") && e.to_string().contains("`notify`"),
        "{e}"
    );
    assert_eq!(
        recorded.replay::<order_v5>(),
        Err(Divergence::DifferentOutcome)
    );
}

#[tokio::test]
async fn a_history_from_the_engine_replays() {
    let engine = Engine::builder()
        .register::<order_v1>()
        .open_in_memory()
        .await
        .unwrap();
    let run = engine
        .start("o-1", order_v1("mouse".into(), 1))
        .await
        .unwrap();
    run.result().await.unwrap().unwrap();
    let recorded = RecordedRun::from_history(&engine.history("o-1").await.unwrap());
    assert_eq!(recorded.steps.len(), 2);
    recorded.replay::<order_v2>().unwrap();
    assert!(matches!(
        recorded.replay::<order_v4>(),
        Err(Divergence::DifferentStep { .. })
    ));
    assert_eq!(
        recorded.replay::<order_v5>(),
        Err(Divergence::DifferentOutcome)
    );
    engine.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Exported runs: an engine writes a run's recording to a file; a test replays it.

#[task]
async fn send_out(item: String) -> Result<String, String> {
    Ok(format!("shipped {item}"))
}

/// A saga like the demo's: hold stock, wait for a confirmation, ship each item (a map).
#[workflow]
async fn saga_v1(items: Vec<String>) -> Result<Vec<String>, String> {
    let reservation = hold(items.join("+"), items.len() as u32).await?;
    let confirmed = flow::signal::<bool>("confirm").await;
    if !confirmed {
        return Err(format!("{reservation} not confirmed"));
    }
    let shipped = flow::map(items, 2, send_out).await;
    shipped.into_iter().collect()
}

/// Ships one item at a time: an incompatible change to the map.
#[workflow]
async fn saga_v2(items: Vec<String>) -> Result<Vec<String>, String> {
    let reservation = hold(items.join("+"), items.len() as u32).await?;
    let confirmed = flow::signal::<bool>("confirm").await;
    if !confirmed {
        return Err(format!("{reservation} not confirmed"));
    }
    let shipped = flow::map(items, 1, send_out).await;
    shipped.into_iter().collect()
}

/// Reserves one more than ordered: different arguments at step 0.
#[workflow]
async fn saga_v3(items: Vec<String>) -> Result<Vec<String>, String> {
    let reservation = hold(items.join("+"), items.len() as u32 + 1).await?;
    let confirmed = flow::signal::<bool>("confirm").await;
    if !confirmed {
        return Err(format!("{reservation} not confirmed"));
    }
    let shipped = flow::map(items, 2, send_out).await;
    shipped.into_iter().collect()
}

#[tokio::test]
async fn an_exported_run_replays_from_its_file() {
    let dir = ScratchDir::new("replay-export");
    let engine = Engine::builder()
        .register::<saga_v1>()
        .open(dir.journal("saga"))
        .await
        .unwrap();
    let items = vec!["lamp".to_string(), "desk".to_string(), "chair".to_string()];
    let run = engine.start("s-1", saga_v1(items.clone())).await.unwrap();
    engine.signal("s-1", "confirm", &true).await.unwrap();
    assert_eq!(run.result().await.unwrap().unwrap().len(), 3);
    let file = dir.file("s-1.flowrun");
    let exported = engine.export("s-1", &file).await.unwrap();
    engine.shutdown().await;

    let recorded = RecordedRun::from_file(&file).unwrap();
    assert_eq!(recorded, exported);
    assert_eq!(recorded.workflow, "saga_v1");
    let names: Vec<&str> = recorded.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["hold", "signal:confirm", "map(3)"]);
    recorded.replay::<saga_v1>().unwrap();

    // Deliberately incompatible changes are reported at their step.
    let e = recorded.replay::<saga_v2>().unwrap_err();
    assert!(
        matches!(&e, Divergence::DifferentArguments { index: 2, name, .. } if name == "map(3)"),
        "{e:?}"
    );
    assert!(matches!(
        recorded.replay::<saga_v3>(),
        Err(Divergence::DifferentArguments { index: 0, .. })
    ));

    // An unknown run exports nothing.
    let engine = Engine::builder().open_in_memory().await.unwrap();
    let missing = engine.export("nope", dir.file("nope")).await.unwrap_err();
    assert!(matches!(missing, FlowError::UnknownRun { .. }), "{missing}");
    assert!(!dir.file("nope").exists());
    engine.shutdown().await;
}

#[tokio::test]
async fn a_bad_recording_file_is_refused_with_what_is_wrong() {
    let dir = ScratchDir::new("replay-bad-file");
    let missing = RecordedRun::from_file(dir.file("absent")).unwrap_err();
    assert!(matches!(missing, RecordingError::Io { .. }), "{missing}");

    let foreign = dir.file("foreign");
    std::fs::write(&foreign, b"not a recording").unwrap();
    let e = RecordedRun::from_file(&foreign).unwrap_err();
    assert!(matches!(e, RecordingError::NotARecording { .. }), "{e}");
    assert!(e.to_string().contains("Engine::export"), "{e}");

    let recorded = RecordedRun::capture(order_v1("kb".into(), 2))
        .await
        .unwrap();
    let bytes = recorded.to_bytes();
    assert_eq!(RecordedRun::from_bytes(&bytes, "ok").unwrap(), recorded);
    let truncated = &bytes[..bytes.len() - 3];
    let e = RecordedRun::from_bytes(truncated, "cut").unwrap_err();
    assert!(matches!(e, RecordingError::Damaged { .. }), "{e}");
    let mut newer = bytes.clone();
    newer[b"flow recorded run\n".len()] = 9;
    let e = RecordedRun::from_bytes(&newer, "new").unwrap_err();
    assert!(
        matches!(e, RecordingError::UnsupportedVersion { version: 9, .. }),
        "{e}"
    );
}

/// A run recorded in a test environment (its history has the same events as an
/// engine's, and keeps a map's items) replays like an engine's.
#[tokio::test]
async fn a_run_from_a_test_environment_replays() {
    let env = TestEnv::new();
    let run = env
        .start(saga_v1(vec!["pen".into(), "ink".into()]))
        .await
        .unwrap();
    run.signal("confirm", &true).await.unwrap();
    run.result().await.unwrap().unwrap();
    let recorded = RecordedRun::from_history(&run.history().await);
    recorded.replay::<saga_v1>().unwrap();
    // With the items recorded, a change to an item is a divergence too.
    assert!(matches!(
        recorded.replay::<saga_v2>(),
        Err(Divergence::DifferentArguments { index: 2, .. })
    ));
}
