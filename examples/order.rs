//! An order saga on a redb file: charge the card, reserve stock, ship each item, refund
//! when the reservation fails.
//!
//! ```text
//! cargo run --example order -- --crash-after 4   # aborts itself after 4 commits
//! cargo run --example order                      # resumes; finished steps are not rerun
//! ```
//! Options: `--db PATH` (default `order-demo.redb`), `--crash-after N`, `--fresh`
//! (delete the file first), `--export DIR` (write each finished run's recording to
//! `DIR/RUN_ID.flowrun`, for `flow::testing::RecordedRun::from_file` in a test).

#[path = "shared/order_saga.rs"]
mod order_saga;

use flow::{Engine, EventKind};
use order_saga::{place_order, Order};

struct Args {
    db: String,
    crash_after: Option<u64>,
    fresh: bool,
    export: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        db: "order-demo.redb".into(),
        crash_after: None,
        fresh: false,
        export: None,
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
            "--export" => args.export = Some(it.next().ok_or("--export needs a directory")?),
            "-h" | "--help" => {
                return Err(
                    "usage: order [--db PATH] [--crash-after N] [--fresh] [--export DIR]".into(),
                )
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
        if let Some(dir) = &args.export {
            let file = std::path::Path::new(dir).join(format!("{}.flowrun", h.run_id()));
            match engine.export(h.run_id(), &file).await {
                Ok(_) => println!("{}: recording written to {}", h.run_id(), file.display()),
                Err(e) => println!("{}: {e}", h.run_id()),
            }
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
