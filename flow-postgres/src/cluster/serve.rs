//! Requests through the database: a caller leaves one in `flow_requests` for the
//! shard's owner and waits for its answer ([`ask`], [`answers`]); an owner applies the
//! requests of its shards and writes each answer back, fenced by the shard's lease
//! ([`run`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flow_runtime::FlowError;

use super::wire::{self, Answer, Request};
use super::Inner;
use crate::error::{query_error, retryable, storage};

/// How often the loops look at the table without a notification.
const POLL: Duration = Duration::from_millis(200);

/// Leaves `request` for `shard`'s owner and waits for the answer.
pub(crate) async fn ask(
    inner: &Arc<Inner>,
    id: &str,
    shard: u32,
    request: &Request,
) -> Result<Answer, FlowError> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    inner
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.to_string(), reply);
    let (body, shard) = (wire::encode(request), shard as i32);
    // The insert is idempotent: after a lost connection it is made again (on a new
    // one) until the server is back or the lease's length has passed.
    let began = Instant::now();
    let mut pause = Duration::from_millis(20);
    let left = loop {
        let (row_id, body) = (id.to_string(), body.clone());
        let attempt = inner
            .control
            .call_async(move |client| {
                client
                    .execute(
                        "INSERT INTO flow_requests (id, shard, body, answer, created_at) \
                         VALUES ($1, $2, $3, NULL, clock_timestamp()) \
                         ON CONFLICT (id) DO NOTHING",
                        &[&row_id, &shard, &body],
                    )
                    .and_then(|_| {
                        client.execute("SELECT pg_notify('flow_requests', $1)", &[&row_id])
                    })
            })
            .await;
        match attempt {
            Ok(Err(e)) if retryable(&e) && began.elapsed() < inner.ttl => {
                tracing::warn!(error = %e, "PostgreSQL is unreachable; leaving the request again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Ok(Err(e)) => break Err(query_error("leaving a request for another process", &e)),
            Ok(Ok(_)) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    if let Err(e) = left {
        inner
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        return Err(e);
    }
    let bytes = answer.await.map_err(|_| FlowError::EngineStopped {
        reason: "the cluster process was shut down while waiting for another process's answer"
            .into(),
    })?;
    wire::decode(&bytes, "answer")
}

/// Collects the answers to this process's requests until shutdown, deleting each
/// collected row.
pub(crate) async fn answers(inner: Arc<Inner>) {
    while !inner.stop.load(Ordering::Acquire) {
        tokio::select! {
            _ = tokio::time::sleep(POLL / 4) => {}
            _ = inner.wakes.answers.notified() => {}
            _ = inner.stopped.notified() => return,
        }
        let ids: Vec<String> = inner
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        if ids.is_empty() {
            continue;
        }
        let found = inner
            .control
            .call_async(move |client| {
                let rows = client.query(
                    "SELECT id, answer FROM flow_requests WHERE id = ANY($1) AND answer IS NOT NULL",
                    &[&ids],
                )?;
                let answered: Vec<(String, Vec<u8>)> =
                    rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                if !answered.is_empty() {
                    let done: Vec<&String> = answered.iter().map(|(id, _)| id).collect();
                    client.execute("DELETE FROM flow_requests WHERE id = ANY($1)", &[&done])?;
                }
                Ok::<_, postgres::Error>(answered)
            })
            .await;
        match found {
            Ok(Ok(answered)) => {
                let mut pending = inner.pending.lock().unwrap_or_else(|e| e.into_inner());
                for (id, answer) in answered {
                    if let Some(reply) = pending.remove(&id) {
                        let _ = reply.send(answer);
                    }
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "could not read answers; retrying"),
            Err(e) => tracing::warn!(error = %e, "could not read answers; retrying"),
        }
    }
}

/// Serves the requests left for this process's shards until shutdown.
pub(crate) async fn run(inner: Arc<Inner>) {
    while !inner.stop.load(Ordering::Acquire) {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = inner.wakes.requests.notified() => {}
            _ = inner.stopped.notified() => return,
        }
        let shards: Vec<i32> = inner.read_held().keys().map(|s| *s as i32).collect();
        if shards.is_empty() {
            continue;
        }
        let rows = inner
            .control
            .call_async(move |client| {
                client
                    .query(
                        "SELECT id, shard, body, \
                             created_at < clock_timestamp() - INTERVAL '2 seconds' \
                         FROM flow_requests \
                         WHERE shard = ANY($1) AND answer IS NULL ORDER BY created_at LIMIT 1000",
                        &[&shards],
                    )
                    .map(|rows| {
                        rows.iter()
                            .map(|r| Row {
                                id: r.get(0),
                                shard: r.get::<_, i32>(1) as u32,
                                body: r.get(2),
                                old: r.get(3),
                            })
                            .collect::<Vec<_>>()
                    })
            })
            .await;
        let rows = match rows {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not read requests; retrying");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read requests; retrying");
                continue;
            }
        };
        for row in rows {
            if !inner
                .serving
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(row.id.clone())
            {
                continue;
            }
            let inner = inner.clone();
            tokio::spawn(async move {
                serve_one(&inner, &row).await;
                inner
                    .serving
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&row.id);
            });
        }
    }
}

/// A request as the owner reads it.
struct Row {
    id: String,
    shard: u32,
    body: Vec<u8>,
    /// Left more than two seconds ago: a poll's caller has given up on it.
    old: bool,
}

/// Applies one request and writes its answer; leaves it unanswered (for this process
/// or the shard's next owner to serve again) when the shard's engine stopped under it.
async fn serve_one(inner: &Arc<Inner>, row: &Row) {
    let (id, shard, body) = (row.id.as_str(), row.shard, row.body.as_slice());
    let Some((engine, lease, answered)) = inner
        .read_held()
        .get(&shard)
        .map(|h| (h.engine.clone(), h.shared.lease.clone(), h.answered.clone()))
    else {
        return;
    };
    let request = match wire::decode::<Request>(body, "request") {
        Ok(request) => request,
        Err(e) => {
            let refused = Answer::Refused((&e).into());
            let _ = write_answer(inner, id, &lease, &refused).await;
            return;
        }
    };
    let is_delivery = matches!(request, Request::Deliver(_));
    let outcome: Result<Answer, FlowError> = match request {
        Request::Start {
            run_id,
            workflow,
            input,
        } => engine
            .start_encoded(&run_id, &workflow, &input)
            .await
            .map(Answer::from),
        Request::Deliver(delivery) => engine.deliver(id, delivery).await.map(Answer::from),
        Request::Wait { run_id } => engine.wait(&run_id).await.map(Answer::from),
        Request::Describe { run_id } => engine.describe(&run_id).await.map(Answer::from),
        Request::History { run_id } => engine.history(&run_id).await.map(Answer::from),
        // Tasks leased for a caller that gave up would wait for their heartbeat timeout.
        Request::Poll { .. } if row.old => Ok(Answer::Tasks(Vec::new())),
        Request::Poll { queue, worker, max } => {
            super::queues::poll_here(inner, &queue, &worker, max as usize)
                .await
                .map(Answer::Tasks)
        }
        Request::TaskHeartbeat { queue, token } => {
            engine.heartbeat_task(&queue, &token).map(Answer::Heartbeat)
        }
        Request::TaskReport {
            queue,
            token,
            report,
        } => super::queues::report_here(&engine, &queue, &token, report)
            .await
            .map(Answer::Report),
    };
    let answer = match outcome {
        Ok(answer) => answer,
        // The shard is being handed over, or its commits fail: not an answer.
        Err(FlowError::EngineStopped { .. } | FlowError::Storage { .. }) => return,
        Err(e) => Answer::Refused((&e).into()),
    };
    match write_answer(inner, id, &lease, &answer).await {
        Ok(true) if is_delivery => answered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(id.to_string()),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not write an answer; the request is served again")
        }
    }
}

/// Writes `answer` unless this process lost the shard's lease (then the next owner
/// answers); wakes the caller. Whether it was written.
async fn write_answer(
    inner: &Arc<Inner>,
    id: &str,
    lease: &Arc<crate::lease::Lease>,
    answer: &Answer,
) -> Result<bool, FlowError> {
    let (id, body) = (id.to_string(), wire::encode(answer));
    let (owner, fence, shard) = (lease.owner.clone(), lease.fence, lease.shard);
    let written = inner
        .control
        .call_async(move |client| {
            client.query(
                "WITH answered AS ( \
                     UPDATE flow_requests SET answer = $2 \
                     WHERE id = $1 AND answer IS NULL AND EXISTS ( \
                         SELECT 1 FROM flow_shards \
                         WHERE shard = $3 AND owner = $4 AND fence = $5 \
                             AND expires_at > clock_timestamp()) \
                     RETURNING id \
                 ) SELECT pg_notify('flow_answers', id) FROM answered",
                &[&id, &body, &shard, &owner, &fence],
            )
        })
        .await?
        .map_err(|e| query_error("writing a request's answer", &e))?;
    if written.is_empty() {
        return Err(storage("the shard's lease is no longer this process's"));
    }
    Ok(true)
}
