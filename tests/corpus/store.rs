//! Where the corpus tests that run on the real engine keep their journals: files in a
//! scratch dir, or schemas of the test binary's throwaway PostgreSQL cluster
//! (`scripts/pg-cluster.sh`, started on first use by `flow_postgres::testing`).

use std::path::PathBuf;

use flow::{Engine, EngineBuilder, FlowError};
use flow_postgres::testing::TestCluster;
use flow_postgres::Postgres;

use crate::support::ScratchDir;

/// Makes new, empty journals, each on its own.
pub enum Journals {
    /// Files in a scratch dir (removed with it when the test passes).
    Files(ScratchDir),
    /// Schemas of the shared test cluster, one per journal (left to the cluster's end).
    Postgres(&'static TestCluster),
}

impl Journals {
    /// Journal files in a new scratch dir named after `label`.
    pub fn files(label: &str) -> Journals {
        Journals::Files(ScratchDir::new(label))
    }

    /// Journals in PostgreSQL; `None`, after saying why, when it cannot be started (a
    /// test then skips), except under `CI=true`, where that panics
    /// (`TestCluster::shared`).
    pub fn postgres() -> Option<Journals> {
        TestCluster::shared().map(Journals::Postgres)
    }

    /// A new, empty journal named after `name`.
    pub fn create(&self, name: &str) -> Journal {
        match self {
            Journals::Files(dir) => Journal::File(dir.journal(name)),
            // PostgreSQL cuts names at 63 bytes: a long one would lose the suffix that
            // keeps schemas apart.
            Journals::Postgres(cluster) => {
                Journal::Postgres(cluster.create_schema(&name.chars().take(32).collect::<String>()))
            }
        }
    }
}

/// One journal made by [`Journals::create`].
pub enum Journal {
    /// A journal file (its write-ahead log beside it).
    File(PathBuf),
    /// The URL of a schema of its own.
    Postgres(String),
}

impl Journal {
    /// Opens the journal as one engine with `builder` (a new one creates it).
    pub async fn open(&self, builder: EngineBuilder) -> Result<Engine, FlowError> {
        match self {
            Journal::File(path) => builder.open(path).await,
            Journal::Postgres(url) => Postgres::new(url.clone()).open(builder).await,
        }
    }

    /// Deletes a journal file; a schema is left to the cluster's end.
    pub fn remove(&self) {
        if let Journal::File(path) = self {
            Engine::remove_journal(path).expect("remove a journal");
        }
    }
}
