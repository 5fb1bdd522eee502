//! Sharing the shards: each process counts the live processes (`flow_members`, renewed
//! by each one's loop), takes free shards up to its share (the shards over the live
//! processes, rounded up) with `FOR UPDATE SKIP LOCKED`, and hands over those above it.
//! A shard whose lease this process lost (paused or cut off past it) is dropped; it is
//! driven elsewhere.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use flow_runtime::FlowError;

use super::{Held, Inner};
use crate::conn::Conn;
use crate::error::{query_error, storage};
use crate::lease::{claim_free, Lease};
use crate::shard;

/// Balances every quarter of the lease (or when a shard is given up) until shutdown.
pub(crate) async fn run(inner: Arc<Inner>) {
    let every = inner.ttl / 4;
    while !inner.stop.load(Ordering::Acquire) {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = inner.wakes.shards.notified() => {}
            _ = inner.stopped.notified() => return,
        }
        if let Err(e) = round(&inner).await {
            tracing::warn!(error = %e, "could not balance the cluster's shards; retrying");
        }
    }
}

/// One round: renews membership, drops lost shards, then takes or hands over shards to
/// reach this process's share.
pub(crate) async fn round(inner: &Arc<Inner>) -> Result<(), FlowError> {
    let live = renew_membership(inner).await?;
    drop_lost(inner).await;
    let share = inner.shards.div_ceil(live.max(1)) as usize;
    let held = inner.read_held().len();
    if held > share {
        hand_over(inner, held - share).await;
    } else if held < share {
        take(inner, share - held).await?;
    }
    forget_answered(inner).await;
    Ok(())
}

/// Renews this process's row in `flow_members` and counts the live members, itself
/// included; also deletes long-expired members and old answered requests whose callers
/// never collected them.
async fn renew_membership(inner: &Arc<Inner>) -> Result<u32, FlowError> {
    let owner = inner.owner.clone();
    let ttl_ms = inner.ttl.as_millis() as i64;
    inner
        .control
        .call_async(move |client| {
            let doing = "renewing this process's membership of the cluster";
            client
                .execute(
                    "INSERT INTO flow_members (owner, expires_at) \
                     VALUES ($1, clock_timestamp() + ($2::BIGINT * INTERVAL '1 millisecond')) \
                     ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at",
                    &[&owner, &ttl_ms],
                )
                .map_err(|e| query_error(doing, &e))?;
            client
                .batch_execute(
                    "DELETE FROM flow_members \
                         WHERE expires_at < clock_timestamp() - INTERVAL '1 minute'; \
                     DELETE FROM flow_requests WHERE answer IS NOT NULL \
                         AND created_at < clock_timestamp() - INTERVAL '1 hour'",
                )
                .map_err(|e| query_error(doing, &e))?;
            let live: i64 = client
                .query_one(
                    "SELECT count(*) FROM flow_members WHERE expires_at > clock_timestamp()",
                    &[],
                )
                .map_err(|e| query_error(doing, &e))?
                .get(0);
            Ok(live.max(1) as u32)
        })
        .await?
}

/// Stops the engines of shards whose lease this process lost.
async fn drop_lost(inner: &Arc<Inner>) {
    let lost: Vec<u32> = inner
        .read_held()
        .iter()
        .filter(|(_, h)| h.shared.lease.lost.load(Ordering::Acquire))
        .map(|(shard, _)| *shard)
        .collect();
    for shard in lost {
        tracing::error!(
            shard,
            "this process lost the shard's lease; its runs go on elsewhere"
        );
        inner.lost.fetch_add(1, Ordering::Relaxed);
        stop_shard(inner, shard).await;
    }
}

/// Hands the `count` highest shards over: stops their engines, then gives their leases
/// up (and notifies the others).
async fn hand_over(inner: &Arc<Inner>, count: usize) {
    let shards: Vec<u32> = inner
        .read_held()
        .keys()
        .rev()
        .take(count)
        .copied()
        .collect();
    for shard in shards {
        tracing::info!(shard, "handing the shard over to another process");
        stop_shard(inner, shard).await;
    }
}

async fn stop_shard(inner: &Arc<Inner>, shard: u32) {
    let Some(held) = inner.write_held().remove(&shard) else {
        return;
    };
    held.engine.shutdown().await;
    inner.leases().remove(&shard);
    let shared = held.shared.clone();
    let _ = tokio::task::spawn_blocking(move || shared.release()).await;
}

/// Claims up to `count` free shards, one at a time (a claimed shard's lease is renewed
/// once its engine is open), and opens an engine on each.
async fn take(inner: &Arc<Inner>, count: usize) -> Result<(), FlowError> {
    for _ in 0..count {
        let (owner, ttl) = (inner.owner.clone(), inner.ttl);
        let lease = inner
            .control
            .call_async(move |client| claim_free(client, &owner, ttl, 1))
            .await??
            .pop();
        let Some(lease) = lease else {
            return Ok(());
        };
        let shard = lease.shard as u32;
        match open_shard(inner, lease).await {
            Ok(held) => {
                tracing::info!(shard, "driving the shard");
                inner.write_held().insert(shard, held);
                inner.wakes.requests.notify_one();
            }
            Err(e) => {
                tracing::error!(shard, error = %e, "could not open the shard; another process may take it");
            }
        }
    }
    Ok(())
}

/// Loads a claimed shard and opens its engine; a failure gives the lease up.
async fn open_shard(inner: &Arc<Inner>, lease: Lease) -> Result<Held, FlowError> {
    let config = inner.config.clone();
    let shard = lease.shard;
    let lease = Arc::new(lease);
    // Renewed from now on, while the shard loads.
    inner.leases().insert(shard as u32, lease.clone());
    let files = tokio::task::spawn_blocking(move || {
        let conn = Conn::connect(&config, &format!("shard-{shard}"))?;
        shard::load_files(shard::Renewal::Cluster, conn, lease)
    })
    .await
    .map_err(|e| storage(format!("opening shard {shard} failed: {e}")))
    .and_then(|files| files);
    let files = match files {
        Ok(files) => files,
        Err(e) => {
            inner.leases().remove(&(shard as u32));
            return Err(e);
        }
    };
    let shared = files.shared.clone();
    let name = format!("{} shard {shard}", inner.target);
    let engine = match shard::open_engine((inner.builder)(), files, &name).await {
        Ok(engine) => engine,
        Err(e) => {
            inner.leases().remove(&(shard as u32));
            let _ = tokio::task::spawn_blocking(move || shared.release()).await;
            return Err(e);
        }
    };
    let answered = Arc::new(Mutex::new(Vec::new()));
    forget_settled_deliveries(inner, &engine).await;
    Ok(Held {
        engine,
        shared,
        answered,
    })
}

/// After a takeover: forgets the delivery records whose requests were answered (or
/// collected) already; those still unanswered stay, so that serving them again
/// applies nothing twice.
async fn forget_settled_deliveries(inner: &Arc<Inner>, engine: &flow_runtime::Engine) {
    let Ok(recorded) = engine.deliveries().await else {
        return;
    };
    if recorded.is_empty() {
        return;
    }
    let ids = recorded.clone();
    let open = inner
        .control
        .call_async(move |client| {
            client
                .query(
                    "SELECT id FROM flow_requests WHERE id = ANY($1) AND answer IS NULL",
                    &[&ids],
                )
                .map(|rows| {
                    rows.iter()
                        .map(|r| r.get::<_, String>(0))
                        .collect::<Vec<_>>()
                })
        })
        .await;
    if let Ok(Ok(open)) = open {
        let settled: Vec<String> = recorded
            .into_iter()
            .filter(|id| !open.contains(id))
            .collect();
        if !settled.is_empty() {
            let _ = engine.forget_deliveries(settled).await;
        }
    }
}

/// Forgets, in each shard's journal, the deliveries whose answers are in the database.
async fn forget_answered(inner: &Arc<Inner>) {
    let batches: Vec<(flow_runtime::Engine, Vec<String>)> = inner
        .read_held()
        .values()
        .filter_map(|h| {
            let ids = std::mem::take(&mut *h.answered.lock().unwrap_or_else(|e| e.into_inner()));
            (!ids.is_empty()).then(|| (h.engine.clone(), ids))
        })
        .collect();
    for (engine, ids) in batches {
        if let Err(e) = engine.forget_deliveries(ids).await {
            tracing::debug!(error = %e, "could not forget answered deliveries; a takeover will");
        }
    }
}
