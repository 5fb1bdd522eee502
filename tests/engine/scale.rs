//! Memory stays flat however many runs sleep: they live in the journal only.
//!
//! Opt-in (it writes a large journal):
//! `FLOW_SCALE_RUNS=1000000 cargo test --release --test engine scale -- --ignored --nocapture`

use std::sync::Arc;
use std::time::Instant;

use flow::Engine;

use crate::support::TempJournal;
use crate::workflows::nap;

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes a large journal; run on demand"]
async fn sleeping_runs_do_not_grow_memory() {
    let total: usize = std::env::var("FLOW_SCALE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let journal = TempJournal::new("scale");
    let engine = Engine::builder()
        .register::<nap>()
        .open(journal.path())
        .await
        .unwrap();
    let started = Instant::now();
    let before = rss_mb();
    let engine = Arc::new(engine);
    let workers = 512;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < total {
                // An hour: they all stay asleep for the test.
                engine
                    .start(format!("sleeper-{i:08}"), nap(3_600_000))
                    .await
                    .unwrap();
                i += workers;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let after = rss_mb();
    let size = std::fs::metadata(journal.path())
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "{total} sleeping runs started in {elapsed:?} ({:.0}/s); RSS {before:.0} MB -> {after:.0} MB; journal {} MB",
        total as f64 / elapsed.as_secs_f64(),
        size / 1_000_000
    );
    engine.shutdown().await;

    // Reopening does not load them either.
    let engine = Engine::builder()
        .register::<nap>()
        .open(journal.path())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    println!("after reopen: RSS {:.0} MB", rss_mb());
    assert!(rss_mb() < 200.0, "RSS {} MB", rss_mb());
    engine.shutdown().await;
}
