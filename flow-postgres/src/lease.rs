//! Shard leases: which engine process drives a shard's runs, and its fence.
//!
//! A row of `flow_shards` says who holds a shard's lease, its fencing token (`fence`,
//! raised by every takeover) and when it expires by the database's clock. Every write
//! (`backend::PgFile::sync_data`) renews the lease in its own transaction with
//! `UPDATE ... WHERE owner = $me AND fence = $f AND expires_at > clock_timestamp()`: a
//! process whose lease expired or was taken over writes nothing, whatever it believes.
//! The row lock that UPDATE takes orders a write against a takeover, so a takeover
//! sees every write that committed before it, and no write commits after it.
//!
//! A heartbeat thread renews the lease between writes; a clean shutdown releases it
//! (and notifies `flow_shards` listeners) so that a standby takes over at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flow_runtime::FlowError;
use postgres::{Client, Config};

use crate::conn::open_client;
use crate::error::{query_error, storage};

/// A shard's lease held by this process.
pub(crate) struct Lease {
    /// The shard.
    pub shard: i32,
    /// This process's name in `flow_shards.owner`.
    pub owner: String,
    /// The fencing token of this holding.
    pub fence: i64,
    /// How long a renewal keeps the lease.
    pub ttl: Duration,
    /// Set once a renewal found the lease gone.
    pub lost: AtomicBool,
    heartbeat: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
}

/// The renewal every write and heartbeat runs: one row if the lease is still ours.
pub(crate) const RENEW: &str = "UPDATE flow_shards \
     SET expires_at = clock_timestamp() + ($3::BIGINT * INTERVAL '1 millisecond') \
     WHERE shard = $4 AND owner = $1 AND fence = $2 AND expires_at > clock_timestamp()";

/// Takes the lease if it is free or expired; else says who holds it and for how long.
///
/// The takeover may wait for the row's lock (a paused holder's open commit, until the
/// server ends that session): the new expiry is computed when the row is updated, not
/// before the wait.
fn try_take(
    client: &mut Client,
    shard: i32,
    owner: &str,
    ttl: Duration,
) -> Result<Result<i64, (String, i64)>, FlowError> {
    let ttl_ms = ttl.as_millis() as i64;
    let taken = client
        .query_opt(
            "UPDATE flow_shards SET owner = $1, fence = fence + 1, \
                 expires_at = clock_timestamp() + ($2::BIGINT * INTERVAL '1 millisecond') \
             WHERE shard = $3 AND (owner IS NULL OR expires_at <= clock_timestamp()) \
             RETURNING fence",
            &[&owner, &ttl_ms, &shard],
        )
        .map_err(|e| query_error("taking the journal's lease", &e))?;
    if let Some(row) = taken {
        return Ok(Ok(row.get(0)));
    }
    let holder = client
        .query_opt(
            "SELECT COALESCE(owner, ''), \
             GREATEST(0, (EXTRACT(EPOCH FROM (expires_at - clock_timestamp())) * 1000))::BIGINT \
             FROM flow_shards WHERE shard = $1",
            &[&shard],
        )
        .map_err(|e| query_error("reading the journal's lease", &e))?;
    Ok(Err(holder.map_or((String::new(), 0), |row| {
        (row.get(0), row.get(1))
    })))
}

/// Takes the leases of up to `max` shards that nobody holds (free, released or expired),
/// lowest first, skipping rows another process is taking at the same moment.
pub(crate) fn claim_free(
    client: &mut Client,
    owner: &str,
    ttl: Duration,
    max: i64,
) -> Result<Vec<Lease>, FlowError> {
    let ttl_ms = ttl.as_millis() as i64;
    let rows = client
        .query(
            "WITH free AS ( \
                 SELECT shard FROM flow_shards \
                 WHERE owner IS NULL OR expires_at <= clock_timestamp() \
                 ORDER BY shard LIMIT $3 FOR UPDATE SKIP LOCKED \
             ) \
             UPDATE flow_shards AS s SET owner = $1, fence = s.fence + 1, \
                 expires_at = clock_timestamp() + ($2::BIGINT * INTERVAL '1 millisecond') \
             FROM free WHERE s.shard = free.shard \
             RETURNING s.shard, s.fence",
            &[&owner, &ttl_ms, &max],
        )
        .map_err(|e| query_error("claiming shards", &e))?;
    Ok(rows
        .iter()
        .map(|row| Lease::held(row.get(0), owner.to_string(), row.get(1), ttl))
        .collect())
}

impl Lease {
    fn held(shard: i32, owner: String, fence: i64, ttl: Duration) -> Lease {
        Lease {
            shard,
            owner,
            fence,
            ttl,
            lost: AtomicBool::new(false),
            heartbeat: Mutex::new(None),
        }
    }

    /// Takes `shard`'s lease, waiting up to `wait` for the holder's to end (woken early
    /// by a release's NOTIFY, polling behind it).
    pub(crate) fn acquire(
        client: &mut Client,
        shard: i32,
        owner: String,
        ttl: Duration,
        wait: Duration,
        target: &str,
    ) -> Result<Lease, FlowError> {
        let deadline = Instant::now() + wait;
        // Only a hint: where LISTEN is not supported (CockroachDB), polling alone wakes
        // a standby.
        let listening = client.batch_execute("LISTEN flow_shards").is_ok();
        loop {
            match try_take(client, shard, &owner, ttl)? {
                Ok(fence) => {
                    if listening {
                        let _ = client.batch_execute("UNLISTEN flow_shards");
                    }
                    return Ok(Lease::held(shard, owner, fence, ttl));
                }
                Err((holder, left_ms)) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(storage(format!(
                            "the journal in {target} is driven by another engine process \
                             ({holder}; its lease runs {left_ms} ms more unless renewed): \
                             one process drives a journal at a time; stop that engine, or \
                             open this one with `wait_for_lease` to stand by and take over \
                             when it stops"
                        )));
                    }
                    // Polling behind the NOTIFY: the lease may simply expire.
                    let pause =
                        Duration::from_millis(left_ms.clamp(20, 500) as u64).min(deadline - now);
                    let mut notifications = client.notifications();
                    let _ = postgres::fallible_iterator::FallibleIterator::next(
                        &mut notifications.timeout_iter(pause),
                    );
                }
            }
        }
    }

    /// Starts the thread that renews the lease every quarter of its length, on a
    /// connection of its own.
    pub(crate) fn start_heartbeat(self: &Arc<Self>, config: &Config) -> Result<(), FlowError> {
        let mut client = open_client(config)?;
        let config = config.clone();
        let (stop, stopped) = mpsc::channel::<()>();
        let lease = Arc::downgrade(self);
        let every = self.ttl / 4;
        let thread = std::thread::Builder::new()
            .name("flow-postgres-lease".into())
            .spawn(move || loop {
                match stopped.recv_timeout(every) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let Some(lease) = lease.upgrade() else { return };
                let ttl_ms = lease.ttl.as_millis() as i64;
                match client.execute(RENEW, &[&lease.owner, &lease.fence, &ttl_ms, &lease.shard]) {
                    Ok(1) => {}
                    Ok(_) => {
                        lease.lost.store(true, Ordering::Release);
                        tracing::error!(
                            fence = lease.fence,
                            "this process lost the journal's lease (it expired or another \
                             engine took it over); its writes are refused from now on"
                        );
                        return;
                    }
                    // A failed renewal is retried; writes check the lease themselves.
                    Err(e) => {
                        tracing::warn!(error = %e, "could not renew the journal's lease");
                        if client.is_closed() {
                            if let Ok(reconnected) = open_client(&config) {
                                client = reconnected;
                            }
                        }
                    }
                }
            })
            .map_err(|e| storage(format!("could not start the lease's heartbeat thread: {e}")))?;
        *self.heartbeat.lock().unwrap_or_else(|e| e.into_inner()) = Some((stop, thread));
        Ok(())
    }

    /// Stops the heartbeat and gives the lease up, if it is still this holding's, so
    /// that a standby takes over without waiting for it to expire.
    pub(crate) fn release(&self, client: &mut Client) {
        if let Some((stop, thread)) = self
            .heartbeat
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            drop(stop);
            let _ = thread.join();
        }
        let released = client.execute(
            "UPDATE flow_shards SET owner = NULL, expires_at = clock_timestamp() \
             WHERE shard = $3 AND owner = $1 AND fence = $2",
            &[&self.owner, &self.fence, &self.shard],
        );
        match released {
            Ok(_) => {
                let _ = client.batch_execute("NOTIFY flow_shards");
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not release the journal's lease; it expires by itself")
            }
        }
    }

    /// The error for a write refused because the lease is gone.
    pub(crate) fn lost_error(&self) -> String {
        format!(
            "the database refused this write: this process no longer holds the journal's \
             lease (fence {}); it expired or another engine process took it over (was this \
             process paused or cut off longer than the lease, {} ms?); this engine writes \
             nothing more: shut it down (its runs go on in the process that holds the lease)",
            self.fence,
            self.ttl.as_millis()
        )
    }
}
