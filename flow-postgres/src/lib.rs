//! flow's journal in a PostgreSQL database.
//!
//! ```no_run
//! # async fn demo() -> Result<(), flow::FlowError> {
//! use flow_postgres::OpenPostgres;
//! let engine = flow::Engine::builder()
//!     .open_postgres("postgres://flow:secret@127.0.0.1:5432/flow")
//!     .await?;
//! # engine.shutdown().await; Ok(()) }
//! ```
//!
//! # How it stores
//!
//! The engine's store is the same as on a file: the same `Journal` implementation, the
//! same changes applied by the same code, the same redb tables and write-ahead log.
//! Only the bytes live elsewhere: redb's file and its log are each kept in PostgreSQL
//! as blocks (`flow_blocks`), held whole in memory while the engine runs, and every
//! durability point (a commit appending a batch of many runs' transitions to the log,
//! a checkpoint) is one PostgreSQL transaction with `synchronous_commit` on. A batch
//! is acknowledged only once PostgreSQL committed it.
//!
//! # One process drives, others stand by
//!
//! A database's journal is driven by one engine process at a time, under a lease with
//! a fencing token (`flow_lease`): each commit renews the lease in its own transaction
//! and is refused by the database if this process's lease expired or was taken over,
//! so a process paused past its lease (or cut off) cannot write once another has taken
//! over. A process opened with [`Postgres::wait_for_lease`] stands by: when the holder
//! stops (its lease released at shutdown, or expired after a crash) it takes over,
//! reads the journal as of the last commit and resumes every run from it. What was
//! committed is never run again; attempts that were in flight in the lost process run
//! again, as after a crash of a single process.
//!
//! # Schema
//!
//! `flow_meta` (application and schema version), `flow_lease`, `flow_files`,
//! `flow_blocks`. Opening creates them in an empty database and applies missing
//! migrations; it refuses, changing nothing, a database with another application's
//! tables, or with a schema newer than this code's.

#![warn(missing_docs)]

mod backend;
mod conn;
mod error;
mod lease;
mod schema;
pub mod testing;

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use flow_runtime::{Engine, EngineBuilder, FlowError};
use postgres::Config;

use backend::{PgFile, Shared};
use conn::Conn;
use error::{bad_url, describe, storage};
use lease::Lease;

/// The schema version this code writes (and the newest it opens).
pub const SCHEMA_VERSION: i32 = schema::VERSION;

/// Where and how to open a journal in PostgreSQL.
#[derive(Debug, Clone)]
pub struct Postgres {
    url: String,
    lease: Duration,
    wait: Duration,
}

impl Postgres {
    /// The database at `url` (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`, or the
    /// `key=value` form), with a lease of 10 seconds and no waiting for it.
    pub fn new(url: impl Into<String>) -> Self {
        Postgres {
            url: url.into(),
            lease: Duration::from_secs(10),
            wait: Duration::ZERO,
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

    /// How long opening waits for another process's lease to end before failing
    /// (default: not at all). A long wait makes this process a standby that takes
    /// over when the holder stops or dies.
    pub fn wait_for_lease(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Opens the journal with `builder`'s workflows and settings: connects, creates or
    /// migrates the schema, takes the lease (waiting as set), reads the journal and
    /// resumes every run in it.
    ///
    /// Fails with [`FlowError::Storage`] naming the problem, and changes nothing, on a
    /// URL that does not parse, a server that cannot be reached, a refused login, a
    /// database of another application or with a newer schema, or a lease held by a
    /// live process past the wait.
    pub async fn open(self, builder: EngineBuilder) -> Result<Engine, FlowError> {
        let config: Config = self.url.parse().map_err(bad_url)?;
        let target = describe(&config);
        let name = target.clone();
        let files = tokio::task::spawn_blocking(move || connect(&config, &self, &target))
            .await
            .map_err(|e| storage(format!("opening the PostgreSQL journal failed: {e}")))??;
        let (db, log) = files;
        builder
            .backend(db)
            .log_backend(log)
            .open_backend(&name)
            .await
    }
}

/// Connects, migrates, takes the lease and loads both files.
fn connect(
    config: &Config,
    options: &Postgres,
    target: &str,
) -> Result<(PgFile, PgFile), FlowError> {
    // A process paused (or cut off) inside a commit holds the lease's row lock: the
    // server ends such a session after the lease's length, so a takeover is not blocked
    // by it for longer than by an expired lease.
    let mut config = config.clone();
    let timeout = format!(
        "-c idle_in_transaction_session_timeout={}",
        options.lease.as_millis()
    );
    // Added to the URL's own `options` (a search_path, say), which stay.
    let session = match config.get_options() {
        Some(own) if !own.trim().is_empty() => format!("{own} {timeout}"),
        _ => timeout,
    };
    config.options(&session);
    let config = &config;
    let conn = Conn::connect(config, "journal")?;
    let migrate_target = target.to_string();
    conn.call(move |client| schema::migrate(client, &migrate_target))??;
    let owner = format!(
        "process {} ({:016x})",
        std::process::id(),
        RandomState::new().hash_one(std::time::SystemTime::now())
    );
    let (ttl, wait, lease_target) = (options.lease, options.wait, target.to_string());
    let lease =
        conn.call(move |client| Lease::acquire(client, owner, ttl, wait, &lease_target))??;
    let lease = Arc::new(lease);
    let shared = Arc::new(Shared {
        conn,
        lease: lease.clone(),
    });
    lease.start_heartbeat(config)?;
    let db = PgFile::load(0, shared.clone())?;
    let log = PgFile::load(1, shared)?;
    Ok((db, log))
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
