//! The OpenAPI 3.1 document of the API, served at `/v1/openapi.json`. Its schemas are
//! JSON Schema 2020-12; the crate's tests call every operation it lists on a live server
//! and check each answer's status and body against it.

use serde_json::{json, Value};

/// The OpenAPI document.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "flow",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Start, follow, signal and cancel durable workflow runs; complete \
                the callback tokens they hand out. Every error is a JSON body {code, message}."
        },
        "security": [{"bearer": []}, {}],
        "paths": {
            "/v1/openapi.json": {"get": op("openapi", "This document.", None, &[], &[(200, "Any")])},
            "/metrics": {"get": metrics_op()},
            "/v1/workflows": {"get": op("listWorkflows", "The workflows this server can start.", None, &[],
                &[(200, "WorkflowList")])},
            "/v1/workflows/{name}/graph": {"get": op("getWorkflowGraph",
                "The workflow's state graph as compiled (one state per await site), as data, Mermaid and DOT.",
                None, &[path("name"), query("version", "integer", "The version to draw (default: the newest registered).")],
                &[(200, "Graph"), (400, "Error"), (404, "Error")])},
            "/v1/runs": {
                "get": op("listRuns", "Runs in run ID order, a page at a time.", None, &[
                    query("status", "string", "Only runs with this status (see Run.status)."),
                    query("workflow", "string", "Only runs of this workflow."),
                    query("version", "integer", "Only runs on this version of their workflow."),
                    query("created_after_ms", "integer", "Only runs created at or after this time (ms since the Unix epoch)."),
                    query("created_before_ms", "integer", "Only runs created before this time."),
                    query("after", "string", "The previous page's `next`."),
                    query("limit", "integer", "Most runs to return (1 to 10000, default 100)."),
                ], &[(200, "RunList"), (400, "Error")]),
                "post": op("startRun", "Starts a run; idempotent for the same run ID, workflow and input.",
                    Some("StartRequest"), &[],
                    &[(200, "Run"), (400, "Error"), (404, "Error"), (409, "Error"), (413, "Error"), (415, "Error")]),
            },
            "/v1/runs/{run_id}": {"get": op("getRun", "One run, with its input, output and pending step.", None,
                &[path("run_id")], &[(200, "Run"), (404, "Error")])},
            "/v1/runs/{run_id}/history": {"get": op("getHistory", "The run's events, oldest first, a page at a time.", None, &[
                path("run_id"),
                query("after", "integer", "Only events after this sequence number (the previous page's `next`)."),
                query("limit", "integer", "Most events to return (1 to 1000, default 100)."),
            ], &[(200, "HistoryPage"), (400, "Error"), (404, "Error")])},
            "/v1/runs/{run_id}/recording": {"get": recording()},
            "/v1/runs/{run_id}/graph": {"get": op("getRunGraph",
                "The state graph of the version the run is on, with the states its steps were scheduled at marked visited and the one it waits at marked current; as data, Mermaid and DOT.",
                None, &[path("run_id")], &[(200, "Graph"), (404, "Error")])},
            "/v1/runs/{run_id}/locals": {"get": op("getRunLocals",
                "Time travel: the run's saved locals as they were when a step was scheduled, beside the step's StepScheduled event (what it asked for) and StepCompleted event (its output). With `step`, that one step (404 unknown_step when the journal has no state of it); else a page of steps.",
                None, &[
                    path("run_id"),
                    query("step", "integer", "Just this step (numbered from 0, as StepScheduled events number them)."),
                    query("from", "integer", "Without `step`: the steps from this one on (the previous page's `next`)."),
                    query("limit", "integer", "Without `step`: most steps to return (1 to 200, default 20)."),
                ], &[(200, "StepLocalsOrPage"), (400, "Error"), (404, "Error")])},
            "/v1/run_counts": {"get": op("getRunCounts",
                "How many runs stand in each status, in all and per workflow. Counted in the background and kept (a count is at most max(2 s, 10 times the last count's duration) old when served); `counts` is null while a first count of a large journal runs: ask again.",
                None, &[], &[(200, "RunCounts")])},
            "/v1/runs/{run_id}/signals/{name}": {"post": op("signalRun",
                "Sends a signal; the body is its payload, checked against the type the workflow awaits.",
                Some("Any"), &[path("run_id"), path("name")],
                &[(200, "Accepted"), (400, "Error"), (404, "Error"), (409, "Error"), (413, "Error"), (415, "Error")])},
            "/v1/runs/{run_id}/cancel": {"post": op("cancelRun", "Requests the run's cancellation (no body, or {}).", None,
                &[path("run_id")], &[(200, "Accepted"), (400, "Error"), (404, "Error"), (409, "Error"), (413, "Error"), (415, "Error")])},
            "/v1/runs/{run_id}/redrive": {"post": op("redriveRun",
                "Sets a failed, cancelled (or timed-out) or faulted run going again at the step it ended in (no body, or {}); a completed run is refused with 409.",
                None, &[path("run_id")], &[(200, "Accepted"), (400, "Error"), (404, "Error"), (409, "Error"), (413, "Error"), (415, "Error")])},
            "/v1/callbacks/{token}/complete": {"post": op("completeCallback",
                "Completes a callback: the waiting step gets the body as its value. Needs no API token.",
                Some("Any"), &[path("token")], &[(200, "CallbackDone"), (400, "Error"), (410, "Error"), (413, "Error"), (415, "Error")])},
            "/v1/callbacks/{token}/fail": {"post": op("failCallback",
                "Completes a callback with an error. Needs no API token.",
                Some("Failure"), &[path("token")], &[(200, "CallbackDone"), (400, "Error"), (410, "Error"), (415, "Error")])},
            "/v1/queues": {"get": op("listQueues",
                "The task queues the linked remote tasks (#[task(queue = ...)]) declare: tasks waiting, tasks leased, workers seen in the last 90 s.",
                None, &[], &[(200, "QueueList")])},
            "/v1/queues/{queue}/poll": {"post": op("pollTasks",
                "A worker's long poll: answers the moment a task is on the queue (or after wait_ms with none), with up to max tasks, each leased to the caller under its token.",
                Some("PollRequest"), &[path("queue")],
                &[(200, "TaskList"), (400, "Error"), (404, "Error"), (413, "Error"), (415, "Error")])},
            "/v1/queues/{queue}/heartbeat": {"post": op("heartbeatTask",
                "Extends a task's lease by its heartbeat timeout; says whether the run was cancelled. 409 when the task was handed out again, 410 when the attempt is over.",
                Some("TokenRequest"), &[path("queue")],
                &[(200, "HeartbeatAnswer"), (400, "Error"), (404, "Error"), (409, "Error"), (410, "Error"), (413, "Error"), (415, "Error"), (503, "Error")])},
            "/v1/queues/{queue}/complete": {"post": op("completeTask",
                "Reports a task finished with its output (a value of the task's output type; a Result as {\"Ok\": v} or {\"Err\": e}). Repeating the accepted report answers `duplicate`.",
                Some("CompleteRequest"), &[path("queue")],
                &[(200, "ReportAnswer"), (400, "Error"), (404, "Error"), (409, "Error"), (410, "Error"), (413, "Error"), (415, "Error"), (503, "Error")])},
            "/v1/queues/{queue}/fail": {"post": op("failTask",
                "Reports a task failed: retried by the task's policy (no sooner than retry_after_ms) when retryable (the default), else the workflow gets the error at once.",
                Some("FailRequest"), &[path("queue")],
                &[(200, "ReportAnswer"), (400, "Error"), (404, "Error"), (409, "Error"), (410, "Error"), (413, "Error"), (415, "Error"), (503, "Error")])},
            "/v1/queues/{queue}/report": {"post": op("reportTasks",
                "Up to 1000 completions and failures in one request, each judged alone; the answers come in order, each a report answer or an error with its status.",
                Some("ReportBatch"), &[path("queue")],
                &[(200, "ReportResults"), (400, "Error"), (413, "Error"), (415, "Error")])},
            "/v1/callbacks/{token}/heartbeat": {"post": op("heartbeatCallback",
                "Records a sign of life for a callback with a heartbeat interval (no body, or {}). Needs no API token.",
                None, &[path("token")], &[(200, "CallbackDone"), (400, "Error"), (410, "Error"), (413, "Error"), (415, "Error")])},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas(),
        }
    })
}

fn schemas() -> Value {
    let nullable_string = json!({"type": ["string", "null"]});
    let nullable_integer = json!({"type": ["integer", "null"], "minimum": 0});
    let status =
        json!({"enum": crate::views::STATUS_NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>()});
    let summary_properties = json!({
        "run_id": {"type": "string"},
        "workflow": {"type": "string"},
        "version": {"type": "integer", "minimum": 1, "description": "The workflow version the run is on."},
        "status": status,
        "reason": {"type": ["string", "null"], "description": "Why the run failed, faulted or is blocked."},
        "created_at_ms": {"type": "integer", "minimum": 0},
        "updated_at_ms": {"type": "integer", "minimum": 0},
        "steps": {"type": "integer", "minimum": 0},
    });
    let summary_required = json!([
        "run_id",
        "workflow",
        "version",
        "status",
        "reason",
        "created_at_ms",
        "updated_at_ms",
        "steps"
    ]);
    let mut run_properties = summary_properties.clone();
    run_properties["input"] =
        json!({"description": "The input of the run's current generation, as JSON."});
    run_properties["output"] =
        json!({"description": "The workflow's output once it completed, else null."});
    run_properties["pending"] =
        json!({"oneOf": [{"$ref": "#/components/schemas/Pending"}, {"type": "null"}]});
    let mut run_required = summary_required.clone();
    for field in ["input", "output", "pending"] {
        run_required
            .as_array_mut()
            .expect("an array")
            .push(json!(field));
    }
    json!({
        "Any": {"description": "Any JSON value."},
        "Error": object(json!({
            "code": {"type": "string", "minLength": 1},
            "message": {"type": "string", "minLength": 1},
        }), &["code", "message"]),
        "StartRequest": object(json!({
            "workflow": {"type": "string"},
            "run_id": {"type": "string"},
            "input": {"description": "The workflow's input: an object for a struct, an array for several arguments."},
        }), &["workflow", "run_id"]),
        "Failure": object(json!({"error": {"type": "string"}}), &["error"]),
        "RunSummary": object(summary_properties, &strings(&summary_required)),
        "Run": object(run_properties, &strings(&run_required)),
        "Pending": object(json!({
            "step": {"type": "integer", "minimum": 0},
            "name": {"type": "string"},
            "scheduled_at_ms": {"type": "integer", "minimum": 0},
            "attempt": nullable_integer,
            "last_error": nullable_string,
            "retry_at_ms": nullable_integer,
        }), &["step", "name", "scheduled_at_ms", "attempt", "last_error", "retry_at_ms"]),
        "RunList": object(json!({
            "runs": {"type": "array", "items": {"$ref": "#/components/schemas/RunSummary"}},
            "next": nullable_string,
        }), &["runs", "next"]),
        "Event": {
            "type": "object",
            "description": "One history event: its sequence number, time, type (e.g. StepCompleted) and the fields of that type, stored values rendered as JSON (a SignalReceived's position in the run's inbox is `inbox_seq`).",
            "properties": {
                "seq": {"type": "integer", "minimum": 0},
                "at_ms": {"type": "integer", "minimum": 0},
                "type": {"type": "string"},
            },
            "required": ["seq", "at_ms", "type"],
        },
        "HistoryPage": object(json!({
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
            "next": nullable_integer,
        }), &["events", "next"]),
        "WorkflowList": object(json!({
            "workflows": {"type": "array", "items": object(json!({
                "name": {"type": "string"},
                "version": {"type": "integer", "minimum": 1},
                "input_type": {"type": "string"},
                "signals": {"type": "array", "items": object(json!({
                    "name": {"type": "string"},
                    "type": {"type": ["string", "null"]},
                }), &["name", "type"])},
                "signals_closed": {"type": "boolean"},
            }), &["name", "version", "input_type", "signals", "signals_closed"])},
        }), &["workflows"]),
        "Graph": object(json!({
            "workflow": {"type": "string"},
            "version": {"type": "integer", "minimum": 1},
            "states": {"type": "array", "items": object(json!({
                "id": {"type": "string"},
                "name": {"type": "string"},
                "line": {"type": "integer"},
                "visited": {"type": "boolean"},
                "current": {"type": "boolean"},
            }), &["id", "name", "line", "visited", "current"])},
            "transitions": {"type": "array", "items": {
                "type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2}},
            "mermaid": {"type": "string"},
            "dot": {"type": "string"},
        }), &["workflow", "version", "states", "transitions", "mermaid", "dot"]),
        "StepLocals": object(json!({
            "step": {"type": "integer", "minimum": 0},
            "state": {"type": ["integer", "null"], "minimum": 0, "description": "The graph state the step was scheduled at."},
            "pc": {"type": ["integer", "null"], "minimum": 0, "description": "The machine's program counter then (where its next step resumes)."},
            "name": {"type": ["string", "null"]},
            "locals": {"oneOf": [{"type": "null"}, {"type": "array", "items": object(json!({
                "slot": {"type": "integer", "minimum": 0, "description": "Where the machine keeps the local."},
                "name": {"type": ["string", "null"], "description": "The local's name in the workflow's source (`x#2` for the second local named `x`); null when the server cannot tell (the run's workflow version is not registered here, its code changed, or the step predates an upgrade)."},
                "type": {"type": ["string", "null"], "description": "The local's type as the source spells it, when it does."},
                "value": {"description": "The local's value then, as JSON."},
            }), &["slot", "name", "type", "value"])}], "description": "Null when the journal kept no state for the step."},
            "scheduled": {"oneOf": [{"$ref": "#/components/schemas/Event"}, {"type": "null"}]},
            "completed": {"oneOf": [{"$ref": "#/components/schemas/Event"}, {"type": "null"}]},
        }), &["step", "state", "pc", "name", "locals", "scheduled", "completed"]),
        "StepLocalsOrPage": {"oneOf": [
            {"$ref": "#/components/schemas/StepLocals"},
            object(json!({
                "run_id": {"type": "string"},
                "steps": {"type": "array", "items": {"$ref": "#/components/schemas/StepLocals"}},
                "next": nullable_integer,
            }), &["run_id", "steps", "next"]),
        ]},
        "RunCounts": object(json!({
            "counts": {"oneOf": [{"type": "null"}, object(json!({
                "total": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
                "by_workflow": {"type": "object", "additionalProperties": {
                    "type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}},
                "as_of_ms": {"type": "integer", "minimum": 0},
                "took_ms": {"type": "integer", "minimum": 0},
            }), &["total", "by_workflow", "as_of_ms", "took_ms"])]},
        }), &["counts"]),
        "Accepted": object(json!({
            "run_id": {"type": "string"},
            "accepted": {"enum": ["signal", "cancel", "redrive"]},
        }), &["run_id", "accepted"]),
        "QueueList": object(json!({
            "queues": {"type": "array", "items": object(json!({
                "name": {"type": "string"},
                "pending": {"type": "integer", "minimum": 0},
                "leased": {"type": "integer", "minimum": 0},
                "workers": {"type": "array", "items": {"type": "string"}},
                "oldest_lease_age_ms": {"type": ["integer", "null"], "minimum": 0, "description": "How long the oldest lease has been held (ms); null with no lease."},
            }), &["name", "pending", "leased", "workers", "oldest_lease_age_ms"])},
        }), &["queues"]),
        "PollRequest": object(json!({
            "worker": {"type": "string", "maxLength": 200, "description": "A name for the worker, shown by GET /v1/queues."},
            "max": {"type": "integer", "minimum": 1, "maximum": 1000, "description": "Most tasks to take (default 1)."},
            "wait_ms": {"type": "integer", "minimum": 0, "maximum": 60000, "description": "How long to wait for a task (default 30000)."},
        }), &[]),
        "TaskList": object(json!({
            "tasks": {"type": "array", "items": object(json!({
                "token": {"type": "string", "description": "Names this lease in heartbeats and reports."},
                "queue": {"type": "string"},
                "task": {"type": "string"},
                "run_id": {"type": "string"},
                "idempotency_key": {"type": "string", "description": "The same for every attempt of this call."},
                "attempt": {"type": "integer", "minimum": 1},
                "args": {"description": "The task's arguments, an object keyed by parameter name."},
                "heartbeat_timeout_ms": {"type": "integer", "minimum": 0},
                "heartbeat_deadline_ms": {"type": "integer", "minimum": 0},
                "deadline_ms": {"type": "integer", "minimum": 0, "description": "The start-to-close deadline (ms since the Unix epoch)."},
            }), &["token", "queue", "task", "run_id", "idempotency_key", "attempt", "args",
                  "heartbeat_timeout_ms", "heartbeat_deadline_ms", "deadline_ms"])},
        }), &["tasks"]),
        "TokenRequest": object(json!({"token": {"type": "string"}}), &["token"]),
        "HeartbeatAnswer": object(json!({
            "cancel_requested": {"type": "boolean"},
            "heartbeat_deadline_ms": {"type": "integer", "minimum": 0},
        }), &["cancel_requested", "heartbeat_deadline_ms"]),
        "CompleteRequest": object(json!({
            "token": {"type": "string"},
            "output": {"description": "A value of the task's output type."},
        }), &["token", "output"]),
        "FailRequest": object(json!({
            "token": {"type": "string"},
            "error": {"type": "string"},
            "retryable": {"type": "boolean", "description": "Default true."},
            "retry_after_ms": {"type": "integer", "minimum": 0},
        }), &["token", "error"]),
        "ReportAnswer": object(json!({"result": {"enum": ["accepted", "duplicate"]}}), &["result"]),
        "ReportBatch": object(json!({
            "reports": {"type": "array", "maxItems": 1000, "items": {"oneOf": [
                {"$ref": "#/components/schemas/CompleteRequest"},
                {"$ref": "#/components/schemas/FailRequest"},
            ]}},
        }), &["reports"]),
        "ReportResults": object(json!({
            "results": {"type": "array", "items": {"oneOf": [
                {"$ref": "#/components/schemas/ReportAnswer"},
                object(json!({
                    "status": {"type": "integer", "minimum": 400, "maximum": 599},
                    "code": {"type": "string", "minLength": 1},
                    "message": {"type": "string", "minLength": 1},
                }), &["status", "code", "message"]),
            ]}},
        }), &["results"]),
        "CallbackDone": object(json!({
            "accepted": {"enum": ["completed", "failed", "heartbeat"]},
        }), &["accepted"]),
    })
}

fn strings(values: &Value) -> Vec<&str> {
    values
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A closed object schema: the API adds fields only with a new document.
fn object(properties: Value, required: &[&str]) -> Value {
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn op(
    id: &str,
    summary: &str,
    body: Option<&str>,
    parameters: &[Value],
    responses: &[(u16, &str)],
) -> Value {
    let mut operation = json!({
        "operationId": id,
        "summary": summary,
        "parameters": parameters,
        "responses": responses.iter().map(|(status, schema)| {
            (status.to_string(), json!({
                "description": if *status < 300 { "Success." } else { "An error; the message says what to do." },
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}},
            }))
        }).collect::<serde_json::Map<_, _>>(),
    });
    operation["responses"]["default"] = json!({
        "description": "Any other error (401 without the API token, 403 for a host other than loopback on a server without one, 503 once the engine stopped).",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    });
    if let Some(schema) = body {
        operation["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}},
        });
    }
    operation
}

/// `GET /metrics`: text, not JSON, on success.
fn metrics_op() -> Value {
    let mut operation = op(
        "metrics",
        "The engine's metrics in Prometheus' text exposition format (version 0.0.4). Needs the \
         API token when the server has one, like every endpoint but the callbacks'.",
        None,
        &[],
        &[(200, "Any")],
    );
    operation["responses"]["200"]["content"] = json!({
        crate::metrics::CONTENT_TYPE_TEXT: {"schema": {"type": "string"}},
    });
    operation
}

/// `GET /v1/runs/{run_id}/recording`: its success is bytes, not JSON.
fn recording() -> Value {
    let mut operation = op(
        "getRecording",
        "The run's recording (what Engine::export writes), for flow::testing::RecordedRun::from_bytes to replay against changed code in a test.",
        None,
        &[path("run_id")],
        &[(200, "Any"), (404, "Error")],
    );
    operation["responses"]["200"]["content"] = json!({
        "application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}},
    });
    operation
}

fn path(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

fn query(name: &str, ty: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": ty}})
}
