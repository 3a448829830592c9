//! The connections behind a store, and the bridge from async code to them.
//!
//! SQLite calls block, so each operation runs on Tokio's blocking pool with one
//! connection locked for its duration. Writes share a single connection: SQLite
//! allows one writer at a time anyway, and queuing on our mutex is cheaper than
//! having several connections spin on the database lock. Reads pick whichever
//! reader connection is free; in WAL mode they never wait for the writer.

use keycard::StoreError;
use rusqlite::{Connection, ErrorCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

pub(crate) struct Connections {
    writer: Mutex<Connection>,
    /// Empty for an in-memory database, whose connections cannot share it:
    /// reads then go through the writer.
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

fn poisoned() -> StoreError {
    // A panic while holding a connection may have left a transaction half
    // done; refusing service is safer than guessing what state it is in.
    StoreError::Unavailable("a SQLite connection was poisoned by a panic".into())
}

impl Connections {
    pub(crate) fn new(writer: Connection, readers: Vec<Connection>) -> Self {
        Connections {
            writer: Mutex::new(writer),
            readers: readers.into_iter().map(Mutex::new).collect(),
            next_reader: AtomicUsize::new(0),
        }
    }

    pub(crate) fn writer(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.writer.lock().map_err(|_| poisoned())
    }

    /// A free reader if there is one, else waits for one in turn.
    pub(crate) fn reader(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        let count = self.readers.len();
        if count == 0 {
            return self.writer();
        }
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed) % count;
        for offset in 0..count {
            match self.readers[(start + offset) % count].try_lock() {
                Ok(guard) => return Ok(guard),
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Poisoned(_)) => return Err(poisoned()),
            }
        }
        self.readers[start].lock().map_err(|_| poisoned())
    }
}

/// Runs blocking work on Tokio's blocking pool.
///
/// If the caller's future is dropped, the work still runs to completion, so a
/// transaction is never abandoned halfway by a cancelled request.
pub(crate) async fn blocking<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| StoreError::Unavailable("SqliteStore needs a Tokio runtime".into()))?;
    runtime
        .spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Unavailable(format!("SQLite task failed: {e}")))?
}

/// Maps a SQLite error to the store contract: a busy database is a timeout, a
/// value of the wrong type is a corrupt record, anything else is unavailable.
pub(crate) fn store_error(error: rusqlite::Error) -> StoreError {
    use rusqlite::Error as E;
    match &error {
        E::SqliteFailure(failure, _)
            if matches!(
                failure.code,
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Timeout
        }
        E::InvalidColumnType(..)
        | E::FromSqlConversionFailure(..)
        | E::IntegralValueOutOfRange(..)
        | E::Utf8Error(..) => StoreError::Corrupt(error.to_string()),
        _ => StoreError::Unavailable(format!("SQLite: {error}")),
    }
}
