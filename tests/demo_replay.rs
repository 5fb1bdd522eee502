//! A run of the demo's order saga (`examples/order.rs`), exported by an engine to a file,
//! replays against the demo's code in a test; a deliberately incompatible change to the
//! workflow is reported as a divergence.
//!
//! Its own test binary: the demo's task names (`charge`, `reserve`, ...) are also those
//! of `tests/support`'s workload, and one program links each task name once.

#[path = "../examples/shared/order_saga.rs"]
mod order_saga;

use flow::testing::{Divergence, RecordedRun};
use flow::{workflow, Engine};
use order_saga::{charge, place_order, refund, reserve, ship, Order, OrderError, Receipt};

/// The demo's saga, changed: it reserves before charging.
#[workflow]
async fn reserve_first(order: Order) -> Result<Receipt, OrderError> {
    let reservation = reserve(order.items.clone()).await?;
    let payment = match charge(order.card.clone(), order.total_cents).await {
        Ok(p) => p,
        Err(e) => return Err(e),
    };
    let mut shipped = Vec::new();
    for item in order.items {
        shipped.push(ship(item).await?);
    }
    Ok(Receipt {
        payment,
        reservation,
        shipped,
    })
}

/// The demo's saga, changed: it refunds a failed reservation but keeps going.
#[workflow]
async fn no_early_return(order: Order) -> Result<Receipt, OrderError> {
    let payment = charge(order.card.clone(), order.total_cents).await?;
    let reservation = match reserve(order.items.clone()).await {
        Ok(r) => r,
        Err(_) => {
            refund(payment.clone()).await?;
            "none".to_string()
        }
    };
    let mut shipped = Vec::new();
    for item in order.items {
        shipped.push(ship(item).await?);
    }
    Ok(Receipt {
        payment,
        reservation,
        shipped,
    })
}

/// A file in the temp dir for this test, removed when dropped.
struct RecordingFile(std::path::PathBuf);

impl Drop for RecordingFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn a_run_exported_from_the_demo_replays_and_an_incompatible_change_diverges() {
    let engine = Engine::builder()
        .register::<place_order>()
        .open_in_memory()
        .await
        .unwrap();
    let shipped = Order {
        card: "4242-4242".into(),
        items: vec!["keyboard".into(), "mouse".into()],
        total_cents: 45_900,
    };
    let refunded = Order {
        card: "5555-4444".into(),
        items: vec!["lamp".into(), "unicorn plush".into()],
        total_cents: 7_450,
    };
    let one = engine
        .start("order-1001", place_order(shipped))
        .await
        .unwrap();
    let two = engine
        .start("order-1002", place_order(refunded))
        .await
        .unwrap();
    one.result().await.unwrap().unwrap();
    assert!(matches!(
        two.result().await.unwrap(),
        Err(OrderError::OutOfStock(_))
    ));
    let dir = std::env::temp_dir();
    let pid = std::process::id();
    let shipped_file = RecordingFile(dir.join(format!("flow-demo-{pid}-order-1001.flowrun")));
    let refunded_file = RecordingFile(dir.join(format!("flow-demo-{pid}-order-1002.flowrun")));
    engine.export("order-1001", &shipped_file.0).await.unwrap();
    engine.export("order-1002", &refunded_file.0).await.unwrap();
    engine.shutdown().await;

    let shipped = RecordedRun::from_file(&shipped_file.0).unwrap();
    let refunded = RecordedRun::from_file(&refunded_file.0).unwrap();
    assert_eq!(shipped.workflow, "place_order");
    shipped.replay::<place_order>().unwrap();
    refunded.replay::<place_order>().unwrap();

    // Reserving first awaits another task at step 0.
    let e = shipped.replay::<reserve_first>().unwrap_err();
    assert_eq!(
        e,
        Divergence::DifferentStep {
            index: 0,
            recorded: "charge".into(),
            current: "reserve".into(),
        }
    );
    // Fits the shipped run; the refunded one went on to ship after the refund.
    shipped.replay::<no_early_return>().unwrap();
    let e = refunded.replay::<no_early_return>().unwrap_err();
    assert!(
        matches!(&e, Divergence::ExtraStep { index: 3, current } if current == "ship"),
        "{e}"
    );
}
