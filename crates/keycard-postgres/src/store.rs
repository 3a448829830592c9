//! [`PostgresStore`]: connecting, and the store contract on top of the pool.

use crate::error::{is_duplicate, pg_error, pool_error};
use crate::options::PostgresOptions;
use crate::row::{
    changes_json, data_json, record_from_row, summary_from_row, text_param, FORMAT, RECORD_COLUMNS,
    SUMMARY_COLUMNS,
};
use crate::schema;
use async_trait::async_trait;
use deadpool_postgres::{Client, Manager, Pool, Runtime};
use keycard::{
    now_millis, ApplyOutcome, Change, CreateError, Record, SessionKey, SessionStore,
    SessionSummary, StoreError, UnixMillis, Update,
};
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

/// Sessions in a PostgreSQL table (`keycard_sessions`, in the connection's
/// search path), shared by every server on the same database.
///
/// Connecting creates or migrates the schema, under an advisory lock so that
/// servers starting together do not race. Every operation is bounded by the
/// [`PostgresOptions`] timeouts and fails with a [`StoreError`] (which the
/// session layer answers with 503) rather than hang; the pool drops closed
/// connections and opens new ones, so the store recovers by itself once the
/// server is back.
///
/// Cloning is cheap and shares the pool.
///
/// # Do I need a sweeper?
/// Yes, unless something else deletes old rows: PostgreSQL does not expire
/// rows by itself, and expired sessions are never served but still take
/// space. Run [`spawn_sweeper`](Self::spawn_sweeper) on one server or all
/// (concurrent sweeps skip each other's rows).
///
/// # TLS
/// [`connect`](Self::connect) speaks plain TCP (or a Unix socket). For TLS,
/// build a `deadpool_postgres::Pool` with the connector of your choice and
/// pass it to [`from_pool`](Self::from_pool).
///
/// ```no_run
/// use keycard_postgres::{PostgresOptions, PostgresStore};
/// use std::time::Duration;
/// # async fn run() -> Result<(), keycard::StoreError> {
/// let options = PostgresOptions::new().max_connections(32);
/// let store = PostgresStore::connect_with("postgres://app@db.internal/app", options).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    query_timeout: Duration,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.inner.pool.status())
            .field("query_timeout", &self.inner.query_timeout)
            .finish()
    }
}

/// Migrations may wait for another server's migration to finish.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(30);

impl PostgresStore {
    /// Connects with the default [`PostgresOptions`] and brings the schema up
    /// to date. `url` is a `postgres://` URL or a `key=value` string.
    ///
    /// Fails if the server cannot be reached now: a server should not start
    /// without its session store.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects with `options` and brings the schema up to date.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        // The parser's message never repeats the URL, so no password is logged.
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("invalid PostgreSQL URL: {e}")))?;
        config.connect_timeout(options.pool_timeout);
        // Keepalives let the kernel notice a peer that vanished without
        // closing the connection (a crashed host, a dropped route).
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("keycard");
        }
        // The default recycling checks `is_closed` only, which costs no round
        // trip; connections the server closed are dropped and replaced.
        let manager = Manager::new(config, NoTls);
        let timeout = Some(options.pool_timeout);
        let pool = Pool::builder(manager)
            .max_size(options.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("PostgreSQL pool: {e}")))?;
        Self::with_pool(pool, options.query_timeout).await
    }

    /// Uses an existing pool (for TLS, or to share the application's pool)
    /// and brings the schema up to date. Give the pool a runtime and
    /// timeouts, or a dead server makes callers wait forever for a connection.
    pub async fn from_pool(pool: Pool) -> Result<Self, StoreError> {
        Self::with_pool(pool, PostgresOptions::default().query_timeout).await
    }

    async fn with_pool(pool: Pool, query_timeout: Duration) -> Result<Self, StoreError> {
        let store = PostgresStore {
            inner: Arc::new(Inner {
                pool,
                query_timeout,
            }),
        };
        let migrate = async {
            let mut client = store.client().await?;
            schema::migrate(&mut client).await
        };
        tokio::time::timeout(MIGRATION_TIMEOUT.max(query_timeout), migrate)
            .await
            .unwrap_or(Err(StoreError::Timeout))?;
        Ok(store)
    }

    /// The connection pool (to watch its status, or to share it).
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// Deletes expired records every `every`, at most `batch` per statement.
    ///
    /// Each pass deletes batches until one comes back short; each batch is
    /// its own short statement, so no lock is held for long. Errors (the
    /// server being down) are logged and the next pass tries again. The task
    /// ends by itself once every clone of the store is dropped; abort the
    /// handle to stop it sooner.
    ///
    /// # Panics
    /// Outside a Tokio runtime (like `tokio::spawn`).
    pub fn spawn_sweeper(&self, every: Duration, batch: usize) -> JoinHandle<()> {
        tokio::spawn(sweep_forever(Arc::downgrade(&self.inner), every, batch))
    }

    async fn client(&self) -> Result<Client, StoreError> {
        self.inner.pool.get().await.map_err(pool_error)
    }

    /// Bounds a whole operation, including the wait for a connection, so a
    /// server that stops answering without closing the socket cannot hang a
    /// request.
    async fn timed<T, E: From<StoreError>>(
        &self,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        tokio::time::timeout(self.inner.query_timeout, work)
            .await
            .unwrap_or_else(|_| Err(StoreError::Timeout.into()))
    }
}

async fn sweep_forever(inner: Weak<Inner>, every: Duration, batch: usize) {
    let batch = batch.max(1);
    // A zero period would make `interval` panic and the loop spin.
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let store = PostgresStore { inner };
        loop {
            match store.sweep(now_millis(), batch).await {
                Ok(swept) if usize::try_from(swept).is_ok_and(|swept| swept >= batch) => {
                    tokio::task::yield_now().await;
                }
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "keycard PostgreSQL sweep failed");
                    break;
                }
            }
        }
    }
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The parameters an update binds, shared by `apply` and `cycle`, whose
/// statements number them alike ($2 to $11).
struct UpdateParams<'a> {
    changes: Option<String>,
    set_user: bool,
    user: Option<Cow<'a, str>>,
    set_client: bool,
    ip: Option<Cow<'a, str>>,
    user_agent: Option<Cow<'a, str>>,
    last_seen: i64,
    idle_deadline: i64,
    absolute_deadline: i64,
    now: i64,
}

impl<'a> UpdateParams<'a> {
    fn new(update: &'a Update) -> Result<Self, StoreError> {
        let client = update.client.as_ref();
        Ok(UpdateParams {
            changes: changes_json(&update.changes)?,
            set_user: update.user_id.is_some(),
            user: text_param(update.user_id.as_ref().and_then(Option::as_ref)),
            set_client: client.is_some(),
            ip: text_param(client.and_then(|c| c.ip.as_ref())),
            user_agent: text_param(client.and_then(|c| c.user_agent.as_ref())),
            last_seen: update.last_seen,
            idle_deadline: update.idle_deadline,
            absolute_deadline: update.absolute_deadline,
            now: now_millis(),
        })
    }

    fn with_key<'p>(&'p self, key: &'p &'p [u8]) -> Vec<&'p (dyn ToSql + Sync)> {
        vec![
            key,
            &self.changes,
            &self.set_user,
            &self.user,
            &self.set_client,
            &self.ip,
            &self.user_agent,
            &self.last_seen,
            &self.idle_deadline,
            &self.absolute_deadline,
            &self.now,
        ]
    }
}

/// The new column values of an updated row, in terms of the old ones.
/// `keycard_apply_changes` is skipped for a touch, which changes no data.
const UPDATED_DATA: &str =
    "CASE WHEN $2::text IS NULL THEN data ELSE keycard_apply_changes(data, $2::text::jsonb) END";
const UPDATED_USER: &str = "CASE WHEN $3::boolean THEN $4::text ELSE user_id END";
const UPDATED_IP: &str = "CASE WHEN $5::boolean THEN $6::text ELSE ip END";
const UPDATED_USER_AGENT: &str = "CASE WHEN $5::boolean THEN $7::text ELSE user_agent END";

#[async_trait]
impl SessionStore for PostgresStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let sql =
                format!("SELECT {RECORD_COLUMNS} FROM keycard_sessions WHERE key = $1::bytea");
            let statement = client.prepare_cached(&sql).await.map_err(pg_error)?;
            let row = client
                .query_opt(&statement, &[&key.as_bytes().as_slice()])
                .await
                .map_err(pg_error)?;
            row.as_ref().map(record_from_row).transpose()
        })
        .await
    }

    async fn create(&self, key: &SessionKey, record: &Record) -> Result<(), CreateError> {
        let data = data_json(record)?;
        self.timed(async {
            let client = self.client().await?;
            // The upsert replaces only an expired row, in one statement, so
            // two creates racing on one key cannot both succeed.
            let statement = client
                .prepare_cached(
                    "INSERT INTO keycard_sessions (key, user_id, created_at, last_seen, idle_deadline, \
                     absolute_deadline, expires_at, ip, user_agent, format, data) \
                     VALUES ($1::bytea, $2::text, $3::bigint, $4::bigint, $5::bigint, $6::bigint, \
                     $7::bigint, $8::text, $9::text, $10::smallint, $11::text::jsonb) \
                     ON CONFLICT (key) DO UPDATE SET user_id = EXCLUDED.user_id, \
                     created_at = EXCLUDED.created_at, last_seen = EXCLUDED.last_seen, \
                     idle_deadline = EXCLUDED.idle_deadline, absolute_deadline = EXCLUDED.absolute_deadline, \
                     expires_at = EXCLUDED.expires_at, ip = EXCLUDED.ip, user_agent = EXCLUDED.user_agent, \
                     format = EXCLUDED.format, data = EXCLUDED.data \
                     WHERE keycard_sessions.expires_at <= $12::bigint",
                )
                .await
                .map_err(pg_error)?;
            let written = client
                .execute(
                    &statement,
                    &[
                        &key.as_bytes().as_slice(),
                        &text_param(record.user_id.as_ref()),
                        &record.created_at,
                        &record.last_seen,
                        &record.idle_deadline,
                        &record.absolute_deadline,
                        &record.expires_at(),
                        &text_param(record.ip.as_ref()),
                        &text_param(record.user_agent.as_ref()),
                        &FORMAT,
                        &data,
                        &now_millis(),
                    ],
                )
                .await
                .map_err(pg_error)?;
            match written {
                0 => Err(CreateError::DuplicateKey),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn apply(&self, key: &SessionKey, update: &Update) -> Result<ApplyOutcome, StoreError> {
        let params = UpdateParams::new(update)?;
        self.timed(async {
            let client = self.client().await?;
            // One UPDATE: the row lock orders concurrent requests, and each
            // computes its new data from the row as the previous one left it.
            let sql = format!(
                "UPDATE keycard_sessions SET data = {UPDATED_DATA}, user_id = {UPDATED_USER}, \
                 ip = {UPDATED_IP}, user_agent = {UPDATED_USER_AGENT}, last_seen = $8::bigint, \
                 idle_deadline = $9::bigint, absolute_deadline = $10::bigint, \
                 expires_at = LEAST($9::bigint, $10::bigint) \
                 WHERE key = $1::bytea AND expires_at > $11::bigint"
            );
            let statement = client.prepare_cached(&sql).await.map_err(pg_error)?;
            let key = key.as_bytes().as_slice();
            let updated = client
                .execute(&statement, &params.with_key(&key))
                .await
                .map_err(pg_error)?;
            Ok(if updated == 0 {
                ApplyOutcome::Gone
            } else {
                ApplyOutcome::Applied
            })
        })
        .await
    }

    async fn apply_and_load(
        &self,
        key: &SessionKey,
        changes: &[Change],
        now: UnixMillis,
    ) -> Result<Option<Record>, StoreError> {
        let changes = changes_json(changes)?;
        self.timed(async {
            let client = self.client().await?;
            // One UPDATE ... RETURNING: the row lock orders concurrent
            // requests, and each returns the row as its own change left it.
            let sql = format!(
                "UPDATE keycard_sessions SET data = {UPDATED_DATA} \
                 WHERE key = $1::bytea AND expires_at > $3::bigint \
                 RETURNING {RECORD_COLUMNS}"
            );
            let statement = client.prepare_cached(&sql).await.map_err(pg_error)?;
            let row = client
                .query_opt(&statement, &[&key.as_bytes().as_slice(), &changes, &now])
                .await
                .map_err(pg_error)?;
            row.as_ref().map(record_from_row).transpose()
        })
        .await
    }

    async fn cycle(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        update: &Update,
    ) -> Result<ApplyOutcome, CreateError> {
        let params = UpdateParams::new(update)?;
        self.timed(async {
            let mut client = self.client().await?;
            let clear = client
                .prepare_cached("DELETE FROM keycard_sessions WHERE key = $1::bytea AND expires_at <= $2::bigint")
                .await
                .map_err(pg_error)?;
            let sql = format!(
                "WITH old AS (DELETE FROM keycard_sessions \
                   WHERE key = $1::bytea AND expires_at > $11::bigint RETURNING *) \
                 INSERT INTO keycard_sessions (key, user_id, created_at, last_seen, idle_deadline, \
                   absolute_deadline, expires_at, ip, user_agent, format, data) \
                 SELECT $12::bytea, {UPDATED_USER}, created_at, $8::bigint, $9::bigint, $10::bigint, \
                   LEAST($9::bigint, $10::bigint), {UPDATED_IP}, {UPDATED_USER_AGENT}, format, {UPDATED_DATA} \
                 FROM old"
            );
            let moving = client.prepare_cached(&sql).await.map_err(pg_error)?;
            let (old, new) = (old.as_bytes().as_slice(), new.as_bytes().as_slice());
            let mut bound = params.with_key(&old);
            bound.push(&new);

            let tx = client.transaction().await.map_err(pg_error)?;
            // An expired record under the new key may be replaced, as in `create`.
            tx.execute(&clear, &[&new, &params.now]).await.map_err(pg_error)?;
            let moved = match tx.execute(&moving, &bound).await {
                Ok(moved) => moved,
                // The new key is live: the transaction rolls back, so the old
                // record stays where it was.
                Err(error) if is_duplicate(&error) => return Err(CreateError::DuplicateKey),
                Err(error) => return Err(pg_error(error).into()),
            };
            tx.commit().await.map_err(pg_error)?;
            Ok(if moved == 0 { ApplyOutcome::Gone } else { ApplyOutcome::Applied })
        })
        .await
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached("DELETE FROM keycard_sessions WHERE key = $1::bytea")
                .await
                .map_err(pg_error)?;
            client
                .execute(&statement, &[&key.as_bytes().as_slice()])
                .await
                .map_err(pg_error)?;
            Ok(())
        })
        .await
    }

    async fn list_for_user(&self, user_id: &str) -> Result<Vec<SessionSummary>, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {SUMMARY_COLUMNS} FROM keycard_sessions \
                 WHERE user_id = $1::text AND expires_at > $2::bigint ORDER BY key"
            );
            let statement = client.prepare_cached(&sql).await.map_err(pg_error)?;
            let user = crate::escape::escape(user_id);
            let rows = client
                .query(&statement, &[&user, &now_millis()])
                .await
                .map_err(pg_error)?;
            rows.iter().map(summary_from_row).collect()
        })
        .await
    }

    async fn delete_for_user(
        &self,
        user_id: &str,
        except: Option<&SessionKey>,
    ) -> Result<u64, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "DELETE FROM keycard_sessions WHERE user_id = $1::text AND key <> $2::bytea",
                )
                .await
                .map_err(pg_error)?;
            let user = crate::escape::escape(user_id);
            // No 32-byte key equals the empty bytea, so `None` spares nothing.
            let except: &[u8] = except
                .map(|key| key.as_bytes().as_slice())
                .unwrap_or_default();
            client
                .execute(&statement, &[&user, &except])
                .await
                .map_err(pg_error)
        })
        .await
    }

    async fn sweep(&self, now: UnixMillis, limit: usize) -> Result<u64, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            // The subquery walks the expiry index from the oldest deadline, so
            // a batch costs O(limit); SKIP LOCKED lets several servers sweep
            // at once without waiting on each other or on live requests.
            let statement = client
                .prepare_cached(
                    "DELETE FROM keycard_sessions WHERE key IN (SELECT key FROM keycard_sessions \
                     WHERE expires_at <= $1::bigint ORDER BY expires_at LIMIT $2::bigint \
                     FOR UPDATE SKIP LOCKED)",
                )
                .await
                .map_err(pg_error)?;
            client
                .execute(&statement, &[&now, &limit_param(limit)])
                .await
                .map_err(pg_error)
        })
        .await
    }

    async fn list_all(
        &self,
        after: Option<&SessionKey>,
        limit: usize,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            // bytea compares bytewise, which is `SessionKey`'s order; every
            // key sorts after the empty bytea.
            let sql = format!(
                "SELECT {SUMMARY_COLUMNS} FROM keycard_sessions \
                 WHERE key > $1::bytea AND expires_at > $2::bigint ORDER BY key LIMIT $3::bigint"
            );
            let statement = client.prepare_cached(&sql).await.map_err(pg_error)?;
            let after: &[u8] = after
                .map(|key| key.as_bytes().as_slice())
                .unwrap_or_default();
            let rows = client
                .query(&statement, &[&after, &now_millis(), &limit_param(limit)])
                .await
                .map_err(pg_error)?;
            rows.iter().map(summary_from_row).collect()
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(async {
            let client = self.client().await?;
            client.simple_query("SELECT 1").await.map_err(pg_error)?;
            Ok(())
        })
        .await
    }
}
