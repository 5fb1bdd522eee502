//! Retention: how long finished runs are kept, and the service that deletes them once
//! that time has passed.
//!
//! The settings are the engine's ([`EngineBuilder::retention`](crate::EngineBuilder::retention),
//! [`EngineBuilder::retention_of`](crate::EngineBuilder::retention_of)); at open they are
//! written into the journal when they differ from what it holds, and the transition that
//! finishes a run schedules its expiry from them (see `store::retention`). The service
//! reads expiries in order and deletes due runs in batches, each one change through the
//! commit pipeline, so deletion is logged and crash-safe like every other write.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::Core;
use crate::error::FlowError;
use crate::store::{Applied, Change, Journal, RetentionSettings};
use crate::time::{millis, now_ms};

/// Runs deleted per change.
const BATCH: usize = 256;
/// The longest the service sleeps without looking for new expiries.
const LONGEST_NAP: Duration = Duration::from_secs(1);
/// The shortest, so that a retention of zero does not make it spin.
const SHORTEST_NAP: Duration = Duration::from_millis(10);

/// How long finished runs are kept: the engine's default and each workflow's own.
/// `None` keeps them for ever.
#[derive(Debug, Clone, Default)]
pub(crate) struct Retention {
    pub default: Option<Duration>,
    pub workflows: BTreeMap<String, Option<Duration>>,
}

impl Retention {
    fn settings(&self) -> RetentionSettings {
        RetentionSettings {
            default: self.default.map(millis),
            workflows: self
                .workflows
                .iter()
                .map(|(name, keep)| (name.clone(), keep.map(millis)))
                .collect(),
        }
    }

    /// How often the service looks for new expiries: as often as the shortest retention
    /// needs, within bounds.
    fn nap(&self) -> Duration {
        self.workflows
            .values()
            .chain(std::iter::once(&self.default))
            .flatten()
            .min()
            .map_or(LONGEST_NAP, |shortest| {
                (*shortest).clamp(SHORTEST_NAP, LONGEST_NAP)
            })
    }
}

/// Writes the engine's settings into the journal if it holds others; then starts the
/// service.
pub(crate) async fn start(core: &Arc<Core>, retention: Retention) -> Result<(), FlowError> {
    let settings = retention.settings();
    if core.store.retention_rows()? != settings.rows() {
        core.commits.submit(Change::SetRetention(settings)).await?;
    }
    tokio::spawn(run(core.clone(), retention.nap()));
    Ok(())
}

/// The service loop; ends when the engine stops.
async fn run(core: Arc<Core>, nap: Duration) {
    let mut stop = core.stop_receiver();
    loop {
        if stop.borrow().is_some() {
            return;
        }
        let now = now_ms();
        let sleep = match core.store.due_expiries(now, BATCH) {
            Ok((due, _)) if !due.is_empty() => {
                match core.commits.submit(Change::Expire { runs: due }).await {
                    Ok((Applied::Expired(deleted), _)) if deleted > 0 => {
                        tracing::debug!(deleted, "deleted runs whose retention expired");
                        continue;
                    }
                    // Nothing was due by the commit's clock after all (a clock set
                    // back): look again later rather than at once.
                    Ok(_) => nap,
                    Err(e) => {
                        if stop.borrow().is_some() {
                            return;
                        }
                        tracing::error!(error = %e, "could not delete expired runs; retrying in a second");
                        LONGEST_NAP
                    }
                }
            }
            Ok((_, next)) => next.map_or(nap, |at| {
                Duration::from_millis(at.saturating_sub(now)).clamp(SHORTEST_NAP, nap)
            }),
            Err(e) => {
                tracing::error!(error = %e, "could not read expiries; retrying in a second");
                LONGEST_NAP
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = stop.changed() => return,
        }
    }
}
