//! `flow::testing::RecordedRun`: replaying recorded runs against changed code.

use flow::testing::{Divergence, RecordedRun};
use flow::{task, workflow, Engine};

#[task]
async fn reserve(sku: String, qty: u32) -> Result<String, String> {
    Ok(format!("res-{sku}-{qty}"))
}

#[task]
async fn notify(msg: String) -> bool {
    !msg.is_empty()
}

#[workflow]
async fn order_v1(sku: String, qty: u32) -> Result<String, String> {
    let r = reserve(sku, qty).await?;
    notify(format!("reserved {r}")).await;
    Ok(r)
}

/// Same calls, different code between steps (allowed: only awaits are compared).
#[workflow]
async fn order_v2(sku: String, qty: u32) -> Result<String, String> {
    let sku = sku.trim().to_string();
    let r = reserve(sku, qty).await?;
    let message = format!("reserved {}", r);
    notify(message).await;
    Ok(r)
}

/// Reserves twice the quantity: different arguments.
#[workflow]
async fn order_v3(sku: String, qty: u32) -> Result<String, String> {
    let r = reserve(sku, qty * 2).await?;
    notify(format!("reserved {r}")).await;
    Ok(r)
}

/// Notifies before reserving: a different step.
#[workflow]
async fn order_v4(sku: String, qty: u32) -> Result<String, String> {
    notify(format!("reserving {sku}")).await;
    let r = reserve(sku, qty).await?;
    Ok(r)
}

/// Returns something else.
#[workflow]
async fn order_v5(sku: String, qty: u32) -> Result<String, String> {
    let r = reserve(sku, qty).await?;
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
        e.to_string().contains("`reserve`") && e.to_string().contains("`notify`"),
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
