//! The demo's order saga (`examples/order.rs`): charge the card, reserve stock, ship each
//! item, refund when the reservation fails. Shared with `tests/demo_replay.rs`, which
//! replays a run of it exported by an engine.

use std::time::Duration;

use flow::{task, workflow, TaskContext};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub card: String,
    pub items: Vec<String>,
    pub total_cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub payment: String,
    pub reservation: String,
    pub shipped: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum OrderError {
    #[error("payment declined: {0}")]
    Declined(String),
    #[error("out of stock: {0}")]
    OutOfStock(String),
    #[error("{0}")]
    Engine(String),
}

impl From<flow::TaskFailure> for OrderError {
    fn from(f: flow::TaskFailure) -> Self {
        OrderError::Engine(f.to_string())
    }
}

/// Prints what runs, with the idempotency key a real payment API would receive.
pub fn say(what: &str) {
    let key = TaskContext::current()
        .map(|c| format!("  [key {}, attempt {}]", c.idempotency_key, c.attempt));
    println!("  ran   {what}{}", key.unwrap_or_default());
}

pub fn is_declined(e: &OrderError) -> bool {
    matches!(e, OrderError::Declined(_))
}

#[task(retry(max_attempts = 3, initial = "50ms", non_retryable = is_declined), timeout = "5s")]
pub async fn charge(card: String, cents: u64) -> Result<String, OrderError> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    if card.starts_with("0000") {
        return Err(OrderError::Declined(card));
    }
    say(&format!("charge {cents} cents on card {card}"));
    Ok(format!("pay-{card}-{cents}"))
}

#[task(retry(max_attempts = 2, initial = "50ms"))]
pub async fn reserve(items: Vec<String>) -> Result<String, OrderError> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    if let Some(item) = items.iter().find(|i| i.contains("unicorn")) {
        say(&format!("reserve {items:?}: {item} is out of stock"));
        return Err(OrderError::OutOfStock(item.clone()));
    }
    say(&format!("reserve {items:?}"));
    Ok(format!("res-{}", items.len()))
}

#[task]
pub async fn ship(item: String) -> Result<String, OrderError> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    say(&format!("ship {item}"));
    Ok(format!("parcel-{item}"))
}

#[task]
pub async fn refund(payment: String) -> Result<(), OrderError> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    say(&format!("refund {payment}"));
    Ok(())
}

#[workflow]
pub async fn place_order(order: Order) -> Result<Receipt, OrderError> {
    let payment = charge(order.card.clone(), order.total_cents).await?;
    let reservation = match reserve(order.items.clone()).await {
        Ok(r) => r,
        Err(e) => {
            // Step Functions' Catch, in plain Rust: compensate, then fail.
            refund(payment.clone()).await?;
            return Err(e);
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
