//! `keycard sessions` against real stores: seeded through the store API,
//! then listed, shown, counted, swept and revoked through the binary.

use crate::common::{keycard, service_url, unique};
use keycard::{now_millis, reserved, Record, SessionId, SessionKey, SessionStore};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// The sessions one scenario seeds.
struct Seeded {
    alice: String,
    bob: String,
    carol: String,
    /// alice's two browser sessions and her remember-me series.
    s1: SessionKey,
    s2: SessionKey,
    remember: SessionKey,
    /// bob's session.
    b1: SessionKey,
    /// A session with no user.
    anonymous: SessionKey,
    /// carol's two sessions whose keys share a handle.
    twins: [SessionKey; 2],
    /// alice's records past their deadlines.
    expired: [SessionKey; 2],
}

impl Seeded {
    fn live(&self) -> BTreeSet<SessionKey> {
        BTreeSet::from([
            self.s1,
            self.s2,
            self.remember,
            self.b1,
            self.anonymous,
            self.twins[0],
            self.twins[1],
        ])
    }
}

const EVIL_AGENT: &str =
    "Mozilla/5.0 \u{1b}[2J\u{1b}[31mgotcha (X11; Linux x86_64) AppleWebKit/537.36";

fn record(user: Option<&str>, kind: Option<&str>) -> Record {
    let mut record = Record::new(now_millis(), 30 * 60_000, 8 * 3_600_000);
    record.user_id = user.map(str::to_owned);
    record.ip = Some("203.0.113.7".into());
    record.user_agent = Some("curl/8.5.0".into());
    record.data.insert("theme".into(), json!("dark"));
    record
        .data
        .insert(reserved::CSRF_SECRET.into(), json!("csrf-secret-value"));
    if let Some(kind) = kind {
        record.data.insert(reserved::KIND.into(), json!(kind));
    }
    record
}

async fn seed(store: &dyn SessionStore) -> Seeded {
    let tag = unique(6);
    let (alice, bob, carol) = (
        format!("alice-{tag}"),
        format!("bob-{tag}"),
        format!("carol-{tag}"),
    );
    let fresh = || SessionId::generate().unwrap().key();
    let seeded = Seeded {
        s1: fresh(),
        s2: fresh(),
        remember: fresh(),
        b1: fresh(),
        anonymous: fresh(),
        twins: {
            let mut bytes = *fresh().as_bytes();
            bytes[16..].fill(0x11);
            let first = SessionKey::from_bytes(bytes);
            bytes[16..].fill(0x22);
            [first, SessionKey::from_bytes(bytes)]
        },
        expired: [fresh(), fresh()],
        alice,
        bob,
        carol,
    };
    let mut first = record(Some(&seeded.alice), None);
    first.user_agent = Some(EVIL_AGENT.into());
    store.create(&seeded.s1, &first).await.unwrap();
    store
        .create(&seeded.s2, &record(Some(&seeded.alice), None))
        .await
        .unwrap();
    store
        .create(
            &seeded.remember,
            &record(Some(&seeded.alice), Some("remember")),
        )
        .await
        .unwrap();
    store
        .create(&seeded.b1, &record(Some(&seeded.bob), None))
        .await
        .unwrap();
    store
        .create(&seeded.anonymous, &record(None, None))
        .await
        .unwrap();
    for twin in &seeded.twins {
        store
            .create(twin, &record(Some(&seeded.carol), None))
            .await
            .unwrap();
    }
    for key in &seeded.expired {
        // Idle deadline an hour ago: expired, waiting for a sweep.
        let mut old = Record::new(now_millis() - 3_600_000, 60_000, 8 * 3_600_000);
        old.user_id = Some(seeded.alice.clone());
        store.create(key, &old).await.unwrap();
    }
    seeded
}

fn keys_of(list: &Value) -> Vec<SessionKey> {
    list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| SessionKey::from_hex(s["key"].as_str().unwrap()).unwrap())
        .collect()
}

/// Every `keycard sessions` subcommand against one store. `store_args` name
/// it for the binary; `sweeps` is false for stores that expire natively.
async fn exercise(store: Arc<dyn SessionStore>, store_args: &[String], sweeps: bool) {
    let seeded = seed(store.as_ref()).await;
    let run = |args: &[&str]| {
        let mut all: Vec<String> = vec!["sessions".into()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        all.extend(store_args.iter().cloned());
        keycard(&all)
    };

    // list: everything live, in key order, nothing expired.
    let all = run(&["list", "--json", "--limit", "0"]).json();
    let listed = keys_of(&all);
    assert_eq!(
        listed.iter().copied().collect::<BTreeSet<_>>(),
        seeded.live()
    );
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "not in key order");
    assert!(all["next_after"].is_null());
    let first = all["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == seeded.s1.to_hex())
        .unwrap();
    assert_eq!(first["handle"], seeded.s1.handle());
    assert_eq!(first["user_id"], seeded.alice.as_str());
    assert_eq!(first["kind"], "session");
    assert_eq!(first["ip"], "203.0.113.7");
    assert_eq!(first["user_agent"], EVIL_AGENT);
    assert!(first["expires_at"].as_i64().unwrap() > now_millis());

    // Paging: --limit, then --after the page's next_after.
    let page = run(&["list", "--json", "--limit", "3"]).json();
    assert_eq!(keys_of(&page), listed[..3]);
    assert_eq!(page["next_after"], listed[2].to_hex());
    let rest = run(&[
        "list",
        "--json",
        "--limit",
        "0",
        "--after",
        page["next_after"].as_str().unwrap(),
    ])
    .json();
    assert_eq!(keys_of(&rest), listed[3..]);

    // One user's records.
    let mine = run(&["list", "--json", "--user", &seeded.alice]).json();
    assert_eq!(
        keys_of(&mine).into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([seeded.s1, seeded.s2, seeded.remember])
    );

    // The table: handles, and a User-Agent that cannot drive the terminal.
    let table = run(&["list"]).ok().stdout;
    assert!(table.starts_with("HANDLE"), "{table}");
    assert!(table.contains(&seeded.s1.handle()), "{table}");
    assert!(table.contains(&seeded.alice), "{table}");
    assert!(
        !table.contains('\u{1b}'),
        "raw escape character in the table:\n{table}"
    );
    assert!(table.contains("Mozilla/5.0 \\u{1b}[2J"), "{table}");
    assert!(
        !table.contains("AppleWebKit/537.36"),
        "the user agent is not truncated:\n{table}"
    );

    // show: metadata and data keys; values only with --values, never the CSRF secret.
    let shown = run(&["show", &seeded.s1.handle(), "--json"]).json();
    assert_eq!(shown["key"], seeded.s1.to_hex());
    assert_eq!(shown["user_id"], seeded.alice.as_str());
    assert_eq!(shown["status"], "live");
    assert_eq!(shown["data_keys"], json!(["keycard.csrf", "theme"]));
    assert!(shown.get("data").is_none());
    let with_values = run(&[
        "show",
        &seeded.s1.to_hex().to_uppercase(),
        "--json",
        "--values",
    ]);
    assert!(!with_values.stdout.contains("csrf-secret-value"));
    let with_values = with_values.json();
    assert_eq!(with_values["data"]["theme"], "dark");
    assert_eq!(with_values["data"]["keycard.csrf"], "<hidden>");
    let text = run(&["show", &seeded.remember.handle()[..12], "--values"])
        .ok()
        .stdout;
    assert!(text.contains("kind               remember"), "{text}");
    assert!(text.contains("theme = \"dark\""), "{text}");
    assert!(!text.contains("csrf-secret-value"), "{text}");

    // A handle two keys share is ambiguous; the whole key is not.
    run(&["show", &seeded.twins[0].handle()]).fails_with("ambiguous");
    run(&["revoke", &seeded.twins[0].handle()]).fails_with("ambiguous");
    assert_eq!(
        run(&["show", &seeded.twins[1].to_hex(), "--json"]).json()["user_id"],
        seeded.carol.as_str()
    );
    run(&["show", &unique(16)]).fails_with("no live session has the handle");
    run(&["show", "not-hex"]).fails_with("is not a session handle");
    // An expired record is not listed, but its whole key still names it.
    let old = run(&["show", &seeded.expired[0].to_hex(), "--json"]);
    if sweeps {
        assert_eq!(old.json()["status"], "expired (idle timeout)");
    } else {
        old.fails_with("no session with key");
    }

    // stats: counts by kind and user, and what waits for a sweep.
    let stats = run(&["stats", "--json", "--top", "2"]).json();
    assert_eq!(stats["live"], 7);
    assert_eq!(stats["by_kind"], json!({"session": 6, "remember": 1}));
    assert_eq!(stats["users"], 3);
    assert_eq!(stats["anonymous"], 1);
    assert_eq!(
        stats["top_users"],
        json!([{"user": seeded.alice, "count": 3}, {"user": seeded.carol, "count": 2}])
    );
    assert_eq!(stats["expired_unswept"], if sweeps { 2 } else { 0 });
    assert_eq!(stats["native_expiry"], !sweeps);
    let text = run(&["stats"]).ok().stdout;
    assert!(text.contains("live records         7"), "{text}");

    // sweep: batches until one comes back short.
    let swept = run(&["sweep", "--json", "--batch", "1"]).json();
    if sweeps {
        assert_eq!(
            swept,
            json!({"swept": 2, "batches": 3, "native_expiry": false})
        );
        for key in &seeded.expired {
            assert!(store.load(key).await.unwrap().is_none(), "not swept");
        }
        assert_eq!(run(&["stats", "--json"]).json()["expired_unswept"], 0);
    } else {
        assert_eq!(swept["swept"], 0);
        assert_eq!(swept["native_expiry"], true);
    }
    let text = run(&["sweep"]).ok().stdout;
    if sweeps {
        assert_eq!(text, "swept 0 expired records in 1 batch\n");
    } else {
        assert!(
            text.contains("Redis forgets expired sessions by itself"),
            "{text}"
        );
    }
    // Sweeping deletes nothing live.
    assert_eq!(run(&["stats", "--json"]).json()["live"], 7);

    // revoke: by handle; the record is gone, and a second revoke says so.
    let revoked = run(&["revoke", &seeded.s1.handle(), "--json"]).json();
    assert_eq!(revoked["revoked"]["key"], seeded.s1.to_hex());
    assert_eq!(revoked["revoked"]["user_id"], seeded.alice.as_str());
    assert!(store.load(&seeded.s1).await.unwrap().is_none());
    run(&["revoke", &seeded.s1.handle()]).fails_with("no live session has the handle");
    run(&["revoke", &seeded.s1.to_hex()]).fails_with("no session with key");

    // revoke-user: every record of the user but the one kept.
    run(&[
        "revoke-user",
        &seeded.alice,
        "--except",
        &seeded.b1.handle(),
    ])
    .fails_with("not a session of user");
    let all_but = run(&[
        "revoke-user",
        &seeded.alice,
        "--except",
        &seeded.remember.handle(),
        "--json",
    ])
    .json();
    assert_eq!(
        all_but,
        json!({"user": seeded.alice, "revoked": 1, "kept": seeded.remember.handle()})
    );
    assert!(store.load(&seeded.s2).await.unwrap().is_none());
    assert!(store.load(&seeded.remember).await.unwrap().is_some());
    assert!(store.load(&seeded.b1).await.unwrap().is_some());
    let text = run(&["revoke-user", &seeded.bob]).ok().stdout;
    assert_eq!(text, format!("revoked 1 record of user {}\n", seeded.bob));
    assert!(store.load(&seeded.b1).await.unwrap().is_none());
    let text = run(&["revoke", &seeded.twins[1].to_hex()]).ok().stdout;
    assert_eq!(
        text,
        format!(
            "revoked session {} (user {})\n",
            seeded.twins[1].handle(),
            seeded.carol
        )
    );

    // What is left: alice's remember-me series, carol's other session, the anonymous one.
    let left = keys_of(&run(&["list", "--json"]).json());
    assert_eq!(
        left.into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([seeded.remember, seeded.twins[0], seeded.anonymous])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sessions_commands() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let store = keycard_sqlite::SqliteStore::open(&path).await.unwrap();
    let url = format!("sqlite:{}", path.display());
    exercise(Arc::new(store), &["--store".into(), url], true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sessions_commands() {
    let Some(url) = service_url(
        "redis_sessions_commands",
        "KEYCARD_TEST_REDIS_URL",
        "redis://127.0.0.1:6379",
    ) else {
        return;
    };
    // A prefix of its own, so the listing holds this test's sessions only.
    let prefix = format!("kccli-{}", unique(6));
    let store = keycard_redis::RedisStore::builder(url.as_str())
        .prefix(prefix.as_str())
        .connect()
        .await
        .unwrap();
    let args = ["--store".into(), url, "--redis-prefix".into(), prefix];
    exercise(Arc::new(store), &args, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_sessions_commands() {
    let Some(url) = service_url(
        "redis_cluster_sessions_commands",
        "KEYCARD_TEST_REDIS_CLUSTER_URL",
        "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003",
    ) else {
        return;
    };
    let prefix = format!("kccli-{}", unique(6));
    let store = keycard_redis::RedisStore::builder(url.as_str())
        .prefix(prefix.as_str())
        .connect()
        .await
        .unwrap();
    let args = ["--store".into(), url, "--redis-prefix".into(), prefix];
    exercise(Arc::new(store), &args, false).await;
}

/// A database of the test's own on the PostgreSQL test server, so counts and
/// sweeps see this test's rows only.
struct TempDatabase {
    admin: tokio_postgres::Client,
    name: String,
    url: String,
}

impl TempDatabase {
    async fn create(url: &str) -> Self {
        let (admin, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let name = format!("keycard_cli_{}", unique(6));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let base = url.split_once('?').map_or(url, |(base, _)| base);
        let cut = base
            .rfind('/')
            .filter(|&i| i > "postgres://".len())
            .unwrap_or(base.len());
        let url = format!("{}/{name}", &base[..cut]);
        TempDatabase { admin, name, url }
    }

    async fn drop_now(self) {
        self.admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sessions_commands() {
    let Some(url) = service_url(
        "postgres_sessions_commands",
        "KEYCARD_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    ) else {
        return;
    };
    let database = TempDatabase::create(&url).await;
    {
        let store = keycard_postgres::PostgresStore::connect(&database.url)
            .await
            .unwrap();
        exercise(
            Arc::new(store),
            &["--store".into(), database.url.clone()],
            true,
        )
        .await;
    }
    database.drop_now().await;
}

#[test]
fn a_missing_or_foreign_sqlite_file_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo.db");
    let url = format!("sqlite:{}", missing.display());
    keycard(&["sessions", "list", "--store", &url])
        .fails_with(&format!("cannot open {url}: no such file"));
    assert!(!missing.exists(), "the command created the file");

    // Another application's database (say the users database) is not a session store.
    let users = dir.path().join("users.db");
    let conn = rusqlite::Connection::open(&users).unwrap();
    conn.execute_batch("CREATE TABLE users (name TEXT)")
        .unwrap();
    drop(conn);
    let url = format!("sqlite:{}", users.display());
    keycard(&["sessions", "stats", "--store", &url]).fails_with("not a keycard session store");
    let conn = rusqlite::Connection::open(&users).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'keycard%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0, "the command added tables to a foreign database");
}

#[test]
fn stores_without_a_list_are_usage_errors() {
    let memory = keycard(&["sessions", "list", "--store", "memory"]).usage_error();
    assert!(
        memory.stderr.contains("inside the server process"),
        "{}",
        memory.stderr
    );
    let cookie = keycard(&["sessions", "stats", "--store", "cookie"]).usage_error();
    assert!(
        cookie.stderr.contains("keycard cookie inspect"),
        "{}",
        cookie.stderr
    );
    let unknown =
        keycard(&["sessions", "list", "--store", "mysql://root:hunter2@db/app"]).usage_error();
    assert!(
        unknown.stderr.contains("unknown store URL"),
        "{}",
        unknown.stderr
    );
    assert!(
        !unknown.stderr.contains("hunter2"),
        "password in the message: {}",
        unknown.stderr
    );
}

#[test]
fn unreachable_stores_fail_fast() {
    let redis = keycard(&["sessions", "list", "--store", "redis://127.0.0.1:1"])
        .fails_with("keycard: cannot open redis://127.0.0.1:1: ");
    assert!(redis.took < Duration::from_secs(3), "took {:?}", redis.took);
    let postgres = keycard(&[
        "sessions",
        "stats",
        "--store",
        "postgres://postgres:pw@127.0.0.1:1/test",
    ])
    .fails_with("keycard: cannot open postgres://postgres:***@127.0.0.1:1/test: ");
    assert!(
        postgres.took < Duration::from_secs(3),
        "took {:?}",
        postgres.took
    );
    assert!(!postgres.stderr.contains(":pw@"));
}

#[test]
fn a_store_that_never_answers_times_out() {
    // Accepts connections (the kernel's backlog does) but never speaks.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    for url in [
        format!("redis://127.0.0.1:{port}"),
        format!("postgres://postgres@127.0.0.1:{port}/test"),
    ] {
        let run = keycard(&["sessions", "list", "--timeout", "500ms", "--store", &url])
            .fails_with(&format!("cannot open {url}: "));
        assert!(
            run.took < Duration::from_secs(3),
            "{url} took {:?}",
            run.took
        );
    }
    drop(listener);
}
