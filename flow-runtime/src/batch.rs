//! Completion policies for parallel work: [`all`] runs branches of different types (or a
//! `Vec` of one type, as [`Map::min_successes`](crate::Map::min_successes) does) with a
//! concurrency limit until a policy says the work is complete, and reports why it
//! completed and how each branch ended, as a [`Batch`].

use std::future::IntoFuture;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::op::{CompletionPolicy, DurableOp, OpRequest};
use crate::output::push_array_header;
use crate::task::BoxFuture;

/// Why a [`Batch`] completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Completion {
    /// Every branch finished (succeeded or failed within the tolerance); also when a
    /// minimum number of successes was asked for and could not be reached.
    AllDone,
    /// The minimum number of successes was reached; the branches still running were
    /// cancelled and the others never started.
    MinSuccessesReached,
    /// More branches failed than tolerated; the branches still running were cancelled and
    /// the others never started.
    FailureToleranceExceeded,
}

/// How one branch (or map item) of a [`Batch`] ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BranchStatus<T> {
    /// It finished and did not fail, with this output.
    Succeeded(T),
    /// It failed: a task whose last attempt failed (its output, e.g. the `Err`, is kept),
    /// a child workflow that returned `Err` (kept too), or a child run that failed (no
    /// output).
    Failed {
        /// What went wrong.
        error: String,
        /// The branch's output, when it has one.
        output: Option<T>,
    },
    /// The batch completed before the branch started.
    NotStarted,
    /// The branch was running when the batch completed; it was cancelled (its task sees
    /// `TaskContext::is_cancelled`, its child run is cancelled, its timer dropped).
    Cancelled,
}

impl<T> BranchStatus<T> {
    /// The output of a branch that succeeded.
    pub fn succeeded(&self) -> Option<&T> {
        match self {
            BranchStatus::Succeeded(value) => Some(value),
            _ => None,
        }
    }

    /// True if the branch failed.
    pub fn is_failed(&self) -> bool {
        matches!(self, BranchStatus::Failed { .. })
    }
}

/// The outcome of a batch: why it completed, and each branch's status in branch order (a
/// tuple of [`BranchStatus`] for [`all`] over a tuple, a `Vec` for a `Vec` or a map).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch<S> {
    /// Why the batch completed.
    pub completion: Completion,
    /// Each branch's status.
    pub branches: S,
}

impl<T> Batch<Vec<BranchStatus<T>>> {
    /// The outputs of the branches that succeeded, with their indexes.
    pub fn successes(&self) -> impl Iterator<Item = (usize, &T)> {
        self.branches
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.succeeded().map(|v| (i, v)))
    }

    /// How many branches failed.
    pub fn failures(&self) -> usize {
        self.branches.iter().filter(|s| s.is_failed()).count()
    }
}

/// Runs durable operations in parallel under a completion policy, built by [`all`] (or by
/// [`Map::min_successes`](crate::Map::min_successes) and [`Map::batch`](crate::Map::batch));
/// awaits to a [`Batch`].
///
/// Each branch must be a task call, a child workflow or a sleep (as a map item). In a
/// workflow each branch's result is committed as it finishes; once the policy says the
/// batch is complete, the branches still running are cancelled and the rest never start,
/// in the same transition that resumes the workflow, so no branch is started or rerun
/// after that, even across a crash.
///
/// Awaited outside a workflow (no engine to stop branches) every branch runs; the
/// completion is judged on all of their outcomes and no branch is `NotStarted` or
/// `Cancelled`.
#[must_use = "a batch does nothing unless awaited"]
pub struct Batched<T> {
    pub(crate) ops: T,
    pub(crate) max_in_flight: u32,
    pub(crate) policy: CompletionPolicy,
}

/// Runs durable operations of different types in parallel (a tuple of up to 8), or any
/// number of one type (a `Vec`), and reports how each ended as a [`Batch`]. Without a
/// policy every branch runs and a failure is just a status; add one with
/// [`Batched::min_successes`], [`Batched::tolerate_failures`],
/// [`Batched::tolerate_failure_rate`] or [`Batched::fail_fast`], and limit how many run at
/// once with [`Batched::max_in_flight`].
///
/// ```
/// # use flow::{task, workflow, BranchStatus, Completion};
/// # #[task] async fn quote_a(sku: String) -> Result<u64, String> { Ok(3) }
/// # #[task] async fn quote_b(sku: String) -> Result<u64, String> { Ok(4) }
/// # #[task] async fn stock(sku: String) -> Result<u32, String> { Ok(1) }
/// #[workflow]
/// async fn quote(sku: String) -> Option<u64> {
///     let batch = flow::all((quote_a(sku.clone()), quote_b(sku.clone()), stock(sku)))
///         .min_successes(2)
///         .await;
///     let (a, _b, _stock) = &batch.branches;
///     match (batch.completion, a) {
///         (Completion::MinSuccessesReached, BranchStatus::Succeeded(Ok(price))) => Some(*price),
///         _ => None,
///     }
/// }
/// ```
pub fn all<T>(branches: T) -> Batched<T> {
    Batched {
        ops: branches,
        max_in_flight: u32::MAX,
        policy: CompletionPolicy::default(),
    }
}

/// Checks a concurrency limit given to a builder; 0 would never start anything.
pub(crate) fn in_flight_limit(max_in_flight: usize, what: &str) -> u32 {
    assert!(
        max_in_flight > 0,
        "{what} needs max_in_flight of at least 1 (0 would never start anything); pass 1 \
         to run one at a time"
    );
    max_in_flight.min(u32::MAX as usize) as u32
}

impl<T> Batched<T> {
    /// Runs at most `n` branches at once (by default all of them).
    ///
    /// # Panics
    ///
    /// If `n` is 0 (nothing could ever start); in a workflow the panic fails the run at
    /// the step that builds the batch.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = in_flight_limit(n, "a batch");
        self
    }

    /// Completes the batch once `n` branches succeeded. If fewer can succeed, the batch
    /// runs to its end ([`Completion::AllDone`]) unless the failure tolerance stops it.
    ///
    /// # Panics
    ///
    /// If `n` is 0 (the batch would be complete before it started).
    pub fn min_successes(mut self, n: u32) -> Self {
        assert!(
            n > 0,
            "min_successes needs at least 1 (0 would complete the batch before it started); \
             leave it out to run every branch"
        );
        self.policy.min_successes = Some(n);
        self
    }

    /// Completes the batch ([`Completion::FailureToleranceExceeded`]) once more than `n`
    /// branches failed; with a rate too, the smaller limit wins.
    pub fn tolerate_failures(mut self, n: u32) -> Self {
        self.policy.tolerance.max_failures = Some(n);
        self
    }

    /// Completes the batch once more than `rate` of all branches failed (0.1 = 10%),
    /// rounded down on the decimal as written, as
    /// [`Map::tolerate_failure_rate`](crate::Map::tolerate_failure_rate) does; with a count
    /// too, the smaller limit wins.
    pub fn tolerate_failure_rate(mut self, rate: f64) -> Self {
        self.policy.tolerance.max_failure_rate = Some(rate);
        self
    }

    /// Completes the batch at the first failure: `tolerate_failures(0)`.
    pub fn fail_fast(self) -> Self {
        self.tolerate_failures(0)
    }
}

/// What completes a batch of `len` branches once `succeeded` and `failed` of them
/// finished; `None` while it goes on. Reaching the minimum of successes is judged first.
pub(crate) fn verdict(
    policy: &CompletionPolicy,
    len: u32,
    succeeded: u32,
    failed: u32,
) -> Option<Completion> {
    if policy.min_successes.is_some_and(|n| succeeded >= n) {
        Some(Completion::MinSuccessesReached)
    } else if failed > policy.tolerance.allowed(len) {
        Some(Completion::FailureToleranceExceeded)
    } else if succeeded.saturating_add(failed) >= len {
        Some(Completion::AllDone)
    } else {
        None
    }
}

/// A branch's status as the engine holds it: around its stored output bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RawStatus<'a> {
    Succeeded(&'a [u8]),
    Failed {
        error: &'a str,
        output: Option<&'a [u8]>,
    },
    NotStarted,
    Cancelled,
}

/// The encoded [`Batch`] (see `output.rs` for the wire format) around the branches'
/// stored outputs, in branch order.
pub(crate) fn encode<'a>(
    completion: Completion,
    statuses: &[RawStatus<'a>],
) -> Result<Vec<u8>, CodecError> {
    let text = |s: &str| codec::encode(s, String::new);
    let mut out = vec![0x82]; // a struct of two fields, as a map
    out.extend(text("completion")?);
    out.extend(codec::encode(&completion, || {
        "batch completion".to_string()
    })?);
    out.extend(text("branches")?);
    push_array_header(statuses.len() as u32, &mut out);
    for status in statuses {
        match status {
            RawStatus::Succeeded(output) => {
                out.push(0x81); // a newtype variant: {"Succeeded": output}
                out.extend(text("Succeeded")?);
                out.extend_from_slice(output);
            }
            RawStatus::Failed { error, output } => {
                out.push(0x81); // a struct variant: {"Failed": {"error": .., "output": ..}}
                out.extend(text("Failed")?);
                out.push(0x82);
                out.extend(text("error")?);
                out.extend(text(error)?);
                out.extend(text("output")?);
                match output {
                    Some(output) => out.extend_from_slice(output),
                    None => out.push(0xc0), // nil: None
                }
            }
            RawStatus::NotStarted => out.extend(text("NotStarted")?),
            RawStatus::Cancelled => out.extend(text("Cancelled")?),
        }
    }
    if out.len() > codec::MAX_PAYLOAD_BYTES {
        return Err(CodecError::TooLarge {
            what: "a batch's outcome".into(),
            size: out.len(),
            limit: codec::MAX_PAYLOAD_BYTES,
        });
    }
    Ok(out)
}

/// The status of a branch that ran as plain code, judged as the engine judges it.
fn judged<O: DurableOp>(output: O::Output) -> BranchStatus<O::Output> {
    match O::failure(&output) {
        Some(error) => BranchStatus::Failed {
            error,
            output: Some(output),
        },
        None => BranchStatus::Succeeded(output),
    }
}

/// How a batch that ran every branch as plain code completed.
fn plain_completion<T>(policy: &CompletionPolicy, statuses: &[&BranchStatus<T>]) -> Completion {
    let len = statuses.len() as u32;
    let failed = statuses.iter().filter(|s| s.is_failed()).count() as u32;
    verdict(policy, len, len - failed, failed).unwrap_or(Completion::AllDone)
}

fn requests<O: DurableOp>(ops: Vec<O>) -> Result<Vec<OpRequest>, CodecError> {
    ops.into_iter().map(DurableOp::into_request).collect()
}

#[diagnostic::do_not_recommend]
impl<O: DurableOp> DurableOp for Batched<Vec<O>> {
    type Output = Batch<Vec<BranchStatus<O::Output>>>;
    fn into_request(self) -> Result<OpRequest, CodecError> {
        Ok(OpRequest::Batch {
            items: requests(self.ops)?,
            max_in_flight: self.max_in_flight,
            policy: self.policy,
        })
    }
}

impl<O> IntoFuture for Batched<Vec<O>>
where
    O: DurableOp + IntoFuture<Output = <O as DurableOp>::Output> + Send + 'static,
    <O as IntoFuture>::IntoFuture: Send + 'static,
{
    type Output = Batch<Vec<BranchStatus<<O as DurableOp>::Output>>>;
    type IntoFuture = BoxFuture<Self::Output>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let outputs = crate::map::run_limited(self.ops, self.max_in_flight).await;
            let branches: Vec<_> = outputs.into_iter().map(judged::<O>).collect();
            let completion = plain_completion(&self.policy, &branches.iter().collect::<Vec<_>>());
            Batch {
                completion,
                branches,
            }
        })
    }
}

macro_rules! impl_batched {
    ($($name:ident $idx:tt),+) => {
        #[diagnostic::do_not_recommend]
        impl<$($name: DurableOp),+> DurableOp for Batched<($($name,)+)> {
            type Output = Batch<($(BranchStatus<$name::Output>,)+)>;
            fn into_request(self) -> Result<OpRequest, CodecError> {
                Ok(OpRequest::Batch {
                    items: vec![$(self.ops.$idx.into_request()?),+],
                    max_in_flight: self.max_in_flight,
                    policy: self.policy,
                })
            }
        }

        impl<$($name),+> IntoFuture for Batched<($($name,)+)>
        where
            $(
                $name: DurableOp + IntoFuture<Output = <$name as DurableOp>::Output> + Send + 'static,
                <$name as IntoFuture>::IntoFuture: Send + 'static,
            )+
        {
            type Output = Batch<($(BranchStatus<<$name as DurableOp>::Output>,)+)>;
            type IntoFuture = BoxFuture<Self::Output>;
            fn into_future(self) -> Self::IntoFuture {
                let permits = Arc::new(tokio::sync::Semaphore::new(self.max_in_flight as usize));
                Box::pin(async move {
                    let branches = tokio::join!($({
                        let permits = permits.clone();
                        let op = self.ops.$idx;
                        async move {
                            let _permit = permits.acquire_owned().await;
                            judged::<$name>(op.into_future().await)
                        }
                    }),+);
                    let completion = plain_completion(&self.policy, &[$(&branches.$idx.as_unit()),+]);
                    Batch { completion, branches }
                })
            }
        }
    };
}

impl<T> BranchStatus<T> {
    /// The status without its value, to judge statuses of different types together.
    fn as_unit(&self) -> BranchStatus<()> {
        match self {
            BranchStatus::Succeeded(_) => BranchStatus::Succeeded(()),
            BranchStatus::Failed { error, .. } => BranchStatus::Failed {
                error: error.clone(),
                output: None,
            },
            BranchStatus::NotStarted => BranchStatus::NotStarted,
            BranchStatus::Cancelled => BranchStatus::Cancelled,
        }
    }
}

impl_batched!(A 0);
impl_batched!(A 0, B 1);
impl_batched!(A 0, B 1, C 2);
impl_batched!(A 0, B 1, C 2, D 3);
impl_batched!(A 0, B 1, C 2, D 3, E 4);
impl_batched!(A 0, B 1, C 2, D 3, E 4, F 5);
impl_batched!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
impl_batched!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Tolerance;

    fn enc<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        codec::encode(value, String::new).unwrap()
    }

    #[test]
    fn the_engines_batch_bytes_are_the_codecs() {
        let typed: Batch<Vec<BranchStatus<Result<u32, String>>>> = Batch {
            completion: Completion::MinSuccessesReached,
            branches: vec![
                BranchStatus::Succeeded(Ok(7)),
                BranchStatus::Failed {
                    error: "boom".into(),
                    output: Some(Err("no".into())),
                },
                BranchStatus::Failed {
                    error: "child failed".into(),
                    output: None,
                },
                BranchStatus::NotStarted,
                BranchStatus::Cancelled,
            ],
        };
        let ok = enc(&Ok::<u32, String>(7));
        let err = enc(&Err::<u32, String>("no".into()));
        let raw = [
            RawStatus::Succeeded(&ok),
            RawStatus::Failed {
                error: "boom",
                output: Some(&err),
            },
            RawStatus::Failed {
                error: "child failed",
                output: None,
            },
            RawStatus::NotStarted,
            RawStatus::Cancelled,
        ];
        let bytes = encode(Completion::MinSuccessesReached, &raw).unwrap();
        assert_eq!(bytes, enc(&typed));
        let back: Batch<Vec<BranchStatus<Result<u32, String>>>> =
            codec::decode(&bytes, String::new).unwrap();
        assert_eq!(back, typed);
        // Branches of different types read back as a tuple.
        let five = enc(&5u8);
        let word = enc("w");
        let bytes = encode(
            Completion::AllDone,
            &[RawStatus::Succeeded(&five), RawStatus::Succeeded(&word)],
        )
        .unwrap();
        let back: Batch<(BranchStatus<u8>, BranchStatus<String>)> =
            codec::decode(&bytes, String::new).unwrap();
        assert_eq!(
            back.branches,
            (
                BranchStatus::Succeeded(5),
                BranchStatus::Succeeded("w".into())
            )
        );
    }

    #[test]
    fn verdicts() {
        let policy = |min: Option<u32>, max_failures: Option<u32>| CompletionPolicy {
            min_successes: min,
            tolerance: Tolerance {
                max_failures,
                max_failure_rate: None,
            },
        };
        let none = policy(None, None);
        assert_eq!(verdict(&none, 3, 1, 1), None);
        assert_eq!(verdict(&none, 3, 1, 2), Some(Completion::AllDone));
        assert_eq!(verdict(&none, 0, 0, 0), Some(Completion::AllDone));
        let min2 = policy(Some(2), None);
        assert_eq!(verdict(&min2, 5, 1, 3), None);
        assert_eq!(
            verdict(&min2, 5, 2, 0),
            Some(Completion::MinSuccessesReached)
        );
        assert_eq!(verdict(&min2, 5, 1, 4), Some(Completion::AllDone));
        let fail_fast = policy(None, Some(0));
        assert_eq!(
            verdict(&fail_fast, 5, 3, 1),
            Some(Completion::FailureToleranceExceeded)
        );
        let rate = CompletionPolicy {
            min_successes: None,
            tolerance: Tolerance {
                max_failures: None,
                max_failure_rate: Some(0.29),
            },
        };
        assert_eq!(verdict(&rate, 100, 0, 29), None);
        assert_eq!(
            verdict(&rate, 100, 0, 30),
            Some(Completion::FailureToleranceExceeded)
        );
    }
}
