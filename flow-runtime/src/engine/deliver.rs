//! Requests from outside a run (signals, cancellations, callback completions and
//! heartbeats), as data: the one path [`Engine::signal`], [`Engine::cancel`],
//! [`Engine::complete`] and [`Engine::heartbeat`] take, and [`Engine::deliver`], which
//! applies one at most once per request ID.
//!
//! A store split into shards passes requests between processes: the process that holds
//! a run's shard applies a request another process received, and a crash between its
//! commit and its answer makes the shard's next holder apply the request again. The
//! request ID is recorded by the same journal change that applies the request (see
//! `store::deliveries`), so the second application finds it and changes nothing.

use serde::{Deserialize, Serialize};

use crate::callback::{check_completion, CallbackError};
use crate::codec;
use crate::engine::Engine;
use crate::error::FlowError;
use crate::output;
use crate::store::{Applied, Change, Journal};

/// A request from outside a run, as data: what [`Engine::signal`], [`Engine::cancel`],
/// [`Engine::complete`] and [`Engine::heartbeat`] do, for [`Engine::deliver`]. Values
/// travel encoded, so that a process without the workflows' Rust types can pass them on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Delivery {
    /// A signal, as [`Engine::signal`] sends it.
    Signal {
        /// The run it is for.
        run_id: String,
        /// The signal's name.
        name: String,
        /// The value, encoded with [`codec::encode`](crate::codec::encode).
        payload: Vec<u8>,
        /// The sender's type name ([`std::any::type_name`]), for the type check
        /// [`Engine::signal`] makes and its error messages.
        sent_type: String,
    },
    /// A cancellation, as [`Engine::cancel`] requests it.
    Cancel {
        /// The run to cancel.
        run_id: String,
    },
    /// A callback completion, as [`Engine::complete`] makes it.
    Complete {
        /// The callback's token.
        token: String,
        /// `Ok` with the value encoded with [`codec::encode`](crate::codec::encode), or
        /// `Err` with the rejection's message.
        result: Result<Vec<u8>, String>,
        /// The sender's type name ([`std::any::type_name`]) of an `Ok` value, for the
        /// check against the type the callback awaits and its error messages.
        sent_type: String,
    },
    /// A callback heartbeat, as [`Engine::heartbeat`] records it.
    Heartbeat {
        /// The callback's token.
        token: String,
    },
}

impl Delivery {
    /// Signal `name` with `value` for run `run_id`, encoded as [`Engine::signal`]
    /// encodes it.
    pub fn signal<T: Serialize + ?Sized>(
        run_id: &str,
        name: &str,
        value: &T,
    ) -> Result<Delivery, FlowError> {
        let payload = codec::encode(value, || format!("signal `{name}` for run `{run_id}`"))?;
        Ok(Delivery::Signal {
            run_id: run_id.to_string(),
            name: name.to_string(),
            payload,
            sent_type: std::any::type_name::<T>().to_string(),
        })
    }

    /// The completion of the callback that issued `token`, encoded as
    /// [`Engine::complete`] encodes it.
    pub fn complete<T: Serialize>(
        token: &str,
        result: Result<T, String>,
    ) -> Result<Delivery, FlowError> {
        let result = match result {
            Ok(value) => Ok(codec::encode(&value, || "callback value".to_string())?),
            Err(error) => Err(error),
        };
        Ok(Delivery::Complete {
            token: token.to_string(),
            result,
            sent_type: std::any::type_name::<T>().to_string(),
        })
    }
}

impl Engine {
    /// Applies `delivery` exactly as [`signal`](Self::signal), [`cancel`](Self::cancel),
    /// [`complete`](Self::complete) or [`heartbeat`](Self::heartbeat) does (same checks,
    /// same errors, same effects), but at most once per `request` ID: the change is
    /// journaled together with the ID, in one commit. Returns once durable.
    ///
    /// - A request ID recorded already changes nothing and returns `Ok(())`: its first
    ///   delivery was applied (even if the run has ended since).
    /// - A delivery refused (unknown or finished run, bad token, type mismatch, payload
    ///   too large) records nothing: a retry with the same ID is judged anew.
    /// - Recorded IDs stay until [`forget_deliveries`](Self::forget_deliveries) deletes
    ///   them; after that the same ID is applied again.
    ///
    /// For stores that pass requests between processes (a sharded cluster), where the
    /// same request may be handed over again after a crash; see [`crate::route_key`].
    ///
    /// ```no_run
    /// # async fn demo(engine: flow_runtime::Engine) -> Result<(), flow_runtime::FlowError> {
    /// use flow_runtime::{codec, Delivery};
    ///
    /// let payload = codec::encode(&true, String::new)?;
    /// let delivery = Delivery::Signal {
    ///     run_id: "order-42".into(),
    ///     name: "approval".into(),
    ///     payload,
    ///     sent_type: std::any::type_name::<bool>().into(),
    /// };
    /// engine.deliver("request-7", delivery.clone()).await?;
    /// engine.deliver("request-7", delivery).await?; // already applied: no second signal
    /// # Ok(()) }
    /// ```
    pub async fn deliver(&self, request: &str, delivery: Delivery) -> Result<(), FlowError> {
        self.apply_delivery(Some(request), delivery).await
    }

    /// Deletes the recorded request IDs `requests` (IDs not recorded are skipped); returns
    /// once durable, in one change. For the store, once the answers to those requests are
    /// durable elsewhere: a delivery with a forgotten ID is applied again.
    pub async fn forget_deliveries(&self, requests: Vec<String>) -> Result<(), FlowError> {
        if requests.is_empty() {
            return Ok(());
        }
        let change = Change::ForgetDeliveries { requests };
        self.core().commits.submit(change).await.map(drop)
    }

    /// The request IDs deliveries were applied under and not forgotten, in order: what
    /// a store that takes over a journal checks against the answers it holds.
    pub async fn deliveries(&self) -> Result<Vec<String>, FlowError> {
        self.core().store.deliveries()
    }

    /// Applies `delivery`, at most once per `request` if one is given; returns once
    /// durable. The path of every request from outside a run.
    pub(super) async fn apply_delivery(
        &self,
        request: Option<&str>,
        delivery: Delivery,
    ) -> Result<(), FlowError> {
        let core = self.core();
        // Applied already: its checks passed then, and need not pass now (the run may
        // have ended since). The journal decides again below, should two race.
        if let Some(request) = request {
            if core.store.delivered(request)? {
                return Ok(());
            }
        }
        let change = self.checked_change(delivery)?;
        let change = match request {
            Some(request) => Change::Deliver {
                request: request.to_string(),
                change: Box::new(change),
            },
            None => change,
        };
        let (applied, change) = core.commits.submit(change).await?;
        self.follow_up(&applied, &change);
        Ok(())
    }

    /// The change `delivery` asks for, once the checks made outside the journal pass
    /// (the journal makes the rest as it applies it).
    fn checked_change(&self, delivery: Delivery) -> Result<Change, FlowError> {
        Ok(match delivery {
            Delivery::Signal {
                run_id,
                name,
                payload,
                sent_type,
            } => {
                codec::within_limit(payload.len(), || {
                    format!("signal `{name}` for run `{run_id}`")
                })?;
                self.check_signal(&run_id, &name, &payload, &sent_type)?;
                Change::Signal {
                    run: run_id,
                    signal: name,
                    payload,
                }
            }
            Delivery::Cancel { run_id } => Change::Cancel { run: run_id },
            Delivery::Complete {
                token,
                result,
                sent_type,
            } => {
                let (output, ok) = match result {
                    Ok(payload) => {
                        codec::within_limit(payload.len(), || "callback value".to_string())?;
                        if let Some(awaited) = self.core().store.token_type(&token)? {
                            check_completion(&token, &awaited, &payload, &sent_type)?;
                        }
                        (output::ok_bytes(&payload), true)
                    }
                    Err(error) => (
                        output::err(&CallbackError::Rejected(error), "an error outcome")?,
                        false,
                    ),
                };
                Change::Complete { token, output, ok }
            }
            Delivery::Heartbeat { token } => Change::Heartbeat { token },
        })
    }

    /// What a durable request sets going: the run it reached is woken; a heartbeat's new
    /// deadline goes to the timer service.
    fn follow_up(&self, applied: &Applied, change: &Change) {
        let core = self.core();
        match (applied, change) {
            (Applied::Signalled, Change::Signal { run, .. })
            | (Applied::Cancelled, Change::Cancel { run }) => core.wake(run),
            (Applied::Completed(run_id), _) => core.wake(run_id),
            (Applied::Heartbeat(Some(deadline)), _) => core.timers.added(*deadline),
            (Applied::Delivered(Some(applied)), Change::Deliver { change, .. }) => {
                self.follow_up(applied, change)
            }
            _ => {}
        }
    }
}
