//! Row 4: what the engine costs per step on top of the workflow's own code.

use std::time::{Duration, Instant};

use flow::testing::{Driver, Restore};
use flow::Engine;

use crate::harness::drive;
use crate::probe::Phase;
use crate::report::{count, judge, rate, ratio, Report, Verdict};
use crate::workloads::three_steps;
use crate::{Config, Res};

/// Row 4: the 3-step workflow (a) awaited as the plain async function it reads as (tasks
/// run directly), (b) driven by `flow::testing::Driver` (the compiled state machine,
/// encoding of every input, output and local, each task body spawned on tokio and its
/// output decoded; no journal), both one run at a time on a current-thread runtime of
/// their own and timed by the wall clock; (b') the same Driver on the benchmark's
/// multi-thread runtime, where each spawned task body is a cross-thread wake-up; and (c)
/// an engine over an in-memory journal (redb's `InMemoryBackend`: every transition still
/// goes through redb and the commit thread, without disk) with `cfg.overhead_in_flight`
/// runs in flight, costed by the process's CPU time (user + system, all threads) per step.
pub async fn row(cfg: &Config, report: &mut Report) -> Res<()> {
    let time = cfg.overhead_time;
    let (plain, driver) = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        rt.block_on(async {
            (
                per_step(time, plain_run).await,
                per_step(time, driver_run).await,
            )
        })
    })
    .join()
    .map_err(|_| "row 4's runtime thread panicked")?;
    let driver_mt = per_step(time, driver_run).await;

    let engine = Engine::builder()
        .register::<three_steps>()
        .open_in_memory()
        .await?;
    let runs = cfg.overhead_runs;
    let phase = Phase::start();
    drive(
        &engine,
        "m",
        0..runs,
        cfg.overhead_in_flight,
        true,
        three_steps,
    )
    .await?;
    let cost = phase.finish();
    engine.shutdown().await;
    let steps = (runs * 3) as f64;
    let memory = Duration::from_secs_f64(cost.cpu_seconds / steps);

    let micros = |d: Duration| format!("{:.2} µs", d.as_secs_f64() * 1e6);
    let vs_plain = |d: Duration| ratio(d.as_secs_f64() / plain.as_secs_f64());
    let reference = format!("plain {}", micros(plain));
    report.push(
        "4",
        "(a) plain async fn, wall / step",
        micros(plain),
        "itself",
        "1.00x",
        "",
        Verdict::Info,
    );
    report.push(
        "4",
        "(b) testing::Driver, wall / step",
        micros(driver),
        reference.clone(),
        vs_plain(driver),
        "< 20 µs",
        judge(driver < Duration::from_micros(20)),
    );
    report.push(
        "4",
        "(b') the same on a multi-thread runtime",
        micros(driver_mt),
        reference.clone(),
        vs_plain(driver_mt),
        "",
        Verdict::Info,
    );
    report.push(
        "4",
        format!(
            "(c) in-memory engine, {} in flight, CPU / step",
            count(cfg.overhead_in_flight as f64)
        ),
        micros(memory),
        reference,
        vs_plain(memory),
        "< 20 µs",
        judge(memory < Duration::from_micros(20)),
    );
    report.info(
        "4",
        "  (c) steps/s; commit thread CPU / step",
        format!(
            "{}; {:.1} µs",
            rate(steps / cost.wall.as_secs_f64()),
            cost.commit_cpu_seconds / steps * 1e6
        ),
    );
    Ok(())
}

/// One run of the 3-step workflow as a plain async function.
async fn plain_run() {
    assert_eq!(three_steps(1).await, 4);
}

/// One run of the 3-step workflow on `flow::testing::Driver`.
async fn driver_run() {
    let mut driver = Driver::new();
    let out = driver.run(three_steps(1), Restore::Never).await;
    assert_eq!(out.expect("the driver runs the workflow"), 4);
}

/// Wall time per step of `run_once` (one 3-step run), repeated one at a time for about
/// `time` after a short warm-up.
async fn per_step<F, Fut>(time: Duration, run_once: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..100 {
        run_once().await;
    }
    let started = Instant::now();
    let mut runs = 0u64;
    while started.elapsed() < time {
        for _ in 0..100 {
            run_once().await;
        }
        runs += 100;
    }
    started.elapsed() / (runs * 3) as u32
}
