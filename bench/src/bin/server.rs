//! The benchmark server: one binary, one variant per process.
//!
//! ```text
//! server <variant> <port>
//! ```
//!
//! Variants: `bare` (no session layer), `kc-memory`, `kc-sqlite`, `kc-redis`,
//! `kc-cookie` (keycard), `ts-memory`, `ts-redis` (tower-sessions),
//! `pcj` (axum-extra `PrivateCookieJar`).
//!
//! Routes (the same for every variant):
//! - `GET /read`   the integer `n` from the session (0 when absent);
//! - `POST /write` adds 1 to `n` and answers the new value;
//! - `GET /new`    creates a session holding `n = 0` (the request sends no cookie);
//! - `GET /none`   never touches the session (store round trips must be 0).
//!
//! Environment: `BENCH_REDIS_URL` (default `redis://127.0.0.1:6379/9`),
//! `BENCH_SQLITE_PATH` (default `/tmp/keycard-bench.db`).
//!
//! The runtime has one thread (current-thread runtime); SQLite's blocking
//! calls run on tokio's blocking pool, in the same process, so
//! `/proc/<pid>/stat` counts them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

const KEY: &str = "n";

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| usage());
    let port: u16 = args
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| usage());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(serve(&variant, port));
}

fn usage() -> ! {
    eprintln!(
        "usage: server <bare|kc-memory|kc-sqlite|kc-redis|kc-cookie|ts-memory|ts-redis|pcj> <port>"
    );
    std::process::exit(2)
}

fn redis_url() -> String {
    std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/9".into())
}

async fn serve(variant: &str, port: u16) {
    let app = match variant {
        "bare" => bare::router(),
        "kc-memory" => kc::router(keycard::SessionLayer::new(keycard::MemoryStore::new())),
        "kc-sqlite" => {
            let path = std::env::var("BENCH_SQLITE_PATH")
                .unwrap_or_else(|_| "/tmp/keycard-bench.db".into());
            let store = keycard_sqlite::SqliteStore::open(&path)
                .await
                .expect("open SQLite");
            kc::router(keycard::SessionLayer::new(store))
        }
        "kc-redis" => {
            let store = keycard_redis::RedisStore::builder(redis_url())
                .prefix("kcbench")
                .connect()
                .await
                .expect("connect to Redis");
            kc::router(keycard::SessionLayer::new(store))
        }
        "kc-cookie" => {
            let ring = keycard::KeyRing::generate().expect("key ring");
            let codec = keycard::SealedCodec::new(&ring, "session");
            let revocations: Arc<dyn keycard::SessionStore> = Arc::new(keycard::MemoryStore::new());
            kc::router(keycard::SessionLayer::client_side(codec, revocations))
        }
        "ts-memory" => ts::router(tower_sessions::SessionManagerLayer::new(
            tower_sessions::MemoryStore::default(),
        )),
        "ts-redis" => {
            use tower_sessions_redis_store::fred::prelude::*;
            let config = Config::from_url(&redis_url()).expect("Redis URL");
            let client = Client::new(config, None, None, None);
            client.init().await.expect("connect to Redis (fred)");
            ts::router(tower_sessions::SessionManagerLayer::new(
                tower_sessions_redis_store::RedisStore::new(client),
            ))
        }
        "pcj" => pcj::router(),
        _ => usage(),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    println!("ready {variant} {port}");
    axum::serve(listener, app).await.expect("serve");
}

fn internal(error: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
}

mod bare {
    use super::*;

    pub fn router() -> Router {
        Router::new()
            .route("/read", get(|| async { "0" }))
            .route("/write", post(|| async { "1" }))
            .route("/new", get(|| async { "0" }))
            .route("/none", get(|| async { "ok" }))
    }
}

mod kc {
    use super::*;
    use keycard::{Session, SessionError, SessionLayer};

    pub fn router(layer: SessionLayer) -> Router {
        Router::new()
            .route("/read", get(read))
            .route("/write", post(write))
            .route("/new", get(new))
            .route("/none", get(|| async { "ok" }))
            .layer(layer)
    }

    async fn read(session: Session) -> Result<String, SessionError> {
        Ok(session.get::<i64>(KEY).await?.unwrap_or(0).to_string())
    }

    async fn write(session: Session) -> Result<String, SessionError> {
        Ok(session.increment(KEY, 1).await?.to_string())
    }

    async fn new(session: Session) -> Result<&'static str, SessionError> {
        session.insert(KEY, 0_i64).await?;
        Ok("0")
    }
}

mod ts {
    use super::*;
    use tower_sessions::{SessionManagerLayer, SessionStore};

    pub fn router<S: SessionStore + Clone>(layer: SessionManagerLayer<S>) -> Router {
        Router::new()
            .route("/read", get(read))
            .route("/write", post(write))
            .route("/new", get(new))
            .route("/none", get(|| async { "ok" }))
            .layer(layer)
    }

    async fn read(session: tower_sessions::Session) -> Result<String, Response> {
        let n: i64 = session.get(KEY).await.map_err(internal)?.unwrap_or(0);
        Ok(n.to_string())
    }

    // tower-sessions has no atomic increment: read, add, write back.
    async fn write(session: tower_sessions::Session) -> Result<String, Response> {
        let n: i64 = session.get(KEY).await.map_err(internal)?.unwrap_or(0) + 1;
        session.insert(KEY, n).await.map_err(internal)?;
        Ok(n.to_string())
    }

    async fn new(session: tower_sessions::Session) -> Result<&'static str, Response> {
        session.insert(KEY, 0_i64).await.map_err(internal)?;
        Ok("0")
    }
}

mod pcj {
    use super::*;
    use axum_extra::extract::cookie::{Cookie, Key, PrivateCookieJar, SameSite};

    pub fn router() -> Router {
        Router::new()
            .route("/read", get(read))
            .route("/write", post(write))
            .route("/new", get(new))
            .route("/none", get(|| async { "ok" }))
            .with_state(Key::generate())
    }

    fn cookie(n: i64) -> Cookie<'static> {
        // The attributes keycard's default session cookie has.
        Cookie::build((KEY, n.to_string()))
            .path("/")
            .secure(true)
            .http_only(true)
            .same_site(SameSite::Lax)
            .build()
    }

    fn value(jar: &PrivateCookieJar) -> i64 {
        jar.get(KEY)
            .and_then(|c| c.value().parse().ok())
            .unwrap_or(0)
    }

    async fn read(jar: PrivateCookieJar) -> String {
        value(&jar).to_string()
    }

    async fn write(jar: PrivateCookieJar) -> (PrivateCookieJar, String) {
        let n = value(&jar) + 1;
        (jar.add(cookie(n)), n.to_string())
    }

    async fn new(jar: PrivateCookieJar) -> (PrivateCookieJar, &'static str) {
        (jar.add(cookie(0)), "0")
    }
}
