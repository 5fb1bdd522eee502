//! Shared by the differential tests: deterministic tasks and the workflow corpus.
#![allow(dead_code)]

pub mod tasks;
pub mod workflows;

use flow::testing::{Driver, Restore};
use flow::Workflow;
use std::fmt::Debug;
use std::future::IntoFuture;

/// Runs `make()` as plain async code, as an uninterrupted state machine, rebuilt from
/// its journal before every step, and rebuilt once at each step boundary in turn; all
/// must give the same output and the resumed runs must perform exactly the same steps.
/// Returns the output and the number of steps.
pub async fn differential<W, F>(make: F) -> (<W as Workflow>::Output, usize)
where
    W: Workflow + IntoFuture<Output = <W as Workflow>::Output>,
    <W as Workflow>::Output: PartialEq + Debug + Clone,
    F: Fn() -> W,
{
    let plain = make().await;
    let mut reference = Driver::new();
    let compiled = reference
        .run(make(), Restore::Never)
        .await
        .expect("uninterrupted run");
    assert_eq!(
        compiled, plain,
        "state machine differs from the plain async function"
    );
    let steps = reference.steps.len();
    let mut modes = vec![Restore::EveryStep];
    modes.extend((0..steps).map(Restore::AtStep));
    for mode in modes {
        let mut d = Driver::new();
        let out = d
            .run(make(), mode)
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert_eq!(out, plain, "output differs when resumed ({mode:?})");
        assert_eq!(
            d.steps, reference.steps,
            "steps differ when resumed ({mode:?})"
        );
    }
    (plain, steps)
}
