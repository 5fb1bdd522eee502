//! Racing durable operations: the first to finish wins, the others are cancelled; or,
//! with [`first_ok`], the first to succeed.

use std::future::IntoFuture;

use serde::{de::DeserializeOwned, Serialize};

use crate::codec::CodecError;
use crate::op::{DurableOp, OpRequest};
use crate::task::BoxFuture;

/// Operations raced against each other, built by [`select!`](crate::select) or [`race`].
///
/// In a workflow the branches run at once; the first to finish is committed as the
/// winner, and the losers are cancelled: their tasks see `TaskContext::is_cancelled`,
/// their timers are dropped, their child runs are cancelled. Each branch must be a task
/// call, child workflow, sleep, signal wait or callback (not a join or map).
#[must_use = "a race does nothing unless awaited"]
pub struct Race<T>(pub T);

/// The winner of a two-way [`select!`](crate::select). Stored as `[index, value]`, as a
/// race's output is (see `race_encoding.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Either<A, B> {
    /// The first operation won.
    Left(A),
    /// The second operation won.
    Right(B),
}

/// The winner of a three-way [`select!`](crate::select). Stored as `[index, value]`, as
/// a race's output is (see `race_encoding.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OneOf3<A, B, C> {
    /// The first operation won.
    First(A),
    /// The second operation won.
    Second(B),
    /// The third operation won.
    Third(C),
}

/// Races two or three durable operations; the await evaluates to [`Either`] (two) or
/// [`OneOf3`] (three), naming the winner with its output.
///
/// ```
/// # use std::time::Duration;
/// # use flow::workflow;
/// # const HOUR: Duration = Duration::from_secs(3600);
/// #[workflow]
/// async fn approve(order: u64) -> bool {
///     match flow::select!(flow::signal::<bool>("approval"), flow::sleep(HOUR)).await {
///         flow::Either::Left(approved) => approved,
///         flow::Either::Right(()) => false, // nobody answered in time
///     }
/// }
/// ```
#[macro_export]
macro_rules! select {
    ($a:expr, $b:expr $(,)?) => {
        $crate::Race(($a, $b))
    };
    ($a:expr, $b:expr, $c:expr $(,)?) => {
        $crate::Race(($a, $b, $c))
    };
}

/// Races any number of durable operations of one type; the await evaluates to the
/// winner's index and output.
pub fn race<I>(ops: I) -> Race<Vec<I::Item>>
where
    I: IntoIterator,
{
    Race(ops.into_iter().collect())
}

impl<A: DurableOp, B: DurableOp> DurableOp for Race<(A, B)> {
    type Output = Either<A::Output, B::Output>;
    fn into_request(self) -> Result<OpRequest, CodecError> {
        Ok(OpRequest::Race(vec![
            self.0 .0.into_request()?,
            self.0 .1.into_request()?,
        ]))
    }
}

impl<A: DurableOp, B: DurableOp, C: DurableOp> DurableOp for Race<(A, B, C)> {
    type Output = OneOf3<A::Output, B::Output, C::Output>;
    fn into_request(self) -> Result<OpRequest, CodecError> {
        Ok(OpRequest::Race(vec![
            self.0 .0.into_request()?,
            self.0 .1.into_request()?,
            self.0 .2.into_request()?,
        ]))
    }
}

impl<O: DurableOp> DurableOp for Race<Vec<O>> {
    type Output = (usize, O::Output);
    fn into_request(self) -> Result<OpRequest, CodecError> {
        Ok(OpRequest::Race(
            self.0
                .into_iter()
                .map(DurableOp::into_request)
                .collect::<Result<_, _>>()?,
        ))
    }
}

impl<A, B> IntoFuture for Race<(A, B)>
where
    A: IntoFuture + Send + 'static,
    A::IntoFuture: Send + 'static,
    A::Output: Send + 'static,
    B: IntoFuture + Send + 'static,
    B::IntoFuture: Send + 'static,
    B::Output: Send + 'static,
{
    type Output = Either<A::Output, B::Output>;
    type IntoFuture = BoxFuture<Self::Output>;
    fn into_future(self) -> Self::IntoFuture {
        let (a, b) = self.0;
        Box::pin(async move {
            tokio::select! {
                biased;
                a = a.into_future() => Either::Left(a),
                b = b.into_future() => Either::Right(b),
            }
        })
    }
}

impl<A, B, C> IntoFuture for Race<(A, B, C)>
where
    A: IntoFuture + Send + 'static,
    A::IntoFuture: Send + 'static,
    A::Output: Send + 'static,
    B: IntoFuture + Send + 'static,
    B::IntoFuture: Send + 'static,
    B::Output: Send + 'static,
    C: IntoFuture + Send + 'static,
    C::IntoFuture: Send + 'static,
    C::Output: Send + 'static,
{
    type Output = OneOf3<A::Output, B::Output, C::Output>;
    type IntoFuture = BoxFuture<Self::Output>;
    fn into_future(self) -> Self::IntoFuture {
        let (a, b, c) = self.0;
        Box::pin(async move {
            tokio::select! {
                biased;
                a = a.into_future() => OneOf3::First(a),
                b = b.into_future() => OneOf3::Second(b),
                c = c.into_future() => OneOf3::Third(c),
            }
        })
    }
}

impl<O> IntoFuture for Race<Vec<O>>
where
    O: IntoFuture + Send + 'static,
    O::IntoFuture: Send + 'static,
    O::Output: Send + 'static,
{
    type Output = (usize, O::Output);
    type IntoFuture = BoxFuture<Self::Output>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let mut set = tokio::task::JoinSet::new();
            for (i, op) in self.0.into_iter().enumerate() {
                set.spawn(async move { (i, op.into_future().await) });
            }
            match set.join_next().await {
                Some(Ok(winner)) => winner,
                Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                _ => panic!("flow::race needs at least one operation"),
            }
        })
    }
}

/// Operations raced for the first success, built by [`first_ok`].
#[must_use = "a race does nothing unless awaited"]
pub struct FirstOk<O>(Vec<O>);

/// Races durable operations that return `Result`s for the first `Ok`: the await evaluates
/// to `Ok((index, value))` of the first branch to succeed, the others being cancelled as
/// a [`race`]'s losers are; or, once every branch has failed, to `Err` with every
/// branch's error in branch order. A branch fails when it returns `Err` (a task's
/// last attempt failed, a child workflow returned `Err`); a child run that itself fails
/// (panics, faults, is cancelled) fails the run, as in a race.
///
/// In a workflow each failed branch's error is committed as it arrives, so after a crash
/// only the branches still running run again. Each branch must be a task call, child
/// workflow, sleep, signal wait or callback returning a `Result`.
///
/// ```
/// # use flow::{task, workflow};
/// # #[task] async fn from_mirror(mirror: u32) -> Result<String, String> { Ok("x".into()) }
/// #[workflow]
/// async fn download() -> Result<String, Vec<String>> {
///     let (_mirror, body) = flow::first_ok((0..3).map(from_mirror)).await?;
///     Ok(body)
/// }
/// ```
pub fn first_ok<I>(ops: I) -> FirstOk<I::Item>
where
    I: IntoIterator,
{
    FirstOk(ops.into_iter().collect())
}

#[diagnostic::do_not_recommend]
impl<O, T, E> DurableOp for FirstOk<O>
where
    O: DurableOp<Output = Result<T, E>>,
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Serialize + DeserializeOwned + Send + 'static,
{
    type Output = Result<(usize, T), Vec<E>>;
    fn into_request(self) -> Result<OpRequest, CodecError> {
        Ok(OpRequest::FirstOk(
            self.0
                .into_iter()
                .map(DurableOp::into_request)
                .collect::<Result<_, _>>()?,
        ))
    }
}

impl<O, T, E> IntoFuture for FirstOk<O>
where
    O: IntoFuture<Output = Result<T, E>> + Send + 'static,
    O::IntoFuture: Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    type Output = Result<(usize, T), Vec<E>>;
    type IntoFuture = BoxFuture<Self::Output>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let len = self.0.len();
            assert!(len > 0, "flow::first_ok needs at least one operation");
            let mut set = tokio::task::JoinSet::new();
            for (i, op) in self.0.into_iter().enumerate() {
                set.spawn(async move { (i, op.into_future().await) });
            }
            let mut errors: Vec<Option<E>> = (0..len).map(|_| None).collect();
            while let Some(joined) = set.join_next().await {
                match joined {
                    Ok((i, Ok(value))) => return Ok((i, value)),
                    Ok((i, Err(error))) => errors[i] = Some(error),
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(e) => panic!("a first_ok branch was cancelled: {e}"),
                }
            }
            Err(errors.into_iter().flatten().collect())
        })
    }
}
