//! One shard's engine: its lease, its two files, and the engine that drives its runs.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use flow_runtime::{Engine, EngineBuilder, FlowError};
use postgres::Config;

use crate::backend::{PgFile, Shared};
use crate::conn::Conn;
use crate::lease::Lease;

/// A shard's files, loaded under its lease, ready for an engine.
pub(crate) struct ShardFiles {
    pub db: PgFile,
    pub log: PgFile,
    /// The lease and connection both files write through; releasing it early (before
    /// the files are dropped) hands the shard over at once.
    pub shared: Arc<Shared>,
}

/// A name for this process in `flow_shards.owner` and `flow_members`: its process ID
/// and a random part, so that a restarted process with the same ID is another owner.
pub(crate) fn process_name() -> String {
    format!(
        "process {} ({:016x})",
        std::process::id(),
        RandomState::new().hash_one(std::time::SystemTime::now())
    )
}

/// How a shard's lease is renewed between commits.
pub(crate) enum Renewal<'a> {
    /// By a heartbeat thread of its own, on a connection made with this config.
    Heartbeat(&'a Config),
    /// By the cluster's renewer, with every lease of the process.
    Cluster,
}

/// Loads `lease`'s shard's two files over `conn`, renewing the lease as `renewal` says.
pub(crate) fn load_files(
    renewal: Renewal<'_>,
    conn: Conn,
    lease: Arc<Lease>,
) -> Result<ShardFiles, FlowError> {
    // Shard `s` keeps redb's file as number 2s and its log as 2s + 1.
    let base = (lease.shard * 2) as i16;
    let shared = Arc::new(Shared {
        conn,
        lease: lease.clone(),
        released: Default::default(),
    });
    if let Renewal::Heartbeat(config) = renewal {
        lease.start_heartbeat(config)?;
    }
    let db = PgFile::load(base, shared.clone())?;
    let log = PgFile::load(base + 1, shared.clone())?;
    Ok(ShardFiles { db, log, shared })
}

/// Opens an engine on a shard's files.
pub(crate) async fn open_engine(
    builder: EngineBuilder,
    files: ShardFiles,
    name: &str,
) -> Result<Engine, FlowError> {
    let ShardFiles { db, log, shared } = files;
    drop(shared);
    builder
        .backend(db)
        .log_backend(log)
        .open_backend(name)
        .await
}
