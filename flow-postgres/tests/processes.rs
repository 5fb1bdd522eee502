//! Several engine processes on one database: this test binary runs itself as the
//! engine processes (`child_engine`, driven by environment variables), on a throwaway
//! cluster.
//!
//! - one process `kill -9`ed mid-load: a standby takes over when its lease expires; no
//!   run is lost, and no step whose result was committed before the kill runs again;
//! - one process paused (`SIGSTOP`) past its lease while a standby takes over: once
//!   resumed (`SIGCONT`), its late commits are refused by the database, and every run
//!   finishes exactly once, in the other process.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flow::{task, workflow, Engine, EventKind};
use flow_postgres::testing::TestCluster;
use flow_postgres::Postgres;

const RUNS: u64 = 40;

#[task]
async fn slow_step(run: String, step: u64, x: u64) -> u64 {
    let path = std::env::var("FLOW_PG_EXEC").expect("FLOW_PG_EXEC");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    // One write per line: processes append to the file at once.
    let line = format!("{run} {step} {}\n", std::process::id());
    file.write_all(line.as_bytes()).unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;
    x + step + 1
}

#[workflow]
async fn slow(run: String, x: u64) -> u64 {
    let a = slow_step(run.clone(), 0, x).await;
    let b = slow_step(run.clone(), 1, a).await;
    let c = slow_step(run.clone(), 2, b).await;
    c
}

fn builder() -> flow::EngineBuilder {
    Engine::builder().register::<slow>()
}

/// The engine process: opens the database at `FLOW_PG_CHILD_URL` (standing by for the
/// lease), starts `FLOW_PG_START` runs, then waits for all `RUNS` runs' results and
/// prints each outcome. Passes trivially when not run as a child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_engine() {
    let Ok(url) = std::env::var("FLOW_PG_CHILD_URL") else {
        return;
    };
    let start: u64 = std::env::var("FLOW_PG_START").unwrap().parse().unwrap();
    let engine = Postgres::new(url)
        .lease(Duration::from_millis(1000))
        .wait_for_lease(Duration::from_secs(30))
        .open(builder())
        .await
        .unwrap();
    println!("OPENED");
    for i in 0..start {
        engine
            .start(&format!("r{i}"), slow(format!("r{i}"), i))
            .await
            .unwrap();
    }
    println!("STARTED");
    for i in 0..RUNS {
        let result = match engine.handle::<slow>(&format!("r{i}")) {
            Ok(handle) => handle.result().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(out) => println!("RESULT r{i} {out}"),
            Err(e) => println!("ERROR r{i} {e}"),
        }
    }
    println!("DONE");
    engine.shutdown().await;
}

struct EngineProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl EngineProcess {
    fn spawn(url: &str, exec: &std::path::Path, start: u64) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["child_engine", "--exact", "--nocapture", "--test-threads=1"])
            .env("FLOW_PG_CHILD_URL", url)
            .env("FLOW_PG_EXEC", exec)
            .env("FLOW_PG_START", start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (send, lines) = mpsc::channel();
        let errors = send.clone();
        // Its panics, marked, among the lines (for failures' messages).
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = errors.send(format!("stderr: {line}"));
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        EngineProcess {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line holding `prefix`; panics after `within`.
    fn wait_for(&mut self, prefix: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.seen.iter().any(|l| l.contains(prefix)) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "no `{prefix}` from the engine process; it printed {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Everything it printed until it exited (at most `within`).
    fn finish(&mut self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.seen.clone()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn executions(path: &std::path::Path) -> Vec<(String, u64, u32)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.split(' ').count() == 3)
        .map(|line| {
            let mut parts = line.split(' ');
            (
                parts.next().unwrap().to_string(),
                parts.next().unwrap().parse().unwrap(),
                parts.next().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

fn expected(i: u64) -> u64 {
    i + 6
}

/// Each run's completed steps, as the journal holds them (read by an engine that takes
/// the lease once it is free and drives nothing).
async fn committed_steps(url: &str) -> BTreeMap<String, Vec<u64>> {
    let reader = Postgres::new(url)
        .wait_for_lease(Duration::from_secs(20))
        .open(Engine::builder().inspect_only())
        .await
        .unwrap();
    let mut steps = BTreeMap::new();
    for i in 0..RUNS {
        let id = format!("r{i}");
        let done: Vec<u64> = reader
            .history(&id)
            .await
            .unwrap()
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::StepCompleted { step, .. } => Some(step),
                _ => None,
            })
            .collect();
        steps.insert(id, done);
    }
    reader.shutdown().await;
    steps
}

fn scratch(label: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("flow-pg-{label}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn check_results(lines: &[String]) {
    assert!(lines.iter().any(|l| l == "DONE"), "{lines:?}");
    for i in 0..RUNS {
        let want = format!("RESULT r{i} {}", expected(i));
        assert!(lines.contains(&want), "missing `{want}` in {lines:?}");
    }
}

#[test]
fn a_killed_process_loses_no_run_and_no_committed_step_reruns() {
    let Some(cluster) = TestCluster::shared() else {
        return;
    };
    let url = cluster.create_database("kill9");
    let exec = scratch("kill9");
    let mut first = EngineProcess::spawn(&url, &exec, RUNS);
    first.wait_for("STARTED", Duration::from_secs(30));
    // Kill it mid-load: after some steps ran, before all did.
    let deadline = Instant::now() + Duration::from_secs(20);
    while executions(&exec).len() < 50 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    first.signal("-KILL");
    let first_pid = first.child.id();
    drop(first);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let committed = runtime.block_on(committed_steps(&url));
    let committed_count: usize = committed.values().map(Vec::len).sum();
    assert!(
        committed_count > 0 && committed_count < 3 * RUNS as usize,
        "{committed_count}"
    );

    let mut second = EngineProcess::spawn(&url, &exec, 0);
    let lines = second.finish(Duration::from_secs(60));
    check_results(&lines);
    let ran = executions(&exec);
    let second_pid = second.child.id();
    for (run, step, pid) in &ran {
        assert!(*pid == first_pid || *pid == second_pid);
        if *pid == second_pid {
            assert!(
                !committed[run].contains(step),
                "{run} step {step} was committed before the kill, and ran again"
            );
        }
    }
    // Every step ran, and every one the killed process committed ran there once.
    let all: BTreeSet<(String, u64)> = ran.iter().map(|(r, s, _)| (r.clone(), *s)).collect();
    assert_eq!(all.len(), 3 * RUNS as usize);
    let _ = std::fs::remove_file(&exec);
}

#[test]
fn a_process_paused_past_its_lease_is_refused_and_runs_finish_once_elsewhere() {
    let Some(cluster) = TestCluster::shared() else {
        return;
    };
    let url = cluster.create_database("sigstop");
    let exec = scratch("sigstop");
    let mut paused = EngineProcess::spawn(&url, &exec, RUNS);
    paused.wait_for("STARTED", Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(20);
    while executions(&exec).len() < 30 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    paused.signal("-STOP");
    // The other process stands by and takes over once the paused one's lease expires.
    let mut other = EngineProcess::spawn(&url, &exec, 0);
    other.wait_for("OPENED", Duration::from_secs(20));
    paused.signal("-CONT");
    let lines = other.finish(Duration::from_secs(60));
    check_results(&lines);
    let late = paused.finish(Duration::from_secs(15));
    assert!(
        late.iter()
            .any(|l| l.starts_with("ERROR") && l.contains("lease")),
        "the paused process's late commits were refused: {late:?}"
    );

    // Every run finished exactly once: three completed steps each, the right output.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let committed = runtime.block_on(committed_steps(&url));
    for (run, steps) in &committed {
        assert_eq!(steps, &vec![0, 1, 2], "{run}");
    }
    let _ = std::fs::remove_file(&exec);
}
