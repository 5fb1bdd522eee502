//! A Map state over 10,000 items with a concurrency limit, crash-resumable.
//!
//! ```text
//! cargo run --release --example fanout -- --fresh --crash-after 40   # aborts mid-map
//! cargo run --release --example fanout                               # resumes it
//! ```
//! Options: `--db PATH` (default `fanout-demo.redb`), `--items N` (default 10000),
//! `--limit N` (most items in flight, default 64), `--crash-after N` (abort the process
//! after N committed transitions, like `kill -9`), `--fresh` (delete the file first).
//!
//! Each finished item's result is committed as it finishes (many per transaction when
//! they finish together); the items themselves are journaled once, when the map is
//! scheduled. After a crash, finished items are not run again: only those that were in
//! flight (at most `--limit`) are.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flow::{task, workflow, Engine, EventKind};

/// Items whose task body ran in this process.
static RAN: AtomicU64 = AtomicU64::new(0);

/// "Processes" one image: a little CPU and a little waiting, like a call to a service.
#[task(retry(max_attempts = 3, initial = "10ms"))]
async fn thumbnail(image: u32) -> u64 {
    tokio::time::sleep(Duration::from_millis(1 + (image % 3) as u64)).await;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in image.to_le_bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    RAN.fetch_add(1, Ordering::Relaxed);
    h % 10_000
}

#[workflow]
async fn thumbnails(images: u32, limit: u32) -> (u32, u64) {
    let sizes = flow::map(0..images, limit as usize, thumbnail).await;
    let total: u64 = sizes.iter().sum();
    (sizes.len() as u32, total)
}

struct Args {
    db: String,
    items: u32,
    limit: u32,
    crash_after: Option<u64>,
    fresh: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        db: "fanout-demo.redb".into(),
        items: 10_000,
        limit: 64,
        crash_after: None,
        fresh: false,
    };
    let mut it = std::env::args().skip(1);
    let number = |flag: &str, v: Option<String>| -> Result<u64, String> {
        let v = v.ok_or(format!("{flag} needs a number"))?;
        v.parse()
            .map_err(|_| format!("{flag}: `{v}` is not a number"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--db" => args.db = it.next().ok_or("--db needs a path")?,
            "--items" => args.items = number("--items", it.next())? as u32,
            "--limit" => args.limit = number("--limit", it.next())?.max(1) as u32,
            "--crash-after" => args.crash_after = Some(number("--crash-after", it.next())?),
            "--fresh" => args.fresh = true,
            "-h" | "--help" => {
                return Err("usage: fanout [--db PATH] [--items N] [--limit N] \
                            [--crash-after N] [--fresh]"
                    .into())
            }
            other => return Err(format!("unknown argument `{other}`; try --help")),
        }
    }
    Ok(args)
}

/// Map items already committed in the run's history.
async fn committed_items(engine: &Engine, run_id: &str) -> usize {
    engine
        .history(run_id)
        .await
        .unwrap_or_default()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::MapItemCompleted { .. }))
        .count()
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
    let commits = Arc::new(AtomicU64::new(0));
    let counter = commits.clone();
    let crash_after = args.crash_after;
    let builder = Engine::builder()
        .register::<thumbnails>()
        .on_commit(move |total| {
            counter.store(total, Ordering::Relaxed);
            if crash_after.is_some_and(|n| total >= n) {
                println!(
                    "\n  !! crashing on purpose after {total} committed transitions (like kill -9)"
                );
                std::process::abort();
            }
        });
    let engine = match builder.open(&args.db).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot open {}: {e}", args.db);
            std::process::exit(1);
        }
    };
    println!(
        "flow fan-out demo on {}: {} items, at most {} in flight",
        args.db, args.items, args.limit
    );
    let already = committed_items(&engine, "thumbnails").await;
    if already > 0 {
        println!("resuming: {already} items were committed before; they will not run again");
    }

    let started = Instant::now();
    let run = match engine
        .start("thumbnails", thumbnails(args.items, args.limit))
        .await
    {
        Ok(run) => run,
        Err(e) => {
            eprintln!("cannot start: {e}");
            std::process::exit(1);
        }
    };
    let progress = tokio::spawn({
        let commits = commits.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                println!(
                    "  {:>6.2}s  {:>6} items ran in this process, {:>5} commits",
                    started.elapsed().as_secs_f64(),
                    RAN.load(Ordering::Relaxed),
                    commits.load(Ordering::Relaxed)
                );
            }
        }
    });
    let result = run.result().await;
    progress.abort();
    let elapsed = started.elapsed();
    match result {
        Ok((count, total)) => println!(
            "done: {count} thumbnails, total size {total}, in {:.3}s",
            elapsed.as_secs_f64()
        ),
        Err(e) => println!("the run did not complete: {e}"),
    }
    let ran = RAN.load(Ordering::Relaxed);
    println!(
        "items run in this process: {ran} (already committed at start: {already}); \
         commits: {}",
        commits.load(Ordering::Relaxed)
    );
    engine.shutdown().await;
    if let Ok(meta) = std::fs::metadata(&args.db) {
        println!("journal size: {} bytes", meta.len());
    }
}
