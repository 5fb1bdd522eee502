//! A live server on a loopback port, serving the demo workflows from an in-memory
//! journal, and the HTTP client the tests talk to it with.
#![allow(dead_code)]

#[path = "../../examples/demo_server/workflows.rs"]
pub mod workflows;

use std::time::{Duration, Instant};

use flow::Engine;
use flow_server::{Server, ServerOptions};
use serde_json::Value;
use tokio::sync::oneshot;

/// How long any one request may take before the test fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub engine: Engine,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl TestServer {
    /// Serves on an ephemeral loopback port; `token` as the API token.
    pub async fn start(token: Option<&str>) -> TestServer {
        TestServer::start_with(workflows::builder(), token).await
    }

    /// Serves the engine `builder` opens in memory (the demo workflows and others).
    pub async fn start_with(builder: flow::EngineBuilder, token: Option<&str>) -> TestServer {
        let engine = builder.open_in_memory().await.unwrap();
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
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .build()
            .unwrap();
        TestServer {
            url,
            engine,
            client,
            stop: Some(stop),
        }
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// GET `path`: status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        answer(self.client.get(self.at(path)).send().await.unwrap()).await
    }

    /// POST `body` as JSON to `path`: status and JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let request = self.client.post(self.at(path)).json(body);
        answer(request.send().await.unwrap()).await
    }

    /// Polls run `run_id` until its status is `status` (10 s at most).
    pub async fn wait_for_status(&self, run_id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (code, run) = self.get(&format!("/v1/runs/{run_id}")).await;
            assert_eq!(code, 200, "{run}");
            if run["status"] == status {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {run_id} never became {status}: {run}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.engine.shutdown().await;
    }
}

/// The status and JSON body of `response`; a body that is not JSON fails the test.
pub async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: the body is not JSON ({e}): {text:.300}"));
    (status, body)
}

/// Asserts `body` is an error answer: a non-empty `code` and `message`, nothing else.
pub fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body.as_object().map(|o| o.len()), Some(2), "{body}");
}
