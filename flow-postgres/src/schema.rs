//! The database schema, its versions and its migrations.
//!
//! `flow_meta` names the application and the schema version; opening applies the
//! migrations the database lacks, in one transaction, and refuses a database whose
//! version is newer than this code's, or which holds another application's tables.

use flow_runtime::FlowError;
use postgres::Client;

use crate::error::{query_error, storage};

/// The name `flow_meta` records, to tell flow's databases from others.
pub(crate) const APPLICATION: &str = "flow";

/// Each migration's SQL, in order: the schema at version `n` is the first `n` applied.
/// Never edit one that shipped; add another.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the lease and the journal's two files (redb's and its log's) as blocks.
    "CREATE TABLE flow_lease (
         id INT PRIMARY KEY CHECK (id = 1),
         owner TEXT,
         fence BIGINT NOT NULL,
         expires_at TIMESTAMPTZ NOT NULL
     );
     CREATE TABLE flow_files (
         file SMALLINT PRIMARY KEY,
         len BIGINT NOT NULL
     );
     CREATE TABLE flow_blocks (
         file SMALLINT NOT NULL,
         idx BIGINT NOT NULL,
         data BYTEA NOT NULL,
         PRIMARY KEY (file, idx)
     );",
    // 2: shards. A database is split into `flow_meta.shards` journals, each driven by
    // one process at a time under its own lease (`flow_shards`); shard `s` keeps its
    // two files as `flow_files.file` 2s and 2s + 1, so a version-1 database is shard 0
    // of a database of one shard. Requests for a shard driven by another process wait
    // in `flow_requests` until its owner answers them; `flow_members` lists the live
    // processes, whose number sets each one's share of the shards.
    "ALTER TABLE flow_meta ADD COLUMN shards INT;
     UPDATE flow_meta SET shards = 1 WHERE EXISTS (SELECT 1 FROM flow_lease);
     CREATE TABLE flow_shards (
         shard INT PRIMARY KEY,
         owner TEXT,
         fence BIGINT NOT NULL,
         expires_at TIMESTAMPTZ NOT NULL
     );
     INSERT INTO flow_shards (shard, owner, fence, expires_at)
         SELECT 0, owner, fence, expires_at FROM flow_lease;
     DROP TABLE flow_lease;
     CREATE TABLE flow_members (
         owner TEXT PRIMARY KEY,
         expires_at TIMESTAMPTZ NOT NULL
     );
     CREATE TABLE flow_requests (
         id TEXT PRIMARY KEY,
         shard INT NOT NULL,
         body BYTEA NOT NULL,
         answer BYTEA,
         created_at TIMESTAMPTZ NOT NULL
     );
     CREATE INDEX flow_requests_by_shard ON flow_requests (shard, created_at);",
];

/// The schema version this code writes.
pub(crate) const VERSION: i32 = MIGRATIONS.len() as i32;

/// Brings the database's schema to [`VERSION`], creating it in an empty database with
/// `shards` shards; refuses (changing nothing) a newer schema or a database of another
/// application. Returns the database's number of shards (set when it was created).
pub(crate) fn migrate(client: &mut Client, target: &str, shards: u32) -> Result<u32, FlowError> {
    let mut txn = client
        .transaction()
        .map_err(|e| query_error("starting the schema check", &e))?;
    // Two engines opening one new database at once: the second waits here.
    txn.batch_execute("SELECT pg_advisory_xact_lock(7450616017)")
        .map_err(|e| query_error("locking the schema for its check", &e))?;
    let has_meta: bool = txn
        .query_one("SELECT to_regclass('flow_meta') IS NOT NULL", &[])
        .map_err(|e| query_error("reading the schema", &e))?
        .get(0);
    let current = if has_meta {
        let row = txn
            .query_opt(
                "SELECT application, schema_version FROM flow_meta WHERE id = 1",
                &[],
            )
            .map_err(|e| query_error("reading flow_meta", &e))?;
        let Some(row) = row else {
            return Err(storage(format!(
                "{target} has a flow_meta table without its row: not a flow database, or a \
                 damaged one; give flow a database of its own"
            )));
        };
        let application: String = row.get(0);
        let version: i32 = row.get(1);
        if application != APPLICATION {
            return Err(storage(format!(
                "{target} belongs to another application (`{application}`, by its flow_meta \
                 table); give flow a database of its own"
            )));
        }
        if version > VERSION {
            return Err(storage(format!(
                "{target} has flow's schema version {version}, newer than this code's \
                 ({VERSION}): it was written by a newer flow; open it with that version \
                 (nothing was changed)"
            )));
        }
        version
    } else {
        let tables: Vec<String> = txn
            .query(
                "SELECT table_name::TEXT FROM information_schema.tables \
                 WHERE table_schema = current_schema() ORDER BY table_name LIMIT 5",
                &[],
            )
            .map_err(|e| query_error("listing the database's tables", &e))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        if !tables.is_empty() {
            return Err(storage(format!(
                "{target} holds tables that are not flow's ({}) and no flow schema: it \
                 belongs to another application; give flow an empty database of its own \
                 (CREATE DATABASE), nothing was changed",
                tables.join(", ")
            )));
        }
        txn.batch_execute(
            "CREATE TABLE flow_meta (
                 id INT PRIMARY KEY CHECK (id = 1),
                 application TEXT NOT NULL,
                 schema_version INT NOT NULL
             )",
        )
        .map_err(|e| query_error("creating flow_meta", &e))?;
        txn.execute(
            "INSERT INTO flow_meta (id, application, schema_version) VALUES (1, $1, 0)",
            &[&APPLICATION],
        )
        .map_err(|e| query_error("creating flow_meta", &e))?;
        0
    };
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i32 + 1;
        txn.batch_execute(sql)
            .map_err(|e| query_error(&format!("schema migration {version}"), &e))?;
        txn.execute(
            "UPDATE flow_meta SET schema_version = $1 WHERE id = 1",
            &[&version],
        )
        .map_err(|e| query_error(&format!("recording schema migration {version}"), &e))?;
    }
    // A new database (or a version-1 one never opened) gets its shards now.
    let wanted = shards.clamp(1, MAX_SHARDS) as i32;
    let shards: i32 = txn
        .query_one(
            "UPDATE flow_meta SET shards = COALESCE(shards, $1) WHERE id = 1 RETURNING shards",
            &[&wanted],
        )
        .map_err(|e| query_error("reading the number of shards", &e))?
        .get(0);
    txn.execute(
        "INSERT INTO flow_shards (shard, owner, fence, expires_at) \
         SELECT g, NULL, 0, clock_timestamp() FROM generate_series(0, $1 - 1) AS g \
         ON CONFLICT (shard) DO NOTHING",
        &[&shards],
    )
    .map_err(|e| query_error("creating the shards' leases", &e))?;
    txn.commit()
        .map_err(|e| query_error("committing the schema", &e))?;
    Ok(shards as u32)
}

/// The most shards a database may have: each keeps its two files as `flow_files.file`
/// numbers 2s and 2s + 1, a SMALLINT.
pub(crate) const MAX_SHARDS: u32 = 4096;
