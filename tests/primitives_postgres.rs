//! The primitives suite on PostgreSQL (a throwaway cluster, `scripts/pg-cluster.sh`):
//! durable primitives on the real engine: map (fan-out with a concurrency limit and
//! tolerated failures), callback tokens, races, run-level timeouts, cancellation of child
//! runs and continue-as-new; each with a crash (halt after k commits, reopen the journal).
//!
//! They run on a two-worker multi-thread runtime, as servers do, where a run that is
//! alone commits on its driver's thread (`block_in_place`); the engine's own tests
//! (`tests/engine`) use current-thread runtimes, where every commit goes through
//! the commit thread.
//!
//! The suite itself is `tests/suites/primitives.rs`. Each journal is in a schema of its
//! own. Without PostgreSQL the suite runs on journal files after saying so, except under
//! `CI=true`, where that fails (see `flow_postgres::testing`).

/// Journals in schemas of a throwaway PostgreSQL cluster.
mod store {
    use std::future::Future;
    use std::path::PathBuf;

    use flow::{Engine, EngineBuilder, FlowError};
    use flow_postgres::testing::TestCluster;
    use flow_postgres::OpenPostgres;

    /// Where a test's journal is: a URL (of a schema of its own), or a file without
    /// PostgreSQL.
    #[derive(Clone)]
    pub enum Journal {
        Postgres(String),
        File(PathBuf),
    }

    /// A new journal named after `name`.
    pub fn temp_db(name: &str) -> Journal {
        match TestCluster::shared() {
            Some(cluster) => Journal::Postgres(cluster.create_schema(name)),
            None => {
                let dir =
                    std::env::temp_dir().join(format!("flow-primitives-pg-{}", std::process::id()));
                std::fs::create_dir_all(&dir).unwrap();
                let path = dir.join(format!("{name}.redb"));
                Engine::remove_journal(&path).unwrap();
                Journal::File(path)
            }
        }
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
            let journal = journal.clone();
            async move {
                match journal {
                    Journal::Postgres(url) => self.open_postgres(&url).await,
                    Journal::File(path) => self.open(path).await,
                }
            }
        }
    }

    /// Deletes the journal (a database is left to the cluster's end).
    pub fn remove(journal: &Journal) {
        if let Journal::File(path) = journal {
            Engine::remove_journal(path).unwrap();
        }
    }

    /// The journal's size in bytes (redb's file, as stored).
    pub fn size(journal: &Journal) -> u64 {
        std::fs::metadata(redb_file(journal)).unwrap().len()
    }

    /// A redb file holding the journal (of an engine shut down): for a database, its
    /// stored bytes copied to a file.
    pub fn redb_file(journal: &Journal) -> PathBuf {
        match journal {
            Journal::File(path) => path.clone(),
            Journal::Postgres(url) => {
                let cluster = TestCluster::shared().expect("the cluster of the journal");
                static COPIES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let copy = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let path = std::env::temp_dir().join(format!(
                    "flow-primitives-pg-{}-{copy}.redb",
                    std::process::id()
                ));
                cluster.copy_journal(url, &path);
                path
            }
        }
    }
}

include!("suites/primitives.rs");
