//! The differential corpus with its journal in PostgreSQL (a throwaway cluster,
//! `scripts/pg-cluster.sh`): every corpus workflow, run as the plain async function it
//! reads as, as a state machine on the engine, and rebuilt from its journal at every
//! step boundary (each engine stops after the commit that ends a step, as if its process
//! died, and the next opens the database), must agree: the same output, the same steps
//! with the same requests and outputs, each committed once. With `FLOW_TORTURE=1`, the
//! first input's run is also rebuilt once after each commit in turn (two engines per
//! commit: minutes on a small machine; `tests/engine_resume_postgres.rs` does that for
//! most of the corpus). See `corpus::differential_in`.
//!
//! A few inputs per workflow (each run is some dozens of engines opening a database);
//! `tests/differential.rs` runs more, and generated ones, with the journal in memory.
//! Each journal is in a schema of its own. Without PostgreSQL each test says why and
//! passes without running, except under `CI=true`, where that fails (see
//! `flow_postgres::testing`).

mod corpus;
mod support;

use corpus::store::Journals;
use corpus::workflows::{many_args, no_args};
use corpus::{differential_in, join_all, JournalIn};

/// Inputs that take each workflow's branches: a multiple of 7 and a negative number (the
/// corpus's checks fail on both), an even number.
const INPUTS: &[i64] = &[7, -1, 2];

/// Runs the differential of `make()` with journals in PostgreSQL, each commit in turn
/// when `each_commit`.
async fn on_postgres<W, F>(journals: &Journals, each_commit: bool, make: F)
where
    W: flow::Workflow + std::future::IntoFuture<Output = <W as flow::Workflow>::Output>,
    <W as flow::Workflow>::Output: PartialEq + std::fmt::Debug + Clone,
    F: Fn() -> W,
{
    let journal = JournalIn::Engine {
        journals,
        each_commit,
    };
    let _ = differential_in(journal, make).await;
}

macro_rules! postgres_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(journals) = Journals::postgres() else {
                    return;
                };
                // Together: engines spend much of their time waiting for the database.
                let runs = INPUTS.iter().enumerate().map(|(i, &x)| {
                    let each_commit = i == 0 && support::torture();
                    on_postgres(&journals, each_commit, move || corpus::workflows::$name(x))
                });
                join_all(runs.collect()).await;
            }
        )*
    };
}

for_each_corpus_workflow!(postgres_tests);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_with_other_signatures() {
    let Some(journals) = Journals::postgres() else {
        return;
    };
    on_postgres(&journals, true, no_args).await;
    on_postgres(&journals, true, || many_args(4, "b".into(), vec![1, 2, 3])).await;
}
