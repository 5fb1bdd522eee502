//! The corpus on the real engine and a real redb file: for every k, the engine stops
//! (as if the process died) right after its k-th durable commit, is dropped, and the file
//! is reopened by a new engine that finishes the run. The output must equal the plain
//! async function's, and every step must be committed exactly once in the history.
//!
//! The suite itself is `tests/suites/engine_resume.rs`; this file runs it on journal
//! files, `tests/engine_resume_postgres.rs` on PostgreSQL.

mod corpus;
mod support;

use corpus::store::Journals;

/// Journal files in a scratch dir of the test's own.
fn journals(name: &str) -> Option<Journals> {
    Some(Journals::files(&format!("engine-resume-{name}")))
}

include!("suites/engine_resume.rs");
