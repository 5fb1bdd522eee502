//! `GET /metrics`: the engine's metrics ([`Engine::metrics`](flow_runtime::Engine::metrics)) in Prometheus' text
//! exposition format (version 0.0.4), written here: the format is a few lines of text, not
//! worth a dependency.
//!
//! The endpoint is guarded like every other: with an API token configured, a scraper sends
//! it (`authorization: {credentials: TOKEN}` in Prometheus' scrape config); without one,
//! only requests addressed to a loopback host are answered. Labels are workflow and task
//! names only (bounded by the program's code), never run IDs.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use flow_runtime::{Histogram, Metrics, QueueInfo};
use std::fmt::Write;

use crate::routes::AppState;

/// The content type of the text exposition format.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The handler of `GET /metrics`.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = render(&state.engine.metrics());
    text.push_str(&render_queues(&state.engine.queues()));
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_TEXT));
    response
}

/// Renders `metrics` in Prometheus' text exposition format: each family's `# HELP` and
/// `# TYPE` lines, then its samples. Gauges the engine cannot know (the sizes of a
/// journal not on files) are left out.
pub fn render(metrics: &Metrics) -> String {
    let mut out = String::new();
    let workflows = &metrics.workflows;

    family(
        &mut out,
        "flow_runs_started_total",
        "counter",
        "Runs created by this engine (started by a caller or a parent run, or forked), by workflow.",
    );
    for w in workflows {
        sample(
            &mut out,
            "flow_runs_started_total",
            &[("workflow", &w.workflow)],
            w.started,
        );
    }
    family(
        &mut out,
        "flow_runs_completed_total",
        "counter",
        "Runs that completed with a value (an Ok for a workflow returning a Result), by workflow.",
    );
    for w in workflows {
        sample(
            &mut out,
            "flow_runs_completed_total",
            &[("workflow", &w.workflow)],
            w.completed,
        );
    }
    family(
        &mut out,
        "flow_runs_failed_total",
        "counter",
        "Runs that ended without a value, by workflow and reason: returned_err (completed with an Err), failed, cancelled, faulted.",
    );
    for w in workflows {
        for (reason, value) in [
            ("returned_err", w.returned_err),
            ("failed", w.failed),
            ("cancelled", w.cancelled),
            ("faulted", w.faulted),
        ] {
            let labels = [("workflow", w.workflow.as_str()), ("reason", reason)];
            sample(&mut out, "flow_runs_failed_total", &labels, value);
        }
    }
    family(
        &mut out,
        "flow_runs_in_progress",
        "gauge",
        "Runs this engine is driving now (a step or a task attempt running or due); runs waiting for a timer, signal, callback or child are not counted.",
    );
    sample(
        &mut out,
        "flow_runs_in_progress",
        &[],
        metrics.runs_in_progress,
    );

    family(
        &mut out,
        "flow_task_attempt_duration_seconds",
        "histogram",
        "How long finished task attempts took, from start to result, by task.",
    );
    for t in &metrics.tasks {
        histogram(
            &mut out,
            "flow_task_attempt_duration_seconds",
            Some(("task", &t.task)),
            &t.attempt_seconds,
        );
    }
    family(
        &mut out,
        "flow_task_retries_total",
        "counter",
        "Failed task attempts scheduled to be tried again, by task.",
    );
    for t in &metrics.tasks {
        sample(
            &mut out,
            "flow_task_retries_total",
            &[("task", &t.task)],
            t.retries,
        );
    }

    family(
        &mut out,
        "flow_commit_batch_size",
        "histogram",
        "Changes per durable journal commit (one commit serves the changes of many runs).",
    );
    histogram(
        &mut out,
        "flow_commit_batch_size",
        None,
        &metrics.commits.batch_size,
    );
    family(
        &mut out,
        "flow_commit_duration_seconds",
        "histogram",
        "How long each durable journal commit took: log append, sync and apply.",
    );
    histogram(
        &mut out,
        "flow_commit_duration_seconds",
        None,
        &metrics.commits.duration_seconds,
    );

    if let Some(bytes) = metrics.journal_bytes {
        family(
            &mut out,
            "flow_journal_size_bytes",
            "gauge",
            "The journal file's size.",
        );
        sample(&mut out, "flow_journal_size_bytes", &[], bytes);
    }
    if let Some(bytes) = metrics.log_bytes {
        family(
            &mut out,
            "flow_log_size_bytes",
            "gauge",
            "The write-ahead log's size.",
        );
        sample(&mut out, "flow_log_size_bytes", &[], bytes);
    }
    out
}

/// How a queue gauge reads its value from a queue (`None`: no sample).
type QueueGauge = fn(&QueueInfo) -> Option<f64>;

/// Renders the task queues of remote tasks (`Engine::queues`) as gauges labelled by
/// queue: attempts pending and leased, live workers, and the oldest lease's age (only
/// for a queue with a lease). Nothing for a program without remote tasks.
pub fn render_queues(queues: &[QueueInfo]) -> String {
    let mut out = String::new();
    if queues.is_empty() {
        return out;
    }
    let gauges: [(&str, &str, QueueGauge); 4] = [
        (
            "flow_queue_pending_tasks",
            "Attempts of remote tasks waiting for a worker, by queue.",
            |q| Some(q.pending as f64),
        ),
        (
            "flow_queue_leased_tasks",
            "Attempts of remote tasks a worker holds, by queue.",
            |q| Some(q.leased as f64),
        ),
        (
            "flow_queue_workers",
            "Workers seen polling or heartbeating the queue in the last 90 seconds.",
            |q| Some(q.workers.len() as f64),
        ),
        (
            "flow_queue_oldest_lease_age_seconds",
            "How long the queue's oldest lease has been held (absent with no lease).",
            |q| q.oldest_lease_age_ms.map(|ms| ms as f64 / 1000.0),
        ),
    ];
    for (name, help, read) in gauges {
        family(&mut out, name, "gauge", help);
        for queue in queues {
            if let Some(value) = read(queue) {
                sample(&mut out, name, &[("queue", &queue.name)], value);
            }
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line; `value` is anything that prints as a Prometheus number.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape_label(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A histogram's `_bucket` lines (the last at `+Inf`), `_sum` and `_count`.
fn histogram(out: &mut String, name: &str, label: Option<(&str, &str)>, h: &Histogram) {
    let bucket = format!("{name}_bucket");
    for (bound, count) in &h.buckets {
        let le = bound.to_string();
        let labels: Vec<(&str, &str)> = label.into_iter().chain([("le", le.as_str())]).collect();
        sample(out, &bucket, &labels, count);
    }
    let labels: Vec<(&str, &str)> = label.into_iter().chain([("le", "+Inf")]).collect();
    sample(out, &bucket, &labels, h.count);
    let labels: Vec<(&str, &str)> = label.into_iter().collect();
    sample(out, &format!("{name}_sum"), &labels, h.sum);
    sample(out, &format!("{name}_count"), &labels, h.count);
}

/// A label value as the format quotes it: backslash, double quote and newline escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Help text as the format takes it: backslash and newline escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(&mut out, "m", &[("task", "a\"b\\c\nd"), ("x", "y")], 3);
        assert_eq!(out, "m{task=\"a\\\"b\\\\c\\nd\",x=\"y\"} 3\n");
        let mut out = String::new();
        sample(&mut out, "m", &[], 0.25);
        assert_eq!(out, "m 0.25\n");
    }
}
