//! The engine-at-every-commit suite on PostgreSQL (a throwaway cluster,
//! `scripts/pg-cluster.sh`): for every k, the engine stops (as if the process died)
//! right after its k-th durable commit, and a new engine that opens the same database
//! finishes the run. The output must equal the plain async function's, and every step
//! must be committed exactly once in the history.
//!
//! The suite itself is `tests/suites/engine_resume.rs`. Each journal is in a schema of
//! its own. Without PostgreSQL each test says why and passes without running, except
//! under `CI=true`, where that fails (see `flow_postgres::testing`).

mod corpus;
mod support;

use corpus::store::Journals;

/// Schemas of the test binary's cluster.
fn journals(_name: &str) -> Option<Journals> {
    Journals::postgres()
}

include!("suites/engine_resume.rs");
