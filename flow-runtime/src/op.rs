//! Durable operations: what a workflow may `.await`.

use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use crate::codec::CodecError;
use crate::task::TaskPolicy;

/// Something a `#[workflow]` may `.await`: a task call, a child workflow, a durable sleep,
/// a signal, or a join of these.
///
/// Awaiting one inside a workflow suspends the run; the engine commits the suspension,
/// performs the operation and resumes the run with its [`Output`](DurableOp::Output).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a durable operation, so a #[workflow] cannot `.await` it",
    label = "not a #[task] call, child #[workflow], flow::sleep, flow::signal or flow::join!",
    note = "move this I/O into a #[task] function and await that task instead"
)]
pub trait DurableOp: Send + 'static {
    /// What the await evaluates to; journaled, so it must be serde.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Describes the operation so the engine can journal and perform it.
    fn into_request(self) -> Result<OpRequest, CodecError>;

    /// Whether an output counts as a failure (a task's final `Err`, a child workflow's
    /// `Err`), with its text: what a tolerant [`map`](crate::map) counts when it runs as
    /// plain code. By default an output that is a `Result`'s `Err` is one.
    fn failure(output: &Self::Output) -> Option<String> {
        crate::outcome::is_err(output).then(|| "returned Err".to_string())
    }
}

/// A serialized description of a durable operation, as journaled.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum OpRequest {
    /// Run the registered task `name` with encoded `args` (`codec::encode`).
    Task {
        /// Registered task name.
        name: String,
        /// The encoded task struct (its arguments).
        args: Vec<u8>,
        /// Retry and timeout policy in force for this call.
        policy: TaskPolicy,
    },
    /// Resume at the wall-clock instant `until_ms` (milliseconds since the Unix epoch).
    Sleep {
        /// Deadline, milliseconds since the Unix epoch.
        until_ms: u64,
    },
    /// Wait for the next signal called `name`; with a timeout, the output is a `Result`.
    Signal {
        /// Signal name.
        name: String,
        /// How long to wait before resuming with a timeout outcome.
        timeout: Option<Duration>,
    },
    /// Start workflow `workflow` as a child run and wait for its output.
    Child {
        /// Registered workflow name.
        workflow: String,
        /// The encoded workflow input.
        input: Vec<u8>,
    },
    /// Run every branch concurrently; the output is the array of the branches' outputs
    /// in order, nested as joins nest (a tuple is an array).
    All(#[serde(deserialize_with = "nested")] Vec<OpRequest>),
    /// Run one operation per item, at most `max_in_flight` at a time; the output is the
    /// items' outputs in order as a `Vec` (an array),
    /// wrapped in `Ok` when a `tolerance` is set.
    Map {
        /// One leaf operation (task call, child workflow or sleep) per item.
        #[serde(deserialize_with = "nested")]
        items: Vec<OpRequest>,
        /// Most items running at once (at least 1).
        max_in_flight: u32,
        /// Failures tolerated before the map fails; `None`: item failures are values.
        tolerance: Option<Tolerance>,
    },
    /// Run a task that hands a callback token to an outside system, then wait until the
    /// token is completed with `Engine::complete` or `timeout` expires.
    Callback {
        /// The task call (an `OpRequest::Task`).
        #[serde(deserialize_with = "nested")]
        task: Box<OpRequest>,
        /// How long to wait in all, from scheduling.
        timeout: Option<Duration>,
        /// Once the task handed the token out, the longest gap allowed between
        /// `Engine::heartbeat` calls.
        heartbeat: Option<Duration>,
        /// The name of the type the step awaits (`std::any::type_name`), which
        /// `Engine::complete` checks a payload against. Not journaled with the request
        /// (the token's record keeps it), so requests in older histories decode as they
        /// were written.
        #[serde(skip)]
        awaited: Option<String>,
    },
    /// Run every branch at once; the first to finish wins and the others are cancelled.
    /// The output is `[winner's index, its output]`.
    Race(#[serde(deserialize_with = "nested")] Vec<OpRequest>),
    /// Restart the run with a new input, dropping the history of its current generation.
    ContinueAsNew {
        /// The encoded workflow input for the next generation.
        input: Vec<u8>,
    },
    // Variants below were added after the ones above: postcard numbers variants in order,
    // so new ones go at the end and stored requests keep decoding.
    /// Run one operation per branch, at most `max_in_flight` at a time, until the
    /// `policy` says the batch is complete; the output is a [`Batch`](crate::Batch) that
    /// says why it completed and how each branch ended.
    Batch {
        /// One leaf operation (task call, child workflow or sleep) per branch.
        #[serde(deserialize_with = "nested")]
        items: Vec<OpRequest>,
        /// Most branches running at once (at least 1).
        max_in_flight: u32,
        /// When the batch completes before every branch has finished.
        policy: CompletionPolicy,
    },
    /// Run every branch at once; the first to finish with `Ok` wins and the others are
    /// cancelled. The output is `Ok([winner's index, its Ok value])`, or `Err` of every
    /// branch's error in branch order when all of them failed.
    FirstOk(#[serde(deserialize_with = "nested")] Vec<OpRequest>),
    /// An operation with a name the history shows (see [`OpExt::named`](crate::OpExt::named)).
    Named {
        /// The name.
        name: String,
        /// The operation.
        #[serde(deserialize_with = "nested")]
        op: Box<OpRequest>,
    },
}

/// How deeply operations may nest inside a decoded [`OpRequest`]. Workflows nest a few
/// levels (a join of races of tasks); the limit exists so that a damaged or hostile
/// journal gets a decode error instead of overflowing the decoding thread's stack.
pub(crate) const MAX_OP_NESTING: u32 = 64;

thread_local! {
    /// Nesting depth of the `OpRequest` being decoded on this thread.
    static OP_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Leaves one nesting level when dropped (also when decoding fails part way).
struct DepthGuard;

impl DepthGuard {
    fn enter() -> Option<DepthGuard> {
        OP_DEPTH.with(|depth| {
            let now = depth.get();
            if now >= MAX_OP_NESTING {
                None
            } else {
                depth.set(now + 1);
                Some(DepthGuard)
            }
        })
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        OP_DEPTH.with(|depth| depth.set(depth.get().saturating_sub(1)));
    }
}

/// Decodes the operations nested in an `OpRequest` one level deeper, refusing more than
/// [`MAX_OP_NESTING`] levels.
fn nested<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    let Some(_guard) = DepthGuard::enter() else {
        return Err(<D::Error as serde::de::Error>::custom(format_args!(
            "operations nested more than {MAX_OP_NESTING} levels deep"
        )));
    };
    T::deserialize(deserializer)
}

/// How many failed items a [`OpRequest::Map`] tolerates; the smaller limit wins.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Tolerance {
    /// Most failed items tolerated.
    pub max_failures: Option<u32>,
    /// Largest tolerated fraction of failed items (0.1 = 10%).
    pub max_failure_rate: Option<f64>,
}

impl Tolerance {
    /// The most failed items tolerated among `len`.
    pub fn allowed(&self, len: u32) -> u32 {
        let by_count = self.max_failures.unwrap_or(u32::MAX);
        let by_rate = match self.max_failure_rate {
            Some(rate) => rate_of(rate, len),
            None => u32::MAX,
        };
        by_count.min(by_rate)
    }
}

/// When a [`OpRequest::Batch`] completes before every branch has finished: once
/// `min_successes` branches succeeded, or once more branches failed than `tolerance`
/// allows. Neither set: the batch runs every branch.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct CompletionPolicy {
    /// Succeeded branches that complete the batch.
    pub min_successes: Option<u32>,
    /// Failed branches tolerated; one more completes the batch. Unlimited by default.
    pub tolerance: Tolerance,
}

/// Most decimal places of a rate that [`rate_of`] takes into account: `10^28 * u32::MAX`
/// still fits a `u128`.
const RATE_DECIMALS: usize = 28;

/// `floor(rate * len)`, computed on the decimal the rate was written as (`0.29` is 29/100,
/// not the binary fraction just below it, so 29 of 100 items are tolerated). The decimal
/// is the shortest one that reads back as the same `f64` (what `{}` prints); places past
/// the 28th are dropped. A rate outside 0..=1 (or NaN) is clamped to it.
fn rate_of(rate: f64, len: u32) -> u32 {
    if rate.is_nan() || rate <= 0.0 {
        return 0;
    }
    if rate >= 1.0 {
        return len;
    }
    // Display never uses an exponent: "0.29", "0.000001".
    let text = rate.to_string();
    let fraction = text.split_once('.').map_or("", |(_, f)| f);
    let places = &fraction[..fraction.len().min(RATE_DECIMALS)];
    let numerator: u128 = places.parse().unwrap_or(0);
    let denominator = 10u128.pow(places.len() as u32);
    (numerator * len as u128 / denominator) as u32
}

impl OpRequest {
    /// A short human name: the name given with [`OpExt::named`](crate::OpExt::named), or
    /// the task or workflow name, `sleep`, `signal:NAME`, `join(N)`, `map(N)`,
    /// `callback:TASK`, `race(N)`, `continue_as_new`, `batch(N)` or `first_ok(N)`.
    pub fn label(&self) -> String {
        match self {
            OpRequest::Task { name, .. } => short_name(name).to_string(),
            OpRequest::Sleep { .. } => "sleep".into(),
            OpRequest::Signal { name, .. } => format!("signal:{name}"),
            OpRequest::Child { workflow, .. } => short_name(workflow).to_string(),
            OpRequest::All(branches) => format!("join({})", branches.len()),
            OpRequest::Map { items, .. } => format!("map({})", items.len()),
            OpRequest::Callback { task, .. } => format!("callback:{}", task.label()),
            OpRequest::Race(branches) => format!("race({})", branches.len()),
            OpRequest::ContinueAsNew { .. } => "continue_as_new".into(),
            OpRequest::Batch { items, .. } => format!("batch({})", items.len()),
            OpRequest::FirstOk(branches) => format!("first_ok({})", branches.len()),
            OpRequest::Named { name, .. } => name.clone(),
        }
    }

    /// The operation without its name, and the name if it has one.
    pub fn unnamed(self) -> (OpRequest, Option<String>) {
        match self {
            OpRequest::Named { name, op } => (op.unnamed().0, Some(name)),
            other => (other, None),
        }
    }
}

/// The last `::` segment of a qualified name.
pub fn short_name(name: &str) -> &str {
    name.rsplit("::").next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_rate_is_exact_for_every_whole_percent() {
        for percent in 0..=100u32 {
            let rate = Tolerance {
                max_failures: None,
                max_failure_rate: Some(percent as f64 / 100.0),
            };
            for len in 1..=1000u32 {
                assert_eq!(
                    rate.allowed(len),
                    percent * len / 100,
                    "{percent}% of {len}"
                );
            }
        }
        let odd = |r: f64| Tolerance {
            max_failures: None,
            max_failure_rate: Some(r),
        };
        assert_eq!(odd(0.29).allowed(100), 29);
        assert_eq!(odd(0.125).allowed(8), 1);
        assert_eq!(odd(1e-9).allowed(u32::MAX), 4);
        assert_eq!(odd(f64::NAN).allowed(10), 0);
        assert_eq!(odd(2.0).allowed(10), 10);
        assert_eq!(odd(-1.0).allowed(10), 0);
    }

    fn nest(levels: u32) -> OpRequest {
        let mut op = OpRequest::Sleep { until_ms: 1 };
        for i in 0..levels {
            op = if i % 2 == 0 {
                OpRequest::All(vec![op])
            } else {
                OpRequest::Race(vec![op])
            };
        }
        op
    }

    #[test]
    fn nesting_is_limited_at_decode() {
        let ok = nest(MAX_OP_NESTING);
        let bytes = postcard::to_allocvec(&ok).unwrap();
        assert_eq!(postcard::from_bytes::<OpRequest>(&bytes).unwrap(), ok);
        let deep = postcard::to_allocvec(&nest(MAX_OP_NESTING + 1)).unwrap();
        assert!(postcard::from_bytes::<OpRequest>(&deep).is_err());
        // A refused decode leaves the depth counter where it was.
        assert_eq!(OP_DEPTH.with(|d| d.get()), 0);
        assert_eq!(postcard::from_bytes::<OpRequest>(&bytes).unwrap(), ok);
    }
}
