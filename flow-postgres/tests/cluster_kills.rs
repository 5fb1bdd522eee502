//! Three engine processes of one cluster under a mixed workload (tasks, a map, a sleep,
//! a signal, a child run), one of them `kill -9`ed at a random moment 50 times (and
//! started again): no acknowledged run is lost, no step whose result was committed
//! runs again, and every output equals the one an uninterrupted run gives.
//!
//! This test binary runs itself as the engine processes (`cluster_node`, driven by
//! environment variables). Each process starts runs through the cluster (most of them
//! in shards another process drives, so starts, signals and results go through the
//! database), signals them and waits for their results, until told to stop. Every task
//! execution is logged with its process and start time; at the end a checker process
//! reads every run's result and history, and each execution must have started before
//! the commit of its result.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flow::{task, workflow, Engine, EventKind};
use flow_postgres::testing::TestCluster;
use flow_postgres::{Cluster, Postgres};

const KILLS: u32 = 50;
const IN_FLIGHT: usize = 10;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Logs one execution (`key pid start_ms`), then works for a moment.
#[task]
async fn work(key: String, x: u64) -> u64 {
    let path = std::env::var("FLOW_PG_EXEC").expect("FLOW_PG_EXEC");
    let line = format!("{key} {} {}\n", std::process::id(), now_ms());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    // One write per line: processes append at once.
    file.write_all(line.as_bytes()).unwrap();
    tokio::time::sleep(Duration::from_millis(15)).await;
    x * 3 + 1
}

#[workflow]
async fn leaf(key: String, x: u64) -> u64 {
    let y = work(format!("{key}/leaf"), x).await;
    y
}

/// Step 0: a map of three tasks; 1: a sleep; 2: a signal; 3: a child run; 4: a task.
#[workflow]
async fn mixed(key: String, x: u64) -> u64 {
    let items = flow::map(0..3u64, 3, |i| work(format!("{key}/item{i}"), x + i)).await;
    flow::sleep(Duration::from_millis(40)).await;
    let go: u64 = flow::signal("go").await;
    let child = leaf(key.clone(), go).await;
    let last = work(format!("{key}/last"), child).await;
    items.iter().sum::<u64>() + last
}

fn expected(x: u64) -> u64 {
    let items: u64 = (0..3).map(|i| (x + i) * 3 + 1).sum();
    let child = (x * 7) * 3 + 1;
    items + child * 3 + 1
}

fn builder() -> flow::EngineBuilder {
    Engine::builder().register::<mixed>().register::<leaf>()
}

async fn open(url: &str) -> Cluster {
    Postgres::new(url)
        .lease(Duration::from_millis(1500))
        .cluster(builder)
        .await
        .unwrap()
}

/// One run's life through the cluster: start, signal, result; each acknowledged step
/// printed.
async fn drive(cluster: Cluster, id: String, x: u64) {
    match cluster.start(&id, mixed(id.clone(), x)).await {
        Ok(()) => println!("STARTED {id} {x}"),
        Err(e) => return println!("ERROR start {id} {e}"),
    }
    if let Err(e) = cluster.signal(&id, "go", &(x * 7)).await {
        return println!("ERROR signal {id} {e}");
    }
    println!("SIGNALLED {id}");
    match cluster.result::<mixed>(&id).await {
        Ok(out) => println!("RESULT {id} {out}"),
        Err(e) => println!("ERROR result {id} {e}"),
    }
}

/// The engine process (does nothing unless run as one): in `load` mode it starts runs
/// until the file `FLOW_PG_STOP` exists; in `check` mode it finishes the runs listed
/// in `FLOW_PG_AWAIT` (`id x` lines) and prints their results and commit times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_node() {
    let Ok(url) = std::env::var("FLOW_PG_NODE_URL") else {
        return;
    };
    // The cluster's warnings and errors, on standard error (shown when a check fails).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "flow_postgres=debug,flow_runtime=warn",
        ))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let cluster = open(&url).await;
    println!("OPENED");
    if std::env::var("FLOW_PG_MODE").as_deref() == Ok("check") {
        return check(cluster).await;
    }
    let name = std::env::var("FLOW_PG_NODE").unwrap();
    let stop = std::env::var("FLOW_PG_STOP").unwrap();
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::new();
    for n in 0.. {
        if std::path::Path::new(&stop).exists() {
            break;
        }
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (cluster, id) = (cluster.clone(), format!("{name}-{n}"));
        let task = tokio::spawn(async move {
            drive(cluster, id, n).await;
            drop(permit);
        });
        tasks.push((format!("{name}-{n}"), task));
    }
    for (id, mut task) in tasks {
        if tokio::time::timeout(Duration::from_secs(20), &mut task)
            .await
            .is_err()
        {
            // Says where a run that does not finish stands, for the failure's message.
            let shard = cluster.shard_of(&id);
            let described =
                tokio::time::timeout(Duration::from_secs(5), cluster.describe(&id)).await;
            let child = format!("{id}/3");
            let child_described =
                tokio::time::timeout(Duration::from_secs(5), cluster.describe(&child)).await;
            let history = match cluster.history(&id).await {
                Ok(events) => events
                    .iter()
                    .map(|e| {
                        let mut kind = format!("{:?}", e.kind);
                        kind.truncate(60);
                        format!("{} {kind}", e.at_ms)
                    })
                    .collect::<Vec<_>>(),
                Err(e) => vec![e.to_string()],
            };
            println!(
                "STUCK {id} shard {shard} held {:?} described {described:?}; child \
                 {child_described:?} {history:?}",
                cluster.held_shards()
            );
            let _ = task.await;
        }
    }
    println!("LOST {name} {}", cluster.lost_leases());
    println!("DONE");
    cluster.shutdown().await;
}

async fn check(cluster: Cluster) {
    let list = std::fs::read_to_string(std::env::var("FLOW_PG_AWAIT").unwrap()).unwrap();
    for line in list.lines() {
        let mut parts = line.split(' ');
        let (id, x): (&str, u64) = (
            parts.next().unwrap(),
            parts.next().unwrap().parse().unwrap(),
        );
        // A run whose signal may not have been sent gets it (again: a second one is
        // left unread in its inbox).
        let status = cluster.describe(id).await.unwrap().summary.status;
        if !matches!(status, flow::RunStatus::Completed) {
            let _ = cluster.signal(id, "go", &(x * 7)).await;
        }
        match cluster.result::<mixed>(id).await {
            Ok(out) => println!("RESULT {id} {out}"),
            Err(e) => println!("ERROR result {id} {e}"),
        }
        // When each task's result was committed: a map item's with its item record,
        // else (at the latest) with the map's step.
        let mut commits: BTreeMap<String, u64> = BTreeMap::new();
        let mut commit = |key: String, at: u64| {
            let entry = commits.entry(key).or_insert(at);
            *entry = (*entry).min(at);
        };
        for event in cluster.history(id).await.unwrap() {
            let at = event.at_ms;
            let mut shown = format!("{:?}", event.kind);
            shown.truncate(90);
            println!("EVENT {id} {at} {shown}");
            match event.kind {
                EventKind::MapItemCompleted { step: 0, item, .. } => {
                    commit(format!("{id}/item{item}"), at)
                }
                EventKind::StepCompleted { step: 0, .. } => {
                    (0..3).for_each(|i| commit(format!("{id}/item{i}"), at))
                }
                EventKind::StepCompleted { step: 4, .. } => commit(format!("{id}/last"), at),
                _ => {}
            }
        }
        for event in cluster.history(&format!("{id}/3")).await.unwrap() {
            if let EventKind::StepCompleted { step: 0, .. } = event.kind {
                commit(format!("{id}/leaf"), event.at_ms);
            }
        }
        for (key, at) in commits {
            println!("COMMIT {key} {at}");
        }
    }
    println!("DONE");
    cluster.shutdown().await;
}

struct Node {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Node {
    fn spawn(url: &str, env: &[(&str, String)]) -> Node {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["cluster_node", "--exact", "--nocapture", "--test-threads=1"])
            .env("FLOW_PG_NODE_URL", url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let (send, lines) = mpsc::channel();
        let errors = send.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = errors.send(format!("stderr: {line}"));
            }
        });
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        Node {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// Waits for `DONE` (at most `within`; then the process is killed), then for the
    /// process to exit.
    fn finish(&mut self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        while !self.seen.iter().any(|l| l == "DONE") {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.seen.push(line),
                Err(_) => {
                    let _ = self.child.kill();
                    let path = std::env::temp_dir()
                        .join(format!("flow-pg-unfinished-{}.log", self.child.id()));
                    std::fs::write(&path, self.seen.join("\n")).unwrap();
                    panic!(
                        "an engine process did not finish in time; what it printed is in {}",
                        path.display()
                    );
                }
            }
        }
        let _ = self.child.wait();
        self.drain();
        self.seen.clone()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn kill(&mut self) -> Vec<String> {
        let status = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let _ = self.child.wait();
        // The pipes close with the process: everything it printed is read.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        self.seen.clone()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small xorshift generator: the kills' timing and targets, reproducible by seed.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Three load processes on a new database, the executions log and the stop file.
struct Scenario {
    url: String,
    dir: std::path::PathBuf,
    exec: std::path::PathBuf,
    stop: std::path::PathBuf,
    incarnation: u32,
    nodes: Vec<Node>,
    lines: Vec<String>,
}

impl Scenario {
    fn start(cluster: &TestCluster, name: &str) -> Scenario {
        let url = cluster.create_database(name);
        let dir = std::env::temp_dir().join(format!("flow-pg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut scenario = Scenario {
            url,
            exec: dir.join("executions"),
            stop: dir.join("stop"),
            dir,
            incarnation: 0,
            nodes: Vec::new(),
            lines: Vec::new(),
        };
        for slot in 0..3 {
            let node = scenario.spawn(slot);
            scenario.nodes.push(node);
        }
        scenario
    }

    /// A new load process for `slot` (named after its slot and incarnation).
    fn spawn(&mut self, slot: usize) -> Node {
        self.incarnation += 1;
        let env = [
            ("FLOW_PG_NODE", format!("n{slot}i{}", self.incarnation)),
            ("FLOW_PG_EXEC", self.exec.display().to_string()),
            ("FLOW_PG_STOP", self.stop.display().to_string()),
        ];
        Node::spawn(&self.url, &env)
    }

    /// Stops the load, then checks every acknowledged run (see the module doc); `killed`
    /// are the processes killed on the way.
    /// `paused` is a process paused (pid, from, to: ms): its attempts in flight when it
    /// stopped run on once it goes on, until it learns that its leases are gone.
    fn finish_and_check(
        mut self,
        killed: &BTreeSet<u32>,
        paused: Option<(u32, u64, u64)>,
    ) -> Vec<String> {
        let (url, dir, exec, stop) = (&self.url, &self.dir, &self.exec, &self.stop);
        let mut lines = std::mem::take(&mut self.lines);
        std::fs::write(stop, "").unwrap();
        for node in &mut self.nodes {
            lines.extend(node.finish(Duration::from_secs(60)));
        }

        // Every acknowledged start must finish with the right output.
        let started: BTreeMap<String, u64> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("STARTED "))
            .map(|rest| {
                let (id, x) = rest.split_once(' ').unwrap();
                (id.to_string(), x.parse().unwrap())
            })
            .collect();
        assert!(
            started.len() > 40,
            "too little work: {} runs",
            started.len()
        );
        // The processes' calls never failed: a shard moving under a call is routed again.
        let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("ERROR")).collect();
        assert!(errors.is_empty(), "calls failed: {errors:#?}");
        for l in lines.iter().filter_map(|l| l.strip_prefix("RESULT ")) {
            let (id, out) = l.split_once(' ').unwrap();
            assert_eq!(out.parse::<u64>().unwrap(), expected(started[id]), "{id}");
        }
        let list: String = started
            .iter()
            .map(|(id, x)| format!("{id} {x}\n"))
            .collect();
        let await_path = dir.join("await");
        std::fs::write(&await_path, list).unwrap();
        let mut checker = Node::spawn(
            url,
            &[
                ("FLOW_PG_MODE", "check".to_string()),
                ("FLOW_PG_AWAIT", await_path.display().to_string()),
                ("FLOW_PG_EXEC", exec.display().to_string()),
            ],
        );
        let checked = checker.finish(Duration::from_secs(300));
        assert!(checked.iter().any(|l| l == "DONE"), "{checked:?}");
        let mut results = 0;
        for (id, x) in &started {
            let want = format!("RESULT {id} {}", expected(*x));
            assert!(checked.contains(&want), "missing `{want}`");
            results += 1;
        }
        let commits: BTreeMap<String, u64> = checked
            .iter()
            .filter_map(|l| l.strip_prefix("COMMIT "))
            .map(|rest| {
                let (key, at) = rest.split_once(' ').unwrap();
                (key.to_string(), at.parse().unwrap())
            })
            .collect();
        assert_eq!(commits.len(), results * 5, "five task results per run");

        // No execution of a task started after its result was committed.
        let log = std::fs::read_to_string(exec).unwrap();
        let mut by_killed = 0;
        let mut again = 0;
        let mut seen = BTreeSet::new();
        for line in log.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            let (key, pid, at): (&str, u32, u64) = (
                parts[0],
                parts[1].parse().unwrap(),
                parts[2].parse().unwrap(),
            );
            if !seen.insert(key) {
                again += 1;
            }
            by_killed += u32::from(killed.contains(&pid));
            // Begun before the pause, the body of an attempt in flight runs on after it.
            let continued = paused.is_some_and(|(paused, from, to)| {
                pid == paused && commits.get(key).is_some_and(|c| *c >= from) && at >= to
            });
            if let Some(committed) = commits.get(key).filter(|_| !continued) {
                if at > *committed {
                    let run = key.rsplit_once('/').unwrap().0;
                    let events: Vec<&String> = checked
                        .iter()
                        .filter(|l| l.starts_with(&format!("EVENT {run} ")))
                        .collect();
                    let runs: Vec<&str> = log.lines().filter(|l| l.starts_with(run)).collect();
                    panic!(
                        "{key} ran again at {at} in process {pid}, after its result was committed \
                         at {committed}; executions: {runs:#?}; history: {events:#?}; killed: {killed:?}"
                    );
                }
            }
        }
        println!(
            "{} runs, {} task executions ({again} of them again after a kill or a handover), \
             {by_killed} in processes later killed",
            started.len(),
            log.lines().count()
        );
        assert!(
            killed.is_empty() || by_killed > 0,
            "the kills hit processes at work"
        );
        let _ = std::fs::remove_dir_all(dir);
        lines
    }
}

#[test]
fn three_processes_one_killed_at_random_50_times() {
    let Some(cluster) = TestCluster::shared() else {
        return;
    };
    let seed = std::env::var("FLOW_PG_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() | 1);
    println!("seed {seed} (FLOW_PG_KILL_SEED repeats it)");
    let mut random = Random(seed);
    let mut scenario = Scenario::start(cluster, "cluster_kills");
    let mut killed = BTreeSet::new();
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(300 + random.below(900)));
        let slot = random.below(3) as usize;
        killed.insert(scenario.nodes[slot].child.id());
        let seen = scenario.nodes[slot].kill();
        scenario.lines.extend(seen);
        scenario.nodes[slot] = scenario.spawn(slot);
    }
    scenario.finish_and_check(&killed, None);
}

#[test]
fn a_process_paused_past_its_leases_is_refused_and_its_runs_finish_elsewhere() {
    let Some(cluster) = TestCluster::shared() else {
        return;
    };
    let scenario = Scenario::start(cluster, "cluster_sigstop");
    std::thread::sleep(Duration::from_secs(3));
    let paused = &scenario.nodes[0];
    let pid = paused.child.id();
    let from = now_ms();
    paused.signal("-STOP");
    // Past its leases (1.5 s): the others take its shards over.
    std::thread::sleep(Duration::from_secs(5));
    let to = now_ms();
    paused.signal("-CONT");
    std::thread::sleep(Duration::from_secs(3));
    let lines = scenario.finish_and_check(&BTreeSet::new(), Some((pid, from, to)));
    // Back, it found its leases gone: the database refused its late commits, and it
    // dropped those shards.
    let lost: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("LOST n0i1 "))
        .expect("the paused process finished")
        .parse()
        .unwrap();
    assert!(lost > 0, "the paused process lost no lease");
}
