//! The renewal of every shard lease a cluster process holds: one statement every
//! quarter of the lease, on a thread and a connection of its own (so that a busy
//! runtime or a slow request does not delay it). A lease the statement did not renew
//! was lost: its engine's commits are refused from then on, and the balancing loop
//! drops the shard.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use flow_runtime::FlowError;
use postgres::Config;

use super::Inner;
use crate::conn::open_client;
use crate::error::storage;

const RENEW_ALL: &str = "UPDATE flow_shards AS s \
     SET expires_at = clock_timestamp() + ($2::BIGINT * INTERVAL '1 millisecond') \
     FROM unnest($3::INT[], $4::BIGINT[]) AS held(shard, fence) \
     WHERE s.shard = held.shard AND s.fence = held.fence AND s.owner = $1 \
         AND s.expires_at > clock_timestamp() \
     RETURNING s.shard";

/// Starts the renewer; it ends with the cluster process.
pub(crate) fn spawn(inner: &Arc<Inner>, config: Config) -> Result<(), FlowError> {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let every = inner.ttl / 4;
    std::thread::Builder::new()
        .name("flow-postgres-leases".into())
        .spawn(move || {
            let mut client = None;
            loop {
                std::thread::sleep(every);
                let Some(inner) = weak.upgrade() else { return };
                if inner.stop.load(Ordering::Acquire) {
                    return;
                }
                let leases: Vec<_> = inner.leases().values().cloned().collect();
                if leases.is_empty() {
                    continue;
                }
                if client.as_ref().is_none_or(postgres::Client::is_closed) {
                    client = open_client(&config).ok();
                }
                let Some(conn) = client.as_mut() else {
                    tracing::warn!("could not connect to renew the shards' leases; retrying");
                    continue;
                };
                let shards: Vec<i32> = leases.iter().map(|l| l.shard).collect();
                let fences: Vec<i64> = leases.iter().map(|l| l.fence).collect();
                let ttl_ms = inner.ttl.as_millis() as i64;
                match conn.query(RENEW_ALL, &[&inner.owner, &ttl_ms, &shards, &fences]) {
                    Ok(rows) => {
                        let renewed: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
                        for lease in leases.iter().filter(|l| !renewed.contains(&l.shard)) {
                            lease.lost.store(true, Ordering::Release);
                            tracing::error!(
                                shard = lease.shard,
                                fence = lease.fence,
                                "this process lost the shard's lease (it expired or another \
                                 process took it over); its writes are refused from now on"
                            );
                        }
                        if renewed.len() < leases.len() {
                            inner.wakes.shards.notify_one();
                        }
                    }
                    // Retried at the next turn; commits check their lease themselves.
                    Err(e) => tracing::warn!(error = %e, "could not renew the shards' leases"),
                }
            }
        })
        .map_err(|e| storage(format!("could not start the leases' renewal thread: {e}")))?;
    Ok(())
}
