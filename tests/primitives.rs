//! Durable primitives on the real engine: map (fan-out with a concurrency limit and
//! tolerated failures), callback tokens, races, run-level timeouts, cancellation of child
//! runs and continue-as-new; each with a crash (halt after k commits, reopen the file).
//!
//! They run on a two-worker multi-thread runtime, as servers do, where a run that is
//! alone commits on its driver's thread (`block_in_place`); the engine's own tests
//! (`tests/engine`) use current-thread runtimes, where every commit goes through
//! the commit thread.
//!
//! The suite itself is `tests/suites/primitives.rs`; this file runs it on journal files,
//! `tests/primitives_postgres.rs` on PostgreSQL.

/// Journals as files in a temp directory.
mod store {
    use std::future::Future;
    use std::path::PathBuf;

    use flow::{Engine, EngineBuilder, FlowError};

    /// Where a test's journal is.
    pub type Journal = PathBuf;

    /// A new journal named after `name`.
    pub fn temp_db(name: &str) -> Journal {
        let dir = std::env::temp_dir().join(format!("flow-primitives-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.redb"));
        Engine::remove_journal(&path).unwrap();
        path
    }

    /// Opens journals.
    pub trait OpenJournal {
        fn open_journal(
            self,
            journal: &Journal,
        ) -> impl Future<Output = Result<Engine, FlowError>> + Send;
    }

    impl OpenJournal for EngineBuilder {
        fn open_journal(
            self,
            journal: &Journal,
        ) -> impl Future<Output = Result<Engine, FlowError>> + Send {
            self.open(journal.clone())
        }
    }

    /// Deletes the journal.
    pub fn remove(journal: &Journal) {
        Engine::remove_journal(journal).unwrap();
    }

    /// The journal's size in bytes.
    pub fn size(journal: &Journal) -> u64 {
        std::fs::metadata(journal).unwrap().len()
    }

    /// A redb file holding the journal (of an engine shut down).
    pub fn redb_file(journal: &Journal) -> PathBuf {
        journal.clone()
    }
}

include!("suites/primitives.rs");
