//! `flow --journal PATH`: the built binary against a journal an engine in the test
//! prepared and shut down: listing, showing, histories and exports read the runs as
//! stored; a journal an engine holds, and every write command, are refused; the journal
//! is left as it was.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{flow, Flow, Scratch};
use flow::testing::RecordedRun;
use flow::{task, workflow, Engine, RunStatus};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub n: u32,
}

#[task]
async fn double(n: u32) -> u32 {
    n * 2
}

#[task(retry(max_attempts = 3, initial = "1h"))]
async fn flaky(n: u32) -> Result<u32, String> {
    Err(format!("flaky: service down for {n}"))
}

/// Doubles and adds one; panics (the run fails) for 13.
#[workflow]
async fn compute(job: Job) -> u32 {
    let doubled = double(job.n).await;
    if job.n == 13 {
        panic!("unlucky number {}", job.n);
    }
    doubled + 1
}

/// Waits for signal `go`.
#[workflow]
async fn wait_for_go(n: u32) -> u32 {
    let go: u32 = flow::signal("go").await;
    n + go
}

/// Calls a task that fails and retries an hour later.
#[workflow]
async fn retrying(n: u32) -> Result<u32, String> {
    flaky(n).await
}

fn builder() -> flow::EngineBuilder {
    Engine::builder()
        .register::<compute>()
        .register::<wait_for_go>()
        .register::<retrying>()
}

/// A journal with four runs, its engine shut down: `calc-1` completed (41), `calc-2`
/// failed, `retry-1` waiting for its task's second attempt, `wait-1` waiting for a
/// signal.
async fn prepared(scratch: &Scratch) -> PathBuf {
    let path = scratch.path.join("orders.redb");
    let engine = builder().open(&path).await.unwrap();
    let calc = engine
        .start("calc-1", compute(Job { n: 20 }))
        .await
        .unwrap();
    assert_eq!(calc.result().await.unwrap(), 41);
    engine
        .start("calc-2", compute(Job { n: 13 }))
        .await
        .unwrap();
    engine.start("wait-1", wait_for_go(1)).await.unwrap();
    engine.start("retry-1", retrying(5)).await.unwrap();
    settle(&engine, "calc-2", |s| matches!(s, RunStatus::Failed { .. })).await;
    settle(&engine, "wait-1", |s| *s == RunStatus::Waiting).await;
    settle(&engine, "retry-1", |s| *s == RunStatus::Waiting).await;
    // The retry's failed attempt is in the history.
    for _ in 0..500 {
        let history = engine.history("retry-1").await.unwrap();
        if history
            .iter()
            .any(|e| matches!(e.kind, flow::EventKind::AttemptFailed { .. }))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine.shutdown().await;
    path
}

async fn settle(engine: &Engine, run: &str, done: impl Fn(&RunStatus) -> bool) {
    for _ in 0..500 {
        if done(&engine.status(run).await.unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("run {run} never settled: {:?}", engine.status(run).await);
}

fn journal_flow(path: &Path, args: &[&str]) -> Flow {
    let mut all = vec!["--journal", path.to_str().unwrap()];
    all.extend_from_slice(args);
    flow(&all, &[])
}

/// A hash of the bytes of the journal file and of its log (the log's absence hashes as
/// empty), to compare before and after.
fn file_hashes(path: &Path) -> (u64, u64) {
    use std::hash::{Hash, Hasher};
    let hash = |p: &Path| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::fs::read(p).unwrap_or_default().hash(&mut hasher);
        hasher.finish()
    };
    let mut log = path.as_os_str().to_owned();
    log.push("-wal");
    (hash(path), hash(Path::new(&log)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_journal_leaves_its_bytes_as_they_were() {
    let scratch = Scratch::new("bytes");
    let path = prepared(&scratch).await;
    let before = file_hashes(&path);
    assert_ne!(before.0, file_hashes(&scratch.path.join("none")).0);
    for args in [
        &["runs"][..],
        &["runs", "--json"],
        &["show", "calc-1"],
        &["show", "wait-1", "--json"],
        &["history", "retry-1"],
    ] {
        journal_flow(&path, args).ok();
        assert_eq!(
            file_hashes(&path),
            before,
            "`flow --journal {} {}` changed the journal's or its log's bytes",
            path.display(),
            args.join(" ")
        );
    }
}

/// Every run's history, to compare before and after.
async fn snapshot(path: &Path) -> Vec<(String, RunStatus, usize)> {
    let engine = builder().open(path).await.unwrap();
    let mut out = Vec::new();
    for run in engine.list().await.unwrap() {
        let events = engine.history(&run.run_id).await.unwrap().len();
        out.push((run.run_id, run.status, events));
    }
    engine.shutdown().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_lists_filters_and_pages_as_stored() {
    let scratch = Scratch::new("runs");
    let path = prepared(&scratch).await;

    let table = journal_flow(&path, &["runs"]).ok();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", table.stdout);
    let header: Vec<&str> = lines[0]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        ["RUN ID", "WORKFLOW", "VERSION", "STATUS", "STEPS", "CREATED", "UPDATED"],
        "{}",
        lines[0]
    );
    let statuses: Vec<(&str, &str)> = lines[1..]
        .iter()
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells[0], cells[3])
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("calc-1", "completed"),
            ("calc-2", "failed"),
            ("retry-1", "waiting"),
            ("wait-1", "waiting"),
        ]
    );
    // Not a terminal: no colour.
    assert!(!table.stdout.contains('\u{1b}'));

    let page = journal_flow(&path, &["runs", "--json"]).json();
    let runs = page["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    assert_eq!(runs[0]["workflow"], "compute");
    assert_eq!(runs[0]["version"], 1);
    assert_eq!(runs[0]["steps"], 1);
    assert!(runs[1]["reason"]
        .as_str()
        .unwrap()
        .contains("unlucky number 13"));
    assert_eq!(page["next"], Value::Null);

    let failed = journal_flow(&path, &["runs", "--status", "failed", "--json"]).json();
    assert_eq!(ids(&failed), ["calc-2"]);
    let waiting = journal_flow(
        &path,
        &[
            "runs",
            "--status",
            "waiting",
            "--workflow",
            "retrying",
            "--json",
        ],
    )
    .json();
    assert_eq!(ids(&waiting), ["retry-1"]);

    // Pages: the first two, then the rest after the token.
    let first = journal_flow(&path, &["runs", "--limit", "2"]).ok();
    assert!(
        first.stderr.contains("--page-token calc-2"),
        "{}",
        first.stderr
    );
    let rest = journal_flow(&path, &["runs", "--page-token", "calc-2", "--json"]).json();
    assert_eq!(ids(&rest), ["retry-1", "wait-1"]);

    // Creation times: all were created in the last hour, none in the future.
    let recent = journal_flow(&path, &["runs", "--since", "1h", "--json"]).json();
    assert_eq!(ids(&recent).len(), 4);
    let none = journal_flow(&path, &["runs", "--until", "2000-01-01", "--json"]).json();
    assert!(ids(&none).is_empty());

    let wrong = journal_flow(&path, &["runs", "--status", "sleepy"]);
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("invalid value 'sleepy'") && wrong.stderr.contains("returned_err"),
        "{}",
        wrong.stderr
    );
    let wrong = journal_flow(&path, &["runs", "--limit", "0"]);
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
    let wrong = journal_flow(&path, &["runs", "--since", "yesterday"]);
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
}

fn ids(page: &Value) -> Vec<String> {
    page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_and_history_render_stored_values_without_the_types() {
    let scratch = Scratch::new("show");
    let path = prepared(&scratch).await;

    let run = journal_flow(&path, &["show", "calc-1", "--json"]).json();
    assert_eq!(run["status"], "completed");
    assert_eq!(run["workflow"], "compute");
    assert_eq!(run["input"], json!({"n": 20}));
    assert_eq!(run["output"], 41);
    assert_eq!(run["pending"], Value::Null);

    let waiting = journal_flow(&path, &["show", "wait-1", "--json"]).json();
    assert_eq!(waiting["status"], "waiting");
    assert_eq!(waiting["pending"]["name"], "signal:go");

    let retry = journal_flow(&path, &["show", "retry-1", "--json"]).json();
    assert_eq!(retry["pending"]["name"], "flaky");
    assert_eq!(retry["pending"]["attempt"], 1);
    // The task's error as the engine stores it: its Err value as JSON text.
    assert_eq!(
        retry["pending"]["last_error"],
        "\"flaky: service down for 5\""
    );
    // For people: the same facts.
    let shown = journal_flow(&path, &["show", "retry-1"]).ok().stdout;
    assert!(shown.contains("status:   waiting"), "{shown}");
    assert!(shown.contains("pending:  step 0 flaky"), "{shown}");
    assert!(shown.contains("attempt:    1"), "{shown}");
    assert!(shown.contains("flaky: service down for 5"), "{shown}");

    let missing = journal_flow(&path, &["show", "nobody"]);
    assert_eq!(missing.code, 3, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("no run `nobody`"),
        "{}",
        missing.stderr
    );

    let events = journal_flow(&path, &["history", "calc-1", "--json"]).json();
    let events = events.as_array().unwrap();
    assert_eq!(events[0]["type"], "RunStarted");
    assert_eq!(events[0]["input"], json!({"n": 20}));
    assert_eq!(events[0]["workflow"], "compute");
    let last = events.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), &last["output"]),
        (Some("RunCompleted"), &json!(41))
    );
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let completed_step = events
        .iter()
        .find(|e| e["type"] == "StepCompleted")
        .unwrap();
    assert_eq!(completed_step["output"], 40);

    let table = journal_flow(&path, &["history", "calc-2"]).ok().stdout;
    assert!(table.starts_with("SEQ  TIME"), "{table}");
    assert!(table.contains("RunFailed"), "{table}");
    assert!(table.contains("unlucky number 13"), "{table}");

    let missing = journal_flow(&path, &["history", "nobody"]);
    assert_eq!(missing.code, 3, "{}", missing.stderr);
    let follow = journal_flow(&path, &["history", "wait-1", "--follow"]);
    assert_eq!(follow.code, 2, "{}", follow.stderr);
    assert!(follow.stderr.contains("--url"), "{}", follow.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_a_recording_that_replays() {
    let scratch = Scratch::new("export");
    let path = prepared(&scratch).await;
    let out = scratch.path.join("calc-1.flowrun");
    let done = journal_flow(&path, &["export", "calc-1", "--out", out.to_str().unwrap()]).ok();
    assert!(done.stdout.contains("1 steps"), "{}", done.stdout);
    let recorded = RecordedRun::from_file(&out).unwrap();
    assert_eq!(recorded.workflow, "compute");
    assert_eq!(recorded.steps.len(), 1);
    assert_eq!(recorded.steps[0].name, "double");
    assert_eq!(
        flow::codec::to_json(recorded.output.as_ref().unwrap()).unwrap(),
        "41"
    );
    recorded.replay::<compute>().unwrap();

    let missing = journal_flow(&path, &["export", "nobody", "--out", out.to_str().unwrap()]);
    assert_eq!(missing.code, 3, "{}", missing.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_held_journals_are_refused_and_nothing_changes() {
    let scratch = Scratch::new("refuse");
    let path = prepared(&scratch).await;
    let before = snapshot(&path).await;

    for args in [
        &["signal", "wait-1", "go", "--payload", "1"][..],
        &["cancel", "wait-1"],
        &["redrive", "calc-2"],
        &["start", "compute", "calc-9", "--input", r#"{"n": 1}"#],
        &["complete", "some-token", "--payload", "true"],
    ] {
        let refused = journal_flow(&path, args);
        assert_eq!(refused.code, 2, "{args:?}: {}", refused.stderr);
        assert!(
            refused.stderr.contains("--journal only reads") && refused.stderr.contains("--url"),
            "{}",
            refused.stderr
        );
    }
    // Reads leave every run as it was too.
    journal_flow(&path, &["runs"]).ok();
    journal_flow(&path, &["history", "retry-1"]).ok();
    assert_eq!(snapshot(&path).await, before);

    // An engine has the journal open: refused, pointing at --url.
    let engine = builder().open(&path).await.unwrap();
    let held = journal_flow(&path, &["runs"]);
    assert_eq!(held.code, 1, "{}", held.stderr);
    assert!(
        held.stderr.contains("is open in a running engine") && held.stderr.contains("--url"),
        "{}",
        held.stderr
    );
    engine.shutdown().await;

    let nowhere = scratch.path.join("nothing-here.redb");
    let missing = journal_flow(&nowhere, &["runs"]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(!nowhere.exists(), "a missing journal must not be created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_deletes_no_expired_run() {
    let scratch = Scratch::new("retention");
    let path = scratch.path.join("kept.redb");
    // Finished runs of this engine expire a second after they finish.
    let engine = builder()
        .retention(Some(Duration::from_secs(1)))
        .open(&path)
        .await
        .unwrap();
    let run = engine.start("calc-1", compute(Job { n: 1 })).await.unwrap();
    assert_eq!(run.result().await.unwrap(), 3);
    engine.shutdown().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Expired, but a reader deletes nothing.
    for _ in 0..2 {
        let page = journal_flow(&path, &["runs", "--json"]).json();
        assert_eq!(ids(&page), ["calc-1"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // An engine that drives the journal does.
    let engine = builder().open(&path).await.unwrap();
    for _ in 0..500 {
        if engine.list().await.unwrap().is_empty() {
            engine.shutdown().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the expired run was never deleted by a driving engine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locals_show_each_step_as_the_journal_kept_it() {
    let scratch = Scratch::new("locals");
    let path = prepared(&scratch).await;

    // `wait-1` waits at step 0 for signal `go`, with its input `n` saved.
    let steps = journal_flow(&path, &["locals", "wait-1", "--json"]).json();
    let steps = steps.as_array().unwrap();
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0]["step"], 0);
    assert_eq!(steps[0]["name"], "signal:go");
    // Read without the workflow's code: the slot, its value, no name.
    assert_eq!(
        steps[0]["locals"],
        json!([{"slot": 0, "name": null, "type": null, "value": 1}])
    );
    assert_eq!(steps[0]["completed"], Value::Null);

    // `calc-1` saved its job across its one step, which returned 40.
    let step = journal_flow(&path, &["locals", "calc-1", "--step", "0", "--json"]).json();
    let step = &step[0];
    assert_eq!(step["name"], "double");
    assert_eq!(
        step["scheduled"]["request"]["Task"]["args"],
        json!({"n": 20})
    );
    assert_eq!(step["completed"]["output"], 40);
    let locals = step["locals"].as_array().unwrap();
    assert!(
        locals.iter().any(|l| l["value"] == json!({"n": 20})),
        "{locals:?}"
    );

    // For people: a line per step, then its locals and output.
    let text = journal_flow(&path, &["locals", "calc-1"]).ok().stdout;
    assert!(
        text.starts_with("step 0 double (state s0; scheduled "),
        "{text}"
    );
    assert!(text.contains("  output = 40"), "{text}");
    assert!(text.contains("\"n\": 20"), "{text}");
    assert!(text.contains("\n  slot 0 = "), "{text}");

    let missing = journal_flow(&path, &["locals", "calc-1", "--step", "7"]);
    assert_eq!(missing.code, 3, "{}", missing.stderr);
    assert!(missing.stderr.contains("no step 7"), "{}", missing.stderr);
    let nobody = journal_flow(&path, &["locals", "nobody"]);
    assert_eq!(nobody.code, 3, "{}", nobody.stderr);
}
