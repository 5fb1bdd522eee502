//! Callback tokens (Step Functions' `.waitForTaskToken`): a task hands a token to an
//! outside system and the step waits until someone completes it.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::marker::PhantomData;
use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::codec::CodecError;
use crate::error::FlowError;
use crate::op::{DurableOp, OpRequest};
use crate::signal_types::SignalType;
use crate::task::BoxFuture;

/// A task call that finishes only when its callback token is completed, built by
/// [`WaitForCallback::wait_for_callback`]; awaits to `Result<T, CallbackError>`.
#[must_use = "a callback wait does nothing unless awaited"]
pub struct Callback<O, T> {
    task: O,
    timeout: Duration,
    heartbeat: Option<Duration>,
    _type: PhantomData<fn() -> T>,
}

impl<O, T> Callback<O, T> {
    /// Requires a sign of life: once the task handed the token out, the outside system
    /// must call [`Engine::heartbeat`](crate::Engine::heartbeat) with it at least every
    /// `interval`, or the step ends with `Err(CallbackError::HeartbeatTimedOut)` (Step
    /// Functions' `HeartbeatSeconds`).
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = Some(interval);
        self
    }
}

/// Turns a `#[task]` call into a callback wait.
///
/// The engine issues an unguessable single-use token (128 random bits from the OS) when
/// the step is scheduled. The task body reads it with
/// [`TaskContext::callback_token`](crate::TaskContext::callback_token) and hands it out
/// (in an email link, a queue message, ...); the task's own output is ignored unless it
/// fails. The step completes when
/// [`Engine::complete`](crate::Engine::complete) is called with the token, or with
/// `Err(CallbackError::TimedOut)` after `timeout` (counted from scheduling, task included),
/// or with `Err(CallbackError::HeartbeatTimedOut)` when a [`Callback::heartbeat`] interval
/// passes without [`Engine::heartbeat`](crate::Engine::heartbeat).
///
/// ```
/// # use std::time::Duration;
/// # use flow::{task, workflow, WaitForCallback};
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct Approval { by: String }
/// # #[task] async fn send_approval_email(addr: String) {}
/// #[workflow]
/// async fn order(addr: String) -> Result<Approval, flow::CallbackError> {
///     send_approval_email(addr).wait_for_callback::<Approval>(Duration::from_secs(3600)).await
/// }
/// ```
pub trait WaitForCallback: DurableOp + Sized {
    /// Waits for the token this task hands out to be completed with a `T`.
    fn wait_for_callback<T>(self, timeout: Duration) -> Callback<Self, T> {
        Callback {
            task: self,
            timeout,
            heartbeat: None,
            _type: PhantomData,
        }
    }
}

impl<O: DurableOp> WaitForCallback for O {}

/// Why a callback wait ended without a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CallbackError {
    /// Nobody completed the token in time.
    #[error("the callback was not completed within {after:?}")]
    TimedOut {
        /// The timeout that expired.
        after: Duration,
    },
    /// The outside system completed the token with an error.
    #[error("the callback was completed with an error: {0}")]
    Rejected(String),
    /// The task that should hand out the token failed (after its retries).
    #[error("the callback's task failed: {0}")]
    TaskFailed(String),
    /// Awaited outside an engine: there is no one to complete a token.
    #[error("callbacks need an engine; this task ran as a plain function")]
    NoEngine,
    /// The outside system stopped sending heartbeats.
    #[error("no heartbeat for the callback within {after:?}")]
    HeartbeatTimedOut {
        /// The heartbeat interval that passed without one.
        after: Duration,
    },
}

#[diagnostic::do_not_recommend]
impl<O: DurableOp, T: Serialize + DeserializeOwned + Send + 'static> DurableOp for Callback<O, T> {
    type Output = Result<T, CallbackError>;
    fn into_request(self) -> Result<OpRequest, CodecError> {
        Ok(OpRequest::Callback {
            task: Box::new(self.task.into_request()?),
            timeout: Some(self.timeout),
            heartbeat: self.heartbeat,
            awaited: Some(awaited_type::<T>().to_string()),
        })
    }
}

impl<O, T> IntoFuture for Callback<O, T>
where
    O: IntoFuture + Send + 'static,
    O::IntoFuture: Send + 'static,
    T: Send + 'static,
{
    type Output = Result<T, CallbackError>;
    type IntoFuture = BoxFuture<Self::Output>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.task.into_future().await;
            Err(CallbackError::NoEngine)
        })
    }
}

/// What every callback token starts with.
const TOKEN_PREFIX: &str = "flowcb_";
/// Hex digits of a token's random part (128 bits).
const RANDOM_HEX: usize = 32;
/// Hex digits of a token's route (the run's `route_key`, 64 bits).
const ROUTE_HEX: usize = 16;

/// A fresh callback token for a step of run `run_id`: `flowcb_`, 128 bits from the OS
/// random source, `_` and the run's [`route_key`](crate::route_key), in hex (so that a
/// sharded store finds the run's shard from the token alone, see [`token_route`]).
pub(crate) fn new_token(run_id: &str) -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("the OS random source failed: {e}"))?;
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + RANDOM_HEX + 1 + ROUTE_HEX);
    token.push_str(TOKEN_PREFIX);
    for b in bytes {
        token.push_str(&format!("{b:02x}"));
    }
    token.push_str(&format!("_{:016x}", crate::route::route_key(run_id)));
    Ok(token)
}

/// The route a callback token carries (see `crate::route::token_route`); `None` for
/// tokens of the format before it (`flowcb_` and the random part only) and for anything
/// else.
pub(crate) fn token_route(token: &str) -> Option<u64> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (random, route) = rest.split_once('_')?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(random, RANDOM_HEX) || !hex(route, ROUTE_HEX) {
        return None;
    }
    u64::from_str_radix(route, 16).ok()
}

/// The types callbacks await, by name, as the runs of this process issued them: the
/// journal keeps each token's awaited type by name (a function cannot be stored), and
/// [`check_completion`] finds its decoder here.
static AWAITED_TYPES: std::sync::RwLock<BTreeMap<&'static str, SignalType>> =
    std::sync::RwLock::new(BTreeMap::new());

/// Records that a callback awaits a `T`; returns the name its token records.
fn awaited_type<T: DeserializeOwned>() -> &'static str {
    let ty = SignalType::of::<T>();
    let name = (ty.name)();
    let known = AWAITED_TYPES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(name);
    if !known {
        AWAITED_TYPES
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, ty);
    }
    name
}

/// Refuses to complete `token`, whose step awaits the type named `awaited`, with
/// `payload` (the encoded value, of Rust type `sent`) if the payload does not decode as
/// that type. A type no callback of this process has awaited (a token issued before a
/// restart, whose type no run has awaited since) cannot be checked here: the run's step
/// decodes the value and faults on a mismatch, as it always did.
pub(crate) fn check_completion(
    token: &str,
    awaited: &str,
    payload: &[u8],
    sent: &str,
) -> Result<(), FlowError> {
    let ty = AWAITED_TYPES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(awaited)
        .copied();
    let Some(ty) = ty else { return Ok(()) };
    match (ty.fits)(payload) {
        Ok(()) => Ok(()),
        Err(error) => {
            let reason = match error {
                CodecError::Decode { message, .. } => message,
                other => other.to_string(),
            };
            Err(FlowError::CallbackTypeMismatch {
                token: token.to_string(),
                sent: sent.to_string(),
                awaited: awaited.to_string(),
                reason,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::route_key;

    #[test]
    fn new_tokens_carry_their_runs_route() {
        let token = new_token("order-42/3").unwrap();
        assert_eq!(token.len(), 7 + 32 + 1 + 16, "{token}");
        assert!(token.starts_with("flowcb_"), "{token}");
        assert!(token.ends_with(&format!("_{:016x}", route_key("order-42"))));
        assert_eq!(token_route(&token), Some(route_key("order-42")));
        assert_ne!(
            new_token("order-42").unwrap(),
            new_token("order-42").unwrap()
        );
        // Tokens of the older format, and strings that are no token, do not route.
        for other in [
            "flowcb_00000000000000000000000000000000",
            "flowcb_nope",
            "flowcb_00000000000000000000000000000000_123",
            "flowcb_0000000000000000000000000000000g_0000000000000000",
            "",
        ] {
            assert_eq!(token_route(other), None, "{other}");
        }
        assert_eq!(
            token_route("flowcb_00000000000000000000000000000000_00000000000000ff"),
            Some(255)
        );
    }
}
