//! Row 10: the web console at scale, measured over HTTP against a flow-server on a
//! loopback port: the runs page of a journal with `cfg.console_runs` runs (a million in
//! full mode), and opening a run with `cfg.console_events` history events (100,000).

use std::time::{Duration, Instant};

use flow::Engine;
use flow_server::{Server, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{drive, fresh_journal};
use crate::report::{count, dur, Report, Verdict};
use crate::workloads::{at_once, nap, sequential, take_ticks};
use crate::{Config, Res};

/// One run in this many waits (a sleep of a day) instead of completing: the rare status
/// a filter looks for.
const RARE_EVERY: usize = 10_000;
/// Tries of each measured request; the median is reported.
const TRIES: usize = 15;
/// The console's page sizes.
const RUNS_PAGE: usize = 50;
const HISTORY_PAGE: usize = 500;

/// `GET path` on `addr`: status and body length, and how long the answer took.
async fn get(addr: std::net::SocketAddr, path: &str) -> Res<(u16, usize, Duration)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: no HTTP status in the answer"))?;
    if status != 200 {
        return Err(format!("GET {path}: status {status}: {:.300}", text).into());
    }
    let body = text.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
    Ok((status, body, took))
}

/// The median answer time of `TRIES` requests of `path`.
async fn median(addr: std::net::SocketAddr, path: &str) -> Res<Duration> {
    let mut times = Vec::with_capacity(TRIES);
    for _ in 0..TRIES {
        times.push(get(addr, path).await?.2);
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn judge(took: Duration, target: Duration) -> Verdict {
    if took < target {
        Verdict::Met
    } else {
        Verdict::Missed
    }
}

/// Row 10.
pub async fn row(cfg: &Config, report: &mut Report) -> Res<()> {
    let n = cfg.console_runs;
    let path = fresh_journal(&cfg.dir, "console");
    let engine = Engine::builder()
        .register::<at_once>()
        .register::<nap>()
        .register::<sequential>()
        .open(&path)
        .await?;

    // The journal: `n` runs, one in RARE_EVERY of them waiting.
    let fill = Instant::now();
    drive(&engine, "run", 0..n, 1_000, false, at_once).await?;
    let waiting = n / RARE_EVERY;
    drive(&engine, "sleeper", 0..waiting, 100, false, |_| nap(86_400)).await?;
    let fill = fill.elapsed();

    // The run with a long history: `tick` steps write 3 events each.
    let steps = (cfg.console_events as u64).saturating_sub(2) / 3;
    let long = engine.start("long-run", sequential(steps)).await?;
    long.result().await?;
    take_ticks();
    let events = engine.history("long-run").await?.len();

    let server = Server::bind(
        engine.clone(),
        ServerOptions {
            addr: "127.0.0.1:0".parse()?,
            ..ServerOptions::default()
        },
    )
    .await?;
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));

    let runs = format!("{} runs", count(n as f64));
    let target = Duration::from_millis(200);
    let first = median(addr, &format!("/v1/runs?limit={RUNS_PAGE}")).await?;
    report.push(
        "10",
        format!("console runs page, {runs}: first page of {RUNS_PAGE} (median)"),
        dur(first),
        "",
        "",
        "< 200 ms",
        judge(first, target),
    );
    let middle = format!("run-{:08}", n / 2);
    let deep = median(addr, &format!("/v1/runs?limit={RUNS_PAGE}&after={middle}")).await?;
    report.push(
        "10",
        format!("console runs page, {runs}: a page from the middle (median)"),
        dur(deep),
        "",
        "",
        "< 200 ms",
        judge(deep, target),
    );
    let by_workflow = median(
        addr,
        &format!("/v1/runs?limit={RUNS_PAGE}&workflow=at_once&after={middle}"),
    )
    .await?;
    report.push(
        "10",
        format!("console runs page, {runs}: filtered by a common workflow (median)"),
        dur(by_workflow),
        "",
        "",
        "< 200 ms",
        judge(by_workflow, target),
    );
    let (_, _, rare) = get(addr, &format!("/v1/runs?limit={RUNS_PAGE}&status=waiting")).await?;
    report.push(
        "10",
        format!(
            "console runs page, {runs}: filtered by a rare status (1 run in {}; one request)",
            count(RARE_EVERY as f64)
        ),
        dur(rare),
        "",
        "",
        "< 200 ms",
        judge(rare, target),
    );
    // Counts per status: the first request starts the count and answers within 100 ms;
    // the count itself runs in the background.
    let (_, _, counts_first) = get(addr, "/v1/run_counts").await?;
    let counted = Instant::now();
    let took_ms = loop {
        // The answer's `took_ms` is in the body once a count is there.
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET /v1/run_counts HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        if let Some(at) = body.find("\"took_ms\":") {
            let digits: String = body[at + 10..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            break digits.parse::<u64>().unwrap_or(0);
        }
        if counted.elapsed() > Duration::from_secs(600) {
            return Err("the console's run count did not finish in 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    report.push(
        "10",
        format!("console counts per status, {runs}: answer while counting"),
        dur(counts_first),
        "",
        "",
        "< 200 ms",
        judge(counts_first, target),
    );
    report.info(
        "10",
        format!("console counts per status, {runs}: the background count"),
        dur(Duration::from_millis(took_ms)),
    );

    // Opening the long run: what the console's run page requests before it shows it.
    let opened = Instant::now();
    get(addr, "/v1/runs/long-run").await?;
    get(
        addr,
        &format!("/v1/runs/long-run/history?limit={HISTORY_PAGE}"),
    )
    .await?;
    get(addr, "/v1/runs/long-run/graph").await?;
    get(addr, "/v1/workflows").await?;
    get(
        addr,
        &format!("/v1/runs/long-run/locals?step={}", steps - 1),
    )
    .await?;
    let opened = opened.elapsed();
    report.push(
        "10",
        format!(
            "console opens a run of {} history events (run, history page, graph, workflows, locals)",
            count(events as f64)
        ),
        dur(opened),
        "",
        "",
        "< 1 s",
        judge(opened, Duration::from_secs(1)),
    );
    let last_page = median(
        addr,
        &format!(
            "/v1/runs/long-run/history?limit={HISTORY_PAGE}&after={}",
            events.saturating_sub(HISTORY_PAGE + 1)
        ),
    )
    .await?;
    report.info(
        "10",
        "console: the last history page of that run (median)",
        dur(last_page),
    );
    report.note(format!(
        "Row 10: the journal of {runs} ({} waiting, the rest completed) was filled in {}. \
         Listing pages read runs in run ID order from the cursor; a \
         filter by status or workflow reads the journal's index of it (only the runs it may \
         match). Counts per status read every run, in the background.",
        count(waiting as f64),
        dur(fill)
    ));

    let _ = stop.send(());
    let _ = serving.await;
    engine.shutdown().await;
    let _ = std::fs::remove_file(&path);
    Ok(())
}
