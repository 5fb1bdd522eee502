//! An order saga on a redb file: charge the card, reserve stock, ship each item, refund
//! when the reservation fails.
//!
//! ```text
//! cargo run --example order -- --crash-after 4   # aborts itself after 4 commits
//! cargo run --example order                      # resumes; finished steps are not rerun
//! ```
//! Options: `--db PATH` (default `order-demo.redb`), `--crash-after N`, `--fresh`
//! (delete the file first).

use std::time::Duration;

use flow::{task, workflow, Engine, EventKind, TaskContext};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    card: String,
    items: Vec<String>,
    total_cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Receipt {
    payment: String,
    reservation: String,
    shipped: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
enum OrderError {
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
fn say(what: &str) {
    let key = TaskContext::current()
        .map(|c| format!("  [key {}, attempt {}]", c.idempotency_key, c.attempt));
    println!("  ran   {what}{}", key.unwrap_or_default());
}

fn is_declined(e: &OrderError) -> bool {
    matches!(e, OrderError::Declined(_))
}

#[task(retry(max_attempts = 3, initial = "50ms", non_retryable = is_declined), timeout = "5s")]
async fn charge(card: String, cents: u64) -> Result<String, OrderError> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    if card.starts_with("0000") {
        return Err(OrderError::Declined(card));
    }
    say(&format!("charge {cents} cents on card {card}"));
    Ok(format!("pay-{card}-{cents}"))
}

#[task(retry(max_attempts = 2, initial = "50ms"))]
async fn reserve(items: Vec<String>) -> Result<String, OrderError> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    if let Some(item) = items.iter().find(|i| i.contains("unicorn")) {
        say(&format!("reserve {items:?}: {item} is out of stock"));
        return Err(OrderError::OutOfStock(item.clone()));
    }
    say(&format!("reserve {items:?}"));
    Ok(format!("res-{}", items.len()))
}

#[task]
async fn ship(item: String) -> Result<String, OrderError> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    say(&format!("ship {item}"));
    Ok(format!("parcel-{item}"))
}

#[task]
async fn refund(payment: String) -> Result<(), OrderError> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    say(&format!("refund {payment}"));
    Ok(())
}

#[workflow]
async fn place_order(order: Order) -> Result<Receipt, OrderError> {
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

struct Args {
    db: String,
    crash_after: Option<u64>,
    fresh: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        db: "order-demo.redb".into(),
        crash_after: None,
        fresh: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--db" => args.db = it.next().ok_or("--db needs a path")?,
            "--crash-after" => {
                let n = it.next().ok_or("--crash-after needs a number")?;
                args.crash_after = Some(
                    n.parse()
                        .map_err(|_| format!("--crash-after: `{n}` is not a number"))?,
                );
            }
            "--fresh" => args.fresh = true,
            "-h" | "--help" => {
                return Err("usage: order [--db PATH] [--crash-after N] [--fresh]".into())
            }
            other => return Err(format!("unknown argument `{other}`; try --help")),
        }
    }
    Ok(args)
}

/// Names of the steps a run had committed, from its history.
async fn committed_steps(engine: &Engine, run_id: &str) -> Vec<String> {
    let Ok(history) = engine.history(run_id).await else {
        return Vec::new();
    };
    let mut names = std::collections::BTreeMap::new();
    let mut done = Vec::new();
    for e in history {
        match e.kind {
            EventKind::StepScheduled { step, name, .. } => {
                names.insert(step, name);
            }
            EventKind::StepCompleted { step, .. } => {
                done.push(names.get(&step).cloned().unwrap_or_default())
            }
            _ => {}
        }
    }
    done
}

#[tokio::main]
async fn main() {
    // `RUST_LOG=flow_runtime=debug` (or `info`, `trace`) shows each run's and each task
    // attempt's spans and events on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if args.fresh {
        if let Err(e) = Engine::remove_journal(&args.db) {
            eprintln!("could not delete {}: {e}", args.db);
            std::process::exit(1);
        }
    }
    let mut builder = Engine::builder().register::<place_order>();
    if let Some(n) = args.crash_after {
        builder = builder.on_commit(move |total| {
            if total >= n {
                println!(
                    "  !! crashing on purpose after {total} committed transitions (like kill -9)"
                );
                std::process::abort();
            }
        });
    }
    let engine = match builder.open(&args.db).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot open {}: {e}", args.db);
            std::process::exit(1);
        }
    };
    println!("flow order demo on {}", args.db);

    let orders = [
        (
            "order-1001",
            Order {
                card: "4242-4242".into(),
                items: vec!["keyboard".into(), "mouse".into(), "monitor".into()],
                total_cents: 45_900,
            },
        ),
        (
            "order-1002",
            Order {
                card: "5555-4444".into(),
                items: vec!["lamp".into(), "unicorn plush".into()],
                total_cents: 7_450,
            },
        ),
    ];
    for (id, _) in &orders {
        let done = committed_steps(&engine, id).await;
        if !done.is_empty() {
            println!(
                "{id}: resuming from the journal; already committed (will not rerun): {}",
                done.join(", ")
            );
        }
    }
    let mut handles = Vec::new();
    for (id, order) in orders {
        match engine.start(id, place_order(order)).await {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("{id}: {e}");
                std::process::exit(1);
            }
        }
    }
    for h in handles {
        match h.result().await {
            Ok(Ok(receipt)) => println!("{}: completed: {receipt:?}", h.run_id()),
            Ok(Err(e)) => println!("{}: ended with the workflow's error: {e}", h.run_id()),
            Err(e) => println!("{}: engine error: {e}", h.run_id()),
        }
    }
    println!("\nruns in {}:", args.db);
    for run in engine.list().await.unwrap_or_default() {
        println!(
            "  {:<12} {:<12} {:>2} steps  {}",
            run.run_id, run.workflow, run.steps, run.status
        );
    }
    println!(
        "\nstate graph of place_order (Mermaid):\n{}",
        <place_order as flow::Workflow>::graph().to_mermaid()
    );
    engine.shutdown().await;
}
