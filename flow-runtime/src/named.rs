//! Names on operations: a sleep, a task call, a child run, a branch or a map item can
//! carry a name that the run's history shows instead of the operation's kind.

use std::future::IntoFuture;

use crate::codec::CodecError;
use crate::op::{DurableOp, OpRequest};

/// A durable operation with a name, built by [`OpExt::named`].
///
/// The name is journaled with the operation: a step's `StepScheduled` event carries it as
/// its `name`, and a named branch of a join, race or batch, or a named map item, gets a
/// `BranchNamed` event when the step is scheduled. It changes nothing else: the operation
/// runs, retries and resumes as it would unnamed (a child run keeps its run ID).
#[must_use = "a named operation does nothing unless awaited"]
pub struct Named<O> {
    name: String,
    op: O,
}

/// Gives any durable operation a name; in scope with `use flow::OpExt;`
/// ([`Sleep`](crate::Sleep) has its own `named` and needs no import).
///
/// ```
/// # use std::time::Duration;
/// # use flow::{task, workflow, OpExt};
/// # #[task] async fn charge(cents: u64) -> Result<u64, String> { Ok(cents) }
/// #[workflow]
/// async fn checkout(cents: u64) -> Result<u64, String> {
///     flow::sleep(Duration::from_millis(1)).named("cool-down").await;
///     charge(cents).named("charge card").await
/// }
/// ```
pub trait OpExt: DurableOp + Sized {
    /// This operation, shown as `name` in the run's history.
    fn named(self, name: impl Into<String>) -> Named<Self> {
        Named {
            name: name.into(),
            op: self,
        }
    }
}

impl<O: DurableOp> OpExt for O {}

impl<O> Named<O> {
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[diagnostic::do_not_recommend]
impl<O: DurableOp> DurableOp for Named<O> {
    type Output = O::Output;
    fn into_request(self) -> Result<OpRequest, CodecError> {
        Ok(OpRequest::Named {
            name: self.name,
            op: Box::new(self.op.into_request()?),
        })
    }
    fn failure(output: &Self::Output) -> Option<String> {
        O::failure(output)
    }
}

/// Awaited outside a workflow the name means nothing: the operation runs as it is.
impl<O: IntoFuture> IntoFuture for Named<O> {
    type Output = O::Output;
    type IntoFuture = O::IntoFuture;
    fn into_future(self) -> Self::IntoFuture {
        self.op.into_future()
    }
}
