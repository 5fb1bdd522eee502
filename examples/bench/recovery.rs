//! Row 5: reopening a journal full of in-flight runs, and memory while many runs wait.
//!
//! Each reopen happens in a fresh child process (this program run with `--child ...`),
//! so its time and RSS owe nothing to what this process allocated before.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flow::Engine;

use crate::harness::{drive, fresh_journal};
use crate::probe::rss_bytes;
use crate::report::{bytes, count, dur, judge, ratio, Report};
use crate::workloads::{nap, stuck, HANG_STARTED};
use crate::{Config, Res};

/// How many runs `start` concurrently while filling a journal.
const FILL_IN_FLIGHT: usize = 1000;
/// The durable sleep of the waiting runs: they stay asleep for the whole benchmark.
const NAP_SECS: u64 = 3600;
/// A child gives up waiting for resumed tasks after this long.
const RESUME_TIMEOUT: Duration = Duration::from_secs(120);

/// Row 5: (a) a journal holding `cfg.recovery_runs` runs asleep in `flow::sleep(1h)` is
/// reopened: resumed means `open()` returned (the timer service is then running and their
/// deadlines are in the journal's timer table; nothing else is loaded); (b) a journal
/// holding as many runs whose pending step is a task that was running when the engine
/// shut down is reopened: resumed means every one of those tasks has started again
/// (counted by the task body). (c) RSS of a process whose engine has a journal with
/// `cfg.rss_runs` sleeping runs open, one second after `open()`.
///
/// References: the same child opening an empty journal (open time, RSS), and for (b)
/// the time it took to start the runs in the first place.
pub async fn row(cfg: &Config, report: &mut Report) -> Res<()> {
    let empty = fresh_journal(&cfg.dir, "empty");
    Engine::builder().open(&empty).await?.shutdown().await;
    let base = child("open", &empty, 0)?;
    let base_open = Duration::from_secs_f64(base["open_s"]);

    // (a) sleeping runs
    let sleepers = fresh_journal(&cfg.dir, "sleepers");
    let created = fill(&sleepers, 0..cfg.recovery_runs).await?;
    let reopened = child("open", &sleepers, 0)?;
    let open = Duration::from_secs_f64(reopened["open_s"]);
    report.push(
        "5",
        format!(
            "reopen, {} runs asleep: open() returned",
            count(cfg.recovery_runs as f64)
        ),
        dur(open),
        format!("empty journal {}", dur(base_open)),
        ratio(open.as_secs_f64() / base_open.as_secs_f64()),
        "< 2 s",
        judge(open < Duration::from_secs(2)),
    );
    report.info(
        "5",
        "  journal size; time to start them",
        format!(
            "{}; {}",
            bytes(crate::probe::file_len(&sleepers) as f64),
            dur(created)
        ),
    );

    // (b) runs pending on a task
    let pending = fresh_journal(&cfg.dir, "pending");
    let created = fill_stuck(&pending, cfg.recovery_runs).await?;
    let resumed = child("resume", &pending, cfg.recovery_runs)?;
    let all = Duration::from_secs_f64(resumed["all_started_s"]);
    report.push(
        "5",
        format!(
            "reopen, {} runs in a task: all tasks restarted",
            count(cfg.recovery_runs as f64)
        ),
        dur(all),
        format!("starting them took {}", dur(created)),
        ratio(all.as_secs_f64() / created.as_secs_f64()),
        "< 2 s",
        judge(all < Duration::from_secs(2)),
    );
    report.info(
        "5",
        "  open() returned; RSS with all tasks live",
        format!(
            "{}; {}",
            dur(Duration::from_secs_f64(resumed["open_s"])),
            bytes(resumed["rss"])
        ),
    );
    let _ = std::fs::remove_file(&pending);

    // (c) memory while many runs wait: grow the sleepers' journal
    let more = cfg.rss_runs.saturating_sub(cfg.recovery_runs);
    let grown = fill(&sleepers, cfg.recovery_runs..cfg.recovery_runs + more).await?;
    let held = child("open", &sleepers, 0)?;
    report.push(
        "5",
        format!(
            "RSS, {} runs asleep in the open journal",
            count(cfg.rss_runs as f64)
        ),
        bytes(held["rss"]),
        format!("empty journal {}", bytes(base["rss"])),
        ratio(held["rss"] / base["rss"]),
        "< 200 MB",
        judge(held["rss"] < 200e6),
    );
    report.info(
        "5",
        "  journal size; open(); starting the extra runs",
        format!(
            "{}; {}; {} for {}",
            bytes(crate::probe::file_len(&sleepers) as f64),
            dur(Duration::from_secs_f64(held["open_s"])),
            dur(grown),
            count(more as f64)
        ),
    );
    report.info(
        "5",
        "  RSS of this process (all rows so far)",
        bytes(rss_bytes() as f64),
    );
    let _ = std::fs::remove_file(&sleepers);
    let _ = std::fs::remove_file(&empty);
    Ok(())
}

/// Adds sleeping runs `ids` to the journal at `path`; returns how long starting them took.
async fn fill(path: &Path, ids: std::ops::Range<usize>) -> Res<Duration> {
    let engine = Engine::builder().register::<nap>().open(path).await?;
    let started = Instant::now();
    drive(&engine, "sleeper", ids, FILL_IN_FLIGHT, false, |_| {
        nap(NAP_SECS)
    })
    .await?;
    let took = started.elapsed();
    engine.shutdown().await;
    Ok(took)
}

/// Fills a journal with `n` runs whose task is running when the engine shuts down.
async fn fill_stuck(path: &Path, n: usize) -> Res<Duration> {
    let engine = Engine::builder().register::<stuck>().open(path).await?;
    let started = Instant::now();
    drive(&engine, "stuck", 0..n, FILL_IN_FLIGHT, false, stuck).await?;
    let took = started.elapsed();
    engine.shutdown().await;
    Ok(took)
}

/// Runs this program as a child measuring `what` on `path`; returns its `key=value` lines.
fn child(what: &str, path: &Path, n: usize) -> Res<HashMap<String, f64>> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["--child", what])
        .arg(path)
        .arg(n.to_string())
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "child `{what}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
        .collect())
}

/// The child side: `open PATH` opens the journal and reports `open()`'s time and, one
/// second later, the RSS; `resume PATH N` opens it and waits until `N` pending `hang`
/// tasks have started, then reports both times and the RSS.
pub async fn child_main(what: &str, path: &Path, n: usize) -> Res<()> {
    let started = Instant::now();
    let engine = Engine::builder()
        .register::<nap>()
        .register::<stuck>()
        .open(path)
        .await?;
    let open = started.elapsed();
    println!("open_s={}", open.as_secs_f64());
    match what {
        "open" => tokio::time::sleep(Duration::from_secs(1)).await,
        "resume" => {
            while HANG_STARTED.load(Ordering::SeqCst) < n {
                if started.elapsed() > RESUME_TIMEOUT {
                    return Err(format!(
                        "only {} of {n} tasks restarted within {RESUME_TIMEOUT:?}",
                        HANG_STARTED.load(Ordering::SeqCst)
                    )
                    .into());
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            println!("all_started_s={}", started.elapsed().as_secs_f64());
        }
        other => return Err(format!("unknown child measure `{other}`").into()),
    }
    println!("rss={}", rss_bytes());
    engine.shutdown().await;
    Ok(())
}
