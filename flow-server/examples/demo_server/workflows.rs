//! The demo server's workflows: the order saga of `examples/order.rs` and the approvals
//! of `examples/approval.rs`, one of them through a link to the server's callback
//! endpoint. The crate's tests serve them too.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use flow::{task, workflow, TaskContext, WaitForCallback};
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderError {
    Declined(String),
    OutOfStock(String),
    Engine(String),
}

impl From<flow::TaskFailure> for OrderError {
    fn from(f: flow::TaskFailure) -> Self {
        OrderError::Engine(f.to_string())
    }
}

fn is_declined(e: &OrderError) -> bool {
    matches!(e, OrderError::Declined(_))
}

#[task(retry(max_attempts = 3, initial = "50ms", non_retryable = is_declined), timeout = "5s")]
async fn charge(card: String, cents: u64) -> Result<String, OrderError> {
    if card.starts_with("0000") {
        return Err(OrderError::Declined(card));
    }
    Ok(format!("pay-{card}-{cents}"))
}

#[task(retry(max_attempts = 2, initial = "50ms"))]
async fn reserve(items: Vec<String>) -> Result<String, OrderError> {
    if let Some(item) = items.iter().find(|i| i.contains("unicorn")) {
        return Err(OrderError::OutOfStock(item.clone()));
    }
    Ok(format!("res-{}", items.len()))
}

#[task]
async fn ship_item(item: String) -> Result<String, OrderError> {
    Ok(format!("parcel-{item}"))
}

#[task]
async fn refund(payment: String) -> Result<(), OrderError> {
    let _ = payment;
    Ok(())
}

/// Charges, reserves and ships; refunds when the reservation fails.
#[workflow]
pub async fn place_order(order: Order) -> Result<Receipt, OrderError> {
    let payment = charge(order.card.clone(), order.total_cents).await?;
    let reservation = match reserve(order.items.clone()).await {
        Ok(r) => r,
        Err(e) => {
            refund(payment.clone()).await?;
            return Err(e);
        }
    };
    let mut shipped = Vec::new();
    for item in order.items {
        shipped.push(ship_item(item).await?);
    }
    Ok(Receipt {
        payment,
        reservation,
        shipped,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub approved: bool,
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Shipped { approved_by: String },
    Rejected { reason: String },
}

#[task]
async fn ask_for_approval(order: Approval) {
    let _ = order;
}

#[task]
async fn ship_order(order: Approval, approved_by: String) -> String {
    let _ = approved_by;
    format!("parcel-{}", order.id)
}

/// Waits up to ten minutes for an `approval` signal carrying a [`Decision`].
#[workflow]
pub async fn approve_order(order: Approval) -> Outcome {
    ask_for_approval(order.clone()).await;
    let decision = flow::signal::<Decision>("approval")
        .timeout(Duration::from_secs(600))
        .await;
    match decision {
        Ok(d) if d.approved => {
            ship_order(order, d.by.clone()).await;
            Outcome::Shipped { approved_by: d.by }
        }
        Ok(d) => Outcome::Rejected {
            reason: format!("declined by {}", d.by),
        },
        Err(_) => Outcome::Rejected {
            reason: "nobody approved in time".into(),
        },
    }
}

/// Where the server answers, for the links the approval emails carry.
pub static PUBLIC_URL: OnceLock<String> = OnceLock::new();

/// The links "emailed" so far: (order ID, URL of the callback's complete endpoint).
pub static EMAILED_LINKS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

#[task]
async fn email_approval_link(order: Approval) -> Result<(), String> {
    let ctx = TaskContext::current().ok_or("runs outside the engine")?;
    let token = ctx.callback_token().ok_or("no callback token")?;
    let base = PUBLIC_URL
        .get()
        .map_or("http://127.0.0.1:8080", String::as_str);
    let link = format!("{base}/v1/callbacks/{token}/complete");
    println!("  {}: emailed the approval link {link}", order.id);
    EMAILED_LINKS
        .lock()
        .map_err(|_| "the link list is poisoned")?
        .push((order.id, link));
    Ok(())
}

/// Emails a link to the server's callback endpoint and waits up to ten minutes for
/// someone to post a [`Decision`] to it.
#[workflow]
pub async fn approve_by_link(order: Approval) -> Outcome {
    let answer = email_approval_link(order.clone())
        .wait_for_callback::<Decision>(Duration::from_secs(600))
        .await;
    match answer {
        Ok(d) if d.approved => {
            ship_order(order, d.by.clone()).await;
            Outcome::Shipped { approved_by: d.by }
        }
        Ok(d) => Outcome::Rejected {
            reason: format!("declined by {}", d.by),
        },
        Err(e) => Outcome::Rejected {
            reason: e.to_string(),
        },
    }
}

/// Renders a thumbnail of `image`, `width` pixels wide: a remote task. The engine does
/// not run this body; workers polling queue `thumbnails` do (a Rust worker linking this
/// task runs it, a worker in another language does the same work its own way).
#[task(
    queue = "thumbnails",
    heartbeat = "10s",
    timeout = "1m",
    retry(max_attempts = 3, initial = "100ms")
)]
pub async fn render_thumbnail(image: String, width: u32) -> Result<String, String> {
    Ok(format!("{image}@{width}w"))
}

/// Makes a thumbnail by a worker, then names it: a workflow awaiting a remote task.
#[workflow]
pub async fn thumbnail(image: String) -> Result<String, String> {
    let small = render_thumbnail(image, 128).await?;
    Ok(format!("thumbnail {small}"))
}

/// An engine builder with the demo's workflows registered.
pub fn builder() -> flow::EngineBuilder {
    flow::Engine::builder()
        .register::<place_order>()
        .register::<approve_order>()
        .register::<approve_by_link>()
        .register::<thumbnail>()
}

/// Starts a few runs for the web console to show (idempotent: the same runs again are
/// the existing ones): an order that ships, one refunded for an out-of-stock item, one
/// whose card is declined, and two approvals waiting, one for a signal, one for its
/// emailed link.
pub async fn start_samples(engine: &flow::Engine) -> Result<(), flow::FlowError> {
    let order = |card: &str, items: &[&str], total_cents| Order {
        card: card.into(),
        items: items.iter().map(|i| i.to_string()).collect(),
        total_cents,
    };
    engine
        .start(
            "order-1001",
            place_order(order("4242", &["lamp", "desk"], 4200)),
        )
        .await?;
    engine
        .start(
            "order-1002",
            place_order(order("4242", &["lamp", "unicorn"], 3100)),
        )
        .await?;
    engine
        .start(
            "order-1003",
            place_order(order("0000-1111", &["book"], 900)),
        )
        .await?;
    let approval = |id: &str, cents| Approval {
        id: id.into(),
        cents,
    };
    engine
        .start("approval-7", approve_order(approval("order-7", 12000)))
        .await?;
    engine
        .start("approval-8", approve_by_link(approval("order-8", 56000)))
        .await?;
    Ok(())
}
