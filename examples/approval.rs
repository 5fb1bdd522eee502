//! An order that needs a human approval: the workflow asks for it, waits for an
//! `approval` signal with a timeout, escalates to a manager when nobody answers, and
//! rejects the order when the manager does not answer either. A third order is approved
//! through a callback token (as from a link in an email).
//!
//! The "humans" are tokio tasks in this program that answer after a delay, so the
//! example runs by itself:
//!
//! ```text
//! cargo run --example approval               # three orders: approved, escalated, by link
//! cargo run --example approval -- --db a.redb --fresh
//! ```
//! Options: `--db PATH` (default `approval-demo.redb`), `--fresh` (delete the file first).
//! Rerunning on the same file finds the finished runs (starts are idempotent) and prints
//! their results again without redoing any step.

use std::sync::Mutex;
use std::time::Duration;

use flow::{task, workflow, Engine, EventKind, RunStatus, TaskContext, WaitForCallback};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: String,
    cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Decision {
    approved: bool,
    by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Outcome {
    Shipped { approved_by: String },
    Rejected { reason: String },
}

/// How long the approver has, and then the manager.
const APPROVER_WINDOW: Duration = Duration::from_millis(1500);
const MANAGER_WINDOW: Duration = Duration::from_millis(3000);

#[task]
async fn reserve_stock(order: Order) -> String {
    println!("  {}: reserved stock", order.id);
    format!("res-{}", order.id)
}

#[task]
async fn ask_for_approval(order: Order, whom: String) {
    println!(
        "  {}: asked {whom} to approve {:.2} EUR (waiting for the `approval` signal)",
        order.id,
        order.cents as f64 / 100.0
    );
}

#[task]
async fn release_stock(reservation: String) {
    println!("  released {reservation}");
}

#[task]
async fn ship(order: Order, approved_by: String) -> String {
    println!("  {}: shipped (approved by {approved_by})", order.id);
    format!("parcel-{}", order.id)
}

/// Links sent by `email_approval_link`, as an outside system would receive them.
static LINKS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

#[task]
async fn email_approval_link(order: Order) {
    let ctx = TaskContext::current().expect("runs in the engine");
    let token = ctx.callback_token().unwrap_or_default().to_string();
    println!(
        "  {}: emailed https://shop.example/approve?token={}…",
        order.id,
        &token[..token.len().min(16)]
    );
    LINKS.lock().unwrap().push((order.id, token));
}

/// Waits for an approval; escalates to a manager when the approver does not answer in
/// time; rejects when nobody does.
#[workflow]
async fn approve_order(order: Order) -> Outcome {
    let reservation = reserve_stock(order.clone()).await;
    ask_for_approval(order.clone(), "the approver".to_string()).await;
    let first = flow::signal::<Decision>("approval")
        .timeout(APPROVER_WINDOW)
        .await;
    let decision = match first {
        Ok(decision) => Some(decision),
        Err(_) => {
            println!("  {}: no answer in time, escalating", order.id);
            ask_for_approval(order.clone(), "the manager".to_string()).await;
            let second = flow::signal::<Decision>("approval")
                .timeout(MANAGER_WINDOW)
                .await;
            second.ok()
        }
    };
    match decision {
        Some(d) if d.approved => {
            ship(order, d.by.clone()).await;
            Outcome::Shipped { approved_by: d.by }
        }
        Some(d) => {
            release_stock(reservation).await;
            Outcome::Rejected {
                reason: format!("declined by {}", d.by),
            }
        }
        None => {
            release_stock(reservation).await;
            Outcome::Rejected {
                reason: "nobody approved in time".into(),
            }
        }
    }
}

/// The same approval through a callback token: the step completes when the link is used.
#[workflow]
async fn approve_by_link(order: Order) -> Outcome {
    let answer = email_approval_link(order.clone())
        .wait_for_callback::<Decision>(Duration::from_secs(10))
        .await;
    match answer {
        Ok(d) if d.approved => {
            ship(order, d.by.clone()).await;
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

struct Args {
    db: String,
    fresh: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        db: "approval-demo.redb".into(),
        fresh: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--db" => args.db = it.next().ok_or("--db needs a path")?,
            "--fresh" => args.fresh = true,
            "-h" | "--help" => return Err("usage: approval [--db PATH] [--fresh]".into()),
            other => return Err(format!("unknown argument `{other}`; try --help")),
        }
    }
    Ok(args)
}

/// True once the run's history shows `n` approval requests.
async fn asked(engine: &Engine, run_id: &str, n: usize) -> bool {
    let history = engine.history(run_id).await.unwrap_or_default();
    let requests = history
        .iter()
        .filter(|e| {
            matches!(&e.kind, EventKind::StepScheduled { name, .. } if name == "ask_for_approval")
        })
        .count();
    requests >= n
}

#[tokio::main]
async fn main() {
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
    let engine = match Engine::builder()
        .register::<approve_order>()
        .register::<approve_by_link>()
        .open(&args.db)
        .await
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot open {}: {e}", args.db);
            std::process::exit(1);
        }
    };
    println!("flow approval demo on {}", args.db);
    let quick = Order {
        id: "order-1".into(),
        cents: 12_000,
    };
    let slow = Order {
        id: "order-2".into(),
        cents: 250_000,
    };
    let linked = Order {
        id: "order-3".into(),
        cents: 4_500,
    };
    let runs = [
        engine.start("order-1", approve_order(quick)).await,
        engine.start("order-2", approve_order(slow)).await,
    ];
    let by_link = engine.start("order-3", approve_by_link(linked)).await;

    // The approver answers order-1 after half a second.
    let approver = engine.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if approver.status("order-1").await.ok() == Some(RunStatus::Completed) {
            return;
        }
        let decision = Decision {
            approved: true,
            by: "alice (approver)".into(),
        };
        match approver.signal("order-1", "approval", &decision).await {
            Ok(()) => println!("  -> alice approved order-1"),
            Err(e) => println!("  -> alice could not approve order-1: {e}"),
        }
    });
    // Nobody answers order-2 until it is escalated; then the manager approves.
    let manager = engine.clone();
    tokio::spawn(async move {
        loop {
            match manager.status("order-2").await {
                Ok(RunStatus::Completed) | Err(_) => return,
                _ => {}
            }
            if asked(&manager, "order-2", 2).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        let decision = Decision {
            approved: true,
            by: "bob (manager)".into(),
        };
        match manager.signal("order-2", "approval", &decision).await {
            Ok(()) => println!("  -> bob approved the escalated order-2"),
            Err(e) => println!("  -> bob could not approve order-2: {e}"),
        }
    });
    // Someone clicks the emailed link for order-3.
    let web = engine.clone();
    tokio::spawn(async move {
        for _ in 0..200 {
            let link = LINKS.lock().unwrap().first().cloned();
            if let Some((order, token)) = link {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let decision = Decision {
                    approved: true,
                    by: "carol (via link)".into(),
                };
                match web.complete(&token, Ok(decision)).await {
                    Ok(()) => println!("  -> carol clicked the link for {order}"),
                    Err(e) => println!("  -> the link for {order} was refused: {e}"),
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });

    for run in runs {
        match run {
            Ok(h) => match h.result().await {
                Ok(outcome) => println!("{}: {outcome:?}", h.run_id()),
                Err(e) => println!("{}: {e}", h.run_id()),
            },
            Err(e) => println!("could not start: {e}"),
        }
    }
    match by_link {
        Ok(h) => match h.result().await {
            Ok(outcome) => println!("{}: {outcome:?}", h.run_id()),
            Err(e) => println!("{}: {e}", h.run_id()),
        },
        Err(e) => println!("could not start: {e}"),
    }

    println!("\nhistory of order-2:");
    for e in engine.history("order-2").await.unwrap_or_default() {
        let what = match &e.kind {
            EventKind::StepScheduled { step, name, .. } => format!("step {step} scheduled: {name}"),
            EventKind::StepCompleted { step, .. } => format!("step {step} completed"),
            EventKind::TimerFired { step, .. } => format!("step {step}: timeout expired"),
            EventKind::SignalReceived { name, .. } => format!("signal `{name}` received"),
            other => format!("{other:?}").chars().take(60).collect(),
        };
        println!("  {:>3} {what}", e.seq);
    }
    engine.shutdown().await;
}
