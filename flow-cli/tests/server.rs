//! `flow --url URL`: the built binary against a flow-server started in the test on a
//! loopback port, serving the demo workflows: start, signal, cancel, redrive, complete,
//! runs and history --follow, with the exit codes scripts test.

mod common;

#[path = "../../flow-server/examples/demo_server/workflows.rs"]
#[allow(dead_code)]
mod workflows;

use std::time::{Duration, Instant};

use common::{Flow, Scratch};
use flow::Engine;
use flow_server::{Server, ServerOptions};
use serde_json::{json, Value};
use tokio::sync::oneshot;

struct TestServer {
    url: String,
    engine: Engine,
    stop: oneshot::Sender<()>,
}

impl TestServer {
    async fn start(token: Option<&str>) -> TestServer {
        let engine = workflows::builder().open_in_memory().await.unwrap();
        let options = ServerOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            token: token.map(str::to_string),
            allow_open: false,
        };
        let server = Server::bind(engine.clone(), options).await.unwrap();
        let url = format!("http://{}", server.local_addr());
        let _ = workflows::PUBLIC_URL.set(url.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        TestServer { url, engine, stop }
    }

    /// Runs `flow --url URL ARGS` off the runtime's threads.
    async fn flow(&self, args: &[&str]) -> Flow {
        let mut all = vec!["--url".to_string(), self.url.clone()];
        all.extend(args.iter().map(|a| a.to_string()));
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = all.iter().map(String::as_str).collect();
            common::flow(&args, &[])
        })
        .await
        .unwrap()
    }

    /// Polls `flow show RUN --json` until the run's status is `status`.
    async fn wait_for(&self, run: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let shown = self.flow(&["show", run, "--json"]).await.json();
            if shown["status"] == status {
                return shown;
            }
            assert!(
                Instant::now() < deadline,
                "{run} never became {status}: {shown}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.engine.shutdown().await;
    }
}

fn approval(id: &str) -> String {
    json!({"id": id, "cents": 12000}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_signal_and_show_a_run() {
    let server = TestServer::start(None).await;
    let input = approval("order-7");
    let started = server
        .flow(&[
            "start",
            "approve_order",
            "approval-7",
            "--input",
            &input,
            "--json",
        ])
        .await
        .json();
    assert_eq!(started["run_id"], "approval-7");
    assert_eq!(started["workflow"], "approve_order");
    assert_eq!(started["input"], json!({"id": "order-7", "cents": 12000}));
    let waiting = server.wait_for("approval-7", "waiting").await;
    assert_eq!(waiting["pending"]["name"], "signal:approval");

    // A payload of the wrong type is refused with the server's message; nothing changes.
    let wrong = server
        .flow(&[
            "signal",
            "approval-7",
            "approval",
            "--payload",
            r#"{"approved": "yes"}"#,
        ])
        .await;
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("signal_type_mismatch") && wrong.stderr.contains("Decision"),
        "{}",
        wrong.stderr
    );
    // Not JSON at all: a usage error, nothing sent.
    let garbled = server
        .flow(&["signal", "approval-7", "approval", "--payload", "{approved"])
        .await;
    assert_eq!(garbled.code, 2, "{}", garbled.stderr);
    assert!(
        garbled.stderr.contains("--payload is not JSON"),
        "{}",
        garbled.stderr
    );

    let sent = server
        .flow(&[
            "signal",
            "approval-7",
            "approval",
            "--payload",
            r#"{"approved": true, "by": "alice"}"#,
        ])
        .await
        .ok();
    assert_eq!(
        sent.stdout.trim(),
        "signal `approval` sent to run approval-7"
    );
    let done = server.wait_for("approval-7", "completed").await;
    assert_eq!(done["output"], json!({"Shipped": {"approved_by": "alice"}}));

    // For people: the same run.
    let shown = server.flow(&["show", "approval-7"]).await.ok().stdout;
    assert!(shown.contains("status:   completed"), "{shown}");
    assert!(shown.contains("\"approved_by\": \"alice\""), "{shown}");
    assert!(shown.contains("pending:  none"), "{shown}");

    // Its recording, which replays against the workflow's code.
    let scratch = Scratch::new("export-url");
    let out = scratch.path.join("approval-7.flowrun");
    let written = server
        .flow(&["export", "approval-7", "--out", out.to_str().unwrap()])
        .await
        .ok();
    assert!(written.stdout.contains("(3 steps)"), "{}", written.stdout);
    let recorded = flow::testing::RecordedRun::from_file(&out).unwrap();
    assert_eq!(recorded.workflow, "approve_order");
    let names: Vec<&str> = recorded.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ask_for_approval", "signal:approval", "ship_order"]);
    recorded.replay::<workflows::approve_order>().unwrap();

    // Its history, whole.
    let events = server
        .flow(&["history", "approval-7", "--json"])
        .await
        .json();
    let types: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"RunStarted"));
    assert!(types.contains(&"SignalReceived"), "{types:?}");
    assert_eq!(types.last(), Some(&"RunCompleted"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_tell_not_found_from_refused_and_usage() {
    let server = TestServer::start(None).await;
    let input = approval("a");
    let cases: [(&[&str], i32, &str); 8] = [
        (&["show", "nobody"], 3, "unknown_run"),
        (&["history", "nobody"], 3, "unknown_run"),
        (
            &["signal", "nobody", "approval", "--payload", "1"],
            3,
            "unknown_run",
        ),
        (&["cancel", "nobody"], 3, "unknown_run"),
        (
            &["start", "no_such_workflow", "r1", "--input", &input],
            3,
            "unknown_workflow",
        ),
        (
            &["start", "approve_order", "r1", "--input", r#"{"id": 7}"#],
            1,
            "input_type_mismatch",
        ),
        (
            &["start", "approve_order", "r1", "--input", "{id"],
            2,
            "--input is not JSON",
        ),
        (&["show"], 2, "RUN"),
    ];
    for (args, code, says) in cases {
        let done = server.flow(args).await;
        assert_eq!(done.code, code, "{args:?}: {}", done.stderr);
        assert!(done.stderr.contains(says), "{args:?}: {}", done.stderr);
        assert!(done.stdout.is_empty(), "{args:?}: {}", done.stdout);
    }
    // Nothing was started by the refused starts.
    let page = server.flow(&["runs", "--json"]).await.json();
    assert_eq!(page["runs"], json!([]));

    let scratch = Scratch::new("export-url");
    let out = scratch.path.join("x.flowrun");
    let export = server
        .flow(&["export", "nobody", "--out", out.to_str().unwrap()])
        .await;
    assert_eq!(export.code, 3, "{}", export.stderr);
    assert!(!out.exists());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_redrive_and_list_runs() {
    let server = TestServer::start(None).await;
    for (run, id) in [("approval-1", "o1"), ("approval-2", "o2")] {
        let input = approval(id);
        server
            .flow(&["start", "approve_order", run, "--input", &input])
            .await
            .ok();
        server.wait_for(run, "waiting").await;
    }
    let cancelled = server.flow(&["cancel", "approval-2"]).await.ok();
    assert_eq!(
        cancelled.stdout.trim(),
        "cancellation of run approval-2 requested"
    );
    server.wait_for("approval-2", "cancelled").await;
    let again = server.flow(&["cancel", "approval-2"]).await;
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(again.stderr.contains("run_finished"), "{}", again.stderr);

    let page = server.flow(&["runs", "--json"]).await.json();
    let listed: Vec<(&str, &str)> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["run_id"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [("approval-1", "waiting"), ("approval-2", "cancelled")]
    );
    let cancelled_only = server
        .flow(&["runs", "--status", "cancelled", "--json"])
        .await
        .json();
    assert_eq!(cancelled_only["runs"][0]["run_id"], "approval-2");
    assert_eq!(cancelled_only["runs"].as_array().unwrap().len(), 1);
    let bad = server.flow(&["runs", "--status", "sleepy"]).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("invalid value 'sleepy'"),
        "{}",
        bad.stderr
    );

    // Redriven, the cancelled run waits for its signal again and can complete.
    let redriven = server.flow(&["redrive", "approval-2"]).await.ok();
    assert_eq!(redriven.stdout.trim(), "run approval-2 redriven");
    let run = server.flow(&["show", "approval-2", "--json"]).await.json();
    assert_eq!(run["pending"]["name"], "signal:approval", "{run}");
    server
        .flow(&[
            "signal",
            "approval-2",
            "approval",
            "--payload",
            r#"{"approved": false, "by": "carol"}"#,
        ])
        .await
        .ok();
    let done = server.wait_for("approval-2", "completed").await;
    assert_eq!(
        done["output"],
        json!({"Rejected": {"reason": "declined by carol"}})
    );
    let refused = server.flow(&["redrive", "approval-2"]).await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("not_redrivable"),
        "{}",
        refused.stderr
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_a_callback_token() {
    let server = TestServer::start(None).await;
    let input = approval("order-link-9");
    server
        .flow(&["start", "approve_by_link", "link-9", "--input", &input])
        .await
        .ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    let token = loop {
        let links = workflows::EMAILED_LINKS.lock().unwrap().clone();
        if let Some((_, link)) = links.iter().find(|(id, _)| id == "order-link-9") {
            break link.split('/').rev().nth(1).unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no link was emailed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    server.wait_for("link-9", "waiting").await;
    let payload = r#"{"approved": true, "by": "bob"}"#;
    // Not a Decision: refused, the token stays open.
    let wrong = server.flow(&["complete", &token, "--payload", "42"]).await;
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    let done = server
        .flow(&["complete", &token, "--payload", payload])
        .await
        .ok();
    assert_eq!(done.stdout.trim(), "callback completed");
    let run = server.wait_for("link-9", "completed").await;
    assert_eq!(run["output"], json!({"Shipped": {"approved_by": "bob"}}));
    // Used: refused.
    let used = server
        .flow(&["complete", &token, "--payload", payload])
        .await;
    assert_eq!(used.code, 1, "{}", used.stderr);
    assert!(
        used.stderr.contains("invalid_callback_token"),
        "{}",
        used.stderr
    );

    // Failed instead: the step gets the error, and the workflow rejects the order.
    let input = approval("order-link-10");
    server
        .flow(&["start", "approve_by_link", "link-10", "--input", &input])
        .await
        .ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    let token = loop {
        let links = workflows::EMAILED_LINKS.lock().unwrap().clone();
        if let Some((_, link)) = links.iter().find(|(id, _)| id == "order-link-10") {
            break link.split('/').rev().nth(1).unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no link was emailed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    server.wait_for("link-10", "waiting").await;
    let both = server
        .flow(&["complete", &token, "--payload", "1", "--error", "x"])
        .await;
    assert_eq!(both.code, 2, "{}", both.stderr);
    let failed = server
        .flow(&["complete", &token, "--error", "the customer withdrew"])
        .await
        .ok();
    assert_eq!(failed.stdout.trim(), "callback failed with the error given");
    let run = server.wait_for("link-10", "completed").await;
    let reason = run["output"]["Rejected"]["reason"].as_str().unwrap();
    assert!(reason.contains("the customer withdrew"), "{run}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_follow_prints_events_until_the_run_ends() {
    let server = TestServer::start(None).await;
    let input = approval("order-f");
    server
        .flow(&["start", "approve_order", "follow-1", "--input", &input])
        .await
        .ok();
    server.wait_for("follow-1", "waiting").await;
    let url = server.url.clone();
    let follower = tokio::task::spawn_blocking(move || {
        common::flow(
            &[
                "--url",
                &url,
                "history",
                "follow-1",
                "--follow",
                "--json",
                "--interval",
                "50",
            ],
            &[],
        )
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!follower.is_finished(), "--follow ended before the run did");
    server
        .flow(&[
            "signal",
            "follow-1",
            "approval",
            "--payload",
            r#"{"approved": true, "by": "dan"}"#,
        ])
        .await
        .ok();
    let followed = tokio::time::timeout(Duration::from_secs(20), follower)
        .await
        .expect("--follow ends once the run completed")
        .unwrap()
        .ok();
    let events: Vec<Value> = followed
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "each event once"
    );
    let last = events.last().unwrap();
    assert_eq!(last["type"], "RunCompleted");
    assert_eq!(last["output"], json!({"Shipped": {"approved_by": "dan"}}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_a_token_needs_it() {
    let token = "0123456789abcdef0123";
    let server = TestServer::start(Some(token)).await;
    let without = server.flow(&["runs"]).await;
    assert_eq!(without.code, 1, "{}", without.stderr);
    assert!(without.stderr.contains("401"), "{}", without.stderr);
    let url = server.url.clone();
    let with = tokio::task::spawn_blocking(move || {
        common::flow(
            &["runs", "--json"],
            &[("FLOW_URL", &url), ("FLOW_TOKEN", token)],
        )
    })
    .await
    .unwrap()
    .json();
    assert_eq!(with, json!({"runs": [], "next": null}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_lists_what_the_server_can_start() {
    let server = TestServer::start(None).await;
    let list = server.flow(&["workflows", "--json"]).await.json();
    let names: Vec<&str> = list["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "approve_by_link",
            "approve_order",
            "place_order",
            "thumbnail"
        ]
    );
    let table = server.flow(&["workflows"]).await.ok().stdout;
    let approve = table
        .lines()
        .find(|l| l.starts_with("approve_order "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        approve.contains("Approval")
            && approve.contains("approval: ")
            && approve.contains("Decision"),
        "{approve}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_shows_pending_and_leased_tasks_and_workers() {
    let server = TestServer::start(None).await;
    let idle = server.flow(&["queues", "--json"]).await.json();
    assert_eq!(
        idle,
        json!({"queues": [{"name": "thumbnails", "pending": 0, "leased": 0, "workers": [],
            "oldest_lease_age_ms": null}]})
    );
    for n in 0..3 {
        let input = format!("\"cat-{n}.png\"");
        server
            .flow(&[
                "start",
                "thumbnail",
                &format!("thumb-{n}"),
                "--input",
                &input,
            ])
            .await
            .ok();
    }
    // One task leased to worker `w-1`, two waiting.
    let leased = server
        .engine
        .poll_tasks("thumbnails", "w-1", 1, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let busy = loop {
        let list = server.flow(&["queues", "--json"]).await.json();
        if list["queues"][0]["pending"] == 2 || std::time::Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // The lease's age grows while it is held; the rest is exact.
    let mut busy = busy;
    let age = busy["queues"][0]
        .as_object_mut()
        .unwrap()
        .remove("oldest_lease_age_ms")
        .unwrap();
    assert!(age.as_u64().is_some_and(|ms| ms < 60_000), "{age}");
    assert_eq!(
        busy,
        json!({"queues": [{"name": "thumbnails", "pending": 2, "leased": 1, "workers": ["w-1"]}]})
    );
    let table = server.flow(&["queues"]).await.ok().stdout;
    let row = table
        .lines()
        .find(|l| l.starts_with("thumbnails "))
        .unwrap_or_else(|| panic!("{table}"));
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(fields, ["thumbnails", "2", "1", "1:", "w-1"], "{table}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_draws_a_workflow_and_marks_a_runs_path() {
    let server = TestServer::start(None).await;
    let mermaid = server.flow(&["graph", "approve_order"]).await.ok().stdout;
    assert!(mermaid.starts_with("stateDiagram-v2\n"), "{mermaid}");
    assert!(mermaid.contains("s1 : signal (line "), "{mermaid}");
    assert!(mermaid.contains("[*] --> s0"), "{mermaid}");
    assert!(!mermaid.contains("class "), "no run, no marks: {mermaid}");

    server
        .flow(&["start", "approve_order", "g-1", "--input", &approval("g-1")])
        .await
        .ok();
    server.wait_for("g-1", "waiting").await;
    let dot = server
        .flow(&["graph", "--run", "g-1", "--format", "dot"])
        .await
        .ok()
        .stdout;
    assert!(dot.starts_with("digraph \"approve_order\" {"), "{dot}");
    assert!(dot.contains("s1 [shape=box, label=\"signal (line"), "{dot}");
    let current: Vec<&str> = dot.lines().filter(|l| l.contains("penwidth=3")).collect();
    assert_eq!(current.len(), 1, "{dot}");
    assert!(current[0].trim_start().starts_with("s1 "), "{dot}");
    let graph = server
        .flow(&["graph", "--run", "g-1", "--format", "json"])
        .await
        .json();
    let visited: Vec<bool> = graph["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["visited"].as_bool().unwrap())
        .collect();
    assert_eq!(visited, [true, true, false]);

    let missing = server.flow(&["graph", "nope"]).await;
    assert_eq!(missing.code, 3, "{}", missing.stderr);
    let old = server
        .flow(&["graph", "approve_order", "--version", "9"])
        .await;
    assert_eq!(old.code, 3, "{}", old.stderr);
    assert!(old.stderr.contains("version 9"), "{}", old.stderr);
    let neither = server.flow(&["graph"]).await;
    assert_eq!(neither.code, 2, "{}", neither.stderr);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_ends_a_follow_with_130() {
    let server = TestServer::start(None).await;
    let input = approval("order-i");
    server
        .flow(&["start", "approve_order", "interrupt-1", "--input", &input])
        .await
        .ok();
    server.wait_for("interrupt-1", "waiting").await;
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_flow"))
        .args(["--url", &server.url, "history", "interrupt-1", "--follow"])
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("signal:approval"), "{stdout}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locals_over_the_server_show_each_step() {
    let server = TestServer::start(None).await;
    let input = approval("order-7");
    let started = server
        .flow(&["start", "approve_order", "approval-7", "--input", &input])
        .await;
    assert_eq!(started.code, 0, "{}", started.stderr);
    server.wait_for("approval-7", "waiting").await;

    let step = server
        .flow(&["locals", "approval-7", "--step", "1", "--json"])
        .await
        .json();
    assert_eq!(step[0]["name"], "signal:approval");
    assert_eq!(
        step[0]["locals"],
        json!([{"slot": 0, "name": "order", "type": "Approval",
            "value": {"cents": 12000, "id": "order-7"}}])
    );
    let all = server
        .flow(&["locals", "approval-7", "--json"])
        .await
        .json();
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ask_for_approval", "signal:approval"]);
    let text = server.flow(&["locals", "approval-7"]).await;
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains("step 1 signal:approval (state s1;"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("not completed"), "{}", text.stdout);
    // Each local by its source name, type and slot, then its value.
    assert!(
        text.stdout.contains(
            "  order: Approval (slot 0) = {\n    \"cents\": 12000,\n    \"id\": \"order-7\"\n  }"
        ),
        "{}",
        text.stdout
    );
    let missing = server.flow(&["locals", "approval-7", "--step", "9"]).await;
    assert_eq!(missing.code, 3, "{}", missing.stderr);
    server.stop().await;
}
