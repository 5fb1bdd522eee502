//! The API's endpoints against a live server on loopback: what each answers, and that
//! each refusal is a JSON error that changes nothing.

mod common;

use std::time::Duration;

use common::{answer, assert_error, TestServer};
use flow::RunStatus;
use flow_server::{generate_token, OptionsError, Server, ServerOptions};
use serde_json::{json, Value};

fn order(card: &str, items: &[&str]) -> Value {
    json!({"card": card, "items": items, "total_cents": 4200})
}

fn start(workflow: &str, run_id: &str, input: Value) -> Value {
    json!({"workflow": workflow, "run_id": run_id, "input": input})
}

#[tokio::test]
async fn a_run_started_by_name_completes_and_shows_its_values() {
    let server = TestServer::start(None).await;
    let (status, run) = server
        .post(
            "/v1/runs",
            &start("place_order", "order-1", order("4242", &["lamp", "desk"])),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["run_id"], "order-1");
    assert_eq!(run["workflow"], "place_order");
    assert_eq!(run["input"], order("4242", &["lamp", "desk"]));

    let run = server.wait_for_status("order-1", "completed").await;
    assert_eq!(
        run["output"],
        json!({"Ok": {"payment": "pay-4242-4200", "reservation": "res-2",
                      "shipped": ["parcel-lamp", "parcel-desk"]}})
    );
    assert_eq!(run["pending"], Value::Null);
    assert_eq!(run["steps"], 4);
    server.stop().await;
}

#[tokio::test]
async fn a_start_by_name_is_the_same_start_as_a_typed_one() {
    use common::workflows::{place_order, Order};
    let server = TestServer::start(None).await;
    let typed = Order {
        card: "4242".into(),
        items: vec!["lamp".into()],
        total_cents: 4200,
    };
    server
        .engine
        .start("order-1", place_order(typed))
        .await
        .unwrap();
    // Fields in another order, as JSON allows: still the same input.
    let input = json!({"total_cents": 4200, "items": ["lamp"], "card": "4242"});
    let (status, run) = server
        .post("/v1/runs", &start("place_order", "order-1", input))
        .await;
    assert_eq!(status, 200, "{run}");

    // Another input under the same run ID is a conflict, and the run keeps its input.
    let (status, body) = server
        .post(
            "/v1/runs",
            &start("place_order", "order-1", order("9999", &["lamp"])),
        )
        .await;
    assert_error(status, &body, 409, "run_id_conflict");
    let (_, run) = server.get("/v1/runs/order-1").await;
    assert_eq!(run["input"]["card"], "4242");
    server.stop().await;
}

#[tokio::test]
async fn a_start_that_does_not_fit_is_refused_and_writes_nothing() {
    let server = TestServer::start(None).await;
    let cases = [
        (
            start("place_order", "r1", json!({"card": 4242})),
            400,
            "input_type_mismatch",
        ),
        (
            start("place_order", "r1", json!([1, 2])),
            400,
            "input_type_mismatch",
        ),
        (
            start("place_order", "r1", Value::Null),
            400,
            "input_type_mismatch",
        ),
        (
            start("no_such_workflow", "r1", json!({})),
            404,
            "unknown_workflow",
        ),
        (
            start("place_order", "", order("1", &[])),
            400,
            "invalid_run_id",
        ),
        (
            start("place_order", "a\nb", order("1", &[])),
            400,
            "invalid_run_id",
        ),
        (json!({"workflow": "place_order"}), 400, "malformed_body"),
        (
            json!({"workflow": "place_order", "run_id": "r1", "inptu": {}}),
            400,
            "malformed_body",
        ),
        (json!([]), 400, "malformed_body"),
    ];
    for (body, expected, code) in cases {
        let (status, answer) = server.post("/v1/runs", &body).await;
        assert_error(status, &answer, expected, code);
    }
    let (status, body) = server
        .post("/v1/runs", &start("place_order", "r1", json!({"card": 1})))
        .await;
    assert!(
        body["message"].as_str().unwrap().contains("Order"),
        "the message names the expected type: {body}"
    );
    assert_eq!(status, 400);
    let (_, list) = server.get("/v1/runs").await;
    assert_eq!(list["runs"], json!([]), "nothing was started");
    server.stop().await;
}

#[tokio::test]
async fn a_signal_is_checked_against_the_awaited_type_then_resumes_the_run() {
    let server = TestServer::start(None).await;
    let input = json!({"id": "a-1", "cents": 500});
    let (status, _) = server
        .post("/v1/runs", &start("approve_order", "a-1", input))
        .await;
    assert_eq!(status, 200);
    let run = server.wait_for_status("a-1", "waiting").await;
    assert_eq!(run["pending"]["name"], "signal:approval", "{run}");

    let wrong = json!({"approved": "yes", "by": "alice"});
    let (status, body) = server.post("/v1/runs/a-1/signals/approval", &wrong).await;
    assert_error(status, &body, 400, "signal_type_mismatch");
    let (status, body) = server
        .post("/v1/runs/a-1/signals/aproval", &json!({}))
        .await;
    assert_error(status, &body, 400, "unknown_signal");
    let (status, body) = server
        .post("/v1/runs/nobody/signals/approval", &json!({}))
        .await;
    assert_error(status, &body, 404, "unknown_run");
    // Nothing of the refused signals reached the run.
    assert_eq!(server.get("/v1/runs/a-1").await.1["status"], "waiting");

    let right = json!({"approved": true, "by": "alice"});
    let (status, body) = server.post("/v1/runs/a-1/signals/approval", &right).await;
    assert_eq!(
        (status, body),
        (200, json!({"run_id": "a-1", "accepted": "signal"}))
    );
    let run = server.wait_for_status("a-1", "completed").await;
    assert_eq!(run["output"], json!({"Shipped": {"approved_by": "alice"}}));

    let (status, body) = server.post("/v1/runs/a-1/signals/approval", &right).await;
    assert_error(status, &body, 409, "run_finished");
    server.stop().await;
}

#[tokio::test]
async fn a_cancelled_run_shows_as_cancelled() {
    let server = TestServer::start(None).await;
    let input = json!({"id": "a-2", "cents": 1});
    server
        .post("/v1/runs", &start("approve_order", "a-2", input))
        .await;
    server.wait_for_status("a-2", "waiting").await;
    let (status, body) = server.post("/v1/runs/a-2/cancel", &json!({})).await;
    assert_eq!(
        (status, body),
        (200, json!({"run_id": "a-2", "accepted": "cancel"}))
    );
    let run = server.wait_for_status("a-2", "cancelled").await;
    assert_eq!(run["output"], Value::Null, "{run}");
    let (status, body) = server.post("/v1/runs/a-2/cancel", &json!({})).await;
    assert_error(status, &body, 409, "run_finished");
    let (status, body) = server.post("/v1/runs/nobody/cancel", &json!({})).await;
    assert_error(status, &body, 404, "unknown_run");
    let (status, body) = server.post("/v1/runs/a-2/cancel", &json!({"why": 1})).await;
    assert_error(status, &body, 400, "unexpected_body");
    server.stop().await;
}

#[tokio::test]
async fn a_cancelled_run_redriven_waits_again_and_completes() {
    let server = TestServer::start(None).await;
    let input = json!({"id": "a-3", "cents": 1});
    server
        .post("/v1/runs", &start("approve_order", "a-3", input))
        .await;
    server.wait_for_status("a-3", "waiting").await;
    // Not ended yet: nothing to redrive.
    let (status, body) = server.post("/v1/runs/a-3/redrive", &json!({})).await;
    assert_error(status, &body, 409, "not_redrivable");
    server.post("/v1/runs/a-3/cancel", &json!({})).await;
    server.wait_for_status("a-3", "cancelled").await;

    let (status, body) = server.post("/v1/runs/a-3/redrive", &json!({})).await;
    assert_eq!(
        (status, body),
        (200, json!({"run_id": "a-3", "accepted": "redrive"}))
    );
    // It waits for its signal again (the engine shows a redriven run as running until
    // its next transition).
    let (_, run) = server.get("/v1/runs/a-3").await;
    assert!(
        ["running", "waiting"].contains(&run["status"].as_str().unwrap()),
        "{run}"
    );
    assert_eq!(run["pending"]["name"], "signal:approval", "{run}");
    assert_eq!(run["pending"]["step"], 1, "{run}");
    let decision = json!({"approved": true, "by": "bob"});
    let (status, _) = server
        .post("/v1/runs/a-3/signals/approval", &decision)
        .await;
    assert_eq!(status, 200);
    let run = server.wait_for_status("a-3", "completed").await;
    assert_eq!(run["output"], json!({"Shipped": {"approved_by": "bob"}}));
    let (_, history) = server.get("/v1/runs/a-3/history?limit=1000").await;
    let types: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(types.contains(&"RunRedriven"), "{types:?}");

    let (status, body) = server.post("/v1/runs/a-3/redrive", &json!({})).await;
    assert_error(status, &body, 409, "not_redrivable");
    let (status, body) = server.post("/v1/runs/nobody/redrive", &json!({})).await;
    assert_error(status, &body, 404, "unknown_run");
    server.stop().await;
}

#[tokio::test]
async fn a_run_that_returns_err_shows_its_failed_attempts() {
    let server = TestServer::start(None).await;
    // `reserve` fails for unicorns (2 attempts); `refund` compensates; the run returns Err.
    let input = order("4242", &["unicorn"]);
    server
        .post("/v1/runs", &start("place_order", "u-1", input))
        .await;
    let run = server.wait_for_status("u-1", "returned_err").await;
    assert_eq!(run["output"], json!({"Err": {"OutOfStock": "unicorn"}}));
    let (_, history) = server.get("/v1/runs/u-1/history?limit=1000").await;
    let failed: Vec<&Value> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "AttemptFailed")
        .collect();
    assert_eq!(failed.len(), 2, "{history}");
    assert_eq!(failed[0]["attempt"], 1);

    server.stop().await;
}

#[tokio::test]
async fn listing_filters_and_pages() {
    let server = TestServer::start(None).await;
    for i in 0..5 {
        let id = format!("order-{i}");
        server
            .post(
                "/v1/runs",
                &start("place_order", &id, order("4242", &["a"])),
            )
            .await;
    }
    let input = json!({"id": "x", "cents": 1});
    server
        .post("/v1/runs", &start("approve_order", "zz-approval", input))
        .await;
    for i in 0..5 {
        server
            .wait_for_status(&format!("order-{i}"), "completed")
            .await;
    }
    server.wait_for_status("zz-approval", "waiting").await;

    let mut seen = Vec::new();
    let mut path = "/v1/runs?limit=2&workflow=place_order".to_string();
    loop {
        let (status, page) = server.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let runs = page["runs"].as_array().unwrap();
        assert!(runs.len() <= 2);
        seen.extend(
            runs.iter()
                .map(|r| r["run_id"].as_str().unwrap().to_string()),
        );
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/runs?limit=2&workflow=place_order&after={next}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["order-0", "order-1", "order-2", "order-3", "order-4"]
    );

    let (_, waiting) = server.get("/v1/runs?status=waiting").await;
    assert_eq!(waiting["runs"].as_array().unwrap().len(), 1);
    assert_eq!(waiting["runs"][0]["run_id"], "zz-approval");

    let created = waiting["runs"][0]["created_at_ms"].as_u64().unwrap();
    let (_, later) = server
        .get(&format!("/v1/runs?created_after_ms={created}"))
        .await;
    assert!(later["runs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["created_at_ms"].as_u64() >= Some(created)));
    let (_, none) = server.get("/v1/runs?created_before_ms=1").await;
    assert_eq!(none, json!({"runs": [], "next": null}));

    for (query, code) in [
        ("status=finished", "invalid_status"),
        ("limit=0", "invalid_limit"),
        ("limit=99999999", "invalid_limit"),
        ("limit=-1", "malformed_query"),
        ("created_after_ms=yesterday", "malformed_query"),
        ("colour=red", "malformed_query"),
    ] {
        let (status, body) = server.get(&format!("/v1/runs?{query}")).await;
        assert_error(status, &body, 400, code);
    }
    server.stop().await;
}

#[tokio::test]
async fn history_pages_render_stored_values_as_json() {
    let server = TestServer::start(None).await;
    server
        .post(
            "/v1/runs",
            &start("place_order", "h-1", order("4242", &["lamp"])),
        )
        .await;
    server.wait_for_status("h-1", "completed").await;
    let all = server.engine.history("h-1").await.unwrap();

    let mut events = Vec::new();
    let mut path = "/v1/runs/h-1/history?limit=3".to_string();
    loop {
        let (status, page) = server.get(&path).await;
        assert_eq!(status, 200, "{page}");
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next"].as_u64() {
            Some(next) => path = format!("/v1/runs/h-1/history?limit=3&after={next}"),
            None => break,
        }
    }
    assert_eq!(events.len(), all.len());
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, all.iter().map(|e| e.seq).collect::<Vec<_>>());
    assert_eq!(events[0]["type"], "RunStarted");
    assert_eq!(events[0]["input"], order("4242", &["lamp"]));
    let charge = events.iter().find(|e| e["name"] == "charge").unwrap();
    assert_eq!(
        charge["request"]["Task"]["args"],
        json!({"card": "4242", "cents": 4200})
    );
    let last = events.last().unwrap();
    assert_eq!(last["type"], "RunCompleted");
    assert_eq!(last["output"]["Ok"]["shipped"], json!(["parcel-lamp"]));

    let (status, body) = server.get("/v1/runs/nobody/history").await;
    assert_error(status, &body, 404, "unknown_run");
    let (status, body) = server.get("/v1/runs/h-1/history?limit=0").await;
    assert_error(status, &body, 400, "invalid_limit");
    server.stop().await;
}

#[tokio::test]
async fn odd_run_ids_travel_percent_encoded() {
    let server = TestServer::start(None).await;
    let id = "tenant/7 order?#ü";
    let (status, run) = server
        .post("/v1/runs", &start("place_order", id, order("1", &[])))
        .await;
    assert_eq!(status, 200, "{run}");
    let encoded: String = id
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let run = server.wait_for_status(&encoded, "completed").await;
    assert_eq!(run["run_id"], id);
    server.stop().await;
}

#[tokio::test]
async fn callback_endpoints_refuse_unknown_tokens() {
    let server = TestServer::start(None).await;
    let (status, body) = server
        .post("/v1/callbacks/flowcb_nope/complete", &json!(1))
        .await;
    assert_error(status, &body, 410, "invalid_callback_token");
    let (status, body) = server
        .post("/v1/callbacks/flowcb_nope/fail", &json!({"error": "no"}))
        .await;
    assert_error(status, &body, 410, "invalid_callback_token");
    let (status, body) = server
        .post("/v1/callbacks/flowcb_nope/fail", &json!({"eror": "no"}))
        .await;
    assert_error(status, &body, 400, "malformed_body");
    let (status, body) = server
        .post("/v1/callbacks/flowcb_nope/heartbeat", &json!({}))
        .await;
    assert_error(status, &body, 410, "invalid_callback_token");
    server.stop().await;
}

#[tokio::test]
async fn a_server_with_a_token_refuses_requests_without_it() {
    let token = generate_token().unwrap();
    let server = TestServer::start(Some(&token)).await;
    let (status, body) = server.get("/v1/runs").await;
    assert_error(status, &body, 401, "missing_token");
    let wrong = server
        .client
        .get(server.at("/v1/runs"))
        .bearer_auth("x".repeat(64));
    let (status, body) = answer(wrong.send().await.unwrap()).await;
    assert_error(status, &body, 401, "invalid_token");
    let right = server.client.get(server.at("/v1/runs")).bearer_auth(&token);
    let (status, _) = answer(right.send().await.unwrap()).await;
    assert_eq!(status, 200);
    // The callback endpoints take the callback token as their credential.
    let (status, body) = server
        .post("/v1/callbacks/flowcb_nope/complete", &json!(1))
        .await;
    assert_error(status, &body, 410, "invalid_callback_token");
    // A token server answers any host name: the token is the guard.
    let other_host = server
        .client
        .get(server.at("/v1/runs"))
        .bearer_auth(&token)
        .header("host", "flow.internal:80");
    assert_eq!(answer(other_host.send().await.unwrap()).await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_server_without_a_token_answers_only_loopback_host_names() {
    let server = TestServer::start(None).await;
    let rebound = server
        .client
        .get(server.at("/v1/runs"))
        .header("host", "evil.example");
    let (status, body) = answer(rebound.send().await.unwrap()).await;
    assert_error(status, &body, 403, "foreign_host");
    let local = server
        .client
        .get(server.at("/v1/runs"))
        .header("host", "localhost:1234");
    assert_eq!(answer(local.send().await.unwrap()).await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn posts_must_declare_json() {
    let server = TestServer::start(None).await;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut request = server
            .client
            .post(server.at("/v1/runs"))
            .body(start("place_order", "r", order("1", &[])).to_string());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let (status, body) = answer(request.send().await.unwrap()).await;
        assert_error(status, &body, 415, "unsupported_media_type");
    }
    let with_charset = server
        .client
        .post(server.at("/v1/runs"))
        .header("content-type", "application/json; charset=utf-8")
        .body(start("place_order", "r", order("1", &[])).to_string());
    assert_eq!(answer(with_charset.send().await.unwrap()).await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn bodies_over_the_payload_limit_are_refused() {
    let server = TestServer::start(None).await;
    let huge = "a".repeat(flow::MAX_PAYLOAD_BYTES + 1);
    let request = server
        .client
        .post(server.at("/v1/runs/r/signals/s"))
        .header("content-type", "application/json")
        .body(format!("\"{huge}\""));
    let (status, body) = answer(request.send().await.unwrap()).await;
    assert_error(status, &body, 413, "payload_too_large");
    // Just under the limit, the value still does not fit: the message is cut short.
    let big = "a".repeat(flow::MAX_PAYLOAD_BYTES - 100);
    let (status, body) = server
        .post("/v1/runs", &start("place_order", "r", Value::String(big)))
        .await;
    assert_error(status, &body, 400, "input_type_mismatch");
    assert!(body["message"].as_str().unwrap().len() < 4096);
    server.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_json() {
    let server = TestServer::start(None).await;
    let (status, body) = server.get("/v1/nothing").await;
    assert_error(status, &body, 404, "no_route");
    // `/` is the console's page; other paths outside `/v1` are no route.
    let (status, body) = server.get("/console/nothing.js").await;
    assert_error(status, &body, 404, "no_route");
    let delete = server.client.delete(server.at("/v1/runs/x"));
    let (status, body) = answer(delete.send().await.unwrap()).await;
    assert_error(status, &body, 405, "method_not_allowed");
    server.stop().await;
}

#[tokio::test]
async fn off_loopback_without_a_token_the_server_refuses_to_start() {
    let engine = common::workflows::builder().open_in_memory().await.unwrap();
    let open = ServerOptions {
        addr: "0.0.0.0:0".parse().unwrap(),
        ..ServerOptions::default()
    };
    let refused = Server::bind(engine.clone(), open.clone()).await;
    assert!(matches!(refused, Err(OptionsError::OpenOffLoopback { .. })));
    let weak = ServerOptions {
        token: Some("short".into()),
        ..open.clone()
    };
    assert!(matches!(weak.check(), Err(OptionsError::WeakToken { .. })));
    // Told explicitly, it may run open (checked without binding a public address).
    let allowed = ServerOptions {
        allow_open: true,
        ..open.clone()
    };
    assert!(allowed.check().is_ok());
    let with_token = ServerOptions {
        token: Some(generate_token().unwrap()),
        ..open
    };
    assert!(with_token.check().is_ok());
    engine.shutdown().await;
}

#[tokio::test]
async fn workflows_are_listed_with_their_input_and_signal_types() {
    let server = TestServer::start(None).await;
    let (status, body) = server.get("/v1/workflows").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body["workflows"]
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
    let approve = &body["workflows"][1];
    assert!(approve["input_type"]
        .as_str()
        .unwrap()
        .ends_with("Approval"));
    assert_eq!(approve["signals"][0]["name"], "approval");
    assert!(approve["signals"][0]["type"]
        .as_str()
        .unwrap()
        .ends_with("Decision"));
    assert_eq!(approve["signals_closed"], true);
    server.stop().await;
}

#[tokio::test]
async fn a_run_started_over_http_is_the_engines_run() {
    let server = TestServer::start(None).await;
    server
        .post(
            "/v1/runs",
            &start("place_order", "e-1", order("4242", &["a"])),
        )
        .await;
    let handle = server
        .engine
        .handle::<common::workflows::place_order>("e-1")
        .unwrap();
    let receipt = tokio::time::timeout(Duration::from_secs(10), handle.result())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(receipt.shipped, ["parcel-a"]);
    assert_eq!(
        server.engine.status("e-1").await.unwrap(),
        RunStatus::Completed
    );
    server.stop().await;
}

/// Each state's `(visited, current)` in a graph answer.
fn state_marks(graph: &Value) -> Vec<(bool, bool)> {
    graph["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["visited"].as_bool().unwrap(),
                s["current"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn graphs_show_the_workflow_and_mark_a_runs_path() {
    let server = TestServer::start(None).await;
    let (status, graph) = server.get("/v1/workflows/approve_order/graph").await;
    assert_eq!(status, 200, "{graph}");
    assert_eq!(graph["workflow"], "approve_order");
    assert_eq!(graph["version"], 1);
    let names: Vec<&str> = graph["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ask_for_approval", "signal", "ship_order"]);
    assert!(graph["transitions"]
        .as_array()
        .unwrap()
        .contains(&json!(["start", "s0"])));
    assert!(!graph["mermaid"].as_str().unwrap().contains("class s"));

    let input = json!({"id": "g-1", "cents": 500});
    let (status, _) = server
        .post("/v1/runs", &start("approve_order", "g-1", input))
        .await;
    assert_eq!(status, 200);
    server.wait_for_status("g-1", "waiting").await;
    let (status, graph) = server.get("/v1/runs/g-1/graph").await;
    assert_eq!(status, 200, "{graph}");
    let marks = state_marks(&graph);
    // Asked for approval, waiting for the signal, not shipped yet.
    assert_eq!(marks, [(true, false), (true, true), (false, false)]);
    let mermaid = graph["mermaid"].as_str().unwrap();
    assert!(mermaid.contains("class s0 visited"), "{mermaid}");
    assert!(mermaid.contains("class s1 current"), "{mermaid}");
    let dot = graph["dot"].as_str().unwrap();
    assert!(dot.starts_with("digraph \"approve_order\""), "{dot}");
    assert!(dot.contains("s1 [shape=box, label=\"signal (line"), "{dot}");

    let decision = json!({"approved": true, "by": "alice"});
    server
        .post("/v1/runs/g-1/signals/approval", &decision)
        .await;
    server.wait_for_status("g-1", "completed").await;
    let (_, graph) = server.get("/v1/runs/g-1/graph").await;
    let marks = state_marks(&graph);
    assert_eq!(marks, [(true, false), (true, false), (true, false)]);

    let (status, body) = server
        .get("/v1/workflows/approve_order/graph?version=2")
        .await;
    assert_error(status, &body, 404, "unknown_version");
    let (status, body) = server.get("/v1/runs/nobody/graph").await;
    assert_error(status, &body, 404, "unknown_run");
    server.stop().await;
}
