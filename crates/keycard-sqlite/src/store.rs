//! [`SqliteStore`]: opening a database, and the store contract on top of it.

use crate::connections::{blocking, store_error, Connections};
use crate::schema::{self, read_summary, SUMMARY_COLUMNS};
use async_trait::async_trait;
use keycard::{
    now_millis, ApplyOutcome, Change, CreateError, Record, SessionKey, SessionStore,
    SessionSummary, StoreError, UnixMillis, Update,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How a [`SqliteStore`] uses its database file.
///
/// ```
/// use keycard_sqlite::SqliteOptions;
/// use std::time::Duration;
/// let options = SqliteOptions::new().readers(8).busy_timeout(Duration::from_secs(2));
/// ```
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    readers: usize,
    busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            readers: 4,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl SqliteOptions {
    /// The defaults: 4 reader connections, a 5 second busy timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many connections serve loads and listings (default 4). Writes
    /// always share one more connection. With 0, reads queue behind writes.
    #[must_use]
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers;
        self
    }

    /// How long a statement waits for another process's lock on the file
    /// before failing with [`StoreError::Timeout`] (default 5 seconds). Only
    /// matters when several processes share the file, such as a server and
    /// the `keycard` command.
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }
}

/// Sessions in a SQLite database file.
///
/// The file is opened in WAL mode with `synchronous=NORMAL`: a committed
/// session survives a process crash, and at worst the last few commits are
/// lost on a power failure, which costs a user a login, not consistency.
/// The schema is created (or migrated) when the store opens.
///
/// Cloning is cheap and shares the connections.
///
/// # Do I need a sweeper?
/// Yes, unless something else deletes old rows: SQLite does not expire rows
/// by itself, and expired sessions are never served but still take space.
/// [`spawn_sweeper`](Self::spawn_sweeper) deletes them in small batches.
///
/// ```no_run
/// use keycard_sqlite::SqliteStore;
/// # async fn run() -> Result<(), keycard::StoreError> {
/// let store = SqliteStore::from_url("sqlite:///var/lib/app/sessions.db").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    connections: Arc<Connections>,
    path: Option<PathBuf>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn configure(conn: &Connection, options: &SqliteOptions) -> Result<(), StoreError> {
    conn.busy_timeout(options.busy_timeout)
        .map_err(store_error)?;
    // NORMAL is durable against process crashes in WAL mode and skips an
    // fsync per commit; FULL would only add safety against power loss.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(store_error)
}

/// Creates the database file readable by its owner alone (0600 on Unix)
/// when it does not exist yet: sessions hold logins and application data.
/// SQLite gives its `-wal` and `-shm` files the same permissions. An existing
/// file keeps the permissions it has.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Unavailable(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

fn open_file(path: &Path, options: &SqliteOptions) -> Result<Connections, StoreError> {
    create_private(path)?;
    let mut writer = Connection::open(path).map_err(store_error)?;
    // The busy timeout first: another process opening the same file at the
    // same moment holds the lock the journal-mode switch needs.
    configure(&writer, options)?;
    // WAL lets the readers run while the writer commits; the setting is
    // stored in the file, so setting it on the writer is enough. Switching
    // journal mode does not always wait in the busy handler, so retry for as
    // long as the busy timeout allows.
    let deadline = std::time::Instant::now() + options.busy_timeout;
    let mode: String = loop {
        match writer.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => break other.map_err(store_error)?,
        }
    };
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "SQLite refused WAL mode (got {mode})"
        )));
    }
    schema::migrate(&mut writer, now_millis())?;
    let mut readers = Vec::with_capacity(options.readers);
    for _ in 0..options.readers {
        let reader = Connection::open(path).map_err(store_error)?;
        configure(&reader, options)?;
        // A reader that could write would bypass the writer's serialization.
        reader
            .pragma_update(None, "query_only", true)
            .map_err(store_error)?;
        readers.push(reader);
    }
    Ok(Connections::new(writer, readers))
}

impl SqliteStore {
    /// Opens (creating it if needed) the database at `path` with the default
    /// [`SqliteOptions`]. The parent directory must exist.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens (creating it if needed) the database at `path`.
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let opened = path.clone();
        let connections = blocking(move || open_file(&opened, &options)).await?;
        Ok(SqliteStore {
            connections: Arc::new(connections),
            path: Some(path),
        })
    }

    /// A private database in memory, gone when the store is dropped: for
    /// tests. Reads and writes share one connection.
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        let connections = blocking(|| {
            let mut conn = Connection::open_in_memory().map_err(store_error)?;
            configure(&conn, &SqliteOptions::default())?;
            schema::migrate(&mut conn, now_millis())?;
            Ok::<_, StoreError>(Connections::new(conn, Vec::new()))
        })
        .await?;
        Ok(SqliteStore {
            connections: Arc::new(connections),
            path: None,
        })
    }

    /// Opens the database a URL names: `sqlite:PATH` or `sqlite://PATH`
    /// (so `sqlite:///abs/path.db` is absolute), or `sqlite::memory:` for
    /// [`open_in_memory`](Self::open_in_memory).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), keycard::StoreError> {
    /// let store = keycard_sqlite::SqliteStore::from_url("sqlite:sessions.db").await?;
    /// # Ok(()) }
    /// ```
    pub async fn from_url(url: &str) -> Result<Self, StoreError> {
        match parse_url(url)? {
            None => Self::open_in_memory().await,
            Some(path) => Self::open(path).await,
        }
    }

    /// The database file, `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Deletes expired records every `every`, at most `batch` per statement.
    ///
    /// Each pass deletes batches until one comes back short, releasing the
    /// write lock between batches so requests are never stuck behind a long
    /// delete. Errors are logged and retried on the next pass. The task ends
    /// by itself once every clone of the store is dropped; abort the handle to
    /// stop it sooner.
    ///
    /// # Panics
    /// Outside a Tokio runtime (like `tokio::spawn`).
    pub fn spawn_sweeper(&self, every: Duration, batch: usize) -> JoinHandle<()> {
        let connections = Arc::downgrade(&self.connections);
        let path = self.path.clone();
        tokio::spawn(sweep_forever(connections, path, every, batch))
    }

    async fn write<T, E>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let connections = self.connections.clone();
        blocking(move || work(&mut *connections.writer()?)).await
    }

    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connections = self.connections.clone();
        blocking(move || work(&*connections.reader()?)).await
    }
}

/// `Some(path)`, or `None` for an in-memory database.
fn parse_url(url: &str) -> Result<Option<PathBuf>, StoreError> {
    let rest = url
        .strip_prefix("sqlite:")
        .ok_or_else(|| StoreError::Unavailable("a SQLite URL starts with sqlite:".into()))?;
    if rest == ":memory:" || rest == "//:memory:" {
        return Ok(None);
    }
    let path = rest.strip_prefix("//").unwrap_or(rest);
    if path.is_empty() {
        return Err(StoreError::Unavailable(
            "the SQLite URL names no file".into(),
        ));
    }
    Ok(Some(PathBuf::from(path)))
}

async fn sweep_forever(
    connections: Weak<Connections>,
    path: Option<PathBuf>,
    every: Duration,
    batch: usize,
) {
    let batch = batch.max(1);
    // A zero period would make `interval` panic and the loop spin.
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(connections) = connections.upgrade() else {
            return;
        };
        let store = SqliteStore {
            connections,
            path: path.clone(),
        };
        loop {
            match store.sweep(now_millis(), batch).await {
                Ok(swept) if usize::try_from(swept).is_ok_and(|swept| swept >= batch) => {
                    tokio::task::yield_now().await;
                }
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "keycard SQLite sweep failed");
                    break;
                }
            }
        }
    }
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn summaries(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<SessionSummary>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(store_error)?;
    let mut rows = stmt.query(params).map_err(store_error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(store_error)? {
        out.push(read_summary(row)?);
    }
    Ok(out)
}

/// The full-row upsert; creation appends a condition so that only an expired
/// row is ever replaced.
const UPSERT: &str = "INSERT INTO keycard_sessions (key, user_id, created_at, last_seen, \
    idle_deadline, absolute_deadline, expires_at, ip, user_agent, format, data) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
    ON CONFLICT (key) DO UPDATE SET user_id = excluded.user_id, created_at = excluded.created_at, \
    last_seen = excluded.last_seen, idle_deadline = excluded.idle_deadline, \
    absolute_deadline = excluded.absolute_deadline, expires_at = excluded.expires_at, \
    ip = excluded.ip, user_agent = excluded.user_agent, format = excluded.format, data = excluded.data";

/// Writes `record` under `key`. With `unless_live_at`, an existing row is
/// replaced only if it expired by then; returns how many rows changed.
fn upsert(
    conn: &Connection,
    key: &SessionKey,
    record: &Record,
    unless_live_at: Option<UnixMillis>,
) -> Result<usize, StoreError> {
    let data = schema::encode_data(record)?;
    let base = rusqlite::params![
        key.as_bytes().as_slice(),
        record.user_id,
        record.created_at,
        record.last_seen,
        record.idle_deadline,
        record.absolute_deadline,
        record.expires_at(),
        record.ip,
        record.user_agent,
        schema::ROW_FORMAT,
        data,
    ];
    let result = match unless_live_at {
        None => conn
            .prepare_cached(UPSERT)
            .and_then(|mut stmt| stmt.execute(base)),
        Some(now) => conn
            .prepare_cached(&format!(
                "{UPSERT} WHERE keycard_sessions.expires_at <= ?12"
            ))
            .and_then(|mut stmt| {
                let mut params = base.to_vec();
                params.push(&now);
                stmt.execute(params.as_slice())
            }),
    };
    result.map_err(store_error)
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        let key = *key;
        self.read(move |conn| schema::read(conn, &key)).await
    }

    async fn create(&self, key: &SessionKey, record: &Record) -> Result<(), CreateError> {
        let (key, record, now) = (*key, record.clone(), now_millis());
        self.write(move |conn| match upsert(conn, &key, &record, Some(now))? {
            0 => Err(CreateError::DuplicateKey),
            _ => Ok(()),
        })
        .await
    }

    async fn apply(&self, key: &SessionKey, update: &Update) -> Result<ApplyOutcome, StoreError> {
        let (key, update, now) = (*key, update.clone(), now_millis());
        self.write(move |conn| {
            // IMMEDIATE takes the write lock before the read, so another
            // process cannot change the row between our read and our write.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(store_error)?;
            let Some(mut record) = schema::read(&tx, &key)?.filter(|r| !r.is_expired(now)) else {
                return Ok(ApplyOutcome::Gone);
            };
            record.apply(&update);
            upsert(&tx, &key, &record, None)?;
            tx.commit().map_err(store_error)?;
            Ok(ApplyOutcome::Applied)
        })
        .await
    }

    async fn apply_and_load(
        &self,
        key: &SessionKey,
        changes: &[Change],
        now: UnixMillis,
    ) -> Result<Option<Record>, StoreError> {
        let (key, changes) = (*key, changes.to_vec());
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(store_error)?;
            let Some(mut record) = schema::read(&tx, &key)?.filter(|r| !r.is_expired(now)) else {
                return Ok(None);
            };
            for change in &changes {
                change.apply_to(&mut record.data);
            }
            upsert(&tx, &key, &record, None)?;
            tx.commit().map_err(store_error)?;
            Ok(Some(record))
        })
        .await
    }

    async fn cycle(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        update: &Update,
    ) -> Result<ApplyOutcome, CreateError> {
        let (old, new, update, now) = (*old, *new, update.clone(), now_millis());
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(store_error)?;
            let Some(mut record) = schema::read(&tx, &old)?.filter(|r| !r.is_expired(now)) else {
                return Ok(ApplyOutcome::Gone);
            };
            let taken: Option<i64> = tx
                .query_row(
                    "SELECT expires_at FROM keycard_sessions WHERE key = ?1",
                    [new.as_bytes().as_slice()],
                    |row| row.get(0),
                )
                .optional()
                .map_err(store_error)?;
            if taken.is_some_and(|expires_at| expires_at > now) {
                return Err(CreateError::DuplicateKey);
            }
            tx.execute(
                "DELETE FROM keycard_sessions WHERE key = ?1",
                [old.as_bytes().as_slice()],
            )
            .map_err(store_error)?;
            record.apply(&update);
            upsert(&tx, &new, &record, None)?;
            tx.commit().map_err(store_error)?;
            Ok(ApplyOutcome::Applied)
        })
        .await
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        let key = *key;
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM keycard_sessions WHERE key = ?1")
                .and_then(|mut stmt| stmt.execute([key.as_bytes().as_slice()]))
                .map(drop)
                .map_err(store_error)
        })
        .await
    }

    async fn list_for_user(&self, user_id: &str) -> Result<Vec<SessionSummary>, StoreError> {
        let (user_id, now) = (user_id.to_owned(), now_millis());
        self.read(move |conn| {
            let sql = format!(
                "SELECT {SUMMARY_COLUMNS} FROM keycard_sessions \
                 WHERE user_id = ?1 AND expires_at > ?2 ORDER BY key"
            );
            summaries(conn, &sql, rusqlite::params![user_id, now])
        })
        .await
    }

    async fn delete_for_user(
        &self,
        user_id: &str,
        except: Option<&SessionKey>,
    ) -> Result<u64, StoreError> {
        let user_id = user_id.to_owned();
        // No 32-byte key equals the empty blob, so `None` spares nothing.
        let except = except
            .map(|key| key.as_bytes().to_vec())
            .unwrap_or_default();
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM keycard_sessions WHERE user_id = ?1 AND key <> ?2")
                .and_then(|mut stmt| stmt.execute(rusqlite::params![user_id, except]))
                .map(|deleted| deleted as u64)
                .map_err(store_error)
        })
        .await
    }

    async fn sweep(&self, now: UnixMillis, limit: usize) -> Result<u64, StoreError> {
        let limit = limit_param(limit);
        self.write(move |conn| {
            // The subquery walks the expiry index from the oldest deadline,
            // so a batch costs O(limit) whatever the table size.
            conn.prepare_cached(
                "DELETE FROM keycard_sessions WHERE key IN (SELECT key FROM keycard_sessions \
                 WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)",
            )
            .and_then(|mut stmt| stmt.execute((now, limit)))
            .map(|deleted| deleted as u64)
            .map_err(store_error)
        })
        .await
    }

    async fn list_all(
        &self,
        after: Option<&SessionKey>,
        limit: usize,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        // Blobs compare bytewise, which is `SessionKey`'s order; every key
        // sorts after the empty blob.
        let after = after.map(|key| key.as_bytes().to_vec()).unwrap_or_default();
        let (limit, now) = (limit_param(limit), now_millis());
        self.read(move |conn| {
            let sql = format!(
                "SELECT {SUMMARY_COLUMNS} FROM keycard_sessions \
                 WHERE key > ?1 AND expires_at > ?2 ORDER BY key LIMIT ?3"
            );
            summaries(conn, &sql, rusqlite::params![after, now, limit])
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT COUNT(*) FROM keycard_schema_version", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(drop)
            .map_err(store_error)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::parse_url;
    use std::path::PathBuf;

    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_database_and_its_wal_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("keycard-sqlite-mode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sessions.db");
        let store = super::SqliteStore::open(&path).await.unwrap();
        let key = keycard::SessionKey::derive("test", "mode");
        let record = keycard::Record::new(keycard::now_millis(), 60_000, 60_000);
        keycard::SessionStore::create(&store, &key, &record)
            .await
            .unwrap();
        for file in ["sessions.db", "sessions.db-wal"] {
            let mode = std::fs::metadata(dir.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn urls_name_files_or_memory() {
        assert_eq!(
            parse_url("sqlite:data.db").unwrap(),
            Some(PathBuf::from("data.db"))
        );
        assert_eq!(
            parse_url("sqlite://data.db").unwrap(),
            Some(PathBuf::from("data.db"))
        );
        assert_eq!(
            parse_url("sqlite:///var/x.db").unwrap(),
            Some(PathBuf::from("/var/x.db"))
        );
        assert_eq!(parse_url("sqlite::memory:").unwrap(), None);
        assert!(parse_url("sqlite:").is_err());
        assert!(parse_url("sqlite://").is_err());
        assert!(parse_url("postgres://x").is_err());
    }
}
