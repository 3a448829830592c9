//! Outages: a killed server and a frozen one. Each test runs a `redis-server`
//! of its own on a free loopback port in 6390-6399 (never the shared server),
//! with an fsync-always AOF so data survives the kill, and checks that calls
//! fail within the store timeout and that the *same* store instance serves the
//! *same* session again once the server is back.

mod common;

use keycard::testing::fresh_key;
use keycard::{
    now_millis, ApplyOutcome, Change, Record, SessionKey, SessionStore, StoreError, Update,
};
use keycard_redis::RedisStore;
use serde_json::json;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a failing call may take: the 1 s default timeout plus slack for a
/// loaded two-core machine.
const BOUND: Duration = Duration::from_millis(1_500);

fn redis_server_binary() -> String {
    std::env::var("KEYCARD_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

fn have_redis_server() -> bool {
    Command::new(redis_server_binary())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Claims `port` for one test of this process; false if another took it.
fn claim(port: u16) -> bool {
    static CLAIMED: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut claimed = CLAIMED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if claimed.contains(&port) {
        return false;
    }
    claimed.push(port);
    true
}

/// A private redis-server, killed (and its directory removed) on drop.
struct Server {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Server {
    /// Starts on the first free port in 6390-6399.
    fn start() -> Server {
        let dir = std::env::temp_dir().join(format!(
            "keycard-redis-fault-{}",
            &fresh_key().to_hex()[..16]
        ));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let mut server = Server {
            child: None,
            port: 0,
            dir,
        };
        for port in 6390..=6399 {
            // A port this process ever used stays ours: after a kill, a test
            // restarts its server on the same port, which a parallel test in
            // this binary must not have taken meanwhile.
            if !claim(port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            server.port = port;
            if server.spawn() {
                return server;
            }
        }
        panic!("no free port in 6390-6399 for a private redis-server");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs redis-server on `self.port`; false if it did not come up (port taken).
    fn spawn(&mut self) -> bool {
        let child = Command::new(redis_server_binary())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    self.child = None;
                    return false;
                }
            }
            // Ask the server for its pid: when two tests race for one port,
            // the loser's readiness check must not mistake the winner's
            // server for its own.
            let info = redis::Client::open(self.url())
                .and_then(|client| client.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut conn| redis::cmd("INFO").arg("server").query::<String>(&mut conn));
            if let Ok(info) = info {
                let pid = self.child.as_ref().map(Child::id);
                let serving = info
                    .lines()
                    .find_map(|line| line.strip_prefix("process_id:"))
                    .and_then(|pid| pid.trim().parse::<u32>().ok());
                if serving.is_some() && serving == pid {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        false
    }

    fn pid(&self) -> String {
        self.child
            .as_ref()
            .map(|c| c.id().to_string())
            .expect("a running server")
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }

    /// SIGKILL: no shutdown, no goodbye to clients; the AOF keeps the data.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn record() -> Record {
    let mut record = Record::new(now_millis(), 600_000, 3_600_000);
    record.data.insert("cart".into(), json!([1, 2, 3]));
    record
}

fn touch(record: &Record) -> Update {
    Update {
        changes: vec![Change::Increment {
            key: "visits".into(),
            by: 1,
        }],
        user_id: None,
        client: None,
        last_seen: now_millis(),
        idle_deadline: now_millis() + 600_000,
        absolute_deadline: record.absolute_deadline,
    }
}

/// Runs `load`, `apply` and `ping` against a server that is not answering:
/// each must fail, within [`BOUND`]. Returns the slowest.
async fn assert_fails_fast(
    store: &RedisStore,
    key: &SessionKey,
    record: &Record,
    what: &str,
) -> Duration {
    let mut slowest = Duration::ZERO;
    for op in ["load", "apply", "ping"] {
        let started = Instant::now();
        let failure = match op {
            "load" => store.load(key).await.err(),
            "apply" => store.apply(key, &touch(record)).await.err(),
            _ => store.ping().await.err(),
        };
        let took = started.elapsed();
        eprintln!("{what}: {op} -> {failure:?} after {took:?}");
        let Some(failure) = failure else {
            panic!("{what}: {op} succeeded against a dead server")
        };
        assert!(
            matches!(failure, StoreError::Unavailable(_) | StoreError::Timeout),
            "{what}: {op} gave {failure:?}"
        );
        assert!(took < BOUND, "{what}: {op} took {took:?}");
        slowest = slowest.max(took);
    }
    slowest
}

/// Polls until the session loads again through the same store; returns it and
/// how long recovery took.
async fn wait_for_session(store: &RedisStore, key: &SessionKey) -> (Record, Duration) {
    let started = Instant::now();
    loop {
        match store.load(key).await {
            Ok(Some(record)) => return (record, started.elapsed()),
            Ok(None) => panic!("the session did not survive the outage"),
            Err(error) => {
                assert!(
                    started.elapsed() < Duration::from_secs(15),
                    "no recovery: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_fails_fast_and_the_same_session_works_after_restart() {
    if !common::require(
        have_redis_server(),
        "redis-server is not installed (set KEYCARD_TEST_REDIS_SERVER)",
    ) {
        return;
    }
    let mut server = Server::start();
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let (key, record) = (fresh_key(), record());
    store.create(&key, &record).await.unwrap();
    assert_eq!(
        store.apply(&key, &touch(&record)).await.unwrap(),
        ApplyOutcome::Applied
    );

    server.kill();
    let slowest = assert_fails_fast(&store, &key, &record, "killed").await;
    // Still bounded while the client keeps trying to reconnect.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let slowest = slowest.max(assert_fails_fast(&store, &key, &record, "still down").await);
    eprintln!("OUTAGE (killed): slowest failing call {slowest:?}");

    assert!(
        server.spawn(),
        "redis-server did not restart on port {}",
        server.port
    );
    let (loaded, took) = wait_for_session(&store, &key).await;
    eprintln!("RECOVERY (killed): same session served again {took:?} after restart");
    assert_eq!(loaded.data["cart"], json!([1, 2, 3]));
    assert_eq!(loaded.data["visits"], json!(1));
    assert_eq!(
        store.apply(&key, &touch(&record)).await.unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(
        store.load(&key).await.unwrap().unwrap().data["visits"],
        json!(2)
    );
    store.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_server_times_out_and_the_same_session_works_after_it_wakes() {
    if !common::require(
        have_redis_server(),
        "redis-server is not installed (set KEYCARD_TEST_REDIS_SERVER)",
    ) {
        return;
    }
    let server = Server::start();
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let (key, record) = (fresh_key(), record());
    store.create(&key, &record).await.unwrap();

    // SIGSTOP: the socket stays open and the kernel still accepts connections,
    // but nothing answers: only timeouts can save the caller.
    server.signal("-STOP");
    let started = Instant::now();
    let failure = store.load(&key).await;
    let took = started.elapsed();
    eprintln!("frozen: load -> {failure:?} after {took:?}");
    assert!(matches!(failure, Err(StoreError::Timeout)), "{failure:?}");
    assert!(took < BOUND, "load took {took:?}");
    let slowest = took.max(assert_fails_fast(&store, &key, &record, "frozen").await);
    eprintln!("OUTAGE (frozen): slowest failing call {slowest:?}");

    server.signal("-CONT");
    let (loaded, took) = wait_for_session(&store, &key).await;
    eprintln!("RECOVERY (frozen): same session served again {took:?} after SIGCONT");
    assert_eq!(loaded.data["cart"], json!([1, 2, 3]));
    // An apply that timed out may still run once the server wakes (it was
    // already sent; the layer answered 503 for it): let it land, then expect
    // at most that one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let loaded = store.load(&key).await.unwrap().unwrap();
    let visits = loaded
        .data
        .get("visits")
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    assert!(visits <= 1, "visits = {visits}");
    assert_eq!(
        store.apply(&key, &touch(&record)).await.unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(
        store.load(&key).await.unwrap().unwrap().data["visits"],
        json!(visits + 1)
    );
}
