//! `GET /metrics` on a live server (loopback, ephemeral port) over a journal on a file:
//! after a few runs (one retried, one returning an `Err`, one failing) the text parses
//! line by line as Prometheus' exposition format and holds the exact counts; the endpoint
//! needs the API token like the others.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use flow::{task, workflow, Engine};
use flow_server::{generate_token, Server, ServerOptions};
use tokio::sync::oneshot;

/// Fails its first attempt of each call, then doubles.
#[task(name = "srv::flaky", retry(max_attempts = 3, initial = "1ms"))]
async fn srv_flaky(x: u64) -> Result<u64, String> {
    match flow::TaskContext::current().map_or(1, |c| c.attempt) {
        1 => Err("first attempt fails".into()),
        _ => Ok(x * 2),
    }
}

/// Always refuses, with no retry: the workflow gets the `Err`.
#[task(name = "srv::refuse", retry(max_attempts = 1))]
async fn srv_refuse(x: u64) -> Result<u64, String> {
    Err(format!("{x} is refused"))
}

/// Panics; its output cannot carry the failure, so the run fails.
#[task(name = "srv::crash", retry(max_attempts = 1))]
async fn srv_crash(_x: u64) -> u64 {
    panic!("crash")
}

#[workflow(name = "srv::order")]
async fn srv_order(x: u64) -> Result<u64, String> {
    srv_flaky(x).await
}

/// A remote task: the engine puts its attempts on queue `srv-resize` for workers.
#[task(name = "srv::resize", queue = "srv-resize", heartbeat = "10s")]
async fn srv_resize(x: u64) -> u64 {
    x
}

#[workflow(name = "srv::remote")]
async fn srv_remote(x: u64) -> u64 {
    srv_resize(x).await
}

/// A name with a quote and a backslash: label values must be escaped.
#[workflow(name = "srv::refused \"quoted\" \\ name")]
async fn srv_refused(x: u64) -> Result<u64, String> {
    srv_refuse(x).await
}

#[workflow(name = "srv::crashes")]
async fn srv_crashes(x: u64) -> u64 {
    srv_crash(x).await
}

/// A journal path in the temporary directory, removed (with its log) on drop.
struct Journal(PathBuf);

impl Journal {
    fn new() -> Journal {
        let path = std::env::temp_dir().join(format!(
            "flow-server-metrics-{}-{}.redb",
            std::process::id(),
            generate_token().unwrap()
        ));
        Journal(path)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = Engine::remove_journal(&self.0);
    }
}

/// One sample: its metric name, its labels, its value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the exposition text: every line is `# HELP name text`, `# TYPE name kind` or
/// `name{label="value",...} number`; each sample belongs to a family typed before it.
fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let bad = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (keyword, name, rest) = (parts.next(), parts.next(), parts.next());
            let name = name.filter(|n| is_name(n)).ok_or_else(|| bad("bad name"))?;
            match (keyword, rest) {
                (Some("HELP"), Some(_)) => {}
                (Some("TYPE"), Some(kind))
                    if ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) =>
                {
                    if typed.insert(name.to_string(), kind.to_string()).is_some() {
                        return Err(bad("a family typed twice"));
                    }
                }
                _ => return Err(bad("a comment that is neither HELP nor TYPE")),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| bad("no value"))?;
        let name = &line[..name_end];
        if !is_name(name) {
            return Err(bad("bad metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(after) = rest.strip_prefix('{') {
            rest = after;
            loop {
                if let Some(after) = rest.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let eq = rest
                    .find("=\"")
                    .ok_or_else(|| bad("a label without a value"))?;
                let label = &rest[..eq];
                if !is_name(label) || label.contains(':') {
                    return Err(bad("bad label name"));
                }
                let mut value = String::new();
                let mut chars = rest[eq + 2..].char_indices();
                let end = loop {
                    match chars.next() {
                        Some((i, '"')) => break eq + 2 + i + 1,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => value.push(c),
                            _ => return Err(bad("a bad escape")),
                        },
                        Some((_, c)) => value.push(c),
                        None => return Err(bad("an unterminated label value")),
                    }
                };
                labels.insert(label.to_string(), value);
                rest = &rest[end..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        let value = rest
            .strip_prefix(' ')
            .ok_or_else(|| bad("no space before the value"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| bad("a value that is not a number"))?,
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                (typed.get(base).map(String::as_str) == Some("histogram")).then_some(base)
            })
            .unwrap_or(name);
        if !typed.contains_key(family) {
            return Err(bad("a sample of a family with no TYPE line before it"));
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(samples)
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The value of the one sample named `name` with exactly `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && s.labels == want)
        .collect();
    match found.as_slice() {
        [one] => one.value,
        _ => panic!("{} samples {name}{labels:?}", found.len()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_as_prometheus_text_with_exact_counts() {
    let journal = Journal::new();
    let engine = Engine::builder()
        .register::<srv_order>()
        .register::<srv_refused>()
        .register::<srv_crashes>()
        .register::<srv_remote>()
        .open(&journal.0)
        .await
        .unwrap();
    for id in ["order-1", "order-2"] {
        let run = engine.start(id, srv_order(21)).await.unwrap();
        assert_eq!(run.result().await.unwrap(), Ok(42));
    }
    let run = engine.start("refused-1", srv_refused(7)).await.unwrap();
    assert_eq!(run.result().await.unwrap(), Err("7 is refused".into()));
    let run = engine.start("crash-1", srv_crashes(1)).await.unwrap();
    assert!(run.result().await.is_err());

    // Two remote attempts: one leased by a worker, one left waiting.
    engine.start("remote-1", srv_remote(1)).await.unwrap();
    engine.start("remote-2", srv_remote(2)).await.unwrap();
    for _ in 0..500 {
        if engine.queues().iter().any(|q| q.pending == 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let leased = engine
        .poll_tasks(
            "srv-resize",
            "worker-a",
            1,
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;

    let token = generate_token().unwrap();
    let options = ServerOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        token: Some(token.clone()),
        allow_open: false,
    };
    let server = Server::bind(engine.clone(), options).await.unwrap();
    let url = format!("http://{}/metrics", server.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();

    // Guarded like every endpoint: the token is needed.
    let refused = client.get(&url).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");

    let response = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let samples = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    let order = [("workflow", "srv::order")];
    let refused = [("workflow", "srv::refused \"quoted\" \\ name")];
    let crashes = [("workflow", "srv::crashes")];
    assert_eq!(value(&samples, "flow_runs_started_total", &order), 2.0);
    assert_eq!(value(&samples, "flow_runs_completed_total", &order), 2.0);
    assert_eq!(value(&samples, "flow_runs_started_total", &refused), 1.0);
    assert_eq!(value(&samples, "flow_runs_completed_total", &refused), 0.0);
    assert_eq!(value(&samples, "flow_runs_completed_total", &crashes), 0.0);
    for (workflow, reason, expected) in [
        ("srv::order", "returned_err", 0.0),
        ("srv::order", "failed", 0.0),
        ("srv::refused \"quoted\" \\ name", "returned_err", 1.0),
        ("srv::refused \"quoted\" \\ name", "failed", 0.0),
        ("srv::crashes", "failed", 1.0),
        ("srv::crashes", "returned_err", 0.0),
        ("srv::crashes", "cancelled", 0.0),
        ("srv::crashes", "faulted", 0.0),
    ] {
        let labels = [("workflow", workflow), ("reason", reason)];
        assert_eq!(
            value(&samples, "flow_runs_failed_total", &labels),
            expected,
            "{workflow} {reason}"
        );
    }
    assert_eq!(value(&samples, "flow_runs_in_progress", &[]), 2.0);

    // Queues: the waiting and the leased attempt, the worker, the lease's age.
    let queue = [("queue", "srv-resize")];
    assert_eq!(value(&samples, "flow_queue_pending_tasks", &queue), 1.0);
    assert_eq!(value(&samples, "flow_queue_leased_tasks", &queue), 1.0);
    assert_eq!(value(&samples, "flow_queue_workers", &queue), 1.0);
    let age = value(&samples, "flow_queue_oldest_lease_age_seconds", &queue);
    assert!((0.03..60.0).contains(&age), "{age}");

    // Tasks: attempts (a histogram) and retries.
    let flaky = [("task", "srv::flaky")];
    assert_eq!(value(&samples, "flow_task_retries_total", &flaky), 2.0);
    assert_eq!(
        value(
            &samples,
            "flow_task_retries_total",
            &[("task", "srv::refuse")]
        ),
        0.0
    );
    assert_eq!(
        value(&samples, "flow_task_attempt_duration_seconds_count", &flaky),
        4.0
    );
    assert_eq!(
        value(
            &samples,
            "flow_task_attempt_duration_seconds_bucket",
            &[("task", "srv::flaky"), ("le", "+Inf")]
        ),
        4.0
    );
    assert_eq!(
        value(
            &samples,
            "flow_task_attempt_duration_seconds_count",
            &[("task", "srv::crash")]
        ),
        1.0
    );
    assert!(value(&samples, "flow_task_attempt_duration_seconds_sum", &flaky) > 0.0);
    // Buckets are cumulative and their bounds ascend.
    let buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.name == "flow_task_attempt_duration_seconds_bucket")
        .filter(|s| s.labels["task"] == "srv::flaky")
        .map(|s| (s.labels["le"].parse::<f64>().unwrap(), s.value))
        .collect();
    assert!(buckets.len() > 10);
    assert!(buckets
        .windows(2)
        .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));

    // Commits: every batch has a size and a duration.
    let batches = value(&samples, "flow_commit_batch_size_count", &[]);
    assert!(batches >= 1.0);
    assert_eq!(
        value(&samples, "flow_commit_duration_seconds_count", &[]),
        batches
    );
    assert!(value(&samples, "flow_commit_batch_size_sum", &[]) >= batches);

    // Sizes, of the files on disk.
    assert!(value(&samples, "flow_journal_size_bytes", &[]) > 0.0);
    assert!(value(&samples, "flow_log_size_bytes", &[]) > 0.0);

    // Labels name workflows and tasks only, never runs.
    let label_names: BTreeSet<&str> = samples
        .iter()
        .flat_map(|s| s.labels.keys().map(String::as_str))
        .collect();
    assert_eq!(
        label_names,
        BTreeSet::from(["le", "queue", "reason", "task", "workflow"])
    );
    assert!(!text.contains("order-1"), "{text}");

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    engine.shutdown().await;
}

#[test]
fn the_parser_refuses_what_is_not_the_format() {
    let typed = "# TYPE m counter\n";
    assert!(parse(&format!("{typed}m 1\nm{{a=\"x\\\"y\"}} 2.5\n")).is_ok());
    for bad in [
        "m 1\n",                          // no TYPE line before it
        "# TYPE m counter\nm\n",          // no value
        "# TYPE m counter\nm one\n",      // not a number
        "# TYPE m counter\nm{a=x} 1\n",   // unquoted label value
        "# TYPE m counter\nm{a=\"x} 1\n", // unterminated
        "# TYPE m bogus\n",               // unknown kind
        "# NOTE m\n",                     // unknown comment
        "# TYPE m counter\n9m 1\n",       // bad name
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
}
