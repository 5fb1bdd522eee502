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
];

/// The schema version this code writes.
pub(crate) const VERSION: i32 = MIGRATIONS.len() as i32;

/// Brings the database's schema to [`VERSION`], creating it in an empty database;
/// refuses (changing nothing) a newer schema or a database of another application.
pub(crate) fn migrate(client: &mut Client, target: &str) -> Result<(), FlowError> {
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
    txn.commit()
        .map_err(|e| query_error("committing the schema", &e))?;
    Ok(())
}
