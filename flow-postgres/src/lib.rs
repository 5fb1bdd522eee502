//! flow's journal in a PostgreSQL database, shared by many engine processes.
//!
//! ```no_run
//! # #[flow::workflow] async fn sum(n: u64) -> u64 { n }
//! # async fn demo() -> Result<(), flow::FlowError> {
//! use flow_postgres::Postgres;
//! // In every process: each drives its share of the database's shards.
//! let cluster = Postgres::new("postgres://flow:secret@127.0.0.1:5432/flow")
//!     .cluster(|| flow::Engine::builder().register::<sum>())
//!     .await?;
//! cluster.start("order-42", sum(42)).await?;
//! assert_eq!(cluster.result::<sum>("order-42").await?, 42);
//! # cluster.shutdown().await; Ok(()) }
//! ```
//!
//! # How it stores
//!
//! A database is split into shards (`flow_meta.shards`); a run belongs to shard
//! `flow::route_key(run_id) % shards`. Each shard's store is the same as on a file: the
//! same `Journal` implementation, the same changes applied by the same code, the same
//! redb tables and write-ahead log. Only the bytes live elsewhere: redb's file and its
//! log are each kept in PostgreSQL as blocks (`flow_blocks`), held whole in memory by
//! the process that drives the shard, and every durability point (a commit appending a
//! batch of many runs' transitions to the log, a checkpoint) is one PostgreSQL
//! transaction with `synchronous_commit` on. A batch is acknowledged only once
//! PostgreSQL committed it.
//!
//! # One driver per shard, fenced by the database
//!
//! A shard is driven by one engine process at a time, under a lease with a fencing
//! token (`flow_shards`): each commit renews the lease in the same statement and is
//! refused by the database if this process's lease expired or was taken over, so a
//! process paused past its lease (or cut off) cannot write once another has taken
//! over. The processes of a [`Cluster`] share the shards, take over those of a process
//! that stops or dies, and serve every call for any run (the module `cluster`). A
//! database of one shard may also be opened as one [`Engine`]
//! ([`Postgres::open`]), with standbys ([`Postgres::wait_for_lease`]). After a
//! takeover the journal is read as of the last commit and every run resumes from it:
//! what was committed is never run again; attempts that were in flight in the lost
//! process run again, as after a crash of a single process.
//!
//! # Schema
//!
//! `flow_meta` (application, schema version, shards), `flow_shards`, `flow_members`,
//! `flow_requests`, `flow_files`, `flow_blocks`. Opening creates them in an empty
//! database and applies missing migrations; it refuses, changing nothing, a database
//! with another application's tables, or with a schema newer than this code's.

#![warn(missing_docs)]

mod backend;
mod cluster;
mod conn;
mod error;
mod lease;
mod schema;
mod shard;
pub mod testing;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flow_runtime::{Engine, EngineBuilder, FlowError};
use postgres::Config;

pub use cluster::Cluster;
use error::{bad_url, describe, storage};

/// The schema version this code writes (and the newest it opens).
pub const SCHEMA_VERSION: i32 = schema::VERSION;

/// The number of shards [`Postgres::cluster`] creates a new database with. Each shard
/// commits on its own, so a process's transitions are batched per shard: fewer shards
/// make bigger batches (one process's throughput), more shards spread over more
/// processes. Measured on a 2-core machine with PostgreSQL beside it, one process made
/// 6,056 runs/s on 1 shard, 2,300 on 4 and 968 on 12 (row 3, 1,000 in flight).
pub const DEFAULT_SHARDS: u32 = 4;

/// Where and how to open a journal in PostgreSQL.
#[derive(Debug, Clone)]
pub struct Postgres {
    url: String,
    lease: Duration,
    wait: Duration,
    shards: Option<u32>,
}

impl Postgres {
    /// The database at `url` (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`, or the
    /// `key=value` form), with a lease of 10 seconds and no waiting for it.
    pub fn new(url: impl Into<String>) -> Self {
        Postgres {
            url: url.into(),
            lease: Duration::from_secs(10),
            wait: Duration::ZERO,
            shards: None,
        }
    }

    /// How long this process's lease lasts without a renewal (default 10 s, at least
    /// 200 ms): after a crash, another process takes over this long after the last
    /// renewal. A heartbeat renews it every quarter of this; a process paused for
    /// longer loses it, and its later commits are refused.
    pub fn lease(mut self, ttl: Duration) -> Self {
        self.lease = ttl.max(Duration::from_millis(200));
        self
    }

    /// How long [`open`](Self::open) waits for another process's lease to end before
    /// failing (default: not at all). A long wait makes this process a standby that
    /// takes over when the holder stops or dies.
    pub fn wait_for_lease(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// How many shards a database this opens is created with (at most 4,096): the
    /// unit a [`Cluster`]'s processes share the runs by. Only a new database takes it;
    /// an existing one keeps the number it was created with. Default: 1 for
    /// [`open`](Self::open), [`DEFAULT_SHARDS`] for [`cluster`](Self::cluster).
    pub fn shards(mut self, shards: u32) -> Self {
        self.shards = Some(shards.clamp(1, schema::MAX_SHARDS));
        self
    }

    /// Opens the journal as one engine with `builder`'s workflows and settings:
    /// connects, creates or migrates the schema, takes the lease (waiting as set),
    /// reads the journal and resumes every run in it. The database must have one
    /// shard (a database created by `open`, or by flow before shards existed); open a
    /// database of several with [`cluster`](Self::cluster).
    ///
    /// Fails with [`FlowError::Storage`] naming the problem, and changes nothing, on a
    /// URL that does not parse, a server that cannot be reached, a refused login, a
    /// database of another application or with a newer schema, a database of several
    /// shards, or a lease held by a live process past the wait.
    pub async fn open(self, builder: EngineBuilder) -> Result<Engine, FlowError> {
        let config: Config = self.url.parse().map_err(bad_url)?;
        let target = describe(&config);
        let name = target.clone();
        let files = tokio::task::spawn_blocking(move || connect(&config, &self, &target))
            .await
            .map_err(|e| storage(format!("opening the PostgreSQL journal failed: {e}")))??;
        shard::open_engine(builder, files, &name).await
    }

    /// Opens the database as one process of a cluster: every process opened on it
    /// with `cluster` shares its shards, each driving its share (the shards over the
    /// live processes) under a lease per shard, and taking over the shards of a
    /// process that stops or dies. `builder` makes the engine of each shard this
    /// process drives: every process must register the same workflows.
    ///
    /// Fails like [`open`](Self::open), except that there is no lease to wait for.
    pub async fn cluster(
        self,
        builder: impl Fn() -> EngineBuilder + Send + Sync + 'static,
    ) -> Result<Cluster, FlowError> {
        Cluster::open(self, Box::new(builder)).await
    }
}

/// The connection settings of every session: a process paused (or cut off) inside a
/// commit holds its lease's row lock, so the server ends such a session after the
/// lease's length, and a takeover is not blocked by it for longer than by an expired
/// lease.
pub(crate) fn session_config(config: &Config, lease: Duration) -> Config {
    let mut config = config.clone();
    let timeout = format!(
        "-c idle_in_transaction_session_timeout={}",
        lease.as_millis()
    );
    // Added to the URL's own `options` (a search_path, say), which stay.
    let session = match config.get_options() {
        Some(own) if !own.trim().is_empty() => format!("{own} {timeout}"),
        _ => timeout,
    };
    config.options(&session);
    config
}

/// Connects, migrates, takes shard 0's lease and loads its files.
fn connect(
    config: &Config,
    options: &Postgres,
    target: &str,
) -> Result<shard::ShardFiles, FlowError> {
    let config = &session_config(config, options.lease);
    let conn = conn::Conn::connect(config, "journal")?;
    let migrate_target = target.to_string();
    let wanted = options.shards.unwrap_or(1);
    let shards = conn.call(move |client| schema::migrate(client, &migrate_target, wanted))??;
    if shards != 1 {
        return Err(storage(format!(
            "{target} is a cluster of {shards} shards: open it with `Postgres::cluster`, \
             which shares them among processes (nothing was changed)"
        )));
    }
    let (ttl, wait, lease_target) = (options.lease, options.wait, target.to_string());
    let owner = shard::process_name();
    let lease = conn
        .call(move |client| lease::Lease::acquire(client, 0, owner, ttl, wait, &lease_target))??;
    shard::load_files(shard::Renewal::Heartbeat(config), conn, Arc::new(lease))
}

/// `EngineBuilder::open_postgres`: opens the journal in PostgreSQL with the default
/// [`Postgres`] settings.
pub trait OpenPostgres {
    /// Opens the journal in the database at `url`; see [`Postgres::open`].
    fn open_postgres(
        self,
        url: &str,
    ) -> impl Future<Output = Result<Engine, FlowError>> + Send + use<Self>;
}

impl OpenPostgres for EngineBuilder {
    fn open_postgres(
        self,
        url: &str,
    ) -> impl Future<Output = Result<Engine, FlowError>> + Send + use<> {
        Postgres::new(url).open(self)
    }
}
