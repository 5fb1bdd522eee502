//! The benchmark's row 3 on PostgreSQL: runs of three steps (each a task returning at
//! once) at 1, 100 and 1,000 in flight, on a throwaway local cluster
//! (`scripts/pg-cluster.sh`) or the database at `FLOW_PG_URL`; then, at 1,000 in
//! flight, with one and two more engine processes standing by on the same database.
//!
//! ```text
//! cargo run --release -p flow-postgres --example pg_bench            # 10,000 runs per level
//! cargo run --release -p flow-postgres --example pg_bench -- --quick # 500 runs per level
//! ```
//!
//! Runs per second count runs started and finished (four commits each: the start and
//! three results), timed from the first start to the last result.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flow::{task, workflow, Engine, FlowError};
use flow_postgres::testing::TestCluster;
use flow_postgres::Postgres;
use tokio::sync::Semaphore;

#[task]
async fn add(x: u64, y: u64) -> u64 {
    x + y
}

#[workflow]
async fn three(x: u64) -> u64 {
    let a = add(x, 1).await;
    let b = add(a, 2).await;
    let c = add(b, 3).await;
    c
}

/// Runs `runs` runs with at most `in_flight` at once; returns runs per second.
async fn level(
    engine: &Engine,
    prefix: &str,
    runs: u64,
    in_flight: usize,
) -> Result<f64, FlowError> {
    let permits = Arc::new(Semaphore::new(in_flight));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(runs as usize);
    for i in 0..runs {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let engine = engine.clone();
        let id = format!("{prefix}-{i}");
        // Each run is started and awaited in its own task, so that starts commit in
        // batches too.
        tasks.push(tokio::spawn(async move {
            let out = engine.start(&id, three(i)).await?.result().await;
            drop(permit);
            out.map(|out| assert_eq!(out, i + 6))
        }));
    }
    for task in tasks {
        task.await.expect("run task")?;
    }
    Ok(runs as f64 / started.elapsed().as_secs_f64())
}

/// A standby engine process: this example, run with `--standby URL`.
fn standby(url: &str) -> Child {
    Command::new(std::env::current_exe().expect("current exe"))
        .args(["--standby", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn a standby")
}

#[tokio::main]
async fn main() -> Result<(), FlowError> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--standby") {
        // Stands by for the lease for as long as it runs (the parent kills it).
        let _ = Postgres::new(&args[2])
            .wait_for_lease(Duration::from_secs(3600))
            .open(Engine::builder().register::<three>())
            .await;
        return Ok(());
    }
    let quick = args.iter().any(|a| a == "--quick");
    let runs: u64 = if quick { 500 } else { 10_000 };
    let sequential_runs: u64 = if quick { 100 } else { 1_000 };
    let cluster;
    let url = match std::env::var("FLOW_PG_URL") {
        Ok(url) => url,
        Err(_) => {
            cluster = TestCluster::start().map_err(|why| FlowError::Storage { message: why })?;
            cluster.create_database("bench")
        }
    };
    let engine = Postgres::new(url.clone())
        .open(Engine::builder().register::<three>())
        .await?;
    println!(
        "flow on PostgreSQL: row 3 (runs of 3 steps), {} mode; load average before: {}",
        if quick { "quick" } else { "full" },
        loadavg()
    );
    println!(
        "{:>10} {:>10} {:>9} {:>12} {:>12}",
        "processes", "in flight", "runs", "runs/s", "steps/s"
    );
    let mut at_1000 = Vec::new();
    for (in_flight, n) in [(1usize, sequential_runs), (100, runs), (1000, runs)] {
        let rate = level(&engine, &format!("p1-f{in_flight}"), n, in_flight).await?;
        println!(
            "{:>10} {in_flight:>10} {n:>9} {rate:>12.0} {:>12.0}",
            1,
            rate * 3.0
        );
        if in_flight == 1000 {
            at_1000.push(rate);
        }
    }
    // More processes on the same database: they stand by (one process drives a
    // database's runs at a time), polling the lease.
    let mut standbys = Vec::new();
    for processes in 2..=3 {
        standbys.push(standby(&url));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rate = level(&engine, &format!("p{processes}-f1000"), runs, 1000).await?;
        println!(
            "{processes:>10} {:>10} {runs:>9} {rate:>12.0} {:>12.0}",
            1000,
            rate * 3.0
        );
        at_1000.push(rate);
    }
    for mut child in standbys {
        let _ = child.kill();
        let _ = child.wait();
    }
    engine.shutdown().await;
    println!("load average after: {}", loadavg());
    println!(
        "(2 and 3 processes: the others stand by for the lease; one process drives a \
         database's runs)"
    );
    println!(
        "floor: >= 2,000 runs/s with one process at 1,000 in flight: {}",
        if at_1000[0] >= 2000.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

/// The 1, 5 and 15 minute load averages (other work on the machine skews every row).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
