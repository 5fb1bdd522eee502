//! Where the commands get their answers: a flow-server over HTTP (`--url`), or a journal
//! file read directly (`--journal`). Both answer with the server's JSON (the journal
//! backend builds it with `flow_server::views`), so every command prints the same either
//! way.

use std::path::Path;
use std::time::Duration;

use flow_runtime::testing::RecordedRun;
use flow_runtime::{Engine, FlowError, ListQuery, MAX_PAGE_RUNS};
use flow_server::views::{self, RunFilter};
use serde_json::{json, Value};

use crate::error::CliError;

/// Events asked for per history request (the server's most).
const HISTORY_PAGE: usize = 1000;
/// Steps per request of `locals` without a step (the server's most).
const LOCALS_PAGE: u64 = 200;

/// Which runs `flow runs` lists.
#[derive(Debug, Clone, Default)]
pub struct RunsQuery {
    /// A status name (`waiting`, `failed`, ...).
    pub status: Option<String>,
    pub workflow: Option<String>,
    pub version: Option<u32>,
    /// Created at or after, ms since the Unix epoch.
    pub since_ms: Option<u64>,
    /// Created before, ms since the Unix epoch.
    pub until_ms: Option<u64>,
    /// The previous page's `next`.
    pub after: Option<String>,
    pub limit: usize,
}

/// A write the journal backend refuses.
pub fn read_only_refusal(command: &str) -> CliError {
    CliError::usage(format!(
        "`flow {command}` changes runs, and --journal only reads the journal; send it to \
         the server that has the journal open: --url URL (or FLOW_URL)"
    ))
}

/// Whose graph `flow graph` draws.
pub enum GraphTarget {
    /// A workflow's, at a version or the newest.
    Workflow {
        /// Its registered name.
        name: String,
        /// The version; the newest registered when `None`.
        version: Option<u32>,
    },
    /// The graph of the version a run is on, with its path marked.
    Run(String),
}

/// `flow graph` with `--journal`, refused.
pub fn graph_needs_url() -> CliError {
    CliError::usage(
        "`flow graph` needs --url: a workflow's graph is compiled into its code, which the          server has and a journal does not",
    )
}

/// `flow workflows` with `--journal`, refused.
pub fn workflows_need_url() -> CliError {
    CliError::usage(
        "`flow workflows` needs --url: a journal holds runs, not the workflows' code; ask \
         the server that serves them",
    )
}

/// `flow queues` with `--journal`, refused.
pub fn queues_need_url() -> CliError {
    CliError::usage(
        "`flow queues` needs --url: task queues and their workers live in the engine's \
         memory, not in the journal; ask the server that has the journal open",
    )
}

/// A flow-server's `/v1` API.
pub struct Http {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl Http {
    /// A client of the server at `url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(url: &str, token: Option<String>, timeout: Duration) -> Result<Http, CliError> {
        let base = url
            .trim_end_matches('/')
            .trim_end_matches("/v1")
            .to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CliError::usage(format!(
                "--url `{url}` is not an HTTP URL; give the server's address, e.g. \
                 --url http://127.0.0.1:8080"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| CliError::failed(format!("could not set up the HTTP client: {e}")))?;
        Ok(Http {
            base,
            token,
            client,
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, CliError> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        self.answer(response).await
    }

    /// A request that got no answer.
    fn unreachable(&self, e: &reqwest::Error) -> CliError {
        // reqwest's own message is generic; the causes say what happened.
        let mut causes = vec![e.to_string()];
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            causes.push(cause.to_string());
            source = cause.source();
        }
        CliError::failed(format!(
            "could not reach the flow server at {}: {}; check --url (or FLOW_URL) and that \
             the server is running",
            self.base,
            causes.join(": ")
        ))
    }

    /// The JSON body of a success, or the error an error answer says.
    async fn answer(&self, response: reqwest::Response) -> Result<Value, CliError> {
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| CliError::failed(format!("the server's answer could not be read: {e}")))?;
        let body: Value = serde_json::from_str(&text).map_err(|_| {
            CliError::failed(format!(
                "the server at {} answered {status} with something that is not JSON ({:.200}); \
                 is --url a flow server?",
                self.base, text
            ))
        })?;
        if status < 300 {
            return Ok(body);
        }
        let code = body["code"].as_str().unwrap_or("error");
        let message = body["message"]
            .as_str()
            .map_or_else(|| body.to_string(), str::to_string);
        let message = format!("{message} ({status} {code})");
        Err(match (status, code) {
            (404, "unknown_run" | "unknown_workflow" | "unknown_version" | "unknown_step") => {
                CliError::not_found(message)
            }
            _ => CliError::failed(message),
        })
    }

    /// GET `path`, whose success is bytes (errors are JSON as always).
    async fn bytes(&self, path: &str) -> Result<Vec<u8>, CliError> {
        let request = self.client.get(self.url(path));
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        if !response.status().is_success() {
            // The error answer, read as JSON by `send`'s rules.
            return Err(self.answer(response).await.err().unwrap_or_else(|| {
                CliError::failed("the server answered with an error status and no message")
            }));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CliError::failed(format!("the server's answer could not be read: {e}")))?;
        Ok(bytes.to_vec())
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1{path}", self.base)
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        self.send(self.client.get(self.url(path)).query(query))
            .await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        let request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        self.send(request).await
    }
}

/// A journal file, opened without the workflows' code (`EngineBuilder::inspect_only`).
pub struct Journal {
    engine: Engine,
}

impl Journal {
    /// Opens the journal at `path` to read it. Refuses a path with no journal (opening
    /// would create one) and a journal an engine has open.
    pub async fn open(path: &Path) -> Result<Journal, CliError> {
        let shown = path.display();
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() && meta.len() > 0 => {}
            Ok(_) => {
                return Err(CliError::usage(format!(
                    "`{shown}` is not a journal file (empty, or not a file); check --journal"
                )))
            }
            Err(e) => {
                return Err(CliError::usage(format!(
                    "there is no journal at `{shown}` ({e}); check --journal (or FLOW_JOURNAL)"
                )))
            }
        }
        let engine = Engine::builder()
            .inspect_only()
            .open(path)
            .await
            .map_err(|e| match e {
                FlowError::DatabaseAlreadyOpen { .. } => CliError::failed(format!(
                    "the journal `{shown}` is open in a running engine (a flow server or \
                     another program), which --journal cannot read beside; ask that engine's \
                     server instead: --url URL (or FLOW_URL)"
                )),
                other => CliError::failed(format!("could not open the journal: {other}")),
            })?;
        Ok(Journal { engine })
    }

    /// Closes the journal, releasing its lock; its files are left byte for byte as they
    /// were (see `EngineBuilder::inspect_only`).
    pub async fn close(self) {
        self.engine.shutdown().await;
    }
}

/// The backend a command talks to.
pub enum Backend {
    /// A flow-server.
    Http(Http),
    /// A journal file.
    Journal(Journal),
}

impl Backend {
    /// Runs as `GET /v1/runs` shows them: `{"runs": [...], "next": ...}`.
    pub async fn runs(&self, query: &RunsQuery) -> Result<Value, CliError> {
        match self {
            Backend::Http(http) => {
                let mut params: Vec<(&str, String)> = vec![("limit", query.limit.to_string())];
                let optional = [
                    ("status", query.status.clone()),
                    ("workflow", query.workflow.clone()),
                    ("version", query.version.map(|v| v.to_string())),
                    ("created_after_ms", query.since_ms.map(|t| t.to_string())),
                    ("created_before_ms", query.until_ms.map(|t| t.to_string())),
                    ("after", query.after.clone()),
                ];
                params.extend(
                    optional
                        .into_iter()
                        .filter_map(|(name, value)| value.map(|v| (name, v))),
                );
                http.get("/runs", &params).await
            }
            Backend::Journal(journal) => {
                let status = match &query.status {
                    None => None,
                    Some(name) => Some(views::status_kind(name).ok_or_else(|| {
                        let names: Vec<&str> =
                            views::STATUS_NAMES.iter().map(|(n, _)| *n).collect();
                        CliError::usage(format!(
                            "`{name}` is not a run status; use one of: {}",
                            names.join(", ")
                        ))
                    })?),
                };
                if !(1..=MAX_PAGE_RUNS).contains(&query.limit) {
                    return Err(CliError::usage(format!(
                        "--limit must be between 1 and {MAX_PAGE_RUNS}"
                    )));
                }
                let created_ms = (query.since_ms.is_some() || query.until_ms.is_some())
                    .then(|| query.since_ms.unwrap_or(0)..query.until_ms.unwrap_or(u64::MAX));
                let filter = RunFilter {
                    query: ListQuery {
                        after: query.after.clone(),
                        limit: Some(query.limit),
                        workflow: query.workflow.clone(),
                        version: query.version,
                        status,
                    },
                    created_ms,
                };
                Ok(views::list_json(&journal.engine, &filter).await?)
            }
        }
    }

    /// One run as `GET /v1/runs/{run_id}` shows it.
    pub async fn run(&self, run_id: &str) -> Result<Value, CliError> {
        match self {
            Backend::Http(http) => http.get(&format!("/runs/{}", segment(run_id)), &[]).await,
            Backend::Journal(journal) => Ok(views::run_json(&journal.engine, run_id).await?),
        }
    }

    /// The run's events after sequence number `after` (all of them with `None`), oldest
    /// first.
    pub async fn history(&self, run_id: &str, after: Option<u64>) -> Result<Vec<Value>, CliError> {
        let mut events = Vec::new();
        let mut after = after;
        loop {
            let page = match self {
                Backend::Http(http) => {
                    let mut params = vec![("limit", HISTORY_PAGE.to_string())];
                    if let Some(after) = after {
                        params.push(("after", after.to_string()));
                    }
                    let path = format!("/runs/{}/history", segment(run_id));
                    http.get(&path, &params).await?
                }
                Backend::Journal(journal) => {
                    let history = journal.engine.history(run_id).await?;
                    views::history_json(&history, after, usize::MAX)
                }
            };
            if let Some(page_events) = page["events"].as_array() {
                events.extend(page_events.iter().cloned());
            }
            match page["next"].as_u64() {
                Some(next) => after = Some(next),
                None => return Ok(events),
            }
        }
    }

    /// The run's saved locals at step `step` (as `GET /v1/runs/{run_id}/locals?step=K`
    /// answers), or at every step, oldest first, with `None`.
    pub async fn locals(&self, run_id: &str, step: Option<u64>) -> Result<Vec<Value>, CliError> {
        let path = format!("/runs/{}/locals", segment(run_id));
        if let Some(step) = step {
            let one = match self {
                Backend::Http(http) => http.get(&path, &[("step", step.to_string())]).await?,
                Backend::Journal(journal) => {
                    let page = views::locals_json(&journal.engine, run_id, step..step + 1).await?;
                    page["steps"].get(0).cloned().ok_or_else(|| {
                        CliError::not_found(format!(
                            "run `{run_id}` has no step {step}: it has scheduled fewer steps \
                             (`flow locals {run_id}` lists them)"
                        ))
                    })?
                }
            };
            return Ok(vec![one]);
        }
        let mut steps = Vec::new();
        let mut from = 0u64;
        loop {
            let page = match self {
                Backend::Http(http) => {
                    let query = [
                        ("from", from.to_string()),
                        ("limit", LOCALS_PAGE.to_string()),
                    ];
                    http.get(&path, &query).await?
                }
                // The journal at hand: every step at once (one history read).
                Backend::Journal(journal) => {
                    views::locals_json(&journal.engine, run_id, from..u64::MAX).await?
                }
            };
            if let Some(page_steps) = page["steps"].as_array() {
                steps.extend(page_steps.iter().cloned());
            }
            match page["next"].as_u64() {
                Some(next) if next > from => from = next,
                _ => return Ok(steps),
            }
        }
    }

    /// Starts run `run_id` of `workflow` with `input`; answers with the run.
    pub async fn start(
        &self,
        workflow: &str,
        run_id: &str,
        input: Value,
    ) -> Result<Value, CliError> {
        let body = json!({"workflow": workflow, "run_id": run_id, "input": input});
        self.http("start")?.post("/runs", &body).await
    }

    /// Sends signal `name` with `payload` to run `run_id`.
    pub async fn signal(
        &self,
        run_id: &str,
        name: &str,
        payload: &Value,
    ) -> Result<Value, CliError> {
        let path = format!("/runs/{}/signals/{}", segment(run_id), segment(name));
        self.http("signal")?.post(&path, payload).await
    }

    /// Requests run `run_id`'s cancellation.
    pub async fn cancel(&self, run_id: &str) -> Result<Value, CliError> {
        let path = format!("/runs/{}/cancel", segment(run_id));
        self.http("cancel")?.post(&path, &json!({})).await
    }

    /// Sets run `run_id` going again at the step it ended in.
    pub async fn redrive(&self, run_id: &str) -> Result<Value, CliError> {
        let path = format!("/runs/{}/redrive", segment(run_id));
        self.http("redrive")?.post(&path, &json!({})).await
    }

    /// Completes the callback that issued `token` with `payload`.
    pub async fn complete(&self, token: &str, payload: &Value) -> Result<Value, CliError> {
        let path = format!("/callbacks/{}/complete", segment(token));
        self.http("complete")?.post(&path, payload).await
    }

    /// Fails the callback that issued `token` with `error`.
    pub async fn fail_callback(&self, token: &str, error: &str) -> Result<Value, CliError> {
        let path = format!("/callbacks/{}/fail", segment(token));
        let body = json!({ "error": error });
        self.http("complete")?.post(&path, &body).await
    }

    /// Writes run `run_id`'s recording to `out` (from the server's
    /// `/v1/runs/{run_id}/recording`, or with `Engine::export`). Answers with the number
    /// of steps written.
    pub async fn export(&self, run_id: &str, out: &Path) -> Result<usize, CliError> {
        match self {
            Backend::Http(http) => {
                let path = format!("/runs/{}/recording", segment(run_id));
                let bytes = http.bytes(&path).await?;
                let recorded = RecordedRun::from_bytes(&bytes, "the server's answer")
                    .map_err(|e| CliError::failed(format!("the server sent no recording: {e}")))?;
                std::fs::write(out, &bytes).map_err(|e| {
                    CliError::failed(format!("could not write `{}`: {e}", out.display()))
                })?;
                Ok(recorded.steps.len())
            }
            Backend::Journal(journal) => {
                let recorded = journal.engine.export(run_id, out).await?;
                Ok(recorded.steps.len())
            }
        }
    }

    /// A state graph, as `GET /v1/workflows/{name}/graph` (or, for a run, `GET
    /// /v1/runs/{run_id}/graph`) answers it.
    pub async fn graph(&self, target: &GraphTarget) -> Result<Value, CliError> {
        let http = match self {
            Backend::Http(http) => http,
            Backend::Journal(_) => return Err(graph_needs_url()),
        };
        match target {
            GraphTarget::Workflow { name, version } => {
                let query: Vec<(&str, String)> =
                    version.iter().map(|v| ("version", v.to_string())).collect();
                let path = format!("/workflows/{}/graph", segment(name));
                http.get(&path, &query).await
            }
            GraphTarget::Run(run_id) => {
                http.get(&format!("/runs/{}/graph", segment(run_id)), &[])
                    .await
            }
        }
    }

    /// The workflows the server can start, as `GET /v1/workflows` lists them.
    pub async fn workflows(&self) -> Result<Value, CliError> {
        match self {
            Backend::Http(http) => http.get("/workflows", &[]).await,
            Backend::Journal(_) => Err(workflows_need_url()),
        }
    }

    /// The task queues of the server's remote tasks, as `GET /v1/queues` lists them.
    pub async fn queues(&self) -> Result<Value, CliError> {
        match self {
            Backend::Http(http) => http.get("/queues", &[]).await,
            Backend::Journal(_) => Err(queues_need_url()),
        }
    }

    fn http(&self, command: &str) -> Result<&Http, CliError> {
        match self {
            Backend::Http(http) => Ok(http),
            Backend::Journal(_) => Err(read_only_refusal(command)),
        }
    }

    /// Closes a journal; nothing for a server.
    pub async fn close(self) {
        if let Backend::Journal(journal) = self {
            journal.close().await;
        }
    }
}

/// `text` as one path segment: percent-encoded but for unreserved characters.
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("order-7"), "order-7");
        assert_eq!(segment("a/b c?d#é"), "a%2Fb%20c%3Fd%23%C3%A9");
    }
}
