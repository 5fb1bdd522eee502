//! Built-in durable operations: sleep and signals.

use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::codec::CodecError;
use crate::op::{DurableOp, OpRequest};

/// A durable sleep, created by [`sleep`] or [`sleep_until`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a durable sleep does nothing unless awaited"]
pub struct Sleep {
    until_ms: u64,
}

/// Suspends the workflow for `duration`, durably: the deadline is committed, the run leaves
/// memory, and after a restart it wakes at the deadline (at once if it already passed).
///
/// Awaited outside a workflow it is an ordinary timer.
pub fn sleep(duration: Duration) -> Sleep {
    // Under `flow::testing`, the deadline is counted from the test's virtual clock.
    sleep_until(crate::time::workflow_now() + duration)
}

/// Suspends the workflow until the wall-clock instant `deadline`, durably.
pub fn sleep_until(deadline: SystemTime) -> Sleep {
    let until_ms = deadline
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Sleep { until_ms }
}

impl DurableOp for Sleep {
    type Output = ();
    fn into_request(self) -> Result<OpRequest, CodecError> {
        Ok(OpRequest::Sleep {
            until_ms: self.until_ms,
        })
    }
}

impl std::future::IntoFuture for Sleep {
    type Output = ();
    type IntoFuture = crate::task::BoxFuture<()>;
    fn into_future(self) -> Self::IntoFuture {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let wait = Duration::from_millis(self.until_ms.saturating_sub(now));
        Box::pin(tokio::time::sleep(wait))
    }
}

/// Waits for the next signal called `name`, delivered by `Engine::signal`.
///
/// Signals sent before the workflow waits are kept in the run's inbox and delivered in
/// order, each exactly once.
pub fn signal<T>(name: &str) -> Signal<T> {
    Signal {
        name: name.to_string(),
        _type: PhantomData,
    }
}

/// A wait for a signal, created by [`signal`].
#[must_use = "a signal wait does nothing unless awaited"]
pub struct Signal<T> {
    name: String,
    _type: PhantomData<fn() -> T>,
}

impl<T> Signal<T> {
    /// Gives up after `timeout`: the await then returns `Err(SignalTimeout)`.
    pub fn timeout(self, timeout: Duration) -> SignalWithTimeout<T> {
        SignalWithTimeout {
            name: self.name,
            timeout,
            _type: PhantomData,
        }
    }
}

/// A wait for a signal that gives up after a timeout, created by [`Signal::timeout`].
#[must_use = "a signal wait does nothing unless awaited"]
pub struct SignalWithTimeout<T> {
    name: String,
    timeout: Duration,
    _type: PhantomData<fn() -> T>,
}

/// The outcome of a signal wait that ran out of time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("no `{signal}` signal arrived within {after:?}")]
pub struct SignalTimeout {
    /// The signal name.
    pub signal: String,
    /// The timeout that expired.
    pub after: Duration,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> DurableOp for Signal<T> {
    type Output = T;
    fn into_request(self) -> Result<OpRequest, CodecError> {
        Ok(OpRequest::Signal {
            name: self.name,
            timeout: None,
        })
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> DurableOp for SignalWithTimeout<T> {
    type Output = Result<T, SignalTimeout>;
    fn into_request(self) -> Result<OpRequest, CodecError> {
        Ok(OpRequest::Signal {
            name: self.name,
            timeout: Some(self.timeout),
        })
    }
}

/// Restarts the run with `input` as a new generation (Temporal's continue-as-new): the
/// way for a workflow that loops forever (a poller, an entity) to keep its history short.
///
/// `input` is the workflow's input type (its single argument, or a tuple of its
/// arguments). The run keeps its ID, inbox (undelivered signals) and run-level deadline;
/// the current generation's history, saved locals and branch records are dropped, not
/// archived: the new history starts with `ContinuedAsNew`. Step numbers keep counting, so
/// child runs and idempotency keys of different generations never collide.
///
/// The await never returns in a workflow (write `return flow::continue_as_new(x).await`).
/// Awaited outside an engine it panics: plain calls have no run to restart.
pub fn continue_as_new<O>(input: impl Serialize) -> ContinueAsNew<O> {
    ContinueAsNew {
        input: crate::codec::encode(&input, || "continue-as-new input".to_string()),
        _type: PhantomData,
    }
}

/// A restart of the run, created by [`continue_as_new`].
#[must_use = "continue-as-new does nothing unless awaited"]
pub struct ContinueAsNew<O> {
    input: Result<Vec<u8>, CodecError>,
    _type: PhantomData<fn() -> O>,
}

#[diagnostic::do_not_recommend]
impl<O: Serialize + DeserializeOwned + Send + 'static> DurableOp for ContinueAsNew<O> {
    type Output = O;
    fn into_request(self) -> Result<OpRequest, CodecError> {
        Ok(OpRequest::ContinueAsNew { input: self.input? })
    }
}

impl<O: Send + 'static> std::future::IntoFuture for ContinueAsNew<O> {
    type Output = O;
    type IntoFuture = crate::task::BoxFuture<O>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async {
            panic!(
                "flow::continue_as_new only works in a run driven by an engine; a workflow \
                 awaited as a plain function has no run to restart"
            )
        })
    }
}

/// Awaited outside an engine nobody can send the signal: the wait never ends.
impl<T: Send + 'static> std::future::IntoFuture for Signal<T> {
    type Output = T;
    type IntoFuture = crate::task::BoxFuture<T>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(std::future::pending())
    }
}

/// Awaited outside an engine nobody can send the signal: the wait times out.
impl<T: Send + 'static> std::future::IntoFuture for SignalWithTimeout<T> {
    type Output = Result<T, SignalTimeout>;
    type IntoFuture = crate::task::BoxFuture<Self::Output>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            tokio::time::sleep(self.timeout).await;
            Err(SignalTimeout {
                signal: self.name,
                after: self.timeout,
            })
        })
    }
}
