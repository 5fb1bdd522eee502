//! The email-link use case end to end: a run waiting on `wait_for_callback` hands out a
//! URL of the server's complete endpoint; one HTTP request to it resumes the run. The
//! server has an API token; the link works without it (the callback token is the
//! credential).

mod common;

use std::time::{Duration, Instant};

use common::{answer, assert_error, workflows::EMAILED_LINKS, TestServer};
use serde_json::{json, Value};

/// The link emailed for `order`, once the run's task has sent it (10 s at most).
async fn emailed_link(order: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let links = EMAILED_LINKS.lock().unwrap().clone();
        if let Some((_, link)) = links.into_iter().find(|(id, _)| id == order) {
            return link;
        }
        assert!(Instant::now() < deadline, "no link was emailed for {order}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn posting_to_the_emailed_link_resumes_the_run() {
    let token = flow_server::generate_token().unwrap();
    let server = TestServer::start(Some(&token)).await;
    let authorized = |request: reqwest::RequestBuilder| request.bearer_auth(&token);
    let start = |run_id: &str, order: &str| {
        let body = json!({"workflow": "approve_by_link", "run_id": run_id,
                          "input": {"id": order, "cents": 4500}});
        authorized(server.client.post(server.at("/v1/runs"))).json(&body)
    };
    let get =
        |run_id: &str| authorized(server.client.get(server.at(&format!("/v1/runs/{run_id}"))));

    assert_eq!(
        answer(start("link-1", "order-1").send().await.unwrap())
            .await
            .0,
        200
    );
    let link = emailed_link("order-1").await;
    assert!(
        link.starts_with(&format!("{}/v1/callbacks/flowcb_", server.url))
            && link.ends_with("/complete"),
        "{link}"
    );
    // The link may be out before the task's end is committed; then the run waits.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, run) = answer(get("link-1").send().await.unwrap()).await;
        assert_eq!(
            run["pending"]["name"], "callback:email_approval_link",
            "{run}"
        );
        if run["status"] == "waiting" {
            break;
        }
        assert!(Instant::now() < deadline, "the run never waited: {run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The click: one POST to the link, without the API token.
    let decision = json!({"approved": true, "by": "carol"});
    let (status, body) = answer(
        server
            .client
            .post(&link)
            .json(&decision)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body), (200, json!({"accepted": "completed"})));

    let deadline = Instant::now() + Duration::from_secs(10);
    let run = loop {
        let (_, run) = answer(get("link-1").send().await.unwrap()).await;
        if run["status"] == "completed" {
            break run;
        }
        assert!(Instant::now() < deadline, "the run did not resume: {run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(run["output"], json!({"Shipped": {"approved_by": "carol"}}));

    // The link is single-use: a second click is refused and changes nothing.
    let other = json!({"approved": false, "by": "mallory"});
    let (status, body) = answer(server.client.post(&link).json(&other).send().await.unwrap()).await;
    assert_error(status, &body, 410, "invalid_callback_token");
    let (_, again) = answer(get("link-1").send().await.unwrap()).await;
    assert_eq!(again["output"], run["output"]);

    declined_and_failed_links_reach_the_workflow(&server, &token).await;
    server.stop().await;
}

/// (On the same server: the links name the first server a test binary starts.)
async fn declined_and_failed_links_reach_the_workflow(server: &TestServer, token: &str) {
    for (run_id, order) in [("link-2", "order-2"), ("link-3", "order-3")] {
        let body = json!({"workflow": "approve_by_link", "run_id": run_id,
                          "input": {"id": order, "cents": 1}});
        let request = server.client.post(server.at("/v1/runs")).bearer_auth(token);
        assert_eq!(
            answer(request.json(&body).send().await.unwrap()).await.0,
            200
        );
    }
    let link = emailed_link("order-2").await;
    let (status, _) = answer(
        server
            .client
            .post(&link)
            .json(&json!({"approved": false, "by": "dave"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let run = wait_completed(server, token, "link-2").await;
    assert_eq!(
        run["output"],
        json!({"Rejected": {"reason": "declined by dave"}})
    );

    let fail = emailed_link("order-3").await.replace("/complete", "/fail");
    let request = server
        .client
        .post(&fail)
        .json(&json!({"error": "link expired"}));
    let (status, body) = answer(request.send().await.unwrap()).await;
    assert_eq!((status, body), (200, json!({"accepted": "failed"})));
    let run = wait_completed(server, token, "link-3").await;
    let reason = run["output"]["Rejected"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("link expired"), "{run}");
}

async fn wait_completed(server: &TestServer, token: &str, run_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let request = server.client.get(server.at(&format!("/v1/runs/{run_id}")));
        let (_, run) = answer(request.bearer_auth(token).send().await.unwrap()).await;
        if run["status"] == "completed" {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} did not complete: {run}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
