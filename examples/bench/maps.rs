//! Row 8: what a map costs per item, what its items leave in the journal once it
//! finished, and how long reading the history of a run with a large map takes.

use std::time::Instant;

use flow::Engine;

use crate::harness::fresh_journal;
use crate::probe::{file_len, CommitCounter, Phase};
use crate::report::{bytes, count, dur, Report};
use crate::workloads::fan_out;
use crate::{Config, Res};

/// Runs of the map measured after the warm-up run.
const RUNS: u64 = 3;

/// Row 8: runs of a workflow whose only step is `flow::map` over `cfg.map_items` items
/// (a trivial task each, 100 in flight). One run warms the journal up; then `RUNS` runs
/// are measured for wall time, bytes written and commits per item, and the journal file's
/// growth per run once the engine shut down (checkpointed): what the finished maps keep
/// in the journal (their items, their records, their history). Last, the history of one
/// of them is read, with its map's items.
pub async fn row(cfg: &Config, report: &mut Report) -> Res<()> {
    let n = cfg.map_items;
    let path = fresh_journal(&cfg.dir, "map");
    let open = || {
        let counter = CommitCounter::new();
        let builder = Engine::builder()
            .register::<fan_out>()
            .on_commit(counter.hook());
        (counter, builder)
    };
    let expected = (1..=n).sum::<u64>();

    let (_, builder) = open();
    let engine = builder.open(&path).await?;
    let run = engine.start("warm-up", fan_out(n)).await?;
    assert_eq!(run.result().await?, expected);
    engine.shutdown().await;
    let size_before = file_len(&path);

    let (counter, builder) = open();
    let engine = builder.open(&path).await?;
    let phase = Phase::start();
    for i in 0..RUNS {
        let run = engine.start(format!("map-{i}"), fan_out(n)).await?;
        assert_eq!(run.result().await?, expected);
    }
    let cost = phase.finish();
    let commits = counter.commits();
    let history_started = Instant::now();
    let history = engine.history("map-0").await?;
    let history_time = history_started.elapsed();
    engine.shutdown().await;
    let growth = file_len(&path).saturating_sub(size_before);
    let _ = std::fs::remove_file(&path);

    let items = (RUNS * n) as f64;
    let what = |what: &str| format!("{}-item map: {what}", count(n as f64));
    report.info("8", what("wall / item"), dur(cost.wall.div_f64(items)));
    report.info(
        "8",
        what("bytes written / item"),
        bytes(cost.bytes_written as f64 / items),
    );
    report.info(
        "8",
        what("commits / item"),
        format!("{:.3}", commits as f64 / items),
    );
    report.info(
        "8",
        what("journal file growth / finished run"),
        bytes(growth as f64 / RUNS as f64),
    );
    report.info(
        "8",
        what("history read (one run)"),
        format!("{} ({} events)", dur(history_time), history.len()),
    );
    Ok(())
}
