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
/// Each loop runs twice on its journal and the second run is measured: the first one
/// grows the write-ahead log file (zeros written once, in 1 MiB steps, so that later
/// syncs never change the file's size), which would otherwise weigh on the short loop
/// alone.
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

async fn measure(cfg: &Config, n: u64) -> Res<LoopCost> {
    let path = fresh_journal(&cfg.dir, &format!("loop-{n}"));
    let counter = CommitCounter::new();
    let engine = Engine::builder()
        .register::<item_loop>()
        .on_commit(counter.hook())
        .open(&path)
        .await?;
    let warm_up = engine.start("warm-up", item_loop(n)).await?;
    assert_eq!(warm_up.result().await?, n * n.saturating_sub(1) / 2);
    let size_before = file_len(&path);
    let phase = Phase::start();
    let counted = counter.commits();
    let run = engine.start("loop", item_loop(n)).await?;
    assert_eq!(run.result().await?, n * n.saturating_sub(1) / 2);
    let cost = phase.finish();
    engine.shutdown().await;
    let growth = file_len(&path).saturating_sub(size_before);
    let _ = std::fs::remove_file(&path);

    let mut driver = Driver::new();
    driver
        .run(item_loop(n), Restore::Never)
        .await
        .map_err(|e| format!("driver: {e}"))?;
    let per = |x: f64| x / n as f64;
    Ok(LoopCost {
        written: per(cost.bytes_written as f64),
        growth: per(growth as f64),
        slots: per(driver.slot_bytes_written as f64),
        commits: per((counter.commits() - counted) as f64),
        wall: cost.wall / n as u32,
    })
}
