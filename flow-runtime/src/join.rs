//! Parallel branches: [`join!`](crate::join) runs several durable operations at once, all
//! of them or at most a given number at a time ([`Join::max_in_flight`]).

use std::future::IntoFuture;
use std::sync::Arc;

use crate::codec::CodecError;
use crate::op::{DurableOp, OpRequest};
use crate::task::BoxFuture;

/// Several durable operations run concurrently, built by [`join!`](crate::join).
///
/// In a workflow, each branch's result is committed as it finishes, and after a crash
/// finished branches are not rerun; the await returns the outputs as a tuple, in order.
/// Awaited outside a workflow, the branches run concurrently as ordinary futures.
#[must_use = "a join does nothing unless awaited"]
pub struct Join<T>(pub T);

/// A join that runs at most a given number of its branches at once, built by
/// [`Join::max_in_flight`]; awaits to the same tuple as the join.
#[must_use = "a join does nothing unless awaited"]
pub struct LimitedJoin<T> {
    ops: T,
    max_in_flight: u32,
}

impl<T> Join<T> {
    /// Runs at most `n` branches at once, starting them in order as others finish. Each
    /// branch must then be a task call, a child workflow or a sleep (the branches are
    /// journaled as a map's items are); for a policy on failures or a report of each
    /// branch, see [`all`](crate::all).
    ///
    /// ```
    /// # use flow::{task, workflow};
    /// # #[task] async fn fetch(part: u32) -> u64 { part as u64 }
    /// #[workflow]
    /// async fn fetch_three() -> (u64, u64, u64) {
    ///     flow::join!(fetch(1), fetch(2), fetch(3)).max_in_flight(2).await
    /// }
    /// ```
    ///
    /// # Panics
    ///
    /// If `n` is 0 (no branch could ever start); in a workflow the panic fails the run at
    /// the step that builds the join.
    pub fn max_in_flight(self, n: usize) -> LimitedJoin<T> {
        LimitedJoin {
            ops: self.0,
            max_in_flight: crate::batch::in_flight_limit(n, "a join"),
        }
    }
}

/// Runs durable operations at once and waits for all of them (Step Functions' Parallel
/// state); the await evaluates to a tuple of their outputs.
///
/// ```
/// # use flow::{task, workflow};
/// # #[task] async fn price(sku: String) -> u64 { 1 }
/// # #[task] async fn stock(sku: String) -> u32 { 1 }
/// #[workflow]
/// async fn quote(sku: String) -> (u64, u32) {
///     let (p, s) = flow::join!(price(sku.clone()), stock(sku)).await;
///     (p, s)
/// }
/// ```
#[macro_export]
macro_rules! join {
    ($($op:expr),+ $(,)?) => {
        $crate::Join(($($op,)+))
    };
}

macro_rules! impl_join {
    ($($name:ident $idx:tt),+) => {
        impl<$($name: DurableOp),+> DurableOp for Join<($($name,)+)> {
            type Output = ($($name::Output,)+);
            fn into_request(self) -> Result<OpRequest, CodecError> {
                Ok(OpRequest::All(vec![$(self.0.$idx.into_request()?),+]))
            }
        }

        impl<$($name),+> IntoFuture for Join<($($name,)+)>
        where
            $($name: IntoFuture + Send + 'static, $name::IntoFuture: Send + 'static, $name::Output: Send + 'static,)+
        {
            type Output = ($($name::Output,)+);
            type IntoFuture = BoxFuture<Self::Output>;
            fn into_future(self) -> Self::IntoFuture {
                Box::pin(async move { tokio::join!($(self.0.$idx.into_future()),+) })
            }
        }

        #[diagnostic::do_not_recommend]
        impl<$($name: DurableOp),+> DurableOp for LimitedJoin<($($name,)+)> {
            type Output = ($($name::Output,)+);
            fn into_request(self) -> Result<OpRequest, CodecError> {
                // A map's output is the array of its items' outputs, as a join's is.
                Ok(OpRequest::Map {
                    items: vec![$(self.ops.$idx.into_request()?),+],
                    max_in_flight: self.max_in_flight,
                    tolerance: None,
                })
            }
        }

        impl<$($name),+> IntoFuture for LimitedJoin<($($name,)+)>
        where
            $($name: IntoFuture + Send + 'static, $name::IntoFuture: Send + 'static, $name::Output: Send + 'static,)+
        {
            type Output = ($($name::Output,)+);
            type IntoFuture = BoxFuture<Self::Output>;
            fn into_future(self) -> Self::IntoFuture {
                let permits = Arc::new(tokio::sync::Semaphore::new(self.max_in_flight as usize));
                Box::pin(async move {
                    tokio::join!($({
                        let permits = permits.clone();
                        let op = self.ops.$idx;
                        async move {
                            let _permit = permits.acquire_owned().await;
                            op.into_future().await
                        }
                    }),+)
                })
            }
        }
    };
}

impl_join!(A 0);
impl_join!(A 0, B 1);
impl_join!(A 0, B 1, C 2);
impl_join!(A 0, B 1, C 2, D 3);
impl_join!(A 0, B 1, C 2, D 3, E 4);
impl_join!(A 0, B 1, C 2, D 3, E 4, F 5);
impl_join!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
impl_join!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
