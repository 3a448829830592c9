//! [`PostgresOptions`]: pool size and timeouts.

use std::time::Duration;

/// How a [`PostgresStore`](crate::PostgresStore) uses the server.
///
/// The timeouts are short by default because the session layer answers 503
/// when the store fails: failing fast beats piling requests up behind a
/// database that is down.
///
/// ```
/// use keycard_postgres::PostgresOptions;
/// use std::time::Duration;
/// let options = PostgresOptions::new()
///     .max_connections(32)
///     .pool_timeout(Duration::from_millis(500))
///     .query_timeout(Duration::from_secs(2));
/// ```
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    pub(crate) max_connections: usize,
    pub(crate) pool_timeout: Duration,
    pub(crate) query_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            max_connections: 16,
            pool_timeout: Duration::from_secs(1),
            query_timeout: Duration::from_secs(5),
        }
    }
}

impl PostgresOptions {
    /// The defaults: 16 connections, 1 second pool timeouts, 5 second queries.
    pub fn new() -> Self {
        Self::default()
    }

    /// The most connections the pool opens (default 16).
    #[must_use]
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long to wait to connect, for a free connection, or to check a
    /// pooled one (default 1 second each). Past it, an operation fails with
    /// [`StoreError::Timeout`](keycard::StoreError::Timeout).
    #[must_use]
    pub fn pool_timeout(mut self, timeout: Duration) -> Self {
        self.pool_timeout = timeout;
        self
    }

    /// How long one store operation may take in all, from waiting for a
    /// connection to the last row (default 5 seconds). It bounds the wait on
    /// a server that stopped answering without closing the connection.
    #[must_use]
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout;
        self
    }
}
