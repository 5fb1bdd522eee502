//! Errors that say what went wrong with the database and what to do about it.

use flow_runtime::FlowError;
use postgres::error::SqlState;
use postgres::Config;

/// A storage error with `message`.
pub(crate) fn storage(message: impl Into<String>) -> FlowError {
    FlowError::Storage {
        message: message.into(),
    }
}

/// `user@host:port/database`, without the password, for messages.
pub(crate) fn describe(config: &Config) -> String {
    let user = config.get_user().unwrap_or("(no user)");
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or(user);
    format!("PostgreSQL database `{db}` at {host}:{port} (user `{user}`)")
}

/// The error for a connection that could not be made.
pub(crate) fn connect_error(config: &Config, e: postgres::Error) -> FlowError {
    let target = describe(config);
    let message = match e.as_db_error() {
        Some(db) if *db.code() == SqlState::INVALID_PASSWORD => format!(
            "{target} refused the password ({}); check the user and password in the URL",
            db.message()
        ),
        Some(db) if *db.code() == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => format!(
            "{target} refused the login ({}); check the user in the URL and the server's \
             pg_hba.conf",
            db.message()
        ),
        Some(db) if *db.code() == SqlState::INVALID_CATALOG_NAME => format!(
            "{target} does not exist ({}); create it (CREATE DATABASE) or fix the database \
             name in the URL",
            db.message()
        ),
        Some(db) => format!("could not connect to {target}: {}", db.message()),
        None => {
            // The cause (refused, timed out, ...) is the error's source.
            let cause = std::error::Error::source(&e)
                .map(|cause| format!(" ({cause})"))
                .unwrap_or_default();
            format!(
                "could not connect to {target}: {e}{cause}; check that the server is running \
                 and that the URL's host and port are right"
            )
        }
    };
    storage(message)
}

/// The error for a statement that failed, with what it was doing.
pub(crate) fn query_error(doing: &str, e: &postgres::Error) -> FlowError {
    storage(query_message(doing, e))
}

/// What [`query_error`] says.
pub(crate) fn query_message(doing: &str, e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "PostgreSQL refused {doing}: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        ),
        None => format!(
            "{doing} failed: {e}; the connection to PostgreSQL may be lost (is the server up?)"
        ),
    }
}

/// The refusal of a URL that does not parse.
pub(crate) fn bad_url(e: postgres::Error) -> FlowError {
    storage(format!(
        "not a PostgreSQL connection string ({e}); expected \
         postgres://USER:PASSWORD@HOST:PORT/DATABASE or `host=... user=... dbname=...`"
    ))
}

/// Whether `e` leaves a statement's fate to a retry: the connection was lost or the
/// server is shutting down or starting (the statements here are idempotent, and each
/// write checks the lease, so retrying one is safe).
pub(crate) fn retryable(e: &postgres::Error) -> bool {
    match e.as_db_error() {
        None => true,
        Some(db) => {
            let code = db.code().code();
            // 25P03: the server ended a session left in a transaction (a paused process's).
            code.starts_with("08") || code.starts_with("57P") || code == "40001" || code == "25P03"
        }
    }
}
