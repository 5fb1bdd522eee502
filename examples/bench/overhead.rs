//! Row 4: what the engine costs per step on top of the workflow's own code.

use std::time::{Duration, Instant};

use flow::testing::{Driver, Restore};
use flow::{Engine, Workflow};

use crate::harness::drive;
use crate::probe::Phase;
use crate::report::{count, judge, rate, ratio, Report, Verdict};
use crate::workloads::{hundred_steps, three_steps};
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

    let in_flight = cfg.overhead_in_flight;
    let (memory, steps_per_s, commit_cpu) =
        in_memory(cfg.overhead_runs, 3, in_flight, three_steps).await?;
    // As many steps again, in runs of 100 steps (at least one run per slot in flight).
    let long_runs = (cfg.overhead_runs * 3 / 100).max(in_flight);
    let (long, long_per_s, _) = in_memory(long_runs, 100, in_flight, hundred_steps).await?;
    // cost per step of a k-step run = run / k + step: two sizes give both.
    let step = (100.0 * long.as_secs_f64() - 3.0 * memory.as_secs_f64()) / 97.0;
    let run = 3.0 * (memory.as_secs_f64() - step);

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
            "(c) in-memory engine, 3-step runs, {} in flight, CPU / step",
            count(in_flight as f64)
        ),
        micros(memory),
        reference.clone(),
        vs_plain(memory),
        "< 20 µs",
        judge(memory < Duration::from_micros(20)),
    );
    report.info(
        "4",
        "  (c) steps/s; commit thread CPU / step",
        format!("{}; {}", rate(steps_per_s), micros(commit_cpu)),
    );
    report.push(
        "4",
        "(c') the same, 100-step runs (row 2's loop), CPU / step",
        micros(long),
        reference,
        vs_plain(long),
        "< 20 µs",
        judge(long < Duration::from_micros(20)),
    );
    report.info(
        "4",
        "  (c') steps/s; CPU per step + per run (start to result)",
        format!(
            "{}; {} + {}",
            rate(long_per_s),
            micros(Duration::from_secs_f64(step.max(0.0))),
            micros(Duration::from_secs_f64(run.max(0.0)))
        ),
    );
    Ok(())
}

/// Runs `runs` runs of `W` (`steps` steps each), `in_flight` at a time, on an engine over
/// an in-memory journal; returns the process's CPU per step, steps/s and the commit
/// thread's CPU per step.
async fn in_memory<W: Workflow>(
    runs: usize,
    steps: u64,
    in_flight: usize,
    make: impl Fn(u64) -> W,
) -> Res<(Duration, f64, Duration)> {
    let engine = Engine::builder().register::<W>().open_in_memory().await?;
    let phase = Phase::start();
    drive(&engine, "m", 0..runs, in_flight, true, make).await?;
    let cost = phase.finish();
    engine.shutdown().await;
    let steps = runs as f64 * steps as f64;
    Ok((
        Duration::from_secs_f64(cost.cpu_seconds / steps),
        steps / cost.wall.as_secs_f64(),
        Duration::from_secs_f64(cost.commit_cpu_seconds / steps),
    ))
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
