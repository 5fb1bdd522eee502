//! Row 1: what the disk allows, the reference for the durable rows.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use flow::{Engine, FlowError};

use crate::probe::{percentile, Phase};
use crate::report::{bytes, dur, rate, ratio, Report, Verdict};
use crate::{Config, Res};

/// The durability floor measured by row 1.
pub struct Floor {
    /// 4 KiB write + `fdatasync` pairs per second.
    pub syncs_per_s: f64,
    /// 40 KiB (ten scattered 4 KiB pages) + `fdatasync` per second: about what one
    /// transition wrote as a durable redb commit, before the write-ahead log.
    pub pages10_per_s: f64,
    /// Empty durable commits through the engine per second.
    pub commits_per_s: f64,
}

/// Row 1: (a) durable 4 KiB writes (`File::sync_data` after each) per second on a file
/// in the journal directory; (b) empty durable commits per second on a fresh journal.
///
/// (b) goes through the engine, as users' commits do: a signal to a run that does not
/// exist is one request to the commit thread, which appends it to the write-ahead log,
/// syncs the log, and applies it to a transaction that finds no such run and writes
/// nothing. So (b) is the floor of a durable commit plus the engine's channel round trip
/// (a few µs).
pub async fn row(cfg: &Config, report: &mut Report) -> Res<Floor> {
    let (syncs_per_s, sync_p50, sync_p99) =
        fdatasync_loop(&cfg.dir.join("floor.dat"), 1, cfg.floor_time)?;
    report.push(
        "1",
        "4 KiB write + fdatasync",
        rate(syncs_per_s),
        "itself",
        "1.00x",
        "",
        Verdict::Info,
    );
    report.info(
        "1",
        "  latency p50 / p99",
        format!("{} / {}", dur(sync_p50), dur(sync_p99)),
    );

    let (pages10_per_s, pages10_p50, _) =
        fdatasync_loop(&cfg.dir.join("floor.dat"), 10, cfg.floor_time)?;
    report.push(
        "1",
        "40 KiB (10 scattered pages) + fdatasync",
        rate(pages10_per_s),
        format!("{} syncs", rate(syncs_per_s)),
        ratio(pages10_per_s / syncs_per_s),
        "",
        Verdict::Info,
    );
    report.info("1", "  latency p50", dur(pages10_p50));

    let (commits_per_s, commit_p50, bytes_per_commit) =
        empty_commits(&cfg.dir.join("floor.redb"), cfg.floor_time).await?;
    report.push(
        "1",
        "empty durable commit (engine)",
        rate(commits_per_s),
        format!("{} syncs", rate(syncs_per_s)),
        ratio(commits_per_s / syncs_per_s),
        "",
        Verdict::Info,
    );
    report.info(
        "1",
        "  latency p50; bytes written / commit",
        format!("{}; {}", dur(commit_p50), bytes(bytes_per_commit)),
    );
    if bytes_per_commit < 1.0 && crate::probe::io_counters_readable() {
        report.note(
            "Row 1: the empty commits wrote nothing: the engine no longer commits a batch whose \
             requests all failed, so the commit floor above is not a durable commit.",
        );
    }
    Ok(Floor {
        syncs_per_s,
        pages10_per_s,
        commits_per_s,
    })
}

/// A 4 KiB + `fdatasync` reference taken around one row: the mean of a short measure just
/// before the row and one just after, so that a disk whose speed drifts during the run
/// (other work on the machine) is compared with what it did at the time.
pub struct SyncRef {
    pub per_s: f64,
    pub p50: Duration,
    before: (f64, Duration),
}

impl SyncRef {
    /// Measures the reference before a row.
    pub fn before(cfg: &Config) -> Res<SyncRef> {
        let (per_s, p50, _) = fdatasync_loop(&cfg.dir.join("floor.dat"), 1, cfg.ref_time)?;
        Ok(SyncRef {
            per_s,
            p50,
            before: (per_s, p50),
        })
    }

    /// Measures it again after the row and keeps the mean; notes a drift over 25%.
    pub fn after(mut self, cfg: &Config, row: &str, report: &mut Report) -> Res<SyncRef> {
        let (per_s, p50, _) = fdatasync_loop(&cfg.dir.join("floor.dat"), 1, cfg.ref_time)?;
        let drift = per_s / self.before.0;
        if !(0.8..=1.25).contains(&drift) {
            report.note(format!(
                "{row}: the disk's sync rate went from {} before to {} after: the ratio is \
                 approximate.",
                rate(self.before.0),
                rate(per_s)
            ));
        }
        self.per_s = (self.before.0 + per_s) / 2.0;
        self.p50 = (self.before.1 + p50) / 2;
        Ok(self)
    }

    /// "7,812/s syncs around".
    pub fn label(&self) -> String {
        format!("{} syncs around", rate(self.per_s))
    }
}

/// Measures the 4 KiB + `fdatasync` rate again after the other rows: the rows divide by
/// the rate measured at the start, which only holds if the disk did not change speed
/// meanwhile (other work on the machine, the host's cache).
pub fn recheck(cfg: &Config, floor: &Floor, report: &mut Report) -> Res<()> {
    let (again, _, _) = fdatasync_loop(&cfg.dir.join("floor.dat"), 1, cfg.floor_time)?;
    let drift = again / floor.syncs_per_s;
    report.push(
        "1",
        "4 KiB write + fdatasync, again at the end",
        rate(again),
        format!("{} at the start", rate(floor.syncs_per_s)),
        ratio(drift),
        "",
        Verdict::Info,
    );
    if !(0.8..=1.25).contains(&drift) {
        report.note(format!(
            "The disk's sync rate changed by {:.0}% during the run (other work on the machine?): \
             ratios against row 1 are approximate.",
            (drift - 1.0) * 100.0
        ));
    }
    Ok(())
}

/// Writes `pages` 4 KiB pages and calls `sync_data`, in a loop for `time`; returns
/// syncs per second and the p50/p99 latency of one write + sync. The file is
/// preallocated (and synced) first and the writes scatter over its 64 pages, as a
/// journal overwriting its pages in place would.
fn fdatasync_loop(path: &Path, pages: u64, time: Duration) -> Res<(f64, Duration, Duration)> {
    const BLOCK: usize = 4096;
    const BLOCKS: u64 = 64;
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    file.write_all_at(&vec![0u8; BLOCK * BLOCKS as usize], 0)?;
    file.sync_all()?;
    let block = vec![0xA5u8; BLOCK];
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut i = 0u64;
    while started.elapsed() < time {
        let t = Instant::now();
        for _ in 0..pages {
            // 13 is prime to 64: consecutive pages land apart, all 64 get used.
            file.write_all_at(&block, (i * 13 % BLOCKS) * BLOCK as u64)?;
            i += 1;
        }
        file.sync_data()?;
        latencies.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    drop(file);
    std::fs::remove_file(path)?;
    latencies.sort();
    Ok((
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    ))
}

/// Empty durable commits, one at a time, for `time`: per second, p50 latency, bytes
/// written per commit.
async fn empty_commits(path: &Path, time: Duration) -> Res<(f64, Duration, f64)> {
    let _ = std::fs::remove_file(path);
    let engine = Engine::builder().open(path).await?;
    let phase = Phase::start();
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < time {
        let t = Instant::now();
        match engine.signal("no-such-run", "ping", &0u8).await {
            Err(FlowError::UnknownRun { .. }) => {}
            Err(e) => return Err(e.into()),
            Ok(()) => return Err("a signal to a missing run was accepted".into()),
        }
        latencies.push(t.elapsed());
    }
    let cost = phase.finish();
    engine.shutdown().await;
    std::fs::remove_file(path)?;
    let n = latencies.len() as f64;
    latencies.sort();
    Ok((
        n / cost.wall.as_secs_f64(),
        percentile(&latencies, 0.5),
        cost.bytes_written as f64 / n,
    ))
}
