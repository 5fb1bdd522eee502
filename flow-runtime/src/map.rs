//! Fan-out over a collection (Step Functions' Map state): [`map`] runs one durable
//! operation per item with a concurrency limit; failure tolerances make it fail early
//! ([`TolerantMap`]), completion policies make it report a [`Batch`](crate::Batch).

use std::future::IntoFuture;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::batch::Batched;
use crate::codec::CodecError;
use crate::op::{DurableOp, OpRequest, Tolerance};
use crate::task::BoxFuture;

/// Runs `op(item)` for every item, at most `max_in_flight` at once, and collects the
/// outputs in item order.
///
/// The closure runs right away, once per item, to build the operations; they must be task
/// calls, child workflows or sleeps. In a workflow the items are journaled once when the
/// map is scheduled, each item's result is committed as it finishes, and after a crash
/// finished items are not rerun. By default an item's failure is just its output (e.g. a
/// task's `Err`); see [`Map::tolerate_failures`] to fail the whole map instead.
///
/// # Panics
///
/// If `max_in_flight` is 0 (no item could ever start). In a workflow the panic faults the
/// run with this message, at the step that calls `map`.
///
/// ```
/// # use flow::{task, workflow};
/// # #[task] async fn resize(image: String) -> Result<u64, String> { Ok(1) }
/// #[workflow]
/// async fn resize_all(images: Vec<String>) -> Vec<Result<u64, String>> {
///     flow::map(images, 16, |image| resize(image)).await
/// }
/// ```
pub fn map<I, O, F>(items: I, max_in_flight: usize, op: F) -> Map<O>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> O,
{
    assert!(
        max_in_flight > 0,
        "flow::map needs max_in_flight of at least 1 (0 would never start an item); \
         pass 1 to run the items one at a time"
    );
    Map {
        ops: items.into_iter().map(op).collect(),
        max_in_flight: max_in_flight.min(u32::MAX as usize) as u32,
    }
}

/// A fan-out over a collection, built by [`map`]; awaits to `Vec<output>`.
#[must_use = "a map does nothing unless awaited"]
pub struct Map<O> {
    ops: Vec<O>,
    max_in_flight: u32,
}

/// A fan-out that fails once too many items failed, built by [`Map::tolerate_failures`] or
/// [`Map::tolerate_failure_rate`]; awaits to `Result<Vec<output>, MapFailed>`.
///
/// An item fails when it is a task whose final attempt failed (its `Err` output, or a
/// timeout/panic, is still what the `Vec` holds for it), a child workflow that returned
/// `Err` (the `Vec` holds the `Err`), or a child run that failed. A failed child run (a
/// fault, a cancellation) has no output to put in the `Vec`, so it always fails the map.
/// When the failures exceed the tolerance, the items still running are cancelled and the
/// await returns `Err(MapFailed)`.
///
/// Awaited outside a workflow (no engine to judge attempts), it never fails.
#[must_use = "a map does nothing unless awaited"]
pub struct TolerantMap<O> {
    map: Map<O>,
    tolerance: Tolerance,
}

impl<O> Map<O> {
    /// Tolerates up to `n` failed items.
    pub fn tolerate_failures(self, n: u32) -> TolerantMap<O> {
        TolerantMap {
            map: self,
            tolerance: Tolerance {
                max_failures: Some(n),
                max_failure_rate: None,
            },
        }
    }

    /// Tolerates failed items up to `rate` of all items (0.1 = 10%), rounded down on
    /// the decimal as written: `0.29` of 100 items tolerates 29.
    pub fn tolerate_failure_rate(self, rate: f64) -> TolerantMap<O> {
        TolerantMap {
            map: self,
            tolerance: Tolerance {
                max_failures: None,
                max_failure_rate: Some(rate),
            },
        }
    }

    /// Fails the map at the first failed item: `tolerate_failures(0)`.
    pub fn fail_fast(self) -> TolerantMap<O> {
        self.tolerate_failures(0)
    }

    /// Completes the map once `n` items succeeded: the items still running are cancelled,
    /// the others never start, and the await returns a [`Batch`](crate::Batch) that says why the map
    /// completed and how each item ended (see [`Batched::min_successes`]).
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn min_successes(self, n: u32) -> Batched<Vec<O>> {
        self.batch().min_successes(n)
    }

    /// Reports how each item ended as a [`Batch`](crate::Batch) instead of a `Vec` of outputs: a failed
    /// child run is then a failed item rather than the run's failure. Add a policy with
    /// the [`Batched`] methods.
    pub fn batch(self) -> Batched<Vec<O>> {
        let max_in_flight = self.max_in_flight;
        crate::batch::all(self.ops).max_in_flight(max_in_flight as usize)
    }

    /// How many items the map has.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True if the map has no items.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl<O> TolerantMap<O> {
    /// Also limits the failed items to `n` (the smaller limit wins).
    pub fn tolerate_failures(mut self, n: u32) -> Self {
        self.tolerance.max_failures = Some(n);
        self
    }

    /// Also limits the failed items to `rate` of all items (the smaller limit wins).
    pub fn tolerate_failure_rate(mut self, rate: f64) -> Self {
        self.tolerance.max_failure_rate = Some(rate);
        self
    }

    /// Completes the map once `n` items succeeded, keeping the tolerance: the await
    /// returns a [`Batch`](crate::Batch) (see [`Map::min_successes`]) instead of `Err(MapFailed)` when
    /// too many items failed.
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn min_successes(self, n: u32) -> Batched<Vec<O>> {
        self.batch().min_successes(n)
    }

    /// Reports how each item ended as a [`Batch`](crate::Batch), with
    /// [`Completion::FailureToleranceExceeded`](crate::Completion::FailureToleranceExceeded)
    /// instead of `Err(MapFailed)` when too many items failed.
    pub fn batch(self) -> Batched<Vec<O>> {
        let mut batched = self.map.batch();
        batched.policy.tolerance = self.tolerance;
        batched
    }
}

/// The outcome of a tolerant map whose failed items exceeded the tolerance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{failed} of {total} map items failed (at most {tolerated} tolerated); first failure: {first_error}")]
pub struct MapFailed {
    /// Failed items when the map stopped.
    pub failed: u32,
    /// All items.
    pub total: u32,
    /// The tolerance, in items.
    pub tolerated: u32,
    /// The first failure.
    pub first_error: String,
}

fn request<O: DurableOp>(
    ops: Vec<O>,
    max_in_flight: u32,
    tolerance: Option<Tolerance>,
) -> Result<OpRequest, CodecError> {
    let items = ops
        .into_iter()
        .map(DurableOp::into_request)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(OpRequest::Map {
        items,
        max_in_flight,
        tolerance,
    })
}

impl<O: DurableOp> DurableOp for Map<O> {
    type Output = Vec<O::Output>;
    fn into_request(self) -> Result<OpRequest, CodecError> {
        request(self.ops, self.max_in_flight, None)
    }
}

#[diagnostic::do_not_recommend]
impl<O: DurableOp> DurableOp for TolerantMap<O> {
    type Output = Result<Vec<O::Output>, MapFailed>;
    fn into_request(self) -> Result<OpRequest, CodecError> {
        request(self.map.ops, self.map.max_in_flight, Some(self.tolerance))
    }
}

/// Runs the futures with at most `limit` at once; outputs in order.
pub(crate) async fn run_limited<O>(ops: Vec<O>, limit: u32) -> Vec<O::Output>
where
    O: IntoFuture + Send + 'static,
    O::IntoFuture: Send + 'static,
    O::Output: Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(limit as usize));
    let handles: Vec<_> = ops
        .into_iter()
        .map(|op| {
            let permits = permits.clone();
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                op.into_future().await
            })
        })
        .collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await {
            Ok(output) => outputs.push(output),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a map item was cancelled: {e}"),
        }
    }
    outputs
}

impl<O> IntoFuture for Map<O>
where
    O: IntoFuture + Send + 'static,
    O::IntoFuture: Send + 'static,
    O::Output: Send + 'static,
{
    type Output = Vec<O::Output>;
    type IntoFuture = BoxFuture<Self::Output>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run_limited(self.ops, self.max_in_flight))
    }
}

impl<O> IntoFuture for TolerantMap<O>
where
    O: DurableOp + IntoFuture<Output = <O as DurableOp>::Output> + Send + 'static,
    <O as IntoFuture>::IntoFuture: Send + 'static,
{
    type Output = Result<Vec<<O as DurableOp>::Output>, MapFailed>;
    type IntoFuture = BoxFuture<Self::Output>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let total = self.map.ops.len() as u32;
            let outputs = run_limited(self.map.ops, self.map.max_in_flight).await;
            // As plain code every item runs; the engine stops at the first failure over
            // the tolerance, so `failed` can be larger here. Ok/Err is the same.
            let failures: Vec<String> = outputs.iter().filter_map(O::failure).collect();
            let tolerated = self.tolerance.allowed(total);
            if failures.len() as u32 > tolerated {
                return Err(MapFailed {
                    failed: failures.len() as u32,
                    total,
                    tolerated,
                    first_error: failures.into_iter().next().unwrap_or_default(),
                });
            }
            Ok(outputs)
        })
    }
}
