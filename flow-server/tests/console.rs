//! The web console over HTTP, without a browser (`console_browser.rs` clicks through it):
//! its files are served without the API token and under a strict content security
//! policy, the data behind it is not, and the endpoints it added answer with the right
//! values.

mod common;

use common::TestServer;
use serde_json::json;

const TOKEN: &str = "console-test-token-0123456789";

#[tokio::test]
async fn the_console_files_need_no_token_but_its_data_does() {
    let server = TestServer::start(Some(TOKEN)).await;
    for (path, media_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/run.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
    ] {
        let response = server.client.get(server.at(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], media_type, "{path}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(!response.text().await.unwrap().is_empty());
    }
    // The data the page shows is guarded as for any client.
    for path in ["/v1/runs", "/v1/run_counts", "/v1/runs/x/locals"] {
        let (status, body) = server.get(path).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("missing_token")),
            "{path}"
        );
    }
    // A form post from another site (not JSON, no token) is refused before any handler.
    let forged = server
        .client
        .post(server.at("/v1/runs/x/cancel"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=b")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    server.stop().await;
}

#[tokio::test]
async fn the_page_builds_no_html_from_data() {
    // The scripts never hand data to an HTML parser: no innerHTML, outerHTML,
    // insertAdjacentHTML, document.write or eval anywhere in them.
    let server = TestServer::start(None).await;
    for file in [
        "app", "api", "dom", "runs", "run", "graph", "timeline", "actions", "travel",
    ] {
        let path = format!("/console/{file}.js");
        let response = server.client.get(server.at(&path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let text = response.text().await.unwrap();
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ] {
            assert!(!text.contains(sink), "{path} uses {sink}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn locals_show_each_step_as_it_was_and_counts_add_up() {
    let server = TestServer::start(None).await;
    let approval = json!({"workflow": "approve_order", "run_id": "approval-1",
        "input": {"id": "order-1", "cents": 5}});
    assert_eq!(server.post("/v1/runs", &approval).await.0, 200);
    server.wait_for_status("approval-1", "waiting").await;

    // Step 1 waits for the signal, with the order saved as a local.
    let (status, step) = server.get("/v1/runs/approval-1/locals?step=1").await;
    assert_eq!(status, 200, "{step}");
    assert_eq!(step["step"], 1);
    assert_eq!(step["name"], "signal:approval");
    assert_eq!(step["state"], 1);
    assert_eq!(
        step["locals"],
        json!([{"slot": 0, "name": "order", "type": "Approval",
            "value": {"cents": 5, "id": "order-1"}}])
    );
    assert_eq!(step["scheduled"]["request"]["Signal"]["name"], "approval");
    assert_eq!(step["completed"], json!(null));

    let (status, body) = server.get("/v1/runs/approval-1/locals?step=2").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("unknown_step")));
    let (status, body) = server
        .get("/v1/runs/approval-1/locals?step=1&limit=3")
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_query"))
    );

    let decision = json!({"approved": true, "by": "alice"});
    let (status, _) = server
        .post("/v1/runs/approval-1/signals/approval", &decision)
        .await;
    assert_eq!(status, 200);
    server.wait_for_status("approval-1", "completed").await;

    // Every step, a page at a time; step 0's output is the task's (unit) result.
    let (status, page) = server.get("/v1/runs/approval-1/locals?limit=2").await;
    assert_eq!(status, 200, "{page}");
    let steps = page["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["name"], "ask_for_approval");
    assert_eq!(steps[0]["completed"]["output"], json!(null));
    assert_eq!(steps[0]["completed"]["type"], "StepCompleted");
    assert_eq!(steps[1]["completed"]["type"], "StepCompleted");
    assert_eq!(page["next"], 2);
    let (_, rest) = server.get("/v1/runs/approval-1/locals?from=2").await;
    let rest = rest["steps"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["name"], "ship_order");
    // The decision received is a local by then, under its source name.
    let named: Vec<_> = rest[0]["locals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["name"].clone(), l["value"].clone()))
        .collect();
    assert_eq!(
        named,
        vec![
            (json!("order"), json!({"cents": 5, "id": "order-1"})),
            (json!("d"), json!({"approved": true, "by": "alice"})),
        ]
    );

    let order = json!({"workflow": "place_order", "run_id": "order-1",
        "input": {"card": "4242", "items": ["lamp"], "total_cents": 1}});
    assert_eq!(server.post("/v1/runs", &order).await.0, 200);
    server.wait_for_status("order-1", "completed").await;
    // Counts are kept for two seconds at least; wait until they include the new run.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, counts) = server.get("/v1/run_counts").await;
        assert_eq!(status, 200);
        let counts = &counts["counts"];
        if counts["total"]["completed"] == 2 {
            assert_eq!(counts["total"]["waiting"], 0);
            assert_eq!(
                counts["by_workflow"]["place_order"],
                json!({"completed": 1})
            );
            assert_eq!(
                counts["by_workflow"]["approve_order"],
                json!({"completed": 1})
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{counts}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    server.stop().await;
}
