//! Parallel branches: [`join!`](crate::join) runs several durable operations at once.

use std::future::IntoFuture;

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
