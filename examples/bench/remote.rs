//! Row 9: remote tasks (`#[task(queue = ...)]`) over flow-server's worker protocol on
//! loopback, with `flow-worker` workers in this process (each with its own HTTP
//! client and connections): how many remote tasks per second go through poll → run →
//! report → the run's next step committed, with 1 and with 8 workers; and the latency a
//! remote step adds to a run over the same step run locally (p50, p99).

use std::sync::Arc;
use std::time::{Duration, Instant};

use flow::{task, workflow, Engine};
use flow_server::{Server, ServerOptions};
use flow_worker::{Worker, WorkerOptions};
use tokio::sync::{oneshot, Semaphore};

use crate::harness::fresh_journal;
use crate::probe::percentile;
use crate::report::{count, dur, judge, rate, Report};
use crate::{Config, Res};

/// The remote task: the work is nothing, so the row measures the protocol and engine.
#[task(queue = "bench", heartbeat = "30s")]
pub async fn remote_inc(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// The same task, local.
#[task]
pub async fn local_inc(x: u64) -> u64 {
    x.wrapping_add(1)
}

#[workflow]
pub async fn remote_step(x: u64) -> u64 {
    let y = remote_inc(x).await;
    y.wrapping_add(1)
}

#[workflow]
pub async fn local_step(x: u64) -> u64 {
    let y = local_inc(x).await;
    y.wrapping_add(1)
}

/// An engine on a fresh journal, served on a loopback port.
async fn serve(cfg: &Config, name: &str) -> Res<(Engine, String, oneshot::Sender<()>)> {
    let engine = Engine::builder()
        .register::<remote_step>()
        .register::<local_step>()
        .open(fresh_journal(&cfg.dir, name))
        .await?;
    let options = ServerOptions {
        addr: "127.0.0.1:0".parse()?,
        ..ServerOptions::default()
    };
    let server = Server::bind(engine.clone(), options).await?;
    let url = format!("http://{}", server.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    Ok((engine, url, stop))
}

/// Starts `n` workers of `concurrency` slots each; they stop when the sender is dropped.
fn workers(
    url: &str,
    n: usize,
    concurrency: usize,
) -> Res<(
    Vec<tokio::task::JoinHandle<()>>,
    tokio::sync::watch::Sender<bool>,
)> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut handles = Vec::new();
    for i in 0..n {
        let worker = Worker::new(WorkerOptions {
            name: format!("bench-{i}"),
            queues: vec!["bench".into()],
            concurrency,
            poll_wait: Duration::from_secs(5),
            ..WorkerOptions::new(url)
        })?;
        let mut stopped = stopped.clone();
        handles.push(tokio::spawn(async move {
            let _ = worker
                .run_until(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
        }));
    }
    Ok((handles, stop))
}

/// Remote tasks per second with `n` workers: `runs` runs are started (their tasks wait
/// on the queue), then the workers start and the clock runs until every run finished.
async fn throughput(cfg: &Config, n: usize, concurrency: usize, runs: usize) -> Res<f64> {
    let (engine, url, stop_server) = serve(cfg, &format!("remote-{n}")).await?;
    let permits = Arc::new(Semaphore::new(512));
    let mut handles = Vec::with_capacity(runs);
    for i in 0..runs {
        let engine = engine.clone();
        let permit = permits.clone().acquire_owned().await?;
        handles.push(tokio::spawn(async move {
            let handle = engine.start(format!("r-{i}"), remote_step(i as u64)).await;
            drop(permit);
            handle
        }));
    }
    let mut started = Vec::with_capacity(runs);
    for h in handles {
        started.push(h.await??);
    }
    let began = Instant::now();
    let (workers, stop_workers) = workers(&url, n, concurrency)?;
    for (i, run) in started.into_iter().enumerate() {
        let out = run.result().await?;
        if out != (i as u64).wrapping_add(2) {
            return Err(format!("run r-{i} returned {out}").into());
        }
    }
    let elapsed = began.elapsed();
    let _ = stop_workers.send(true);
    for w in workers {
        let _ = w.await;
    }
    let _ = stop_server.send(());
    engine.shutdown().await;
    Ok(runs as f64 / elapsed.as_secs_f64())
}

/// Each run's latency (start to result), one run at a time, `runs` runs of `make`.
async fn latencies<W: flow::Workflow>(
    engine: &Engine,
    prefix: &str,
    runs: usize,
    make: impl Fn(u64) -> W,
) -> Res<Vec<Duration>> {
    let mut out = Vec::with_capacity(runs);
    for i in 0..runs {
        let began = Instant::now();
        let run = engine
            .start(format!("{prefix}-{i}"), make(i as u64))
            .await?;
        run.result().await?;
        out.push(began.elapsed());
    }
    out.sort();
    Ok(out)
}

/// Row 9 (see the module doc).
pub async fn row(cfg: &Config, report: &mut Report) -> Res<()> {
    let runs = if cfg.quick { 2_000 } else { 20_000 };
    let one = throughput(cfg, 1, 256, runs).await?;
    report.info(
        "9",
        format!("remote tasks/s, 1 worker ({} runs)", count(runs as f64)),
        rate(one),
    );
    let eight = throughput(cfg, 8, 64, runs).await?;
    report.push(
        "9",
        format!("remote tasks/s, 8 workers ({} runs)", count(runs as f64)),
        rate(eight),
        "",
        "",
        ">= 10,000/s",
        judge(eight >= 10_000.0),
    );

    let samples = if cfg.quick { 200 } else { 2_000 };
    let (engine, url, stop_server) = serve(cfg, "remote-latency").await?;
    let (workers, stop_workers) = workers(&url, 1, 4)?;
    // Warm up both paths (connections, caches).
    latencies(&engine, "warm-r", 20, remote_step).await?;
    latencies(&engine, "warm-l", 20, local_step).await?;
    let remote = latencies(&engine, "lat-r", samples, remote_step).await?;
    let local = latencies(&engine, "lat-l", samples, local_step).await?;
    let _ = stop_workers.send(true);
    for w in workers {
        let _ = w.await;
    }
    let _ = stop_server.send(());
    engine.shutdown().await;
    let (r50, r99) = (percentile(&remote, 0.5), percentile(&remote, 0.99));
    let (l50, l99) = (percentile(&local, 0.5), percentile(&local, 0.99));
    let added50 = r50.saturating_sub(l50);
    let added99 = r99.saturating_sub(l99);
    report.push(
        "9",
        format!("remote step, added latency p50 ({samples} runs one at a time)"),
        dur(added50),
        format!("local p50 {}, remote p50 {}", dur(l50), dur(r50)),
        "",
        "<= 2 ms",
        judge(added50 <= Duration::from_millis(2)),
    );
    report.info(
        "9",
        "remote step, added latency p99",
        format!(
            "{} (local p99 {}, remote p99 {})",
            dur(added99),
            dur(l99),
            dur(r99)
        ),
    );
    report.note(
        "Row 9: engine, flow-server and the flow-worker workers share this process and \
         its cores; each worker has its own HTTP client. A remote task's round: long poll \
         (batched up to the worker's free slots), run, batched report, then the run's next \
         step committed.",
    );
    Ok(())
}
