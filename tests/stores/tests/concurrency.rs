//! Concurrency over HTTP, on every store: parallel logins with one pre-login
//! cookie, parallel reads, 1,000 concurrent writes of distinct keys, 32
//! concurrent increments, a logout racing a slow write, and two app instances
//! sharing one store.

use async_trait::async_trait;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post as post_route};
use axum::Router;
use keycard::auth::{Auth, AuthBackend, AuthLayer, AuthUser, MaybeUser};
use keycard::{SessionConfig, SessionLayer, SessionStore};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

const COOKIE: &str = "__Host-keycard";

#[derive(Clone)]
struct User(String);

impl AuthUser for User {
    fn id(&self) -> String {
        self.0.clone()
    }
    fn auth_hash(&self) -> Vec<u8> {
        b"fixed".to_vec()
    }
}

/// Any name logs in (these tests are about sessions, not passwords).
#[derive(Clone)]
struct AnyUser;

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

#[async_trait]
impl AuthBackend for AnyUser {
    type User = User;
    type Credentials = String;
    type Error = Never;
    async fn authenticate(&self, name: String) -> Result<Option<User>, Never> {
        Ok(Some(User(name)))
    }
    async fn get_user(&self, id: &str) -> Result<Option<User>, Never> {
        Ok(Some(User(id.to_owned())))
    }
}

fn app(store: Arc<dyn SessionStore>) -> Router {
    // A generous store timeout: these tests measure correctness under load,
    // not latency (a 503 would make a lost write ambiguous).
    let config = SessionConfig::default().with_store_timeout(Duration::from_secs(30));
    Router::new()
        .route(
            "/login/{name}",
            post_route(|Path(name): Path<String>, auth: Auth<AnyUser>| async move {
                let user = auth.authenticate(name).await.unwrap().unwrap();
                auth.login(&user, false).await.unwrap();
            }),
        )
        .route(
            "/logout",
            post_route(|auth: Auth<AnyUser>| async move { auth.logout().await.unwrap() }),
        )
        .route(
            "/me",
            get(|MaybeUser(user): MaybeUser<AnyUser>| async move {
                user.map(|u| u.0).unwrap_or_default()
            }),
        )
        .route(
            "/set/{key}",
            post_route(|Path(key): Path<String>, auth: Auth<AnyUser>| async move {
                auth.session()
                    .insert(&key, true)
                    .await
                    .map(|_| StatusCode::OK)
            }),
        )
        .route(
            "/slow-set/{key}",
            post_route(|Path(key): Path<String>, auth: Auth<AnyUser>| async move {
                auth.session().get_value("warm").await?;
                tokio::time::sleep(Duration::from_millis(400)).await;
                auth.session().insert(&key, true).await
            }),
        )
        .route(
            "/incr",
            post_route(|auth: Auth<AnyUser>| async move {
                auth.session()
                    .increment("n", 1)
                    .await
                    .map(|n| n.to_string())
            }),
        )
        .route(
            "/keys",
            get(|auth: Auth<AnyUser>| async move {
                let record = auth.session().record().await.unwrap();
                let data = record.map(|r| r.data).unwrap_or_default();
                serde_json::to_string(&data).unwrap()
            }),
        )
        .layer(AuthLayer::new(AnyUser))
        .layer(SessionLayer::from_arc(store).with_config(config))
}

async fn serve(store: Arc<dyn SessionStore>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app(store).into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

fn set_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(COOKIE))
        .map(|v| {
            v[COOKIE.len() + 1..]
                .split(';')
                .next()
                .unwrap_or("")
                .to_owned()
        })
}

async fn post(client: &reqwest::Client, url: String, cookie: &str) -> reqwest::Response {
    client
        .post(url)
        .header("cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await
        .unwrap()
}

async fn get_text(client: &reqwest::Client, url: String, cookie: &str) -> String {
    client
        .get(url)
        .header("cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn unique(name: &str) -> String {
    format!("{name}-{}", &keycard::testing::fresh_key().to_hex()[..12])
}

/// Logs a fresh user in; returns (user, session cookie).
async fn logged_in(base: &str) -> (String, String) {
    let user = unique("user");
    let response = client()
        .post(format!("{base}/login/{user}"))
        .send()
        .await
        .unwrap();
    (user, set_cookie(&response).expect("login sets the cookie"))
}

async fn parallel_logins_with_one_pre_login_cookie(base: &str) {
    let c = client();
    let pre = set_cookie(&c.post(format!("{base}/set/pre")).send().await.unwrap()).unwrap();
    let user = unique("user");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (c, url, pre) = (c.clone(), format!("{base}/login/{user}"), pre.clone());
            tokio::spawn(async move { set_cookie(&post(&c, url, &pre).await) })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        if let Some(id) = task.await.unwrap().filter(|id| !id.is_empty()) {
            assert_ne!(id, pre);
            assert!(ids.insert(id), "two logins got the same ID");
        }
    }
    // With one pre-login record, exactly one rotation can win; the others
    // found it gone and got a fresh session of their own: all distinct.
    assert!(!ids.is_empty());
    assert_eq!(
        get_text(&c, format!("{base}/me"), &pre).await,
        "",
        "the pre-login cookie is dead"
    );
    for id in &ids {
        assert_eq!(get_text(&c, format!("{base}/me"), id).await, user);
    }
}

async fn fifty_parallel_reads_answer_as_the_same_user(base: &str) {
    let (user, cookie) = logged_in(base).await;
    let c = client();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (c, url, cookie) = (c.clone(), format!("{base}/me"), cookie.clone());
            tokio::spawn(async move { get_text(&c, url, &cookie).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), user);
    }
}

async fn a_thousand_concurrent_writes_of_distinct_keys_lose_nothing(base: &str) {
    let (_user, cookie) = logged_in(base).await;
    let c = client();
    let tasks: Vec<_> = (0..1_000)
        .map(|i| {
            let (c, url, cookie) = (c.clone(), format!("{base}/set/k{i}"), cookie.clone());
            tokio::spawn(async move { post(&c, url, &cookie).await.status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let data: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&get_text(&c, format!("{base}/keys"), &cookie).await).unwrap();
    let missing: Vec<usize> = (0..1_000)
        .filter(|i| !data.contains_key(&format!("k{i}")))
        .collect();
    assert!(
        missing.is_empty(),
        "lost {} writes: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

async fn thirty_two_concurrent_increments_lose_nothing(base: &str) {
    let (_user, cookie) = logged_in(base).await;
    let c = client();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (c, base, cookie) = (c.clone(), base.to_owned(), cookie.clone());
            tokio::spawn(async move {
                for _ in 0..5 {
                    assert_eq!(
                        post(&c, format!("{base}/incr"), &cookie).await.status(),
                        200
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let data: serde_json::Value =
        serde_json::from_str(&get_text(&c, format!("{base}/keys"), &cookie).await).unwrap();
    assert_eq!(data["n"], 160);
}

async fn a_logout_during_a_slow_write_is_final(base: &str) {
    let (_user, cookie) = logged_in(base).await;
    let c = client();
    let slow = {
        let (c, url, cookie) = (c.clone(), format!("{base}/slow-set/late"), cookie.clone());
        tokio::spawn(async move { post(&c, url, &cookie).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    post(&c, format!("{base}/logout"), &cookie).await;
    let slow = slow.await.unwrap();
    assert_eq!(
        set_cookie(&slow).as_deref(),
        Some(""),
        "the slow request finds the session gone"
    );
    assert_eq!(get_text(&c, format!("{base}/me"), &cookie).await, "");
    assert_eq!(get_text(&c, format!("{base}/keys"), &cookie).await, "{}");
}

async fn two_instances_share_one_store(first: &str, second: &str) {
    let (user, cookie) = logged_in(first).await;
    let c = client();
    assert_eq!(
        get_text(&c, format!("{second}/me"), &cookie).await,
        user,
        "valid through the other instance"
    );
    post(&c, format!("{second}/logout"), &cookie).await;
    assert_eq!(
        get_text(&c, format!("{first}/me"), &cookie).await,
        "",
        "a logout through one ends it on both"
    );
}

async fn run_all(store: Arc<dyn SessionStore>, second: Option<Arc<dyn SessionStore>>) {
    let base = serve(store).await;
    parallel_logins_with_one_pre_login_cookie(&base).await;
    fifty_parallel_reads_answer_as_the_same_user(&base).await;
    a_thousand_concurrent_writes_of_distinct_keys_lose_nothing(&base).await;
    thirty_two_concurrent_increments_lose_nothing(&base).await;
    a_logout_during_a_slow_write_is_final(&base).await;
    if let Some(second) = second {
        two_instances_share_one_store(&base, &serve(second).await).await;
    }
}

fn url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{var} must be set in CI"
            );
            let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {var} is not set ***\n");
            None
        }
    }
}

// Store-level timeouts as generous as the layer's: a thousand requests at once
// on a shared 2-core machine are about lost updates here, not latency.
async fn redis(url: &str) -> keycard_redis::RedisStore {
    keycard_redis::RedisStore::builder(url)
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap()
}

async fn postgres(url: &str) -> keycard_postgres::PostgresStore {
    let options = keycard_postgres::PostgresOptions::new()
        .pool_timeout(Duration::from_secs(30))
        .query_timeout(Duration::from_secs(30));
    keycard_postgres::PostgresStore::connect_with(url, options)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store() {
    run_all(Arc::new(keycard::MemoryStore::new()), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store() {
    let path = std::env::temp_dir().join(format!("{}.db", unique("keycard-concurrency")));
    let first = keycard_sqlite::SqliteStore::open(&path).await.unwrap();
    let second = keycard_sqlite::SqliteStore::open(&path).await.unwrap();
    run_all(Arc::new(first), Some(Arc::new(second))).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store() {
    let Some(url) = url("KEYCARD_TEST_REDIS_URL") else {
        return;
    };
    let first = redis(&url).await;
    let second = redis(&url).await;
    run_all(Arc::new(first), Some(Arc::new(second))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_store() {
    let Some(url) = url("KEYCARD_TEST_REDIS_CLUSTER_URL") else {
        return;
    };
    let first = redis(&url).await;
    let second = redis(&url).await;
    run_all(Arc::new(first), Some(Arc::new(second))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store() {
    let Some(url) = url("KEYCARD_TEST_POSTGRES_URL") else {
        return;
    };
    let first = postgres(&url).await;
    let second = postgres(&url).await;
    run_all(Arc::new(first), Some(Arc::new(second))).await;
}
