//! The OpenAPI document against the live server: every documented operation is called
//! (with requests that succeed and requests that fail), and each answer's status must be
//! one the document lists for it and its body must match that status's schema. Routes
//! the document leaves out answer `no_route`, methods it leaves out `method_not_allowed`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{workflows::EMAILED_LINKS, TestServer};
use serde_json::{json, Value};

/// One request of the walk: the operation it exercises, its method, path and body.
struct Call {
    operation: &'static str,
    method: &'static str,
    path: String,
    body: Option<Value>,
    /// The status the call must get.
    expect: u16,
}

fn call(
    operation: &'static str,
    method: &'static str,
    path: &str,
    body: Option<Value>,
    expect: u16,
) -> Call {
    Call {
        operation,
        method,
        path: path.to_string(),
        body,
        expect,
    }
}

/// Checks `instance` against the schema `schema` of the document (its `$ref`s resolve
/// against the document's components).
fn check_schema(doc: &Value, schema: &Value, instance: &Value) -> Result<(), String> {
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::draft202012::new(&root).map_err(|e| format!("bad schema: {e}"))?;
    validator
        .validate(instance)
        .map_err(|e| format!("{e} at {}", e.instance_path()))
}

/// A callback token handed out by a run of `approve_by_link` started for `order`.
async fn callback_token(server: &TestServer, run_id: &str, order: &str) -> String {
    let body = json!({"workflow": "approve_by_link", "run_id": run_id, "input": {"id": order, "cents": 1}});
    assert_eq!(server.post("/v1/runs", &body).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let links = EMAILED_LINKS.lock().unwrap().clone();
        if let Some((_, link)) = links.iter().find(|(id, _)| id == order) {
            let token = link.split('/').rev().nth(1).unwrap().to_string();
            server.wait_for_status(run_id, "waiting").await;
            return token;
        }
        assert!(Instant::now() < deadline, "no token for {order}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let server = TestServer::start(None).await;
    let (status, doc) = server.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");

    // Runs in every state the answers can show.
    let order = json!({"card": "4242", "items": ["lamp"], "total_cents": 1});
    let start_order = json!({"workflow": "place_order", "run_id": "order-1", "input": order});
    assert_eq!(server.post("/v1/runs", &start_order).await.0, 200);
    server.wait_for_status("order-1", "completed").await;
    let approval = json!({"workflow": "approve_order", "run_id": "approval-1", "input": {"id": "a", "cents": 1}});
    assert_eq!(server.post("/v1/runs", &approval).await.0, 200);
    server.wait_for_status("approval-1", "waiting").await;
    let approval = json!({"workflow": "approve_order", "run_id": "approval-2", "input": {"id": "b", "cents": 1}});
    assert_eq!(server.post("/v1/runs", &approval).await.0, 200);
    // A cancelled run, to redrive.
    let approval = json!({"workflow": "approve_order", "run_id": "approval-3", "input": {"id": "c", "cents": 1}});
    assert_eq!(server.post("/v1/runs", &approval).await.0, 200);
    server.wait_for_status("approval-3", "waiting").await;
    assert_eq!(
        server
            .post("/v1/runs/approval-3/cancel", &json!({}))
            .await
            .0,
        200
    );
    server.wait_for_status("approval-3", "cancelled").await;
    let complete_token = callback_token(&server, "link-1", "order-link-1").await;
    let fail_token = callback_token(&server, "link-2", "order-link-2").await;

    // Remote tasks: three leased through the engine's own API before the walk, and one
    // left on the queue for the walk's poll.
    let mut leased = Vec::new();
    for n in 2..=4 {
        let run_id = format!("thumb-{n}");
        let start =
            json!({"workflow": "thumbnail", "run_id": run_id, "input": format!("cat-{n}.png")});
        assert_eq!(server.post("/v1/runs", &start).await.0, 200);
        let tasks = server
            .engine
            .poll_tasks("thumbnails", "setup", 1, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(tasks.len(), 1);
        leased.push(tasks[0].token.clone());
    }
    let (t2, t3, t4) = (leased[0].clone(), leased[1].clone(), leased[2].clone());
    let start = json!({"workflow": "thumbnail", "run_id": "thumb-1", "input": "cat-1.png"});
    assert_eq!(server.post("/v1/runs", &start).await.0, 200);
    let thumb_ok = json!({"Ok": "cat@128w"});

    let decision = json!({"approved": true, "by": "alice"});
    let calls = vec![
        call("listQueues", "GET", "/v1/queues", None, 200),
        call(
            "pollTasks",
            "POST",
            "/v1/queues/thumbnails/poll",
            Some(json!({"worker": "walker", "max": 10, "wait_ms": 5000})),
            200,
        ),
        call(
            "pollTasks",
            "POST",
            "/v1/queues/thumbnails/poll",
            Some(json!({"max": 0})),
            400,
        ),
        call(
            "pollTasks",
            "POST",
            "/v1/queues/nope/poll",
            Some(json!({"wait_ms": 0})),
            404,
        ),
        call(
            "heartbeatTask",
            "POST",
            "/v1/queues/thumbnails/heartbeat",
            Some(json!({"token": t2})),
            200,
        ),
        call(
            "heartbeatTask",
            "POST",
            "/v1/queues/thumbnails/heartbeat",
            Some(json!({"token": "zz"})),
            400,
        ),
        call(
            "heartbeatTask",
            "POST",
            "/v1/queues/nope/heartbeat",
            Some(json!({"token": t2})),
            409,
        ),
        call(
            "completeTask",
            "POST",
            "/v1/queues/thumbnails/complete",
            Some(json!({"token": t2, "output": {"Ok": 5}})),
            400,
        ),
        call(
            "completeTask",
            "POST",
            "/v1/queues/thumbnails/complete",
            Some(json!({"token": t2, "output": thumb_ok})),
            200,
        ),
        call(
            "completeTask",
            "POST",
            "/v1/queues/thumbnails/complete",
            Some(json!({"token": t2, "output": thumb_ok})),
            200,
        ),
        call(
            "completeTask",
            "POST",
            "/v1/queues/thumbnails/complete",
            Some(json!({"token": t2, "output": {"Ok": "other"}})),
            409,
        ),
        call(
            "heartbeatTask",
            "POST",
            "/v1/queues/thumbnails/heartbeat",
            Some(json!({"token": t2})),
            410,
        ),
        call(
            "failTask",
            "POST",
            "/v1/queues/thumbnails/fail",
            Some(json!({"token": t3, "error": "corrupt image", "retryable": false})),
            200,
        ),
        call(
            "failTask",
            "POST",
            "/v1/queues/thumbnails/fail",
            Some(json!({"token": t3, "error": 7})),
            400,
        ),
        call(
            "reportTasks",
            "POST",
            "/v1/queues/thumbnails/report",
            Some(json!({"reports": [
                {"token": t4, "output": thumb_ok},
                {"token": "zz", "error": "x"},
            ]})),
            200,
        ),
        call(
            "reportTasks",
            "POST",
            "/v1/queues/thumbnails/report",
            Some(json!({"reports": 1})),
            400,
        ),
        call("openapi", "GET", "/v1/openapi.json", None, 200),
        call("listWorkflows", "GET", "/v1/workflows", None, 200),
        call("listRuns", "GET", "/v1/runs", None, 200),
        call(
            "listRuns",
            "GET",
            "/v1/runs?status=waiting&limit=1",
            None,
            200,
        ),
        call("listRuns", "GET", "/v1/runs?status=nonsense", None, 400),
        call(
            "startRun",
            "POST",
            "/v1/runs",
            Some(start_order.clone()),
            200,
        ),
        call(
            "startRun",
            "POST",
            "/v1/runs",
            Some(json!({"workflow": "place_order", "run_id": "x", "input": 1})),
            400,
        ),
        call(
            "startRun",
            "POST",
            "/v1/runs",
            Some(json!({"workflow": "nope", "run_id": "x"})),
            404,
        ),
        call(
            "startRun",
            "POST",
            "/v1/runs",
            Some(
                json!({"workflow": "approve_order", "run_id": "order-1", "input": {"id": "a", "cents": 1}}),
            ),
            409,
        ),
        call("getRun", "GET", "/v1/runs/order-1", None, 200),
        call("getRun", "GET", "/v1/runs/approval-1", None, 200),
        call("getRun", "GET", "/v1/runs/nobody", None, 404),
        call("getRunGraph", "GET", "/v1/runs/approval-1/graph", None, 200),
        call("getRunGraph", "GET", "/v1/runs/nobody/graph", None, 404),
        call(
            "getRunLocals",
            "GET",
            "/v1/runs/approval-1/locals",
            None,
            200,
        ),
        call(
            "getRunLocals",
            "GET",
            "/v1/runs/approval-1/locals?step=1",
            None,
            200,
        ),
        call(
            "getRunLocals",
            "GET",
            "/v1/runs/approval-1/locals?step=99",
            None,
            404,
        ),
        call(
            "getRunLocals",
            "GET",
            "/v1/runs/approval-1/locals?limit=0",
            None,
            400,
        ),
        call("getRunLocals", "GET", "/v1/runs/nobody/locals", None, 404),
        call("getRunCounts", "GET", "/v1/run_counts", None, 200),
        call(
            "getWorkflowGraph",
            "GET",
            "/v1/workflows/place_order/graph",
            None,
            200,
        ),
        call(
            "getWorkflowGraph",
            "GET",
            "/v1/workflows/place_order/graph?version=7",
            None,
            404,
        ),
        call(
            "getWorkflowGraph",
            "GET",
            "/v1/workflows/place_order/graph?version=x",
            None,
            400,
        ),
        call(
            "getWorkflowGraph",
            "GET",
            "/v1/workflows/nope/graph",
            None,
            404,
        ),
        call(
            "getHistory",
            "GET",
            "/v1/runs/order-1/history?limit=2",
            None,
            200,
        ),
        call(
            "getHistory",
            "GET",
            "/v1/runs/order-1/history?limit=zero",
            None,
            400,
        ),
        call("getHistory", "GET", "/v1/runs/nobody/history", None, 404),
        call(
            "getRecording",
            "GET",
            "/v1/runs/order-1/recording",
            None,
            200,
        ),
        call(
            "getRecording",
            "GET",
            "/v1/runs/nobody/recording",
            None,
            404,
        ),
        call(
            "signalRun",
            "POST",
            "/v1/runs/approval-1/signals/approval",
            Some(json!({"approved": 1})),
            400,
        ),
        call(
            "signalRun",
            "POST",
            "/v1/runs/nobody/signals/approval",
            Some(decision.clone()),
            404,
        ),
        call(
            "signalRun",
            "POST",
            "/v1/runs/approval-1/signals/approval",
            Some(decision.clone()),
            200,
        ),
        call(
            "signalRun",
            "POST",
            "/v1/runs/order-1/signals/approval",
            Some(decision.clone()),
            409,
        ),
        call(
            "completeCallback",
            "POST",
            &format!("/v1/callbacks/{complete_token}/complete"),
            Some(decision.clone()),
            200,
        ),
        call(
            "completeCallback",
            "POST",
            &format!("/v1/callbacks/{complete_token}/complete"),
            Some(decision.clone()),
            410,
        ),
        call(
            "failCallback",
            "POST",
            &format!("/v1/callbacks/{fail_token}/fail"),
            Some(json!({"error": "no"})),
            200,
        ),
        call(
            "failCallback",
            "POST",
            "/v1/callbacks/nope/fail",
            Some(json!({"error": 1})),
            400,
        ),
        call("cancelRun", "POST", "/v1/runs/approval-2/cancel", None, 200),
        call("cancelRun", "POST", "/v1/runs/order-1/cancel", None, 409),
        call("cancelRun", "POST", "/v1/runs/nobody/cancel", None, 404),
        call(
            "cancelRun",
            "POST",
            "/v1/runs/approval-2/cancel",
            Some(json!({"reason": "x"})),
            400,
        ),
        call(
            "redriveRun",
            "POST",
            "/v1/runs/approval-3/redrive",
            None,
            200,
        ),
        call("redriveRun", "POST", "/v1/runs/order-1/redrive", None, 409),
        call("redriveRun", "POST", "/v1/runs/nobody/redrive", None, 404),
        call(
            "redriveRun",
            "POST",
            "/v1/runs/approval-3/redrive",
            Some(json!({"why": "x"})),
            400,
        ),
        call(
            "heartbeatCallback",
            "POST",
            "/v1/callbacks/nope/heartbeat",
            None,
            410,
        ),
        call("metrics", "GET", "/metrics", None, 200),
    ];

    // Every documented operation is walked, and nothing else.
    let mut documented = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            documented.insert(
                id.to_string(),
                (method.to_uppercase(), path.clone(), operation.clone()),
            );
        }
    }
    let walked: BTreeSet<String> = calls.iter().map(|c| c.operation.to_string()).collect();
    assert_eq!(walked, documented.keys().cloned().collect::<BTreeSet<_>>());

    for c in &calls {
        let (method, template, operation) = &documented[c.operation];
        assert_eq!(method, c.method, "{}", c.operation);
        let shape = template.split('/').count();
        assert_eq!(
            c.path.split('?').next().unwrap().split('/').count(),
            shape,
            "{}",
            c.path
        );
        let request = match c.method {
            "GET" => server.client.get(server.at(&c.path)),
            _ => server
                .client
                .post(server.at(&c.path))
                .header("content-type", "application/json"),
        };
        let request = match &c.body {
            Some(body) => request.body(body.to_string()),
            None => request,
        };
        let response = request.send().await.unwrap();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        if c.operation == "metrics" {
            // Text, as the document says (`flow-server/tests/metrics.rs` checks it).
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            assert_eq!(status, c.expect, "{text:.300}");
            let documented = &operation["responses"]["200"]["content"];
            assert!(documented[&content_type].is_object(), "{content_type}");
            assert!(text.starts_with("# HELP flow_"), "{text:.300}");
            continue;
        }
        let bytes_answer = &operation["responses"][response.status().as_str()]["content"]
            ["application/octet-stream"];
        if bytes_answer.is_object() {
            // A recording: bytes that load as one.
            let what = format!("{} {} -> {}", c.method, c.path, response.status());
            assert_eq!(response.status().as_u16(), c.expect, "{what}");
            assert_eq!(content_type, "application/octet-stream", "{what}");
            let bytes = response.bytes().await.unwrap();
            let recorded = flow::testing::RecordedRun::from_bytes(&bytes, "answer").unwrap();
            assert_eq!(recorded.workflow, "place_order", "{what}");
            continue;
        }
        let (status, body) = common::answer(response).await;
        let what = format!("{} {} -> {status} {body:.300}", c.method, c.path);
        assert_eq!(status, c.expect, "{what}");
        assert_eq!(content_type, "application/json", "{what}");
        let documented = &operation["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "status {status} is not documented: {what}"
        );
        let schema = &documented["content"]["application/json"]["schema"];
        check_schema(&doc, schema, &body).unwrap_or_else(|e| panic!("{what}: {e}"));
        if let (Some(body), Some(request_body)) = (&c.body, operation.get("requestBody")) {
            if status == 200 {
                let schema = &request_body["content"]["application/json"]["schema"];
                check_schema(&doc, schema, body)
                    .unwrap_or_else(|e| panic!("request of {what}: {e}"));
            }
        }
    }

    // Methods the document does not list for a path are refused; so are other paths.
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{run_id}", "order-1")
            .replace("{name}", "approval")
            .replace("{token}", "nope")
            .replace("{queue}", "thumbnails");
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if item.get(method.to_lowercase()).is_some() {
                continue;
            }
            let request = server
                .client
                .request(method.parse().unwrap(), server.at(&concrete))
                .header("content-type", "application/json");
            let (status, body) = common::answer(request.send().await.unwrap()).await;
            assert_eq!(status, 405, "{method} {concrete}: {body}");
            check_schema(&doc, &json!({"$ref": "#/components/schemas/Error"}), &body).unwrap();
        }
    }
    let (status, body) = server.get("/v1/runs/order-1/unknown").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("no_route")));
    server.stop().await;
}

#[test]
fn the_schemas_reject_what_the_api_never_sends() {
    let doc = flow_server::openapi::document();
    let run = json!({"$ref": "#/components/schemas/Run"});
    let error = json!({"$ref": "#/components/schemas/Error"});
    assert!(check_schema(&doc, &error, &json!({"code": "x"})).is_err());
    assert!(check_schema(&doc, &error, &json!({"code": "x", "message": ""})).is_err());
    assert!(check_schema(&doc, &run, &json!({"run_id": "x"})).is_err());
    assert!(check_schema(&doc, &error, &json!({"code": "x", "message": "y"})).is_ok());

    // A step's saved local always says its source name (null when unknown) and type.
    let step = json!({"$ref": "#/components/schemas/StepLocals"});
    let with = |local: Value| {
        json!({"step": 1, "state": 1, "pc": 2, "name": "signal:approval",
            "locals": [local], "scheduled": null, "completed": null})
    };
    let named = json!({"slot": 0, "name": "order", "type": "Approval", "value": 1});
    let unknown = json!({"slot": 0, "name": null, "type": null, "value": 1});
    let nameless = json!({"slot": 0, "value": 1});
    let numbered = json!({"slot": 0, "name": 3, "type": null, "value": 1});
    assert!(check_schema(&doc, &step, &with(named)).is_ok());
    assert!(check_schema(&doc, &step, &with(unknown)).is_ok());
    assert!(check_schema(&doc, &step, &with(nameless)).is_err());
    assert!(check_schema(&doc, &step, &with(numbered)).is_err());
}
