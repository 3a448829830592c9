//! `--store URL`: which store a URL names, and opening it with a short timeout.
//!
//! The forms are the demo's (`keycard-demo --store`), so an operator passes the
//! command the same URL the server runs with. `memory` and `cookie` are
//! refused while parsing (exit 2): neither has sessions a separate process
//! could list.

use crate::error::Failure;
use keycard::SessionStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A parsed `--store` URL.
#[derive(Clone, Debug)]
pub enum StoreUrl {
    /// `sqlite:PATH` or `sqlite://PATH`.
    Sqlite(PathBuf),
    /// `redis://`, `rediss://`, `unix://` or `redis+cluster://` (kept whole for the driver).
    Redis(String),
    /// `postgres://` or `postgresql://` (kept whole for the driver).
    Postgres(String),
}

const FORMS: &str = "use sqlite:PATH, redis://HOST:PORT, redis+cluster://HOST:PORT,HOST:PORT or postgres://USER@HOST/DB";

impl StoreUrl {
    /// Parses a `--store` value; the error explains what is wrong with it.
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if url == "memory" {
            return Err(
                "`memory` sessions live inside the server process and end with it, \
                 so no other process can list them; point --store at a shared store"
                    .into(),
            );
        }
        if url == "cookie" {
            return Err(
                "`cookie` sessions live in the browser's sealed cookie: there is no \
                 server-side list to read (only the revocation deny-list, in the store the \
                 server keeps it in); read one session with `keycard cookie inspect`"
                    .into(),
            );
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            return match path {
                "" => Err(format!("`{url}` names no file: {FORMS}")),
                ":memory:" => Err("an in-memory SQLite database exists only inside the \
                     process that opened it; give the database file"
                    .into()),
                path => Ok(StoreUrl::Sqlite(PathBuf::from(path))),
            };
        }
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("redis" | "rediss" | "redis+cluster" | "rediss+cluster" | "unix") => {
                Ok(StoreUrl::Redis(url.to_owned()))
            }
            Some("postgres" | "postgresql") => Ok(StoreUrl::Postgres(url.to_owned())),
            _ => Err(format!("unknown store URL `{}`: {FORMS}", redact(url))),
        }
    }

    /// The URL for messages, any password hidden.
    pub fn display(&self) -> String {
        match self {
            StoreUrl::Sqlite(path) => format!("sqlite:{}", path.display()),
            StoreUrl::Redis(url) | StoreUrl::Postgres(url) => redact(url),
        }
    }
}

/// An opened store, with what the command needs to know about its kind.
pub struct OpenedStore {
    /// The store, through the contract every store implements.
    pub store: Arc<dyn SessionStore>,
    /// What it is, for the queries the contract has no method for.
    pub backend: Backend,
    /// The URL for messages.
    pub name: String,
}

/// The store behind an [`OpenedStore`].
pub enum Backend {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// Redis forgets expired sessions by itself: there is nothing to sweep.
    Redis,
    /// A PostgreSQL database.
    Postgres(keycard_postgres::PostgresStore),
}

/// Opens the store `url` names, failing within about `timeout` when it
/// cannot be reached.
pub async fn open(
    url: &StoreUrl,
    timeout: Duration,
    redis_prefix: &str,
) -> Result<OpenedStore, Failure> {
    let name = url.display();
    let cannot = |why: String| Failure::new(format!("cannot open {name}: {why}"));
    let (store, backend): (Arc<dyn SessionStore>, Backend) = match url {
        StoreUrl::Sqlite(path) => {
            check_sqlite_file(path).map_err(cannot)?;
            let store = keycard_sqlite::SqliteStore::open(path)
                .await
                .map_err(|e| cannot(e.to_string()))?;
            (Arc::new(store), Backend::Sqlite(path.clone()))
        }
        StoreUrl::Redis(url) => {
            let connect = keycard_redis::RedisStore::builder(url.as_str())
                .prefix(redis_prefix)
                .timeout(timeout)
                .connect();
            let store = tokio::time::timeout(timeout, connect)
                .await
                .map_err(|_| cannot(timed_out(timeout)))?
                .map_err(|e| cannot(e.to_string()))?;
            (Arc::new(store), Backend::Redis)
        }
        StoreUrl::Postgres(url) => {
            // Listing a large table or sweeping a batch may take longer than
            // connecting should.
            let options = keycard_postgres::PostgresOptions::new()
                .max_connections(2)
                .pool_timeout(timeout)
                .query_timeout(timeout.max(Duration::from_secs(30)));
            let connect = keycard_postgres::PostgresStore::connect_with(url, options);
            let store = tokio::time::timeout(timeout, connect)
                .await
                .map_err(|_| cannot(timed_out(timeout)))?
                .map_err(|e| cannot(e.to_string()))?;
            (Arc::new(store.clone()), Backend::Postgres(store))
        }
    };
    Ok(OpenedStore {
        store,
        backend,
        name,
    })
}

fn timed_out(timeout: Duration) -> String {
    format!(
        "no answer within {} (see --timeout)",
        crate::output::duration(timeout)
    )
}

/// Refuses a file that is missing or holds no keycard sessions, before the
/// store opens it: opening creates the file and its tables, and an operator's
/// typo (or the users database) must not quietly become an empty session store.
fn check_sqlite_file(path: &Path) -> Result<(), String> {
    if !path.is_file() {
        return Err("no such file (the server creates it on first start)".into());
    }
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(path, flags).map_err(|e| e.to_string())?;
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'keycard_sessions'",
            [],
            |row| row.get(0),
        )
        .map_err(|e| format!("not a SQLite database ({e})"))?;
    if tables == 0 {
        return Err("not a keycard session store (it has no keycard_sessions table)".into());
    }
    Ok(())
}

/// How many records are past their deadline but still stored, where the
/// store can tell: the session contract has no method for it, so this reads
/// the stores' own table (`keycard_sessions`, schema version 1) with one
/// statement. `None` for Redis, which forgets expired sessions by itself.
pub async fn count_expired(
    backend: &Backend,
    now: keycard::UnixMillis,
) -> Result<Option<u64>, String> {
    match backend {
        Backend::Redis => Ok(None),
        Backend::Sqlite(path) => {
            let path = path.clone();
            let count = tokio::task::spawn_blocking(move || {
                let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = rusqlite::Connection::open_with_flags(&path, flags)?;
                conn.query_row(
                    "SELECT COUNT(*) FROM keycard_sessions WHERE expires_at <= ?1",
                    [now],
                    |row| row.get::<_, i64>(0),
                )
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            Ok(Some(u64::try_from(count).unwrap_or(0)))
        }
        Backend::Postgres(store) => {
            let client = store.pool().get().await.map_err(|e| e.to_string())?;
            let row = client
                .query_one(
                    "SELECT COUNT(*) FROM keycard_sessions WHERE expires_at <= $1::bigint",
                    &[&now],
                )
                .await
                .map_err(|e| e.to_string())?;
            let count: i64 = row.try_get(0).map_err(|e| e.to_string())?;
            Ok(Some(u64::try_from(count).unwrap_or(0)))
        }
    }
}

/// `url` with the password of its user info replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    // The user info ends at the last `@` before the path (a password may hold `@`).
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end], &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_store() {
        assert!(
            matches!(StoreUrl::parse("sqlite:a.db"), Ok(StoreUrl::Sqlite(p)) if p == Path::new("a.db"))
        );
        assert!(
            matches!(StoreUrl::parse("sqlite:///x/a.db"), Ok(StoreUrl::Sqlite(p)) if p == Path::new("/x/a.db"))
        );
        assert!(matches!(
            StoreUrl::parse("redis://h:1"),
            Ok(StoreUrl::Redis(_))
        ));
        assert!(matches!(
            StoreUrl::parse("redis+cluster://h:1,h:2"),
            Ok(StoreUrl::Redis(_))
        ));
        assert!(matches!(
            StoreUrl::parse("postgres://u@h/db"),
            Ok(StoreUrl::Postgres(_))
        ));
        assert!(StoreUrl::parse("memory")
            .unwrap_err()
            .contains("inside the server process"));
        assert!(StoreUrl::parse("cookie")
            .unwrap_err()
            .contains("cookie inspect"));
        assert!(StoreUrl::parse("sqlite:").is_err());
        assert!(StoreUrl::parse("sqlite::memory:").is_err());
        assert!(StoreUrl::parse("mysql://u:pw@h/db")
            .unwrap_err()
            .contains("u:***@h"));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://:pw@h:6379"), "redis://:***@h:6379");
        assert_eq!(redact("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("redis://h/0"), "redis://h/0");
    }
}
