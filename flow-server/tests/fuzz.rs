//! Bad input at every endpoint: malformed JSON, wrong types, huge, empty and deeply
//! nested bodies, unknown names, odd run IDs and tokens, stray query parameters, other
//! methods. Every answer must be JSON; every refusal a 4xx `{code, message}`; never a
//! 5xx (which a panicking handler would give).

mod common;

use common::TestServer;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

/// The endpoints, with `{}` where a path segment goes.
const TEMPLATES: [&str; 17] = [
    "/v1/openapi.json",
    "/v1/workflows",
    "/v1/runs",
    "/v1/runs/{}",
    "/v1/runs/{}/history",
    "/v1/runs/{}/signals/{}",
    "/v1/runs/{}/cancel",
    "/v1/callbacks/{}/complete",
    "/v1/callbacks/{}/fail",
    "/v1/callbacks/{}/heartbeat",
    "/v1/queues",
    "/v1/queues/{}/poll",
    "/v1/queues/{}/heartbeat",
    "/v1/queues/{}/complete",
    "/v1/queues/{}/fail",
    "/v1/queues/{}/report",
    "/v1/{}",
];

/// Path segments: real names, odd strings percent-encoded, and raw oddities (invalid
/// UTF-8 escapes, a lone `%`, dot segments).
fn segment() -> impl Strategy<Value = String> {
    let named = prop::sample::select(vec![
        "order-1",
        "approval-1",
        "place_order",
        "approval",
        "flowcb_00",
        "",
        "..",
        "%ff%fe",
        "%",
        "%2F",
        "%00",
        "%E2%80%AE",
    ])
    .prop_map(str::to_string);
    let any = any::<String>().prop_map(|s| percent_encode(&s));
    let long = (1usize..3000).prop_map(|n| "x".repeat(n));
    prop_oneof![named, any, long]
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        prop::sample::select(vec![
            "?limit=0",
            "?limit=-5",
            "?limit=1e9",
            "?limit=18446744073709551616",
            "?after=",
            "?status=",
            "?status=completed&status=waiting",
            "?created_after_ms=x",
            "?after=%ff",
            "?workflow=%00",
            "?after=99999999999999999999",
            "?=&&=",
        ])
        .prop_map(str::to_string),
        (any::<String>(), any::<String>()).prop_map(|(k, v)| format!(
            "?{}={}",
            percent_encode(&k),
            percent_encode(&v)
        )),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        prop::sample::select(vec!["place_order", "approve_order", "order-1", "approval"])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "workflow",
                    "run_id",
                    "input",
                    "error",
                    "card",
                    "items",
                    "total_cents",
                    "approved",
                    "by",
                    "id",
                    "cents",
                    "x",
                ])
                .prop_map(str::to_string),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies: none, random bytes, truncated or mangled JSON, JSON of any shape, start
/// requests with fields of the wrong types, deep nesting.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..64),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        json_value().prop_map(|v| {
            let text = v.to_string().into_bytes();
            text[..text.len() / 2].to_vec()
        }),
        (json_value(), json_value(), json_value()).prop_map(|(w, r, i)| {
            json!({"workflow": w, "run_id": r, "input": i})
                .to_string()
                .into_bytes()
        }),
        (1usize..5000).prop_map(|depth| "[".repeat(depth).into_bytes()),
        (1usize..300)
            .prop_map(|depth| format!("{}1{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
    ]
}

fn method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["GET", "POST", "POST", "POST", "PUT", "DELETE", "HEAD"])
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop::sample::select(vec![
        Some("application/json"),
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("text/plain"),
        None,
    ])
}

/// Sends one request; checks the answer is JSON, and a 4xx error unless it succeeded.
async fn probe(
    server: &TestServer,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<(), String> {
    let mut request = server
        .client
        .request(method.parse().unwrap(), server.at(path))
        .body(body);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("{method} {path}: no answer: {e}"))?;
    let status = response.status().as_u16();
    // A path with dot segments (`/v1/..`) may resolve to the web console's page, which
    // is HTML, not the API.
    let resolved = response.url().path().to_string();
    let text = response.text().await.map_err(|e| e.to_string())?;
    let what = format!("{method} {path:.200} -> {status} {text:.300}");
    if status == 200 && method == "GET" && (resolved == "/" || resolved.starts_with("/console/")) {
        return Ok(());
    }
    if method == "HEAD" {
        return if status < 500 { Ok(()) } else { Err(what) };
    }
    let body: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {what}"))?;
    if (200..300).contains(&status) {
        return Ok(());
    }
    if !(400..500).contains(&status) {
        return Err(format!("not a 4xx: {what}"));
    }
    let has = |field: &str| body[field].as_str().is_some_and(|s| !s.is_empty());
    if !has("code") || !has("message") {
        return Err(format!("not an error body: {what}"));
    }
    Ok(())
}

#[test]
fn every_bad_request_gets_a_4xx_json_error() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(async {
        let server = TestServer::start(None).await;
        // Runs the fuzzer can find by name: one finished, one waiting for a signal.
        let order = json!({"card": "4242", "items": ["lamp"], "total_cents": 1});
        server
            .post(
                "/v1/runs",
                &json!({"workflow": "place_order", "run_id": "order-1", "input": order}),
            )
            .await;
        let input = json!({"id": "a", "cents": 1});
        server
            .post(
                "/v1/runs",
                &json!({"workflow": "approve_order", "run_id": "approval-1", "input": input}),
            )
            .await;
        server
    });

    let strategy = (
        method(),
        prop::sample::select(TEMPLATES.to_vec()),
        segment(),
        segment(),
        query(),
        content_type(),
        body(),
    );
    let mut runner = TestRunner::new(Config {
        cases: 600,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&strategy, |(method, template, a, b, query, ct, body)| {
        let path = format!(
            "{}{query}",
            template.replacen("{}", &a, 1).replacen("{}", &b, 1)
        );
        runtime
            .block_on(probe(&server, method, &path, ct, body))
            .map_err(TestCaseError::fail)
    });
    runtime.block_on(server.stop());
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

#[test]
fn huge_empty_and_deep_bodies_at_every_post_endpoint() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = TestServer::start(None).await;
        let huge = format!("\"{}\"", "a".repeat(flow::MAX_PAYLOAD_BYTES));
        let deep = "[".repeat(100_000);
        let posts = [
            "/v1/runs",
            "/v1/runs/order-1/signals/approval",
            "/v1/runs/order-1/cancel",
            "/v1/callbacks/flowcb_00/complete",
            "/v1/callbacks/flowcb_00/fail",
            "/v1/callbacks/flowcb_00/heartbeat",
            "/v1/queues/thumbnails/poll",
            "/v1/queues/thumbnails/heartbeat",
            "/v1/queues/thumbnails/complete",
            "/v1/queues/thumbnails/fail",
            "/v1/queues/thumbnails/report",
        ];
        for path in posts {
            for body in [
                huge.as_bytes(),
                deep.as_bytes(),
                b"",
                b"   ",
                b"{",
                b"\xff\xfe",
            ] {
                let ct = Some("application/json");
                if let Err(e) = probe(&server, "POST", path, ct, body.to_vec()).await {
                    panic!("{e}");
                }
            }
        }
        server.stop().await;
    });
}
