//! The benchmark server: one binary, one variant per process.
//!
//! ```text
//! server <variant> <port>
//! ```
//!
//! Variants: `bare` (no session layer), `kc-memory`, `kc-sqlite`, `kc-redis`,
//! `kc-cookie` (keycard), `ts-memory`, `ts-redis` (tower-sessions),
//! `pcj` (axum-extra `PrivateCookieJar`); and two floors, no session library
//! at all: `floor-memory` (the handlers look the cookie up in a locked
//! `HashMap`) and `floor-redis` (one Redis command per route, the fewest a
//! server-side session can cost, over the client keycard-redis uses).
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
        "usage: server <bare|kc-memory|kc-sqlite|kc-redis|kc-cookie|ts-memory|ts-redis|pcj|floor-memory|floor-redis> <port>"
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
        "floor-memory" => floor::memory_router(),
        "floor-redis" => floor::redis_router(&redis_url()).await,
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

/// The least any session mechanism can cost, to tell a target that no design
/// can meet from one keycard misses. No layer: each handler finds the cookie
/// in the request's headers and does the one store operation its route needs.
/// Not a session library: no deadlines, no binding, no revocation, no
/// `Cache-Control`/`Vary`, no error handling beyond a 500.
mod floor {
    use super::*;
    use axum::extract::{Request, State};
    use axum::http::header::{COOKIE, SET_COOKIE};
    use std::collections::HashMap;
    use std::sync::Mutex;

    const NAME: &str = "__Host-keycard";

    /// The session cookie's value, if the request has one.
    fn cookie(request: &Request) -> Option<&str> {
        request
            .headers()
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| pair.trim().strip_prefix(NAME)?.strip_prefix('='))
    }

    /// A new 256-bit random ID (one `getrandom`, as every secure store needs)
    /// and the `Set-Cookie` carrying it, with keycard's default attributes.
    fn new_id() -> (String, [(axum::http::HeaderName, String); 1]) {
        let id = keycard::SessionId::generate()
            .expect("OS randomness")
            .to_string();
        let header = format!("{NAME}={id}; Path=/; Secure; HttpOnly; SameSite=Lax");
        (id, [(SET_COOKIE, header)])
    }

    type Map = Arc<Mutex<HashMap<String, i64>>>;

    pub fn memory_router() -> Router {
        Router::new()
            .route("/read", get(memory_read))
            .route("/write", post(memory_write))
            .route("/new", get(memory_new))
            .route("/none", get(|| async { "ok" }))
            .with_state(Map::default())
    }

    async fn memory_read(State(map): State<Map>, request: Request) -> String {
        let map = map.lock().expect("lock");
        let n = cookie(&request).and_then(|id| map.get(id)).copied();
        n.unwrap_or(0).to_string()
    }

    async fn memory_write(State(map): State<Map>, request: Request) -> String {
        let mut map = map.lock().expect("lock");
        match cookie(&request).and_then(|id| map.get_mut(id)) {
            Some(n) => {
                *n += 1;
                n.to_string()
            }
            None => "0".into(),
        }
    }

    async fn memory_new(State(map): State<Map>) -> impl IntoResponse {
        let (id, set_cookie) = new_id();
        map.lock().expect("lock").insert(id, 0);
        (set_cookie, "0")
    }

    /// Per route, one command, one round trip, on a plain string key:
    /// `/read` `GET`; `/write` the smallest script that increments without
    /// reviving a deleted session (`EXISTS`, `INCR`); `/new` `SET … NX PX`
    /// (create unless it exists, with its expiry).
    pub async fn redis_router(url: &str) -> Router {
        let client = redis::Client::open(url).expect("Redis URL");
        let conn = redis::aio::ConnectionManager::new(client)
            .await
            .expect("connect to Redis");
        let state = RedisState {
            conn,
            increment: Arc::new(redis::Script::new(
                "if redis.call('EXISTS', KEYS[1]) == 0 then return false end \
                 return redis.call('INCR', KEYS[1])",
            )),
        };
        Router::new()
            .route("/read", get(redis_read))
            .route("/write", post(redis_write))
            .route("/new", get(redis_new))
            .route("/none", get(|| async { "ok" }))
            .with_state(state)
    }

    #[derive(Clone)]
    struct RedisState {
        conn: redis::aio::ConnectionManager,
        increment: Arc<redis::Script>,
    }

    fn key(id: &str) -> String {
        format!("kcfloor:{{{id}}}")
    }

    async fn redis_read(State(s): State<RedisState>, request: Request) -> Result<String, Response> {
        let Some(id) = cookie(&request) else {
            return Ok("0".into());
        };
        let mut conn = s.conn.clone();
        let n: Option<i64> = redis::cmd("GET")
            .arg(key(id))
            .query_async(&mut conn)
            .await
            .map_err(internal)?;
        Ok(n.unwrap_or(0).to_string())
    }

    async fn redis_write(
        State(s): State<RedisState>,
        request: Request,
    ) -> Result<String, Response> {
        let Some(id) = cookie(&request) else {
            return Ok("0".into());
        };
        let mut conn = s.conn.clone();
        let n: Option<i64> = s
            .increment
            .key(key(id))
            .invoke_async(&mut conn)
            .await
            .map_err(internal)?;
        Ok(n.unwrap_or(0).to_string())
    }

    async fn redis_new(State(s): State<RedisState>) -> Result<impl IntoResponse, Response> {
        let (id, set_cookie) = new_id();
        let key = key(&id);
        let mut conn = s.conn.clone();
        let created: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(0)
            .arg("NX")
            .arg("PX")
            .arg(86_400_000)
            .query_async(&mut conn)
            .await
            .map_err(internal)?;
        if created.is_none() {
            return Err(internal("session ID collision"));
        }
        Ok((set_cookie, "0"))
    }
}
