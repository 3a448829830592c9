//! How driver and pool failures map onto the store contract.

use deadpool_postgres::PoolError;
use keycard::StoreError;
use tokio_postgres::error::SqlState;

/// A PostgreSQL error as a store error. The message names the SQLSTATE and
/// the server's text, never a parameter (no key or user ID reaches a log).
pub(crate) fn pg_error(error: tokio_postgres::Error) -> StoreError {
    match error.as_db_error() {
        Some(db) if db.code() == &SqlState::QUERY_CANCELED => StoreError::Timeout,
        Some(db) => {
            StoreError::Unavailable(format!("PostgreSQL {}: {}", db.code().code(), db.message()))
        }
        // The driver's own message is terse ("error connecting to server");
        // the cause underneath (connection refused, reset) is what helps.
        None => match std::error::Error::source(&error) {
            Some(cause) => StoreError::Unavailable(format!("PostgreSQL: {error}: {cause}")),
            None => StoreError::Unavailable(format!("PostgreSQL: {error}")),
        },
    }
}

/// A pool error as a store error: waiting too long for a connection is a
/// timeout, anything else (server down, refused login) is unavailable.
pub(crate) fn pool_error(error: PoolError) -> StoreError {
    match error {
        PoolError::Timeout(_) => StoreError::Timeout,
        PoolError::Backend(error) => pg_error(error),
        other => StoreError::Unavailable(format!("PostgreSQL pool: {other}")),
    }
}

/// Whether the statement failed on a unique key, i.e. the record exists.
pub(crate) fn is_duplicate(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::UNIQUE_VIOLATION)
}
