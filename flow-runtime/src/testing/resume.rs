//! Resume checks as a one-liner: a workflow run once without interruption, then once per
//! step boundary with its machine rebuilt there from its saved slots (what a restart
//! does), each compared with the first.

use std::time::SystemTime;

use super::driver::Restore;
use super::{TestEnv, TestError};
use crate::codec;
use crate::workflow::Workflow;

/// How a run resumed at a step boundary differed from the uninterrupted run.
#[derive(Debug, thiserror::Error)]
pub enum ResumeMismatch {
    /// The uninterrupted run did not complete, so there is nothing to compare with.
    #[error("the uninterrupted run did not complete: {0}")]
    Reference(TestError),
    /// Rebuilt before resumption `resumption`, the run did not complete.
    #[error("rebuilt before resumption {resumption}, the run did not complete: {error}")]
    DidNotComplete {
        /// 0-based resumption at which the machine was rebuilt (`usize::MAX`: at every one).
        resumption: usize,
        /// Why.
        error: TestError,
    },
    /// Rebuilt before resumption `resumption`, the run awaited other operations or got
    /// other outputs.
    #[error(
        "rebuilt before resumption {resumption}, the run's steps differ from step {index}: \
         uninterrupted `{expected}`, resumed `{got}`"
    )]
    DifferentSteps {
        /// 0-based resumption at which the machine was rebuilt.
        resumption: usize,
        /// The first step that differs.
        index: usize,
        /// The uninterrupted run's step there (label and output as JSON), or `end`.
        expected: String,
        /// The resumed run's.
        got: String,
    },
    /// Rebuilt before resumption `resumption`, the run returned something else.
    #[error(
        "rebuilt before resumption {resumption}, the run returned {got} instead of {expected}"
    )]
    DifferentOutput {
        /// 0-based resumption at which the machine was rebuilt.
        resumption: usize,
        /// The uninterrupted run's output, as JSON.
        expected: String,
        /// The resumed run's, as JSON.
        got: String,
    },
}

/// Runs `make()` in a fresh [`TestEnv`] without interruption, then again with its machine
/// rebuilt from its saved slots before each resumption in turn (and once before every
/// one), and checks that each run awaits the same operations, gets the same outputs and
/// returns the same value. Returns how many step boundaries were checked.
///
/// Virtual time jumps to each timer; a run that waits for a signal or a callback cannot
/// finish here (drive such runs with [`TestEnv::restoring`]). For mocks or child
/// workflows, use [`check_resumes_with`].
///
/// ```
/// use flow::{task, workflow};
///
/// #[task] async fn double(n: u32) -> u32 { n * 2 }
///
/// #[workflow]
/// async fn twice(n: u32) -> u32 {
///     let mut total = 0;
///     for i in 0..n {
///         total += double(i).await;
///     }
///     total
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let checked = flow::testing::check_resumes(|| twice(3)).await.unwrap();
/// assert_eq!(checked, 3);
/// # }
/// ```
pub async fn check_resumes<W: Workflow>(make: impl Fn() -> W) -> Result<usize, ResumeMismatch> {
    check_resumes_with(make, |_| {}).await
}

/// [`check_resumes`], with `setup` applied to each fresh environment first (mocks, child
/// workflows).
pub async fn check_resumes_with<W: Workflow>(
    make: impl Fn() -> W,
    setup: impl Fn(&TestEnv),
) -> Result<usize, ResumeMismatch> {
    // The same start instant for every run, so that deadlines (and outputs built from
    // them) agree.
    let start = SystemTime::now();
    let run = |restore: Restore| {
        let env = TestEnv::starting_at(start).restoring(restore);
        setup(&env);
        let call = make();
        async move {
            let run = env.start(call).await?;
            env.finished(run.run_id()).await
        }
    };
    let (expected, steps) = run(Restore::Never)
        .await
        .map_err(ResumeMismatch::Reference)?;
    let mut points: Vec<(usize, Restore)> =
        (0..steps.len()).map(|k| (k, Restore::AtStep(k))).collect();
    points.push((usize::MAX, Restore::EveryStep));
    for (resumption, restore) in points {
        let (output, got_steps) = run(restore)
            .await
            .map_err(|error| ResumeMismatch::DidNotComplete { resumption, error })?;
        let show = |step: Option<&(String, Vec<u8>)>| match step {
            Some((label, output)) => format!("{label} -> {}", json(output)),
            None => "end".to_string(),
        };
        if let Some(index) =
            (0..steps.len().max(got_steps.len())).find(|i| steps.get(*i) != got_steps.get(*i))
        {
            return Err(ResumeMismatch::DifferentSteps {
                resumption,
                index,
                expected: show(steps.get(index)),
                got: show(got_steps.get(index)),
            });
        }
        if output != expected {
            return Err(ResumeMismatch::DifferentOutput {
                resumption,
                expected: json(&expected),
                got: json(&output),
            });
        }
    }
    Ok(steps.len())
}

/// [`check_resumes`] that panics with the mismatch.
///
/// # Panics
/// When a resumed run differs from the uninterrupted one, or a run does not complete.
pub async fn assert_resumes<W: Workflow>(make: impl Fn() -> W) {
    if let Err(mismatch) = check_resumes(make).await {
        panic!("{mismatch}");
    }
}

fn json(bytes: &[u8]) -> String {
    codec::to_json(bytes).unwrap_or_else(|e| format!("<{e}>"))
}
