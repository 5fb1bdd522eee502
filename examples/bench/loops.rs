//! Row 6: what one iteration of a `for` loop writes, for a short and a long loop.

use flow::testing::{Driver, Restore};
use flow::Engine;

use crate::harness::fresh_journal;
use crate::probe::{file_len, CommitCounter, Phase};
use crate::report::{bytes, count, dur, judge, ratio, Report, Verdict};
use crate::workloads::item_loop;
use crate::{Config, Res};

/// What one loop measured.
struct LoopCost {
    /// Bytes the journal wrote (`pwrite`), per iteration.
    written: f64,
    /// File growth per iteration.
    growth: f64,
    /// `Driver::slot_bytes_written` per iteration (locals re-encoded per step).
    slots: f64,
    /// Durable commits per iteration.
    commits: f64,
    /// Wall time per iteration.
    wall: std::time::Duration,
}

/// Row 6: one run of a workflow that loops `for item in items` over an owned `Vec` of
/// `n` items (one trivial step per item), for the short and the long `n` of the config.
/// The loop's items are journaled once when the loop starts; if each step re-wrote them,
/// bytes per iteration would grow with `n`. The ratio long/short should be about 1.
///
/// Both are measured in the same steady state, over as many iterations (the long loop's
/// `n`: one long run, many short ones): after as many iterations as a warm-up, on an
/// engine that checkpoints every `CHECKPOINT_BYTES` of log. The warm-up grows the
/// write-ahead log file to its working size (zeros written once, in 1 MiB steps, so that
/// later syncs never change the file's size), and both measures then include their
/// share of checkpoints; otherwise the log's growth and the checkpoints would be counted
/// by how much the whole run wrote, not by what one iteration writes.
pub async fn row(cfg: &Config, report: &mut Report) -> Res<()> {
    let (short_n, long_n) = cfg.loop_items;
    let short = measure(cfg, short_n).await?;
    let long = measure(cfg, long_n).await?;
    let what = |n: u64, what: &str| format!("{}-item loop: {what} / iteration", count(n as f64));
    report.push(
        "6",
        what(short_n, "bytes written"),
        bytes(short.written),
        "itself",
        "1.00x",
        "",
        Verdict::Info,
    );
    let r = long.written / short.written;
    report.push(
        "6",
        what(long_n, "bytes written"),
        bytes(long.written),
        format!("{}-item {}", count(short_n as f64), bytes(short.written)),
        ratio(r),
        "about 1x (< 1.5x)",
        judge(r < 1.5),
    );
    // The loop position and the running sum are varints: they take a byte or two more in
    // the long loop. Re-encoding the items would add their whole size to every iteration.
    let extra = long.slots - short.slots;
    report.push(
        "6",
        what(long_n, "Driver slot bytes"),
        bytes(long.slots),
        format!("{}-item {}", count(short_n as f64), bytes(short.slots)),
        ratio(long.slots / short.slots.max(1.0)),
        "< 16 B more (varints grow)",
        judge(extra < 16.0),
    );
    for (n, c) in [(short_n, &short), (long_n, &long)] {
        report.info(
            "6",
            format!(
                "  {}-item: file growth; commits; wall / iteration",
                count(n as f64)
            ),
            format!("{}; {:.2}; {}", bytes(c.growth), c.commits, dur(c.wall)),
        );
    }
    Ok(())
}

/// Log size at which row 6's engines checkpoint: reached several times by each phase.
const CHECKPOINT_BYTES: u64 = 512 << 10;

/// Runs `runs` loops of `n` items one after the other, named `{prefix}-{i}`.
async fn loops(engine: &Engine, prefix: &str, runs: u64, n: u64) -> Res<()> {
    for i in 0..runs {
        let run = engine.start(format!("{prefix}-{i}"), item_loop(n)).await?;
        assert_eq!(run.result().await?, n * n.saturating_sub(1) / 2);
    }
    Ok(())
}

async fn measure(cfg: &Config, n: u64) -> Res<LoopCost> {
    let path = fresh_journal(&cfg.dir, &format!("loop-{n}"));
    let counter = CommitCounter::new();
    let engine = Engine::builder()
        .register::<item_loop>()
        .on_commit(counter.hook())
        .checkpoint_every(CHECKPOINT_BYTES)
        .open(&path)
        .await?;
    let runs = (cfg.loop_items.1 / n).max(1);
    loops(&engine, "warm-up", runs, n).await?;
    let size_before = file_len(&path);
    let phase = Phase::start();
    let counted = counter.commits();
    loops(&engine, "loop", runs, n).await?;
    let cost = phase.finish();
    engine.shutdown().await;
    let growth = file_len(&path).saturating_sub(size_before);
    let _ = std::fs::remove_file(&path);

    let mut driver = Driver::new();
    driver
        .run(item_loop(n), Restore::Never)
        .await
        .map_err(|e| format!("driver: {e}"))?;
    let iterations = (runs * n) as f64;
    let per = |x: f64| x / iterations;
    Ok(LoopCost {
        written: per(cost.bytes_written as f64),
        growth: per(growth as f64),
        slots: driver.slot_bytes_written as f64 / n as f64,
        commits: per((counter.commits() - counted) as f64),
        wall: cost.wall.div_f64(iterations),
    })
}
