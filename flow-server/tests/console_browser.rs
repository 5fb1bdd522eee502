//! The web console in a real browser (headless Chromium over WebDriver): the runs list,
//! a waiting run's graph with its state lit, the signal form resuming it; a failed run
//! redriven to completion; a remote task on the queues page, pending then leased; a run
//! ID, a payload and a worker's name made of HTML shown as text; the API token asked
//! for and used. `browser/mod.rs` sets the browser up (installing it with
//! the project's script when missing).
//!
//! `console_screenshots` (ignored; `scripts/screenshots.sh` runs it) writes the README's
//! screenshots under `docs/`.

mod browser;
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::TestServer;
use flow::{task, workflow};
use serde_json::json;

/// Whether `flaky_charge` fails (it panics, which fails a run whose task cannot carry
/// an error).
static CARD_READER_DOWN: AtomicBool = AtomicBool::new(true);

#[task(retry(max_attempts = 1))]
async fn flaky_charge(cents: u64) -> String {
    if CARD_READER_DOWN.load(Ordering::SeqCst) {
        panic!("card reader offline");
    }
    format!("charged {cents}")
}

/// One task call that fails until the card reader is back.
#[workflow]
async fn flaky_order(cents: u64) -> String {
    let receipt = flaky_charge(cents).await;
    format!("{receipt} for {cents}")
}

const TOKEN: &str = "browser-test-token-0123456789";
const XSS_ID: &str = "<script>alert(1)</script>";

async fn server() -> TestServer {
    let builder = common::workflows::builder().register::<flaky_order>();
    TestServer::start_with(builder, Some(TOKEN)).await
}

/// Starts `body` as a run over the API (with the token).
async fn start(server: &TestServer, body: serde_json::Value) {
    let response = server
        .client
        .post(server.at("/v1/runs"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn status(server: &TestServer, run_id: &str) -> String {
    let run: serde_json::Value = server
        .client
        .get(server.at(&format!("/v1/runs/{}", urlencode(run_id))))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    run["status"].as_str().unwrap_or_default().to_string()
}

async fn wait_status(server: &TestServer, run_id: &str, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = status(server, run_id).await;
        if now == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{run_id} is {now}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Fails if the page's scripts hit an error since it was loaded (`app.js` keeps them).
async fn no_script_errors(browser: &browser::Browser) {
    let errors = browser.eval("return window.flowConsoleErrors;").await;
    assert_eq!(errors, json!([]), "the console's scripts failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_lists_shows_and_acts_on_runs() {
    let Some(browser) = browser::browser("the_console_lists_shows_and_acts_on_runs").await else {
        return;
    };
    let server = server().await;
    start(
        &server,
        json!({"workflow": "approve_order", "run_id": "approval-7", "input": {"id": "order-7", "cents": 12000}}),
    )
    .await;
    start(
        &server,
        json!({"workflow": "flaky_order", "run_id": "flaky-1", "input": 4200}),
    )
    .await;
    start(
        &server,
        json!({"workflow": "place_order", "run_id": XSS_ID,
            "input": {"card": "4242", "items": ["<img src=x onerror=\"window.__xss=1\">"], "total_cents": 1}}),
    )
    .await;
    wait_status(&server, "approval-7", "waiting").await;
    wait_status(&server, "flaky-1", "failed").await;
    wait_status(&server, XSS_ID, "completed").await;

    // Without the token the API refuses the page's requests, and the page asks for it.
    browser.client.goto(&server.at("/")).await.unwrap();
    let panel = browser.wait_for("#token-panel:not([hidden])").await;
    assert!(panel.is_displayed().await.unwrap());
    let error = browser.text("#runs-message .note-error").await;
    assert!(error.contains("missing_token"), "{error}");
    browser.fill("#token-input", TOKEN).await;
    browser.click("#token-save").await;

    // The runs list, with counts per status.
    browser
        .wait_for(r#"tr[data-run-id="approval-7"] a.run-link"#)
        .await;
    let waiting = browser
        .wait_for(r#"#counts .chip[data-status="waiting"]"#)
        .await;
    assert_eq!(
        waiting.attr("data-count").await.unwrap().as_deref(),
        Some("1")
    );
    // Filtering by status keeps only the failed run.
    browser
        .click(r#"#counts .chip[data-status="failed"]"#)
        .await;
    browser
        .client
        .wait()
        .at_most(browser::WAIT)
        .for_element(fantoccini::Locator::Css(
            r#"#runs-body tr[data-run-id="flaky-1"]:only-child"#,
        ))
        .await
        .expect("the failed filter shows flaky-1 alone");
    browser.click(r#"#counts .chip[data-status=""]"#).await;

    // A waiting run: its graph lights the state it waits at.
    browser
        .click(r#"tr[data-run-id="approval-7"] a.run-link"#)
        .await;
    let current = browser.wait_for("#state-graph g.node.current").await;
    assert_eq!(
        current.attr("data-state").await.unwrap().as_deref(),
        Some("s1")
    );
    let lit = current.text().await.unwrap();
    assert!(lit.contains("signal"), "the lit state is `{lit}`");
    // The visited states before it are marked, the ones after are not.
    let visited = browser
        .wait_for(r#"#state-graph g.node[data-state="s0"]"#)
        .await;
    assert!(visited
        .attr("class")
        .await
        .unwrap()
        .unwrap()
        .contains("visited"));
    let ahead = browser
        .wait_for(r#"#state-graph g.node[data-state="s2"]"#)
        .await;
    assert!(!ahead
        .attr("class")
        .await
        .unwrap()
        .unwrap()
        .contains("visited"));
    assert_eq!(browser.text("#run-status").await, "waiting");
    let pending = browser.text("#pending").await;
    assert!(pending.contains("signal:approval"), "{pending}");
    // Time travel shows the order saved as a local at the waiting step.
    let locals = browser.text("#travel-locals").await;
    assert!(locals.contains("order-7"), "{locals}");
    // ...by its source name and type, the slot beside them.
    assert_eq!(browser.text("#travel-locals td.local-name").await, "order");
    assert!(
        locals.contains("Approval") && locals.contains("#0"),
        "{locals}"
    );

    // The signal form resumes it, after confirmation.
    browser.fill("#signal-name", "approval").await;
    browser
        .fill("#signal-payload", r#"{"approved": true, "by": "alice"}"#)
        .await;
    browser.click("#signal-send").await;
    let question = browser.text("#confirm-box .confirm p").await;
    assert!(question.contains("approval-7"), "{question}");
    assert_eq!(
        status(&server, "approval-7").await,
        "waiting",
        "nothing is sent before confirming"
    );
    browser.click("#confirm-yes").await;
    browser
        .wait_for(r#"#run-status[data-status="completed"]"#)
        .await;
    let output = browser.text("#run-output").await;
    assert!(output.contains("alice"), "{output}");
    browser
        .wait_for(r#"#state-graph g.node.terminal.visited[data-state="end"]"#)
        .await;

    no_script_errors(&browser).await;
    // A failed run: redrive, confirmed, completes it once its task works.
    browser
        .client
        .goto(&server.at("/#/runs/flaky-1"))
        .await
        .unwrap();
    browser
        .wait_for(r#"#run-status[data-status="failed"]"#)
        .await;
    let reason = browser.text("#run-header .note-error").await;
    assert!(reason.contains("card reader offline"), "{reason}");
    browser.wait_for("#timeline rect.bar.failed").await;
    CARD_READER_DOWN.store(false, Ordering::SeqCst);
    browser.click("#redrive-run").await;
    browser.click("#confirm-yes").await;
    browser
        .wait_for(r#"#run-status[data-status="completed"]"#)
        .await;
    assert!(browser.text("#run-output").await.contains("charged 4200"));

    no_script_errors(&browser).await;
    // A run waiting for its emailed callback link: the callback form completes it.
    start(
        &server,
        json!({"workflow": "approve_by_link", "run_id": "by-link-1", "input": {"id": "order-77", "cents": 5}}),
    )
    .await;
    wait_status(&server, "by-link-1", "waiting").await;
    let link = common::workflows::EMAILED_LINKS
        .lock()
        .unwrap()
        .iter()
        .find(|(order, _)| order == "order-77")
        .map(|(_, link)| link.clone())
        .expect("the approval link was emailed");
    let token = link.split('/').rev().nth(1).unwrap().to_string();
    browser
        .client
        .goto(&server.at("/#/runs/by-link-1"))
        .await
        .unwrap();
    browser
        .wait_for(r#"#run-status[data-status="waiting"]"#)
        .await;
    browser.fill("#callback-token", &token).await;
    browser
        .fill("#callback-value", r#"{"approved": true, "by": "bob"}"#)
        .await;
    browser.click("#callback-complete").await;
    browser.click("#confirm-yes").await;
    browser
        .wait_for(r#"#run-status[data-status="completed"]"#)
        .await;
    assert!(browser.text("#run-output").await.contains("bob"));

    // Cancel, confirmed, cancels a waiting run; "Back" sends nothing.
    start(
        &server,
        json!({"workflow": "approve_order", "run_id": "approval-9", "input": {"id": "order-9", "cents": 1}}),
    )
    .await;
    wait_status(&server, "approval-9", "waiting").await;
    browser
        .client
        .goto(&server.at("/#/runs/approval-9"))
        .await
        .unwrap();
    browser
        .wait_for(r#"#run-status[data-status="waiting"]"#)
        .await;
    browser.click("#cancel-run").await;
    browser.click("#confirm-no").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&server, "approval-9").await, "waiting");
    browser.click("#cancel-run").await;
    browser.click("#confirm-yes").await;
    browser
        .wait_for(r#"#run-status[data-status="cancelled"]"#)
        .await;
    no_script_errors(&browser).await;

    // The queues page: a remote task waiting for a worker, then leased by one whose name
    // is HTML (shown as text).
    start(
        &server,
        json!({"workflow": "thumbnail", "run_id": "thumb-1", "input": "cat.png"}),
    )
    .await;
    browser.client.goto(&server.at("/#/queues")).await.unwrap();
    browser
        .wait_for(r#"tr[data-queue="thumbnails"] td[data-pending="1"]"#)
        .await;
    let worker = "<b>worker-7</b>";
    let leased = server
        .engine
        .poll_tasks("thumbnails", worker, 1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    browser
        .wait_for(r#"tr[data-queue="thumbnails"] td[data-leased="1"]"#)
        .await;
    assert_eq!(
        browser
            .text(r#"tr[data-queue="thumbnails"] td.workers"#)
            .await,
        worker
    );
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('main b').length;")
            .await,
        json!(0)
    );
    no_script_errors(&browser).await;

    // HTML in a run ID and a payload shows as text and never runs.
    browser.client.goto(&server.at("/#/")).await.unwrap();
    let selector = format!(
        r#"tr[data-run-id="{}"] a.run-link"#,
        XSS_ID.replace('"', "\\\"")
    );
    let link = browser.wait_for(&selector).await;
    assert_eq!(link.text().await.unwrap(), XSS_ID);
    link.click().await.unwrap();
    browser
        .wait_for(r#"#run-status[data-status="completed"]"#)
        .await;
    assert_eq!(browser.text("#run-id").await, XSS_ID);
    let input = browser.text("#run-input").await;
    assert!(
        input.contains(r#"<img src=x onerror=\"window.__xss=1\">"#),
        "{input}"
    );
    let injected = browser
        .eval("return [document.querySelectorAll('main script, main img').length, window.__xss === undefined];")
        .await;
    assert_eq!(injected, json!([0, true]));
    assert!(
        browser.client.get_alert_text().await.is_err(),
        "an alert is open: the run ID ran as script"
    );
    no_script_errors(&browser).await;

    browser.close().await;
    server.stop().await;
}

/// Writes the README's screenshots of the console under `docs/` (run by
/// `scripts/screenshots.sh`): the runs page, a run's graph and timeline, time travel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/*.png; run by scripts/screenshots.sh"]
async fn console_screenshots() {
    let Some(browser) = browser::browser("console_screenshots").await else {
        return;
    };
    let docs = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs");
    std::fs::create_dir_all(&docs).unwrap();
    let server = server().await;
    for (i, items) in [
        vec!["lamp", "desk"],
        vec!["lamp", "unicorn"],
        vec!["book"],
        vec!["chair", "rug", "vase"],
    ]
    .into_iter()
    .enumerate()
    {
        let card = if i == 2 { "0000-1111" } else { "4242" };
        start(
            &server,
            json!({"workflow": "place_order", "run_id": format!("order-{}", 1001 + i),
                "input": {"card": card, "items": items, "total_cents": 4200 + 100 * i}}),
        )
        .await;
    }
    for i in 0..3 {
        start(
            &server,
            json!({"workflow": "approve_order", "run_id": format!("approval-{}", 7 + i),
                "input": {"id": format!("order-{}", 7 + i), "cents": 12000 + i}}),
        )
        .await;
    }
    start(
        &server,
        json!({"workflow": "flaky_order", "run_id": "flaky-1", "input": 4200}),
    )
    .await;
    wait_status(&server, "order-1002", "returned_err").await;
    wait_status(&server, "approval-7", "waiting").await;
    wait_status(&server, "flaky-1", "failed").await;
    let signal = server
        .client
        .post(server.at("/v1/runs/approval-8/signals/approval"))
        .bearer_auth(TOKEN)
        .json(&json!({"approved": true, "by": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signal.status(), 200);
    wait_status(&server, "approval-8", "completed").await;

    let shot = |name: &'static str, bytes: Vec<u8>| {
        let path = docs.join(name);
        std::fs::write(&path, bytes).unwrap();
        eprintln!("wrote {}", path.display());
    };
    browser.client.set_window_size(1400, 760).await.unwrap();
    browser.client.goto(&server.at("/")).await.unwrap();
    browser.fill("#token-input", TOKEN).await;
    browser.click("#token-save").await;
    browser.wait_for(r#"tr[data-run-id="order-1004"]"#).await;
    browser.wait_for("#counts .chip").await;
    shot(
        "console-runs.png",
        browser.client.screenshot().await.unwrap(),
    );

    browser.client.set_window_size(1400, 2600).await.unwrap();
    browser
        .client
        .goto(&server.at("/#/runs/order-1002"))
        .await
        .unwrap();
    browser.wait_for("#state-graph").await;
    browser.wait_for("#timeline rect.bar.failed").await;
    let graph = browser.wait_for("#graph-section").await;
    shot("console-graph.png", graph.screenshot().await.unwrap());
    let timeline = browser.wait_for("#timeline-section").await;
    shot("console-timeline.png", timeline.screenshot().await.unwrap());

    browser
        .client
        .goto(&server.at("/#/runs/approval-8"))
        .await
        .unwrap();
    browser.wait_for("#travel-locals").await;
    let step = browser.wait_for("#travel-step").await;
    step.select_by_value("2").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    browser.wait_for("#travel-locals").await;
    let travel = browser.wait_for("#time-travel").await;
    shot(
        "console-time-travel.png",
        travel.screenshot().await.unwrap(),
    );

    browser.close().await;
    server.stop().await;
}
