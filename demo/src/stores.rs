//! Opening the session store named by `--store`.

use keycard::codec::{KeyRing, SealedCodec};
use keycard::{SessionLayer, SessionStore};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The session layer's backend and the store that also keeps throttling,
/// remember-me series and (in cookie mode) revocations.
pub struct OpenedStore {
    pub layer: SessionLayer,
    pub store: Arc<dyn SessionStore>,
    pub client_side: bool,
}

async fn open_sqlite(path: &Path) -> Result<Arc<dyn SessionStore>, String> {
    let store = keycard_sqlite::SqliteStore::open(path)
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // Expired rows are deleted in bounded batches in the background.
    store.spawn_sweeper(Duration::from_secs(60), 1_000);
    Ok(Arc::new(store))
}

/// Opens `url` (see `--store`); `keys` seals cookie-mode sessions.
///
/// In cookie mode the revocation deny-list, remember-me series and login
/// throttles live in the accounts database (`users_url`): every process that
/// shares accounts then shares revocations too, so a logout through one
/// process holds in all of them.
pub async fn open(
    url: Option<&str>,
    data_dir: &Path,
    keys: &KeyRing,
    store_timeout: Duration,
    users_url: &str,
) -> Result<OpenedStore, String> {
    let default_sqlite = data_dir.join("sessions.db");
    let url = url.unwrap_or("");
    let store: Arc<dyn SessionStore> = if url.is_empty() {
        open_sqlite(&default_sqlite).await?
    } else if url == "memory" {
        Arc::new(keycard::MemoryStore::new())
    } else if url == "cookie" {
        let revocations: Arc<dyn SessionStore> = match users_url
            .strip_prefix("sqlite://")
            .or_else(|| users_url.strip_prefix("sqlite:"))
        {
            Some(path) => open_sqlite(Path::new(path)).await?,
            None => Arc::new(
                keycard_postgres::PostgresStore::connect(users_url)
                    .await
                    .map_err(|e| {
                        format!(
                            "cannot open the revocation store in {}: {e}",
                            redact(users_url)
                        )
                    })?,
            ),
        };
        let codec = SealedCodec::new(keys, "session");
        return Ok(OpenedStore {
            layer: SessionLayer::client_side(codec, revocations.clone()),
            store: revocations,
            client_side: true,
        });
    } else if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        open_sqlite(Path::new(path)).await?
    } else if url.starts_with("redis") {
        let store = keycard_redis::RedisStore::builder(url)
            .timeout(store_timeout)
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", redact(url)))?;
        Arc::new(store)
    } else if url.starts_with("postgres") {
        let store = keycard_postgres::PostgresStore::connect(url)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", redact(url)))?;
        Arc::new(store)
    } else {
        return Err(format!("unknown store URL `{}`", redact(url)));
    };
    Ok(OpenedStore {
        layer: SessionLayer::from_arc(store.clone()),
        store,
        client_side: false,
    })
}

/// A URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Loads the key ring at `path`, making it (mode 0600) on first start; two
/// processes starting together end up with the same ring. Its directory must
/// exist: a mistyped path must not quietly give a process keys of its own.
pub fn key_ring(path: &Path) -> Result<KeyRing, String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(format!(
                "--keys {}: the directory {} does not exist",
                path.display(),
                parent.display()
            ));
        }
    }
    KeyRing::load_or_generate(path).map_err(|e| format!("--keys {}: {e}", path.display()))
}
