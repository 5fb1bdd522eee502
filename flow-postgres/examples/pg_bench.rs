//! The benchmark's row 3 on PostgreSQL: runs of three steps (each a task returning at
//! once) at 1, 100 and 1,000 in flight, with 1, 2 and 3 engine processes of one
//! cluster sharing the database's shards, on a throwaway local cluster
//! (`scripts/pg-cluster.sh`) or the database at `FLOW_PG_URL`.
//!
//! ```text
//! cargo run --release -p flow-postgres --example pg_bench            # 10,000 runs per row
//! cargo run --release -p flow-postgres --example pg_bench -- --quick # 500 runs per row
//! cargo run --release -p flow-postgres --example pg_bench -- --dbos  # then DBOS, same server
//! ```
//!
//! `--processes N` runs only the rows of N processes; `FLOW_PG_SHARDS` sets the number of shards of the databases it creates.
//! With `--dbos`, the same row then runs in DBOS (Python) on the same PostgreSQL server
//! (`scripts/dbos-bench.sh`, which installs DBOS from PyPI into `target/dbos-venv`).
//!
//! Each row gets a new database. The processes are this example run with `--node`:
//! each opens the cluster, waits until the shards are shared evenly, then runs its part
//! of the runs (run IDs of its own shards, `Cluster::local_run_id`) with its part of the
//! runs in flight. Runs per second count runs started and finished (four commits each:
//! the start and three results), from the moment every process was told to go to the
//! last one's end.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flow::{task, workflow, Engine, FlowError};
use flow_postgres::testing::TestCluster;
use flow_postgres::{Cluster, Postgres};
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

/// Runs `runs` runs with at most `in_flight` at once, each in a shard this process
/// drives.
async fn level(cluster: &Cluster, runs: u64, in_flight: usize) -> Result<(), FlowError> {
    let permits = Arc::new(Semaphore::new(in_flight));
    let mut tasks = Vec::with_capacity(runs as usize);
    for i in 0..runs {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let cluster = cluster.clone();
        let id = cluster
            .local_run_id("run")
            .expect("this process drives shards");
        // Each run is started and awaited in its own task, so that starts commit in
        // batches too.
        tasks.push(tokio::spawn(async move {
            cluster.start(&id, three(i)).await?;
            let out = cluster.result::<three>(&id).await;
            drop(permit);
            out.map(|out| assert_eq!(out, i + 6))
        }));
    }
    for task in tasks {
        task.await.expect("run task")?;
    }
    Ok(())
}

/// An engine process (`--node URL PROCESSES RUNS IN_FLIGHT`): opens the cluster, says
/// `READY` once it holds its share of the shards, runs its part on `GO` (a line on its
/// standard input) and says `DONE`.
async fn node(args: &[String]) -> Result<(), FlowError> {
    let url = &args[0];
    let parse = |i: usize| args[i].parse::<u64>().expect("a number");
    let (processes, runs, in_flight) = (parse(1), parse(2), parse(3) as usize);
    // A new database's shards: FLOW_PG_SHARDS, or the default.
    let mut postgres = Postgres::new(url.as_str());
    if let Some(shards) = std::env::var("FLOW_PG_SHARDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        postgres = postgres.shards(shards);
    }
    let cluster = postgres
        .cluster(|| Engine::builder().register::<three>())
        .await?;
    let share = cluster.shards().div_ceil(processes as u32) as usize;
    let floor = cluster.shards() as usize / processes as usize;
    while !(floor..=share).contains(&cluster.held_shards().len()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("READY");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("GO");
    level(&cluster, runs, in_flight).await?;
    println!("DONE");
    // Stays a member until told to leave, so that no shard moves during the others' runs.
    std::io::stdin().read_line(&mut line).expect("LEAVE");
    cluster.shutdown().await;
    Ok(())
}

/// One row: `processes` processes share `runs` runs and `in_flight`; runs per second.
fn row(url: &str, processes: u64, runs: u64, in_flight: u64) -> f64 {
    let exe = std::env::current_exe().expect("current exe");
    let mut children: Vec<_> = (0..processes)
        .map(|p| {
            // The remainders go to the first process.
            let part = |n: u64| n / processes + u64::from(p == 0) * (n % processes);
            Command::new(&exe)
                .args(["--node", url])
                .args([processes, part(runs), part(in_flight).max(1)].map(|n| n.to_string()))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn an engine process")
        })
        .collect();
    let mut outputs: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().expect("stdout")).lines())
        .collect();
    let expect = |outputs: &mut Vec<_>, word: &str| {
        for lines in outputs.iter_mut() {
            let lines: &mut std::io::Lines<_> = lines;
            let line = lines
                .next()
                .expect("an engine process ended early")
                .expect("a line");
            assert_eq!(line, word, "an engine process said something else");
        }
    };
    expect(&mut outputs, "READY");
    // Every process holds its share: none of the shards moves while they run.
    let began = Instant::now();
    for child in &mut children {
        writeln!(child.stdin.as_mut().expect("stdin"), "GO").expect("GO");
    }
    expect(&mut outputs, "DONE");
    let rate = runs as f64 / began.elapsed().as_secs_f64();
    for child in &mut children {
        let _ = writeln!(child.stdin.as_mut().expect("stdin"), "LEAVE");
    }
    for mut child in children {
        let _ = child.wait();
    }
    rate
}

#[tokio::main]
async fn main() -> Result<(), FlowError> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--node") {
        return node(&args[2..]).await;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let runs: u64 = if quick { 500 } else { 10_000 };
    let sequential_runs: u64 = if quick { 100 } else { 1_000 };
    let cluster;
    let (base, mut database) = match std::env::var("FLOW_PG_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            cluster = TestCluster::start().map_err(|why| FlowError::Storage { message: why })?;
            (Some(&cluster), String::new())
        }
    };
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
    // `--processes N`: only the rows of N processes.
    let only: Option<u64> = args
        .iter()
        .position(|a| a == "--processes")
        .and_then(|i| args.get(i + 1)?.parse().ok());
    for processes in (1..=3u64).filter(|p| only.is_none_or(|only| only == *p)) {
        for (in_flight, n) in [(1u64, sequential_runs), (100, runs), (1000, runs)] {
            // A process runs one run at a time at least.
            if in_flight < processes {
                continue;
            }
            if let Some(cluster) = base {
                database = cluster.create_database(&format!("bench_p{processes}_f{in_flight}"));
            }
            let rate = row(&database, processes, n, in_flight);
            println!(
                "{processes:>10} {in_flight:>10} {n:>9} {rate:>12.0} {:>12.0}",
                rate * 3.0
            );
            if in_flight == 1000 {
                at_1000.push(rate);
            }
        }
    }
    println!("load average after: {}", loadavg());
    if args.iter().any(|a| a == "--dbos") {
        let server = match base {
            Some(cluster) => cluster.url("postgres"),
            None => database.clone(),
        };
        dbos(&server, quick);
    }
    let floor = at_1000[0] >= 2000.0;
    let adding = at_1000.windows(2).all(|w| w[1] >= w[0] * 0.95);
    println!(
        "floor: >= 2,000 runs/s with one process at 1,000 in flight: {}",
        if floor { "met" } else { "NOT met" }
    );
    println!(
        "adding a process does not lower the total at 1,000 in flight (within 5%): {}",
        if adding { "met" } else { "NOT met" }
    );
    Ok(())
}

/// Row 3 in DBOS on the same server, by `scripts/dbos-bench.sh`.
fn dbos(server: &str, quick: bool) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/dbos-bench.sh");
    let mut command = Command::new("bash");
    command.arg(script).arg(server);
    if quick {
        command.args(["--", "--quick"]);
    }
    match command.status() {
        Ok(status) if status.success() => {}
        Ok(status) => println!("DBOS was not benchmarked: the script ended with {status}"),
        Err(e) => println!("DBOS was not benchmarked: {e}"),
    }
}

/// The 1, 5 and 15 minute load averages (other work on the machine skews every row).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
