//! Remote tasks with real processes on loopback: an engine process serving flow-server,
//! worker processes (this crate's `Worker`, and a Python worker on the standard library
//! only), `kill -9` of workers and of the engine, bad workers, and 10,000 tasks through
//! four workers.
//!
//! The processes are this test binary itself, run again as a child (`child_process`,
//! ignored unless asked for) in the role `FLOW_ROLE` names: `engine` or `worker`. Every
//! task attempt a Rust worker begins appends a line to the execution log
//! (`FLOW_EXEC_LOG`): run, idempotency key, attempt, process.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flow::{task, workflow, Engine};
use flow_server::{Server, ServerOptions};
use flow_worker::{Worker, WorkerOptions};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// The workflows and remote tasks both roles link.

/// Squares `n` (after `FLOW_TASK_MS` milliseconds of work, when set).
#[task(
    queue = "work",
    heartbeat = "1500ms",
    timeout = "30s",
    retry(max_attempts = 20, initial = "10ms", max_interval = "50ms")
)]
pub async fn square(n: u64) -> Result<u64, String> {
    log_attempt();
    let ms: u64 = std::env::var("FLOW_TASK_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    Ok(n * n)
}

/// `square` on a queue of its own with a long heartbeat timeout, for the 10,000-task
/// run: on a loaded machine a debug build may hold a report longer than 600 ms, and a
/// lease that expires is rightly run again, which that test counts as a failure.
#[task(
    queue = "bulk",
    heartbeat = "20s",
    timeout = "60s",
    retry(max_attempts = 3, initial = "10ms")
)]
pub async fn square_bulk(n: u64) -> Result<u64, String> {
    log_attempt();
    Ok(n * n)
}

#[workflow]
pub async fn squared_bulk(n: u64) -> Result<u64, String> {
    let s = square_bulk(n).await?;
    Ok(s + 1)
}

/// Works `ms` milliseconds, checking for a cancellation every 20 ms; a cancellation
/// seen is written beside the execution log and ends the task.
#[task(
    queue = "work",
    heartbeat = "1500ms",
    timeout = "30s",
    retry(max_attempts = 1)
)]
pub async fn patient(ms: u64) -> Result<u64, String> {
    log_attempt();
    let ctx = flow::TaskContext::current().expect("a worker runs tasks in a context");
    let began = Instant::now();
    while began.elapsed() < Duration::from_millis(ms) {
        if ctx.is_cancelled() {
            let path = format!("{}.cancelled", var("FLOW_EXEC_LOG"));
            std::fs::write(path, &ctx.run_id).unwrap();
            return Err("stopped: the run was cancelled".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(ms)
}

#[workflow]
pub async fn patiently(ms: u64) -> Result<u64, String> {
    patient(ms).await
}

/// Another queue's task, for reports sent to the wrong queue.
#[task(
    queue = "other",
    heartbeat = "600ms",
    retry(max_attempts = 5, initial = "10ms")
)]
pub async fn echo(n: u64) -> Result<u64, String> {
    Ok(n)
}

#[workflow]
pub async fn squared(n: u64) -> Result<u64, String> {
    let s = square(n).await?;
    Ok(s + 1)
}

#[workflow]
pub async fn echoed(n: u64) -> Result<u64, String> {
    echo(n).await
}

fn log_attempt() {
    let Ok(path) = std::env::var("FLOW_EXEC_LOG") else {
        return;
    };
    let ctx = flow::TaskContext::current().expect("a worker runs tasks in a context");
    let line = format!(
        "{} {} {} {}\n",
        ctx.run_id,
        ctx.idempotency_key,
        ctx.attempt,
        std::process::id()
    );
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(line.as_bytes()).unwrap();
}

// ---------------------------------------------------------------------------------------
// The child roles.

#[test]
#[ignore = "run as a child process by the other tests"]
fn child_process() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match std::env::var("FLOW_ROLE").as_deref() {
        Ok("engine") => runtime.block_on(engine_role()),
        Ok("worker") => runtime.block_on(worker_role()),
        _ => {}
    }
}

/// Resolves when the parent closes our stdin (a graceful stop).
async fn stdin_closed() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = tx.send(());
    });
    let _ = rx.await;
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

async fn engine_role() {
    let engine = Engine::builder()
        .register::<squared>()
        .register::<squared_bulk>()
        .register::<patiently>()
        .register::<echoed>()
        .open(var("FLOW_DB"))
        .await
        .unwrap();
    let options = ServerOptions {
        addr: var("FLOW_ADDR").parse().unwrap(),
        ..ServerOptions::default()
    };
    let server = Server::bind(engine.clone(), options).await.unwrap();
    let port_file = PathBuf::from(var("FLOW_PORT_FILE"));
    std::fs::write(
        port_file.with_extension("tmp"),
        server.local_addr().port().to_string(),
    )
    .unwrap();
    std::fs::rename(port_file.with_extension("tmp"), &port_file).unwrap();
    if let Ok(runs) = std::env::var("FLOW_START_RUNS") {
        let runs: u64 = runs.parse().unwrap();
        let engine = engine.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            let mut starts = Vec::new();
            for i in 0..runs {
                let engine = engine.clone();
                starts.push(tokio::spawn(async move {
                    let run = engine
                        .start(&format!("r-{i}"), squared_bulk(i))
                        .await
                        .unwrap();
                    run.result().await.unwrap() == Ok(i * i + 1)
                }));
            }
            let mut ok = 0;
            for start in starts {
                ok += start.await.unwrap() as u64;
            }
            let report = format!(
                "ok={ok} bad={} ms={}",
                runs - ok,
                began.elapsed().as_millis()
            );
            std::fs::write(var("FLOW_REPORT_FILE"), report).unwrap();
        });
    }
    server.run_until(stdin_closed()).await.unwrap();
    engine.shutdown().await;
}

async fn worker_role() {
    let worker = Worker::new(WorkerOptions {
        name: var("FLOW_WORKER_NAME"),
        queues: vec![std::env::var("FLOW_QUEUE").unwrap_or_else(|_| "work".into())],
        concurrency: var("FLOW_CONCURRENCY").parse().unwrap(),
        poll_wait: Duration::from_secs(5),
        ..WorkerOptions::new(&var("FLOW_URL"))
    })
    .unwrap();
    let stats = worker.run_until(stdin_closed()).await.unwrap();
    eprintln!("worker stats: {stats:?}");
    std::fs::write(
        var("FLOW_REPORT_FILE"),
        format!(
            "completed={} failed={} refused={}",
            stats.completed, stats.failed, stats.refused
        ),
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------
// The parent's side.

/// A scratch directory with a journal, an engine process and worker processes; every
/// child it started is killed (by its own handle) when it is dropped.
struct Cluster {
    dir: PathBuf,
    port: u16,
    engine: Option<Child>,
    workers: Vec<Child>,
    worker_serial: usize,
    task_ms: u64,
    /// The queue worker processes serve.
    queue: &'static str,
    client: reqwest::Client,
}

impl Cluster {
    fn new(label: &str, task_ms: u64) -> Cluster {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "flow-worker-{label}-{}-{nanos}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Cluster {
            dir,
            port: 0,
            engine: None,
            workers: Vec::new(),
            worker_serial: 0,
            task_ms,
            queue: "work",
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    fn child(&self, role: &str) -> Command {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "child_process", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env("FLOW_ROLE", role)
            .env("FLOW_EXEC_LOG", self.dir.join("exec.log"))
            .env("FLOW_TASK_MS", self.task_ms.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        cmd
    }

    /// Starts the engine process (on the port it had, after the first start) and waits
    /// until it serves.
    fn start_engine(&mut self, start_runs: Option<u64>) {
        let port_file = self.dir.join("port");
        let _ = std::fs::remove_file(&port_file);
        let mut cmd = self.child("engine");
        cmd.env("FLOW_DB", self.dir.join("journal.redb"))
            .env("FLOW_ADDR", format!("127.0.0.1:{}", self.port))
            .env("FLOW_PORT_FILE", &port_file)
            .env("FLOW_REPORT_FILE", self.dir.join("engine-report"))
            .stderr(std::fs::File::create(self.dir.join("engine.err")).unwrap());
        if let Some(n) = start_runs {
            cmd.env("FLOW_START_RUNS", n.to_string());
        }
        self.engine = Some(cmd.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        while !port_file.exists() {
            assert!(
                Instant::now() < deadline,
                "the engine did not start: {}",
                self.stderr("engine.err")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.port = std::fs::read_to_string(&port_file)
            .unwrap()
            .parse()
            .unwrap();
    }

    fn kill_engine(&mut self) {
        let mut engine = self.engine.take().unwrap();
        engine.kill().unwrap(); // SIGKILL
        engine.wait().unwrap();
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start_worker(&mut self, concurrency: usize) {
        self.worker_serial += 1;
        let n = self.worker_serial;
        let mut cmd = self.child("worker");
        cmd.env("FLOW_URL", self.url())
            .env("FLOW_WORKER_NAME", format!("rust-{n}"))
            .env("FLOW_CONCURRENCY", concurrency.to_string())
            .env("FLOW_QUEUE", self.queue)
            .env(
                "FLOW_REPORT_FILE",
                self.dir.join(format!("worker-{n}-report")),
            )
            .stderr(std::fs::File::create(self.dir.join(format!("worker-{n}.err"))).unwrap());
        self.workers.push(cmd.spawn().unwrap());
    }

    fn stderr(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }

    /// The execution log: run -> [(idempotency key, attempt, process)].
    fn executions(&self) -> BTreeMap<String, Vec<(String, u32, u32)>> {
        let text = std::fs::read_to_string(self.dir.join("exec.log")).unwrap_or_default();
        let mut runs: BTreeMap<String, Vec<(String, u32, u32)>> = BTreeMap::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            runs.entry(f[0].to_string()).or_default().push((
                f[1].to_string(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            ));
        }
        runs
    }

    async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.url()))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.url()))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn start_run(&self, workflow: &str, run_id: &str, input: u64) {
        let body = json!({"workflow": workflow, "run_id": run_id, "input": input});
        let (status, answer) = self.post("/v1/runs", &body.to_string()).await;
        assert_eq!(status, 200, "{answer}");
    }

    /// Waits (up to `within`) for run `run_id` to complete; its output.
    async fn output(&self, run_id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (status, run) = self.get(&format!("/v1/runs/{run_id}")).await;
            assert_eq!(status, 200, "{run}");
            if run["status"] == "completed" {
                return run["output"].clone();
            }
            assert!(
                Instant::now() < deadline,
                "run {run_id} did not complete: {run}\nengine: {}",
                self.stderr("engine.err")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn poll(&self, queue: &str) -> Value {
        let (status, answer) = self
            .post(
                &format!("/v1/queues/{queue}/poll"),
                r#"{"worker": "test", "max": 1, "wait_ms": 10000}"#,
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["tasks"].as_array().unwrap().len(), 1, "{answer}");
        answer["tasks"][0].clone()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.workers.iter_mut().chain(self.engine.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("kept {}", self.dir.display());
        }
    }
}

fn wait_exit(child: &mut Child, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{what} exited with {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn worker_report(dir: &Path, n: usize) -> String {
    std::fs::read_to_string(dir.join(format!("worker-{n}-report"))).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_worker_serves_a_queue() {
    let mut cluster = Cluster::new("python", 0);
    cluster.start_engine(None);
    for i in 0..20 {
        cluster.start_run("squared", &format!("py-{i}"), i).await;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python_worker.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(cluster.url())
        .arg("1")
        .output()
        .expect("python3 runs the worker");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "completed 20");
    for i in 0..20u64 {
        let out = cluster
            .output(&format!("py-{i}"), Duration::from_secs(10))
            .await;
        assert_eq!(out, json!({"Ok": i * i + 1}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_workers_get_a_clear_4xx_and_change_nothing() {
    let mut cluster = Cluster::new("bad", 0);
    cluster.start_engine(None);
    cluster.start_run("squared", "sq", 3).await;
    cluster.start_run("echoed", "ec", 5).await;
    // A body over the payload limit (sent first: in a debug build it takes a while).
    let huge = json!({"token": "00", "output": {"Ok": "x".repeat(flow::MAX_PAYLOAD_BYTES + 10)}});
    let (status, answer) = cluster
        .post("/v1/queues/work/complete", &huge.to_string())
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let work = cluster.poll("work").await;
    let other = cluster.poll("other").await;
    let token = work["token"].as_str().unwrap();
    let complete = |output: Value| json!({"token": token, "output": output}).to_string();
    let code = |answer: &Value| answer["code"].as_str().unwrap_or_default().to_string();
    // The lease lasts 1.5 s without a heartbeat: each step below begins with one.
    let heartbeat = json!({"token": token}).to_string();
    let beat = || async {
        let (status, answer) = cluster.post("/v1/queues/work/heartbeat", &heartbeat).await;
        if status != 200 {
            let (_, history) = cluster.get("/v1/runs/sq/history").await;
            panic!("{answer}\n{history:#}");
        }
        assert_eq!(answer["cancel_requested"], false);
    };

    // Unknown queue, garbage JSON.
    let (status, answer) = cluster
        .post("/v1/queues/nope/poll", r#"{"wait_ms": 0}"#)
        .await;
    assert_eq!((status, code(&answer).as_str()), (404, "unknown_queue"));
    beat().await;
    let (status, answer) = cluster
        .post("/v1/queues/work/complete", "{\"token\": ")
        .await;
    assert_eq!((status, code(&answer).as_str()), (400, "malformed_body"));
    // Another queue's endpoint; an output of the wrong type; a forged token.
    beat().await;
    let (status, answer) = cluster
        .post("/v1/queues/other/complete", &complete(json!({"Ok": 9})))
        .await;
    assert_eq!((status, code(&answer).as_str()), (409, "wrong_queue"));
    beat().await;
    let (status, answer) = cluster
        .post("/v1/queues/work/complete", &complete(json!({"Ok": "nine"})))
        .await;
    assert_eq!(
        (status, code(&answer).as_str()),
        (400, "task_output_mismatch")
    );
    beat().await;
    let forged = format!("{}00", &token[..token.len() - 2]);
    let body = json!({"token": forged, "output": {"Ok": 9}}).to_string();
    let (status, answer) = cluster.post("/v1/queues/work/complete", &body).await;
    assert_eq!(
        (status, code(&answer).as_str()),
        (400, "invalid_task_token")
    );
    // None of that changed anything: the run still waits for this lease.
    let (_, run) = cluster.get("/v1/runs/sq").await;
    assert_eq!(run["status"], "running", "{run}");
    assert_eq!(run["pending"]["last_error"], Value::Null, "{run}");
    beat().await;
    // The right report; the same again (harmless); a different one (refused).
    let (status, answer) = cluster
        .post("/v1/queues/work/complete", &complete(json!({"Ok": 9})))
        .await;
    assert_eq!((status, answer["result"].as_str()), (200, Some("accepted")));
    let (status, answer) = cluster
        .post("/v1/queues/work/complete", &complete(json!({"Ok": 9})))
        .await;
    assert_eq!(
        (status, answer["result"].as_str()),
        (200, Some("duplicate"))
    );
    let (status, answer) = cluster
        .post("/v1/queues/work/complete", &complete(json!({"Ok": 1})))
        .await;
    assert_eq!(
        (status, code(&answer).as_str()),
        (409, "task_already_reported")
    );
    let (status, answer) = cluster.post("/v1/queues/work/heartbeat", &heartbeat).await;
    assert_eq!((status, code(&answer).as_str()), (410, "task_token_gone"));
    assert_eq!(
        cluster.output("sq", Duration::from_secs(10)).await,
        json!({"Ok": 10})
    );

    // A stale token: its lease expired (no heartbeat for 600 ms) and the task was
    // handed out again; its report is refused and the new lease's accepted.
    let stale = other["token"].as_str().unwrap();
    let again = cluster.poll("other").await;
    assert_eq!(again["attempt"], 2);
    assert_eq!(again["idempotency_key"], other["idempotency_key"]);
    let body = json!({"token": stale, "output": {"Ok": 666}}).to_string();
    let (status, answer) = cluster.post("/v1/queues/other/complete", &body).await;
    assert_eq!((status, code(&answer).as_str()), (409, "stale_task_token"));
    let body = json!({"token": again["token"], "output": {"Ok": 5}}).to_string();
    let (status, _) = cluster.post("/v1/queues/other/complete", &body).await;
    assert_eq!(status, 200);
    assert_eq!(
        cluster.output("ec", Duration::from_secs(10)).await,
        json!({"Ok": 5})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_tasks_are_retried_by_the_others() {
    let runs = 60u64;
    let mut cluster = Cluster::new("killworker", 250);
    cluster.start_engine(None);
    for _ in 0..3 {
        cluster.start_worker(4);
    }
    for i in 0..runs {
        cluster.start_run("squared", &format!("k-{i}"), i).await;
    }
    // Kill -9 a worker in the middle of its tasks, twenty times, starting a new one each time.
    let mut kills = 0;
    while kills < 20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let victim = cluster.workers.remove(kills % cluster.workers.len());
        let mut victim = victim;
        victim.kill().unwrap();
        victim.wait().unwrap();
        kills += 1;
        cluster.start_worker(4);
    }
    for i in 0..runs {
        let out = cluster
            .output(&format!("k-{i}"), Duration::from_secs(30))
            .await;
        assert_eq!(out, json!({"Ok": i * i + 1}), "run k-{i}");
    }
    let executions = cluster.executions();
    let mut retried = 0;
    for (run, attempts) in &executions {
        let key = &attempts[0].0;
        assert!(
            attempts.iter().all(|(k, _, _)| k == key),
            "{run}: {attempts:?}"
        );
        assert_eq!(key, &format!("{run}/0"));
        // Each attempt number is handed out once.
        let mut numbers: Vec<u32> = attempts.iter().map(|a| a.1).collect();
        numbers.sort();
        numbers.dedup();
        assert_eq!(numbers.len(), attempts.len(), "{run}: {attempts:?}");
        if attempts.len() > 1 {
            retried += 1;
        }
    }
    assert_eq!(executions.len() as u64, runs);
    assert!(retried > 0, "no task was caught by a kill: {executions:?}");
    // The retries are in the history as heartbeat timeouts.
    let mut timeouts = 0;
    for run in executions.keys() {
        let (_, page) = cluster
            .get(&format!("/v1/runs/{run}/history?limit=1000"))
            .await;
        timeouts += page["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["type"] == "AttemptFailed"
                    && e["error"].as_str().unwrap_or("").contains("heartbeat")
            })
            .count();
    }
    assert!(
        timeouts >= retried,
        "{timeouts} heartbeat timeouts for {retried} retried runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_killed_under_held_leases_loses_nothing() {
    let runs = 10u64;
    let mut cluster = Cluster::new("killengine", 1500);
    cluster.start_engine(None);
    cluster.start_worker(8);
    cluster.start_worker(8);
    for i in 0..runs {
        cluster.start_run("squared", &format!("e-{i}"), i).await;
    }
    // Every task held by a worker, mid-way: kill -9 the engine, then start it again.
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.executions().len() < runs as usize {
        assert!(
            Instant::now() < deadline,
            "the workers did not take every task"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.kill_engine();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.start_engine(None);
    for i in 0..runs {
        let out = cluster
            .output(&format!("e-{i}"), Duration::from_secs(30))
            .await;
        assert_eq!(out, json!({"Ok": i * i + 1}), "run e-{i}");
    }
    let executions = cluster.executions();
    assert_eq!(executions.len() as u64, runs);
    let mut again = 0;
    for (run, attempts) in &executions {
        assert!(
            attempts.iter().all(|(k, _, _)| k == &format!("{run}/0")),
            "{run}: {attempts:?}"
        );
        again += attempts.len() - 1;
    }
    // The workers' leases survived the restart: their heartbeats adopted them and
    // their reports were accepted, so no task ran twice.
    assert_eq!(
        again, 0,
        "tasks ran again after the restart: {executions:?}"
    );
    // A graceful stop of the workers: they report having completed every task.
    let mut done = 0;
    for (n, mut worker) in std::mem::take(&mut cluster.workers).into_iter().enumerate() {
        drop(worker.stdin.take());
        wait_exit(&mut worker, Duration::from_secs(20), "worker");
        let report = worker_report(&cluster.dir, n + 1);
        let completed: u64 = report
            .split(' ')
            .find_map(|f| f.strip_prefix("completed="))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("report: {report:?}"));
        done += completed;
    }
    assert_eq!(done, runs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_remote_tasks_through_four_workers() {
    let runs = 10_000u64;
    let mut cluster = Cluster::new("tenk", 0);
    cluster.queue = "bulk";
    cluster.start_engine(Some(runs));
    for _ in 0..4 {
        cluster.start_worker(64);
    }
    let report = cluster.dir.join("engine-report");
    let began = Instant::now();
    let deadline = began + Duration::from_secs(120);
    while !report.exists() {
        assert!(
            Instant::now() < deadline,
            "not done: {}",
            cluster.stderr("engine.err")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = std::fs::read_to_string(report).unwrap();
    eprintln!(
        "10,000 remote tasks: {report} (waited {:?})",
        began.elapsed()
    );
    assert!(report.starts_with(&format!("ok={runs} bad=0 ")), "{report}");
    let executions = cluster.executions();
    assert_eq!(executions.len() as u64, runs);
    assert!(
        executions.values().all(|a| a.len() == 1),
        "a task ran twice"
    );
    let (_, queues) = cluster.get("/v1/queues").await;
    let work = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "bulk")
        .unwrap()
        .clone();
    assert_eq!(
        (work["pending"].as_u64(), work["leased"].as_u64()),
        (Some(0), Some(0)),
        "{work}"
    );
    assert_eq!(work["workers"].as_array().unwrap().len(), 4, "{work}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_passes_a_cancellation_on_and_finishes_what_it_holds_when_stopped() {
    let mut cluster = Cluster::new("cancel", 0);
    cluster.start_engine(None);
    cluster.start_worker(4);
    cluster.start_run("patiently", "p-cancel", 20_000).await;
    cluster.start_run("patiently", "p-finish", 4_000).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.executions().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the worker did not take both tasks"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The run is cancelled: the worker learns it from its next heartbeat, and its task
    // body from `TaskContext::is_cancelled`.
    let (status, answer) = cluster.post("/v1/runs/p-cancel/cancel", "{}").await;
    assert_eq!(status, 200, "{answer}");
    let seen = cluster.dir.join("exec.log.cancelled");
    while !seen.exists() {
        assert!(
            Instant::now() < deadline,
            "the cancellation never reached the task body"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), "p-cancel");
    // A graceful stop while the worker holds `p-finish`: it stops polling, finishes the
    // task, reports it, and exits.
    let mut worker = cluster.workers.pop().unwrap();
    drop(worker.stdin.take());
    wait_exit(&mut worker, Duration::from_secs(20), "worker");
    let report = worker_report(&cluster.dir, 1);
    assert!(report.starts_with("completed=1 failed=0"), "{report}");
    let (_, run) = cluster.get("/v1/runs/p-finish").await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"], json!({"Ok": 4000}));
    let (_, run) = cluster.get("/v1/runs/p-cancel").await;
    assert_ne!(run["status"], "running", "{run}");
    assert_ne!(run["output"], json!({"Ok": 20000}), "{run}");
}
