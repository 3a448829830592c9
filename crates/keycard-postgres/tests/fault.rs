//! The store fails fast while PostgreSQL is down and recovers by itself when
//! it comes back. The test runs a throwaway server of its own, so the shared
//! one keeps serving the other tests.

mod common;

use common::{skip, test_url};
use keycard::testing::fresh_key;
use keycard::{now_millis, Change, Record, SessionStore, Update};
use keycard_postgres::{PostgresOptions, PostgresStore};
use serde_json::json;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::Command;

/// The newest installed `initdb` and `pg_ctl`, from the Debian layout.
fn find_binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A PostgreSQL cluster in a temp directory, on a free loopback port.
struct ThrowawayServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// PostgreSQL refuses to run as root, so as root we run it as `postgres`.
    as_postgres: bool,
}

impl ThrowawayServer {
    async fn init(bin: PathBuf) -> Self {
        let dir = std::env::temp_dir().join(format!("keycard-pg-{}", &fresh_key().to_hex()[..12]));
        std::fs::create_dir(&dir).unwrap();
        let as_postgres = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        if as_postgres {
            run(Command::new("chown").arg("postgres:postgres").arg(&dir)).await;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = ThrowawayServer {
            bin,
            dir,
            port,
            as_postgres,
        };
        let data = server.data_dir();
        server
            .pg(
                &server.bin.join("initdb"),
                &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
            )
            .await;
        server
    }

    fn data_dir(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    async fn pg(&self, program: &Path, args: &[&str]) {
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        run(command.args(args)).await;
    }

    async fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        // `-l` sends the server's output to a file: otherwise it would hold
        // our pipes open and `output()` would wait for the server to exit.
        self.pg(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                &self.data_dir(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "start",
            ],
        )
        .await;
    }

    /// The postmaster and its children (the backends serving our connections).
    fn processes(&self) -> Vec<String> {
        let pid_file = self.dir.join("data").join("postmaster.pid");
        let Some(postmaster) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned))
        else {
            return Vec::new();
        };
        let mut pids = vec![postmaster.clone()];
        for entry in std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
        {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // "pid (comm) state ppid ...": comm may hold spaces, so split after it.
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if parent == Some(postmaster.as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        pids
    }

    /// Freezes (`STOP`) or thaws (`CONT`) the server: a frozen server keeps
    /// its connections open but answers nothing, like a hung host.
    async fn signal(&self, signal: &str) {
        run(Command::new("kill")
            .arg(format!("-{signal}"))
            .args(self.processes()))
        .await;
    }

    async fn stop(&self, mode: &str) {
        self.pg(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data_dir(), "-m", mode, "-w", "stop"],
        )
        .await;
    }
}

impl Drop for ThrowawayServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-CONT")
            .args(self.processes())
            .output();
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data_dir();
        let mut command = if self.as_postgres {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(pg_ctl);
            command
        } else {
            std::process::Command::new(pg_ctl)
        };
        let _ = command
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn run(command: &mut Command) {
    let output = command.output().await.unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs a store call and checks it fails, promptly, instead of hanging.
async fn fails_fast<T: std::fmt::Debug, E: std::fmt::Display>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, E>>,
) {
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(5), call).await;
    let Ok(result) = result else {
        panic!("{what} hung while the server was down")
    };
    match result {
        Ok(value) => panic!("{what} succeeded while the server was down: {value:?}"),
        Err(error) => eprintln!("{what} failed in {:?}: {error}", started.elapsed()),
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{what} took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_fast_while_down_and_recovers_without_a_restart() {
    const TEST: &str = "fails_fast_while_down_and_recovers_without_a_restart";
    if test_url(TEST).is_none() {
        return;
    }
    let Some(bin) = find_binaries() else {
        return skip(TEST, "no initdb/pg_ctl under /usr/lib/postgresql/*/bin");
    };
    let server = ThrowawayServer::init(bin).await;
    server.start().await;

    let options = PostgresOptions::new()
        .pool_timeout(Duration::from_secs(1))
        .query_timeout(Duration::from_secs(1));
    let store = PostgresStore::connect_with(&server.url(), options)
        .await
        .unwrap();
    let key = fresh_key();
    let mut record = Record::new(now_millis(), 600_000, 3_600_000);
    record.data.insert("cart".into(), json!([1, 2, 3]));
    store.create(&key, &record).await.unwrap();
    // Fill the pool with a few connections, so recovery must replace them.
    let warm: Vec<_> = (0..4).map(|_| store.load(&key)).collect();
    for load in warm {
        assert_eq!(load.await.unwrap(), Some(record.clone()));
    }

    // A server that hangs without closing anything: calls end at the query
    // timeout, and the connections work again once it answers.
    server.signal("STOP").await;
    fails_fast("load from a frozen server", store.load(&key)).await;
    fails_fast("ping a frozen server", store.ping()).await;
    server.signal("CONT").await;
    assert_eq!(store.load(&key).await.unwrap(), Some(record.clone()));

    server.stop("immediate").await;
    let update = Update {
        changes: vec![Change::Set {
            key: "x".into(),
            value: json!(1),
        }],
        user_id: None,
        client: None,
        last_seen: now_millis(),
        idle_deadline: now_millis() + 600_000,
        absolute_deadline: record.absolute_deadline,
    };
    fails_fast("load", store.load(&key)).await;
    fails_fast("apply", store.apply(&key, &update)).await;
    fails_fast("create", store.create(&fresh_key(), &record)).await;
    fails_fast("list_all", store.list_all(None, 10)).await;
    fails_fast("ping", store.ping()).await;

    server.start().await;
    // The same store, never rebuilt: the pool drops the dead connections
    // and opens new ones.
    assert_eq!(store.load(&key).await.unwrap(), Some(record.clone()));
    store.apply(&key, &update).await.unwrap();
    record.apply(&update);
    assert_eq!(store.load(&key).await.unwrap(), Some(record));
    store.ping().await.unwrap();
    drop(store);
    server.stop("fast").await;
}
