//! Rows 2 and 3: durable steps per second on a journal file, one run alone and many
//! runs at once.

use std::time::Duration;

use flow::Engine;

use crate::floor::{Floor, SyncRef};
use crate::harness::{drive, fresh_journal};
use crate::probe::{file_len, percentile, CommitCounter, Phase};
use crate::report::{bytes, count, dur, judge, rate, ratio, Report, Verdict};
use crate::workloads::{self, sequential, three_steps};
use crate::{Config, Res};

/// Row 2: runs of a `steps`-step workflow (a `for` loop awaiting a trivial task), one
/// after another on a fresh journal file; then the same on an in-memory journal, which
/// shows how much of a step's latency is not the disk.
///
/// Step latency is the time between the starts of two consecutive task bodies (the task
/// stamps `Instant::now()`): it spans committing step k's result together with scheduling
/// step k+1 (one durable commit), the driver's turn and the spawn of the next attempt, which
/// is all the engine does per step. Steps/s is steps divided by each run's wall time from
/// `start` to `result`, which also holds the start's and the completion's commits.
pub async fn sequential_row(cfg: &Config, floor: &Floor, report: &mut Report) -> Res<()> {
    let sync = SyncRef::before(cfg)?;
    let path = fresh_journal(&cfg.dir, "sequential");
    let counter = CommitCounter::new();
    let engine = Engine::builder()
        .register::<sequential>()
        .on_commit(counter.hook())
        .open(&path)
        .await?;
    let phase = Phase::start();
    let (wall, intervals) = sequential_runs(&engine, cfg).await?;
    let cost = phase.finish();
    engine.shutdown().await;
    let _ = std::fs::remove_file(&path);
    let sync = sync.after(cfg, "Row 2", report)?;

    let steps = (cfg.seq_runs as u64 * cfg.seq_steps) as f64;
    let steps_per_s = steps / wall.as_secs_f64();
    let (p50, p99) = (percentile(&intervals, 0.5), percentile(&intervals, 0.99));
    let what = format!(
        "{} run(s) of {} steps, one at a time: steps/s",
        cfg.seq_runs, cfg.seq_steps
    );
    let vs_sync = steps_per_s / sync.per_s;
    report.push(
        "2",
        what,
        rate(steps_per_s),
        sync.label(),
        ratio(vs_sync),
        ">= 0.77x (1 sync/step within 1.3x)",
        judge(vs_sync >= 1.0 / 1.3),
    );
    report.push(
        "2",
        "  step latency p50 / p99",
        format!("{} / {}", dur(p50), dur(p99)),
        format!("sync p50 {}", dur(sync.p50)),
        ratio(p50.as_secs_f64() / sync.p50.as_secs_f64()),
        "p50 <= 1.3x",
        judge(p50.as_secs_f64() <= 1.3 * sync.p50.as_secs_f64()),
    );
    report.push(
        "2",
        "  steps/s vs empty durable commits",
        rate(steps_per_s),
        format!("{} commits", rate(floor.commits_per_s)),
        ratio(steps_per_s / floor.commits_per_s),
        "",
        Verdict::Info,
    );
    report.push(
        "2",
        "  steps/s vs 40 KiB + sync",
        rate(steps_per_s),
        format!("{} 40 KiB syncs", rate(floor.pages10_per_s)),
        ratio(steps_per_s / floor.pages10_per_s),
        "",
        Verdict::Info,
    );
    report.info(
        "2",
        "  durable commits / step; bytes written / step; CPU / step",
        format!(
            "{:.2}; {}; {}",
            counter.commits() as f64 / steps,
            bytes(cost.bytes_written as f64 / steps),
            dur(Duration::from_secs_f64(cost.cpu_seconds / steps))
        ),
    );

    // The same in memory: what a step costs besides the disk, with the file's
    // write-ahead log (on a memory backend too) and without one.
    for (what, logged) in [("with its log", true), ("without a log", false)] {
        let mut builder = Engine::builder().register::<sequential>();
        if logged {
            builder = builder.log_backend(redb::backends::InMemoryBackend::new());
        }
        let engine = builder.open_in_memory().await?;
        let (wall, intervals) = sequential_runs(&engine, cfg).await?;
        engine.shutdown().await;
        report.info(
            "2",
            format!("  in-memory journal {what}: steps/s; latency p50 / p99"),
            format!(
                "{}; {} / {}",
                rate(steps / wall.as_secs_f64()),
                dur(percentile(&intervals, 0.5)),
                dur(percentile(&intervals, 0.99))
            ),
        );
    }

    Ok(())
}

/// Runs `cfg.seq_runs` sequential runs one after another; returns their summed wall time
/// and the sorted intervals between consecutive task starts within each run.
async fn sequential_runs(engine: &Engine, cfg: &Config) -> Res<(Duration, Vec<Duration>)> {
    let mut intervals: Vec<Duration> = Vec::new();
    let mut wall = Duration::ZERO;
    for r in 0..cfg.seq_runs {
        workloads::take_ticks();
        let started = std::time::Instant::now();
        let run = engine
            .start(format!("seq-{r}"), sequential(cfg.seq_steps))
            .await?;
        assert_eq!(run.result().await?, cfg.seq_steps);
        wall += started.elapsed();
        let ticks = workloads::take_ticks();
        intervals.extend(ticks.windows(2).map(|w| w[1] - w[0]));
    }
    intervals.sort();
    Ok((wall, intervals))
}

/// Row 3: `cfg.conc_runs` runs of a 3-step workflow at each level of `cfg.concurrency`
/// (runs between `start` and `result`, bounded by a semaphore), each level on a fresh
/// journal file.
///
/// Commits per step come from `CommitCounter` (the `on_commit` hook reports transitions,
/// not commits; see there). Bytes per step are what the process wrote with `pwrite`
/// during the phase (all of it the journal's), beside the file's growth. CPU per step is
/// the process's user + system time over the phase.
pub async fn concurrent_row(cfg: &Config, report: &mut Report) -> Res<()> {
    for &in_flight in &cfg.concurrency {
        let runs = cfg.conc_runs;
        let sync = SyncRef::before(cfg)?;
        let path = fresh_journal(&cfg.dir, &format!("concurrent-{in_flight}"));
        let counter = CommitCounter::new();
        let engine = Engine::builder()
            .register::<three_steps>()
            .on_commit(counter.hook())
            .open(&path)
            .await?;
        let size_before = file_len(&path);
        let phase = Phase::start();
        let latencies = drive(&engine, "c", 0..runs, in_flight, true, three_steps).await?;
        let cost = phase.finish();
        engine.shutdown().await;
        let growth = file_len(&path).saturating_sub(size_before);
        let _ = std::fs::remove_file(&path);
        let sync = sync.after(cfg, &format!("Row 3 at {in_flight} in flight"), report)?;

        let steps = (runs * 3) as f64;
        let secs = cost.wall.as_secs_f64();
        let steps_per_s = steps / secs;
        let vs_sync = steps_per_s / sync.per_s;
        let what = format!(
            "{} runs x 3 steps, {} in flight: steps/s",
            count(runs as f64),
            count(in_flight as f64)
        );
        let value = format!(
            "{} ({} runs/s)",
            rate(steps_per_s),
            count(runs as f64 / secs)
        );
        let reference = sync.label();
        if in_flight >= 1000 {
            report.push(
                "3",
                what,
                value,
                reference,
                ratio(vs_sync),
                ">= 50,000/s and >= 10x",
                judge(steps_per_s >= 50_000.0 && vs_sync >= 10.0),
            );
        } else {
            report.push(
                "3",
                what,
                value,
                reference,
                ratio(vs_sync),
                "",
                Verdict::Info,
            );
        }
        report.info(
            "3",
            "  run latency p50 / p99",
            format!(
                "{} / {}",
                dur(percentile(&latencies, 0.5)),
                dur(percentile(&latencies, 0.99))
            ),
        );
        report.info(
            "3",
            "  durable commits / step (transitions / step)",
            format!(
                "{:.3} ({:.2}); commit thread preempted {}x",
                counter.commits() as f64 / steps,
                counter.transitions() as f64 / steps,
                cost.commit_thread_preemptions
            ),
        );
        report.info(
            "3",
            "  bytes written / step (file growth / step)",
            format!(
                "{} ({})",
                bytes(cost.bytes_written as f64 / steps),
                bytes(growth as f64 / steps)
            ),
        );
        report.info(
            "3",
            "  CPU / step: process (kernel); busy",
            format!(
                "{:.1} µs ({:.1} µs); {:.0}% of {} cores",
                cost.cpu_seconds / steps * 1e6,
                cost.system_seconds / steps * 1e6,
                100.0 * cost.cpu_seconds / secs / cfg.cores as f64,
                cfg.cores
            ),
        );
        report.info(
            "3",
            "  CPU / step: commit thread; busy",
            format!(
                "{:.1} µs; {:.0}% of its wall time",
                cost.commit_cpu_seconds / steps * 1e6,
                100.0 * cost.commit_cpu_seconds / secs
            ),
        );
    }
    Ok(())
}
