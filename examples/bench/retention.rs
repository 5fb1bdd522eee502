//! Row 7: the retention soak. Many short runs go through an engine that deletes each
//! run as soon as it finishes (retention 0); since redb reuses the pages freed by the
//! deletions, and the engine compacts a mostly free file once it is idle, the journal
//! file holds only what the runs in flight need: after all of them it is no larger than
//! after the first 1%. The file's size just before that compaction (its high-water mark
//! while runs went through) is printed too. Also: what the per-step record of the slots
//! a transition wrote (kept for `Engine::fork`) costs per step.

use std::time::{Duration, Instant};

use flow::{Engine, ListQuery};
use redb::{ReadableDatabase, ReadableTableMetadata, TableHandle};

use crate::harness::{drive, fresh_journal};
use crate::probe::file_len;
use crate::report::{bytes, count, judge, rate, ratio, Report};
use crate::workloads::{sequential, three_steps};
use crate::{Config, Res};

/// Runs between their start and their result at any time.
const IN_FLIGHT: usize = 100;
/// Runs started per `drive` call (its handles are collected, so it is bounded).
const CHUNK: usize = 10_000;
/// How long the deletions may take to catch up with the runs.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// How long the engine must be idle before it compacts the file (`compact_when_idle`).
const IDLE: Duration = Duration::from_millis(250);

pub async fn row(cfg: &Config, report: &mut Report) -> Res<()> {
    let path = fresh_journal(&cfg.dir, "retention");
    let engine = Engine::builder()
        .register::<three_steps>()
        .retention(Some(Duration::ZERO))
        .compact_when_idle(Some(IDLE))
        .open(&path)
        .await?;
    let total = cfg.soak_runs;
    let first = (total / 100).max(1);
    let started = Instant::now();
    run_all(&engine, 0, first).await?;
    let (early_peak, early) = settled(&engine, &path).await?;
    // The size at a tenth and at half of the runs too: growth that stops is the file
    // reaching what the runs in flight and redb's pending frees need; growth that goes on
    // would be something a deletion misses.
    let tenth = (total / 10).max(first);
    run_all(&engine, first, tenth).await?;
    let (tenth_peak, at_tenth) = settled(&engine, &path).await?;
    run_all(&engine, tenth, total / 2).await?;
    let (half_peak, at_half) = settled(&engine, &path).await?;
    run_all(&engine, (total / 2).max(tenth), total).await?;
    let (late_peak, late) = settled(&engine, &path).await?;
    // The waits for the engine to go idle are not the runs' time.
    let wall = started.elapsed() - 4 * idle_wait();
    engine.shutdown().await;
    let _ = Engine::remove_journal(&path);

    let r = late as f64 / early.max(1) as f64;
    report.push(
        "7",
        format!("{} runs, retention 0: journal file", count(total as f64)),
        bytes(late as f64),
        format!("after {}: {}", count(first as f64), bytes(early as f64)),
        ratio(r),
        "no larger (<= 1.00x)",
        judge(late <= early),
    );
    report.info(
        "7",
        format!(
            "  journal file after {}, {} and {} runs",
            count(first as f64),
            count(tenth as f64),
            count((total / 2) as f64)
        ),
        format!(
            "{}; {}; {}",
            bytes(early as f64),
            bytes(at_tenth as f64),
            bytes(at_half as f64)
        ),
    );
    report.info(
        "7",
        "  before the idle compaction: at the same four points",
        format!(
            "{}; {}; {}; {}",
            bytes(early_peak as f64),
            bytes(tenth_peak as f64),
            bytes(half_peak as f64),
            bytes(late_peak as f64)
        ),
    );
    report.info(
        "7",
        "  runs / s, deletion included",
        rate(total as f64 / wall.as_secs_f64()),
    );
    step_state_cost(cfg, report).await
}

/// Runs of row 2's workflow measured for the step-state cost, and their steps each.
const STATE_RUNS: usize = 100;
const STATE_STEPS: u64 = 100;

/// The bytes the journal stores per step for the step-state records (`flow_step_states`),
/// beside those of the saved locals themselves (`flow_slots`), after `STATE_RUNS` runs
/// of `STATE_STEPS` steps (one local, a counter).
async fn step_state_cost(cfg: &Config, report: &mut Report) -> Res<()> {
    let path = fresh_journal(&cfg.dir, "step-states");
    let engine = Engine::builder()
        .register::<sequential>()
        .open(&path)
        .await?;
    drive(&engine, "steps", 0..STATE_RUNS, IN_FLIGHT, true, |_| {
        sequential(STATE_STEPS)
    })
    .await?;
    engine.shutdown().await;
    drop(engine);
    let stored = |table: &str| -> Res<u64> {
        let db = redb::Database::open(&path)?;
        let txn = db.begin_read()?;
        let handle = txn
            .list_tables()?
            .find(|t| t.name() == table)
            .ok_or_else(|| format!("the journal has no table `{table}`"))?;
        Ok(txn.open_untyped_table(handle)?.stats()?.stored_bytes())
    };
    let steps = (STATE_RUNS as u64 * STATE_STEPS) as f64;
    let states = stored("flow_step_states")? as f64 / steps;
    let slots = stored("flow_slots")? as f64 / STATE_RUNS as f64;
    let _ = Engine::remove_journal(&path);
    report.info(
        "7",
        format!(
            "fork's step-state record: stored / step ({}-step runs, one local)",
            count(STATE_STEPS as f64)
        ),
        format!(
            "{}; the run's locals: {} / run",
            bytes(states),
            bytes(slots)
        ),
    );
    Ok(())
}

/// Runs `from..to` to their end, `CHUNK` at a time.
async fn run_all(engine: &Engine, from: usize, to: usize) -> Res<()> {
    let mut at = from;
    while at < to {
        let end = (at + CHUNK).min(to);
        drive(engine, "soak", at..end, IN_FLIGHT, true, three_steps).await?;
        at = end;
    }
    Ok(())
}

/// How long `settled` waits for the idle compaction: the commit thread looks every
/// `IDLE` and compacts after a whole period without a write.
fn idle_wait() -> Duration {
    3 * IDLE
}

/// Waits until every finished run was deleted, then until the engine compacted the
/// file; returns the file's size before and after.
async fn settled(engine: &Engine, path: &std::path::Path) -> Res<(u64, u64)> {
    drained(engine).await?;
    let peak = file_len(path);
    tokio::time::sleep(idle_wait()).await;
    Ok((peak, file_len(path)))
}

/// Waits until every finished run was deleted.
async fn drained(engine: &Engine) -> Res<()> {
    let deadline = Instant::now() + DRAIN_LIMIT;
    let query = ListQuery {
        limit: Some(1),
        ..ListQuery::default()
    };
    while !engine.list_page(&query).await?.runs.is_empty() {
        if Instant::now() > deadline {
            return Err("finished runs were not deleted within two minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
