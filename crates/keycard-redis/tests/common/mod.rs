//! Shared helpers: where the test servers are, and how to skip without them.
#![allow(dead_code)] // each test binary uses its own subset

use keycard_redis::RedisStore;
use std::io::Write;

/// The standalone server, e.g. `redis://127.0.0.1:6379`.
pub const STANDALONE: &str = "KEYCARD_TEST_REDIS_URL";
/// The Cluster, e.g. `redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003`
/// (`scripts/cluster.sh start DIR` makes one).
pub const CLUSTER: &str = "KEYCARD_TEST_REDIS_CLUSTER_URL";

/// Says `text` on the real stderr. `eprintln!` inside a test is captured by
/// the harness and shown only on failure, which would make a skip silent.
fn shout(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The URL in `var`; `None` (after a loud message) when unset. In CI a
/// missing server is a failure: a green run must mean the store was tested.
pub fn url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                !in_ci(),
                "{var} is not set but CI=true: the Redis store tests must run in CI"
            );
            shout(&format!(
                "** SKIPPED: {var} is not set, so this Redis test did not run."
            ));
            None
        }
    }
}

/// Panics unless `condition`, or returns whether to skip (after a loud
/// message) when not in CI.
pub fn require(condition: bool, why: &str) -> bool {
    if condition {
        return true;
    }
    assert!(
        !in_ci(),
        "{why} but CI=true: the Redis store tests must run in CI"
    );
    shout(&format!("** SKIPPED: {why}."));
    false
}

/// A store on the server in `var`, for the conformance kit. The kit's macro
/// has no way to skip, so without a server each check runs against the
/// in-memory store instead, after saying loudly that Redis was not tested.
pub async fn kit_store(var: &str) -> Option<RedisStore> {
    match url(var) {
        Some(url) => Some(connect(&url).await),
        None => None,
    }
}

/// Connects with the defaults, failing the test on error.
pub async fn connect(url: &str) -> RedisStore {
    match RedisStore::connect(url).await {
        Ok(store) => store,
        Err(error) => panic!("cannot connect to {url}: {error}"),
    }
}

/// A prefix of its own, so listings of one test see only its own sessions.
pub fn unique_prefix() -> String {
    format!("kctest-{}", &keycard::testing::fresh_key().to_hex()[..12])
}

/// A plain redis-rs connection, to look at (or spoil) what the store wrote.
pub async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).expect("a redis:// URL");
    client
        .get_multiplexed_async_connection()
        .await
        .expect("a raw connection")
}
