//! The Redis / Valkey session store for keycard, standalone and Cluster.
//!
//! ```no_run
//! # async fn demo() -> Result<(), keycard_redis::ConnectError> {
//! use keycard_redis::RedisStore;
//! use std::time::Duration;
//!
//! // Standalone (reconnects on its own after an outage):
//! let store = RedisStore::connect("redis://127.0.0.1:6379/0").await?;
//! // Cluster, with a key prefix of its own and a tighter deadline per call:
//! let cluster = RedisStore::builder("redis+cluster://10.0.0.1:6379,10.0.0.2:6379")
//!     .prefix("shop")
//!     .timeout(Duration::from_millis(500))
//!     .connect()
//!     .await?;
//! # let _ = (store, cluster);
//! # Ok(()) }
//! ```
//!
//! # Key scheme
//!
//! ```text
//! {prefix}:s:{<key hex>}    hash: one session (PEXPIREAT at the earlier deadline)
//!     v                     "2 <created> <seen> <idle> <abs>": layout version 2,
//!                           then the four times (decimal Unix millis); layout 1
//!                           (`v` = "1", `m:created` `m:seen` `m:idle` `m:abs`)
//!                           is still read and rewritten on the next write
//!     m:user m:ip m:ua      user ID, client address, User-Agent (absent when None)
//!     d:<key>               one application value, as JSON text
//! {prefix}:u:{<hash hex>}   set: the key hexes of one user's sessions; the hex is
//!                           SessionKey::derive("redis-user-index", user_id)
//! ```
//!
//! `<key hex>` is the [`SessionKey`] (the SHA-256 of the
//! session ID), never the ID itself. The braces are Cluster hash tags.
//!
//! # Why each operation is what it is
//!
//! * **Expiry is native.** Every write ends with `PEXPIREAT` at the earlier of
//!   the two deadlines, so Redis forgets sessions on its own and
//!   [`sweep`](keycard::SessionStore::sweep) returns 0.
//! * **Per-key writes.** Each data key is its own hash field and
//!   [`apply`](keycard::SessionStore::apply) is one Lua script on one key: two
//!   requests changing different keys both keep their change, increments are
//!   `HINCRBY`'s 64-bit arithmetic, and a deleted session is never re-created.
//! * **Loading is one round trip** (`HGETALL`), and so is a write that
//!   needs the result:
//!   [`apply_and_load`](keycard::SessionStore::apply_and_load) (what
//!   `Session::increment` uses on an unloaded session) is one lean script:
//!   `EXISTS`, the change list, `HGETALL`.
//! * **Rotation is take-then-create.** In Cluster the old and new keys live in
//!   different slots, which no script can span. [`cycle`](keycard::SessionStore::cycle)
//!   atomically takes (reads and deletes) the old hash, applies the update in
//!   Rust with [`Record::apply`](keycard::Record::apply), then creates the new
//!   one. A write racing with the rotation on the old key gets `Gone` (the same
//!   answer it would get a moment later), and a failure between the two steps
//!   loses that session (fail closed: the user signs in again) rather than
//!   leaving two live copies.
//! * **The user index is eventually consistent.** Index sets live in other
//!   slots, so they are updated in a second round trip after the session write.
//!   The session hash is always the truth: listings drop members whose hash is
//!   gone or belongs to someone else (and `SREM` them), every write of a
//!   logged-in session re-adds it (healing a lost `SADD`), and a set's TTL is
//!   stretched to its longest-lived member, so it disappears with its sessions.
//! * **Bounded calls.** Every round trip is wrapped in the store timeout
//!   (default 1 s), on top of redis-rs's own connection and response timeouts:
//!   a down or frozen server gives [`StoreError::Unavailable`] or
//!   [`StoreError::Timeout`] quickly, and the same store recovers once the
//!   server is back.
//!
//! * **`list_all` is an admin tool.** It `SCAN`s every key of the prefix (on
//!   every primary in Cluster), sorts them in memory and loads one page: cost
//!   O(all sessions) per call. Never call it per request.
//!
//! Requires Redis >= 7.0 or Valkey >= 7.2 (`PEXPIREAT ... NX/GT`). The
//! crate's README.md has the measured outage behaviour and the choice of
//! redis-rs over fred.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod conn;
mod layout;
mod scripts;
mod store;

use keycard::{SessionKey, StoreError};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The key prefix when none is configured.
pub const DEFAULT_PREFIX: &str = "keycard";
/// The deadline of each round trip when none is configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// Why [`RedisStore::connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not one this store understands.
    #[error("invalid Redis URL: {0}")]
    Url(String),
    /// The prefix or timeout cannot be used.
    #[error("invalid Redis store configuration: {0}")]
    Config(String),
    /// The server (or no seed node of the Cluster) could be reached.
    #[error("cannot connect to Redis: {0}")]
    Unavailable(String),
    /// Connecting took longer than allowed.
    #[error("timed out connecting to Redis")]
    Timeout,
}

/// Sessions in Redis or Valkey, standalone or Cluster.
///
/// Cheap to clone: clones share one multiplexed connection (per node).
/// See the [crate documentation](crate) for the key scheme and the trade-offs.
#[derive(Clone)]
pub struct RedisStore {
    conn: conn::Conn,
    names: layout::Names,
    scripts: Arc<scripts::Scripts>,
    timeout: Duration,
}

impl fmt::Debug for RedisStore {
    // No URL: it may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &self.is_cluster())
            .field("prefix", &self.names.prefix())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects with the default prefix (`keycard`) and timeout (1 s).
    ///
    /// `url` is `redis://[user:pass@]host:port[/db]` (also `rediss://` and
    /// `unix://` where redis-rs was built with them) for one server, or
    /// `redis+cluster://[user:pass@]host:port,host:port,...` for a Cluster
    /// (any reachable seed node will do; the rest are discovered).
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        Self::builder(url).connect().await
    }

    /// A builder to set the prefix and timeout before connecting.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.names.prefix()
    }

    /// The deadline of each round trip.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether this store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, conn::Conn::Cluster(_))
    }

    /// The Redis key a session is kept under, for operators (`redis-cli HGETALL`).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = keycard_redis::RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// let key = keycard::SessionKey::derive("doc", "example");
    /// assert!(store.session_key_name(&key).starts_with("keycard:s:{"));
    /// # Ok(()) }
    /// ```
    pub fn session_key_name(&self, key: &SessionKey) -> String {
        self.names.session(key)
    }

    /// The Redis key of a user's session index (a set of session key hexes).
    pub fn user_index_name(&self, user_id: &str) -> String {
        self.names.user_index(user_id)
    }
}

/// Configures a [`RedisStore`] before connecting.
///
/// ```no_run
/// # async fn demo() -> Result<(), keycard_redis::ConnectError> {
/// let store = keycard_redis::RedisStore::builder("redis://127.0.0.1:6379")
///     .prefix("myapp")
///     .timeout(std::time::Duration::from_millis(300))
///     .connect()
///     .await?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    /// The first part of every key name (default `keycard`). Lets several
    /// applications share one database. Must be non-empty, without braces
    /// (they would become the Cluster hash tag) or whitespace.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The deadline of each round trip (default 1 s), also used as redis-rs's
    /// connection and response timeout. The session layer answers 503 when it
    /// passes, so keep it below what a user would wait for a page. An operation
    /// makes at most four sequential round trips (`cycle` of a logged-in session:
    /// take, create, two index writes), but it stops at the first that fails,
    /// so an unreachable server costs one timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects, failing if the server cannot be reached now (at most three
    /// times the timeout). Once connected, the store survives outages.
    pub async fn connect(self) -> Result<RedisStore, ConnectError> {
        layout::validate_prefix(&self.prefix).map_err(ConnectError::Config)?;
        if self.timeout.is_zero() {
            return Err(ConnectError::Config(
                "the timeout must be greater than zero".into(),
            ));
        }
        let target = conn::parse_target(&self.url)?;
        let conn = tokio::time::timeout(
            self.timeout.saturating_mul(3),
            conn::open(&target, self.timeout),
        )
        .await
        .map_err(|_| ConnectError::Timeout)??;
        Ok(RedisStore {
            conn,
            names: layout::Names::new(&self.prefix),
            scripts: Arc::new(scripts::Scripts::new()),
            timeout: self.timeout,
        })
    }
}

/// Maps a redis-rs error to the store contract's error.
fn store_error(error: redis::RedisError) -> StoreError {
    if error.is_timeout() {
        StoreError::Timeout
    } else if error.code() == Some("WRONGTYPE") {
        // Something that is not a hash sits under a session key name.
        StoreError::Corrupt(error.to_string())
    } else {
        StoreError::Unavailable(error.to_string())
    }
}
