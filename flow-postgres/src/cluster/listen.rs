//! Wake-ups from PostgreSQL's `LISTEN`/`NOTIFY`: only hints, each loop polls behind
//! them (databases without `LISTEN`, CockroachDB among them, work on polling alone).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::Config;
use tokio::sync::Notify;

use crate::conn::open_client;

/// What a notification wakes.
#[derive(Default)]
pub(crate) struct Wakes {
    /// A request was left for some shard (`flow_requests`).
    pub requests: Notify,
    /// An owner answered a request (`flow_answers`).
    pub answers: Notify,
    /// A shard's lease was given up (`flow_shards`).
    pub shards: Notify,
}

/// Listens on its own connection, on a thread of its own, until `stop` is set;
/// reconnects after an outage (and wakes every loop then, since notifications sent
/// meanwhile are lost).
pub(crate) fn spawn(config: Config, wakes: Arc<Wakes>, stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("flow-postgres-listen".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let Ok(mut client) = open_client(&config) else {
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                };
                if client
                    .batch_execute("LISTEN flow_requests; LISTEN flow_answers; LISTEN flow_shards")
                    .is_err()
                {
                    // No LISTEN here: polling alone.
                    return;
                }
                wake_all(&wakes);
                while !stop.load(Ordering::Acquire) {
                    let next = client
                        .notifications()
                        .timeout_iter(Duration::from_millis(200))
                        .next();
                    match next {
                        Ok(Some(n)) => match n.channel() {
                            "flow_requests" => wakes.requests.notify_one(),
                            "flow_answers" => wakes.answers.notify_one(),
                            _ => wakes.shards.notify_one(),
                        },
                        Ok(None) if client.is_closed() => break,
                        Ok(None) => {}
                        Err(_) => break,
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the LISTEN thread; polling alone");
    }
}

fn wake_all(wakes: &Wakes) {
    wakes.requests.notify_one();
    wakes.answers.notify_one();
    wakes.shards.notify_one();
}
