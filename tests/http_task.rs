//! `flow::http`: durable HTTP calls against a tiny HTTP/1.1 server on loopback that
//! counts the requests it gets per path. Covers a JSON answer, retries of 503 and 429
//! (the latter honouring `Retry-After`), a 404 the workflow matches, oversized answers,
//! connection failures, and that a completed call is not sent again after an engine
//! crash.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flow::http::{self, HttpError};
use flow::{workflow, Engine, EventKind, RetryPolicy};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::{halting, Commits, TempJournal};

// ----- the test server --------------------------------------------------------------

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    at: Instant,
}

/// What the server answers: status, headers, body; `announce_length: false` sends the
/// body without `Content-Length` (ended by closing the connection).
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    announce_length: bool,
    /// How long the server waits before answering.
    delay: Duration,
}

impl Reply {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            announce_length: true,
            delay: Duration::ZERO,
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
}

type Log = Arc<Mutex<HashMap<String, Vec<Seen>>>>;

/// A loopback HTTP server; `route(path, n)` answers the `n`-th (1-based) request to
/// `path`. Each connection serves one request and is closed.
struct Server {
    base: String,
    seen: Log,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(route: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen: Log = Arc::default();
        let route = Arc::new(route);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (log, route) = (log.clone(), route.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &log, &*route).await;
                });
            }
        });
        Server { base, seen, task }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The requests `path` got so far.
    fn seen(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    fn count(&self, path: &str) -> usize {
        self.seen(path).len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    log: &Log,
    route: &(dyn Fn(&str, usize) -> Reply + Send + Sync),
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let n = {
        let mut log = log.lock().unwrap();
        let list = log.entry(path.clone()).or_default();
        list.push(Seen {
            method,
            headers,
            body,
            at: Instant::now(),
        });
        list.len()
    };
    let reply = route(&path, n);
    tokio::time::sleep(reply.delay).await;
    let mut out = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
    if reply.announce_length {
        out.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes()).await?;
    stream.write_all(&reply.body).await?;
    stream.shutdown().await
}

/// A retry policy with short back-offs, so that retry tests take milliseconds.
fn quick(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_interval: Duration::from_millis(20),
        backoff_rate: 1.0,
        max_interval: Duration::from_secs(5),
        jitter: 0.0,
    }
}

// ----- workflows --------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    name: String,
    count: u64,
}

/// GETs an item as JSON, then POSTs it back with its count doubled; returns both.
#[workflow]
async fn get_and_post(base: String) -> Result<(Item, String), HttpError> {
    let got = http::get(format!("{base}/item")).await?;
    let item: Item = got.json()?;
    let doubled = Item {
        name: item.name.clone(),
        count: item.count * 2,
    };
    let posted = http::post(format!("{base}/echo"))
        .json(&doubled)?
        .header("X-Trace", "t-1")
        .await?;
    Ok((item, posted.text()?.to_string()))
}

/// One call with the given retry policy; the status and body on success.
#[workflow]
async fn fetch(url: String, retry: RetryPolicy) -> Result<(u16, String), HttpError> {
    let answer = http::get(url).retry(retry).await?;
    Ok((answer.status, answer.text()?.to_string()))
}

/// Tells a missing resource (404) from other failures by matching the typed error.
#[workflow]
async fn lookup(url: String) -> Result<String, HttpError> {
    match http::get(url).await {
        Ok(answer) => Ok(format!("found {}", answer.text()?)),
        Err(HttpError::Status {
            status: 404, body, ..
        }) => Ok(format!("missing: {}", String::from_utf8_lossy(&body))),
        Err(e) => Err(e),
    }
}

/// One call limited to `limit` answer bytes.
#[workflow]
async fn limited(url: String, limit: u64) -> Result<usize, HttpError> {
    let answer = http::get(url).max_response_bytes(limit).await?;
    Ok(answer.body.len())
}

/// Calls `/once`, then waits for the signal `go`, then calls `/after`.
#[workflow]
async fn call_then_wait(base: String) -> Result<String, HttpError> {
    let first = http::get(format!("{base}/once")).await?;
    let go = flow::signal::<bool>("go").await;
    let second = http::get(format!("{base}/after")).await?;
    Ok(format!("{}+{go}+{}", first.text()?, second.text()?))
}

fn builder() -> flow::EngineBuilder {
    Engine::builder()
        .register::<get_and_post>()
        .register::<fetch>()
        .register::<lookup>()
        .register::<limited>()
        .register::<call_then_wait>()
}

async fn run<W>(id: &str, call: W) -> <W as flow::Workflow>::Output
where
    W: flow::Workflow,
{
    let engine = builder().open_in_memory().await.unwrap();
    let handle = engine.start(id, call).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), handle.result())
        .await
        .expect("the run finishes within 30 s")
        .unwrap();
    engine.shutdown().await;
    out
}

// ----- tests ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_answer_and_json_post() {
    let server = Server::start(|path, _| match path {
        "/item" => Reply::new(200, r#"{"name":"bolt","count":21}"#)
            .header("Content-Type", "application/json"),
        "/echo" => Reply::new(201, "stored"),
        _ => Reply::new(404, "no route"),
    })
    .await;
    let out = run("json", get_and_post(server.base.clone())).await;
    let item = Item {
        name: "bolt".into(),
        count: 21,
    };
    assert_eq!(out, Ok((item, "stored".to_string())));
    assert_eq!(server.count("/item"), 1);
    let posts = server.seen("/echo");
    assert_eq!(posts.len(), 1);
    let post = &posts[0];
    assert_eq!(post.method, "POST");
    assert_eq!(post.body, br#"{"name":"bolt","count":42}"#);
    let header = |name: &str| {
        post.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(header("x-trace").as_deref(), Some("t-1"));
    let key = header("idempotency-key").expect("an idempotency key is sent");
    assert_eq!(key, "json/1", "the key names the run and the step");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_unavailable_twice_then_ok_takes_three_requests() {
    let server = Server::start(|_, n| {
        if n <= 2 {
            Reply::new(503, "busy")
        } else {
            Reply::new(200, "done")
        }
    })
    .await;
    let out = run("retry-503", fetch(server.url("/flaky"), quick(5))).await;
    assert_eq!(out, Ok((200, "done".to_string())));
    assert_eq!(server.count("/flaky"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_waits_for_retry_after() {
    let server = Server::start(|_, n| {
        if n == 1 {
            Reply::new(429, "slow down").header("Retry-After", "1")
        } else {
            Reply::new(200, "welcome")
        }
    })
    .await;
    // The policy alone would retry after 20 ms: the wait is Retry-After's.
    let out = run("retry-429", fetch(server.url("/limited"), quick(3))).await;
    assert_eq!(out, Ok((200, "welcome".to_string())));
    let seen = server.seen("/limited");
    assert_eq!(seen.len(), 2);
    let waited = seen[1].at - seen[0].at;
    assert!(
        waited >= Duration::from_millis(1000),
        "the retry came {waited:?} after the 429, before Retry-After's 1 s"
    );
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_is_a_typed_error_and_not_retried() {
    let server = Server::start(|_, _| Reply::new(404, "no such user")).await;
    let out = run("missing", lookup(server.url("/users/7"))).await;
    assert_eq!(out, Ok("missing: no such user".to_string()));
    assert_eq!(server.count("/users/7"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_server_error_reaches_the_workflow() {
    let server = Server::start(|_, n| Reply::new(500, format!("broken {n}"))).await;
    let out = run("exhausted", fetch(server.url("/down"), quick(3))).await;
    match out {
        Err(HttpError::Status { status, body, .. }) => {
            assert_eq!(status, 500);
            assert_eq!(body, b"broken 3", "the last attempt's answer");
        }
        other => panic!("expected a 500 status error, got {other:?}"),
    }
    assert_eq!(server.count("/down"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_answers_fail_without_retry() {
    let server = Server::start(|path, _| {
        let mut reply = Reply::new(200, vec![b'x'; 4000]);
        // Without Content-Length the limit is found while reading.
        reply.announce_length = path != "/streamed";
        reply
    })
    .await;
    for path in ["/announced", "/streamed"] {
        let out = run(&path[1..], limited(server.url(path), 1000)).await;
        match out {
            Err(HttpError::TooLarge {
                limit, received, ..
            }) => {
                assert_eq!(limit, 1000, "{path}");
                assert!(received > 1000, "{path}: received {received}");
            }
            other => panic!("{path}: expected TooLarge, got {other:?}"),
        }
        assert_eq!(server.count(path), 1, "{path} is not retried");
    }
    // Within the limit, the whole body arrives.
    let out = run("fits", limited(server.url("/streamed"), 4000)).await;
    assert_eq!(out, Ok(4000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_retried_then_reported() {
    // A port nothing listens on: bind, note the address, close.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let engine = builder().open_in_memory().await.unwrap();
    let handle = engine
        .start("refused", fetch(format!("http://{addr}/x"), quick(2)))
        .await
        .unwrap();
    let out = handle.result().await.unwrap();
    assert!(
        matches!(out, Err(HttpError::Connect { .. })),
        "expected Connect, got {out:?}"
    );
    let failed = engine
        .history("refused")
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::AttemptFailed { .. }))
        .count();
    assert_eq!(failed, 2, "both attempts failed");
    engine.shutdown().await;
}

/// The journal holds the first call's answer once the run waits for `go`: an engine
/// that crashes there and is reopened resumes the run without sending it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_call_is_not_sent_again_after_a_crash() {
    let server = Server::start(|path, n| Reply::new(200, format!("{path}#{n}"))).await;
    let waiting = |history: &[flow::HistoryEvent]| {
        history.iter().any(
            |e| matches!(&e.kind, EventKind::StepScheduled { name, .. } if name == "signal:go"),
        )
    };

    // A reference run: how many commits until the run waits for `go`.
    let reference = TempJournal::new("http-reference");
    let (counting, commits) = Commits::counting(builder());
    let engine = counting.open(reference.path()).await.unwrap();
    engine
        .start("ref", call_then_wait(server.base.clone()))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !waiting(&engine.history("ref").await.unwrap()) {
        assert!(Instant::now() < deadline, "the reference run never waited");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let k = commits.get();
    engine.shutdown().await;
    assert_eq!(server.count("/once"), 1);

    // The same run in an engine that halts, as if killed, right after commit k.
    let journal = TempJournal::new("http-crash");
    let (halting, commits) = halting(builder(), k);
    let engine = halting.open(journal.path()).await.unwrap();
    engine
        .start("run", call_then_wait(server.base.clone()))
        .await
        .unwrap();
    assert_eq!(commits.wait_for(k, Duration::from_secs(10)).await, k);
    engine.shutdown().await;
    assert_eq!(server.count("/once"), 2, "the crashed engine sent it once");

    // Reopened, the run continues from the journal: the answer is read back, not fetched.
    let engine = builder().open(journal.path()).await.unwrap();
    let handle = engine.handle::<call_then_wait>("run").unwrap();
    handle.signal("go", &true).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), handle.result())
        .await
        .expect("the resumed run finishes")
        .unwrap();
    assert_eq!(out, Ok("/once#2+true+/after#1".to_string()));
    assert_eq!(server.count("/once"), 2, "a completed call was sent again");
    let attempts = engine
        .history("run")
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::AttemptStarted { step: 0, .. }))
        .count();
    assert_eq!(attempts, 1, "the first call has one attempt in the journal");
    engine.shutdown().await;
}

/// In the test environment (virtual clock, no jitter) the retry waits exactly what
/// `Retry-After` asks, up to the policy's `max_interval`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_counts_on_the_virtual_clock_up_to_max_interval() {
    let server = Server::start(|path, n| match (path, n) {
        ("/two-minutes", 1) => Reply::new(503, "later").header("Retry-After", "120"),
        ("/an-hour", 1) => Reply::new(429, "much later").header("Retry-After", "3600"),
        _ => Reply::new(200, "ok"),
    })
    .await;
    let policy = RetryPolicy {
        max_interval: Duration::from_secs(300),
        ..quick(3)
    };
    for (path, waited) in [("/two-minutes", 120), ("/an-hour", 300)] {
        let env = flow::testing::TestEnv::new();
        let run = env
            .start(fetch(server.url(path), policy.clone()))
            .await
            .unwrap();
        assert_eq!(run.result().await.unwrap(), Ok((200, "ok".to_string())));
        assert_eq!(env.elapsed(), Duration::from_secs(waited), "{path}");
        assert_eq!(server.count(path), 2, "{path}");
    }
}

/// A call the engine's end interrupts is sent again when the run resumes, with the same
/// `Idempotency-Key`, so the server can tell the two apart from two separate calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_call_is_sent_again_with_the_same_idempotency_key() {
    let server = Server::start(|path, n| {
        let mut reply = Reply::new(200, format!("{path}#{n}"));
        if path == "/once" && n == 1 {
            reply.delay = Duration::from_secs(5);
        }
        reply
    })
    .await;
    let journal = TempJournal::new("http-interrupted");
    let engine = builder().open(journal.path()).await.unwrap();
    engine
        .start("run", call_then_wait(server.base.clone()))
        .await
        .unwrap();
    support::eventually("the first request", || server.count("/once") == 1).await;
    let stopped = Instant::now();
    engine.shutdown().await;
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "shutdown waited for the answer"
    );

    let engine = builder().open(journal.path()).await.unwrap();
    let handle = engine.handle::<call_then_wait>("run").unwrap();
    handle.signal("go", &true).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), handle.result())
        .await
        .expect("the resumed run finishes")
        .unwrap();
    assert_eq!(out, Ok("/once#2+true+/after#1".to_string()));
    let keys: Vec<String> = server
        .seen("/once")
        .iter()
        .map(|seen| {
            let key = seen.headers.iter().find(|(n, _)| n == "idempotency-key");
            key.expect("an idempotency key").1.clone()
        })
        .collect();
    assert_eq!(keys, ["run/0", "run/0"]);
    let after = &server.seen("/after")[0].headers;
    let key = after.iter().find(|(n, _)| n == "idempotency-key").unwrap();
    assert_eq!(key.1, "run/2", "another call has another key");
    engine.shutdown().await;
}
