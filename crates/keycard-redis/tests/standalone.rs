//! The store against one Redis server: `KEYCARD_TEST_REDIS_URL`.

mod common;

use common::{connect, raw, unique_prefix, url, STANDALONE};
use keycard::testing::{fresh_key, fresh_user};
use keycard::{now_millis, ApplyOutcome, Change, Record, SessionStore, StoreError, Update};
use keycard_redis::{ConnectError, RedisStore};
use redis::AsyncCommands;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

mod conformance {
    keycard::conformance_tests!(optional: crate::common::kit_store(crate::common::STANDALONE));
}

fn update_for(record: &Record, changes: Vec<Change>) -> Update {
    let now = now_millis();
    Update {
        changes,
        user_id: None,
        client: None,
        last_seen: now,
        idle_deadline: now + 60_000,
        absolute_deadline: record.absolute_deadline,
    }
}

/// Two processes (two stores, two connections) see one set of sessions.
#[tokio::test]
async fn two_stores_share_sessions() {
    let Some(url) = url(STANDALONE) else { return };
    let (a, b) = (connect(&url).await, connect(&url).await);
    let key = fresh_key();
    let mut record = Record::new(now_millis(), 60_000, 3_600_000);
    record.data.insert("from".into(), json!("a"));
    a.create(&key, &record).await.unwrap();
    assert_eq!(b.load(&key).await.unwrap(), Some(record.clone()));

    let update = update_for(
        &record,
        vec![Change::Set {
            key: "from".into(),
            value: json!("b"),
        }],
    );
    assert_eq!(b.apply(&key, &update).await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(
        a.load(&key).await.unwrap().unwrap().data["from"],
        json!("b")
    );

    a.delete(&key).await.unwrap();
    assert_eq!(b.load(&key).await.unwrap(), None);
    assert_eq!(b.apply(&key, &update).await.unwrap(), ApplyOutcome::Gone);
}

/// A session Redis expires on its own drops out of the user's listing, and the
/// listing removes its stale index entry.
#[tokio::test]
async fn natively_expired_session_leaves_the_user_listing() {
    let Some(url) = url(STANDALONE) else { return };
    let store = connect(&url).await;
    let user = fresh_user();
    let (short, long) = (fresh_key(), fresh_key());
    let now = now_millis();
    let mut record = Record::new(now, 800, 3_600_000);
    record.user_id = Some(user.clone());
    store.create(&short, &record).await.unwrap();
    let mut record = Record::new(now, 60_000, 3_600_000);
    record.user_id = Some(user.clone());
    store.create(&long, &record).await.unwrap();
    assert_eq!(store.list_for_user(&user).await.unwrap().len(), 2);

    let mut conn = raw(&url).await;
    let index = store.user_index_name(&user);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // Redis expired the hash, but nothing told the index yet.
    let exists: bool = conn.exists(store.session_key_name(&short)).await.unwrap();
    assert!(!exists, "the session hash should have expired natively");
    assert_eq!(conn.scard::<_, u64>(&index).await.unwrap(), 2);

    let listed: Vec<_> = store
        .list_for_user(&user)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(listed, vec![long]);
    let members: Vec<String> = conn.smembers(&index).await.unwrap();
    assert_eq!(
        members,
        vec![long.to_hex()],
        "the listing should prune the stale member"
    );
}

/// One hash per session with the documented fields; native TTLs on both keys.
#[tokio::test]
async fn layout_is_one_hash_per_session_with_native_expiry() {
    let Some(url) = url(STANDALONE) else { return };
    let store = connect(&url).await;
    let (key, user) = (fresh_key(), fresh_user());
    let mut record = Record::new(now_millis(), 60_000, 120_000);
    record.data.insert("theme".into(), json!("dark"));
    record.user_id = Some(user.clone());
    record.ip = Some("192.0.2.1".into());
    store.create(&key, &record).await.unwrap();

    let name = store.session_key_name(&key);
    assert_eq!(name, format!("keycard:s:{{{}}}", key.to_hex()));
    let mut conn = raw(&url).await;
    let fields: HashMap<String, String> = conn.hgetall(&name).await.unwrap();
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["d:theme", "m:ip", "m:user", "v"]);
    assert_eq!(fields["d:theme"], "\"dark\"");
    assert_eq!(
        fields["v"],
        format!(
            "2 {} {} {} {}",
            record.created_at, record.last_seen, record.idle_deadline, record.absolute_deadline
        )
    );
    let expire_at: i64 = redis::cmd("PEXPIRETIME")
        .arg(&name)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(expire_at, record.expires_at());
    let index = store.user_index_name(&user);
    let index_expire: i64 = redis::cmd("PEXPIRETIME")
        .arg(&index)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(index_expire, record.expires_at());

    // A touch moves the session's expiry, and stretches (never shrinks) the index's.
    let mut update = update_for(&record, vec![]);
    update.idle_deadline = record.idle_deadline + 30_000;
    store.apply(&key, &update).await.unwrap();
    let expire_at: i64 = redis::cmd("PEXPIRETIME")
        .arg(&name)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(expire_at, update.expires_at());
    let index_expire: i64 = redis::cmd("PEXPIRETIME")
        .arg(&index)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(index_expire, update.expires_at());
    update.idle_deadline -= 20_000;
    store.apply(&key, &update).await.unwrap();
    let index_expire_after: i64 = redis::cmd("PEXPIRETIME")
        .arg(&index)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(index_expire_after, index_expire);
    store.delete(&key).await.unwrap();
    let exists: bool = conn.exists(&index).await.unwrap();
    assert!(
        !exists,
        "deleting the only session empties (and so removes) the index"
    );
}

/// Increments follow `Change::apply_to` exactly, including values Lua's
/// doubles would get wrong and overflow.
#[tokio::test]
async fn increments_match_the_reference_at_the_edges() {
    let Some(url) = url(STANDALONE) else { return };
    let store = connect(&url).await;
    let starts = [
        json!(i64::MAX),
        json!(i64::MIN),
        json!(i64::MAX - 1),
        json!(9_007_199_254_740_993_i64), // 2^53 + 1: not a double
        json!(u64::MAX),                  // not an i64: counts as 0
        json!(2.0),
        json!(-0.0),
        json!("5"),
        json!([1]),
        json!(null),
        json!(0),
        json!(-7),
    ];
    for by in [1, -1, i64::MAX, i64::MIN, 0] {
        let key = fresh_key();
        let mut expected = Record::new(now_millis(), 60_000, 3_600_000);
        for (i, start) in starts.iter().enumerate() {
            expected.data.insert(format!("k{i}"), start.clone());
        }
        store.create(&key, &expected).await.unwrap();
        let mut changes: Vec<Change> = (0..starts.len())
            .map(|i| Change::Increment {
                key: format!("k{i}"),
                by,
            })
            .collect();
        changes.push(Change::Increment {
            key: "missing".into(),
            by,
        });
        let update = update_for(&expected, changes);
        store.apply(&key, &update).await.unwrap();
        expected.apply(&update);
        let loaded = store.load(&key).await.unwrap().unwrap();
        for (k, v) in &expected.data {
            assert_eq!(
                loaded.data.get(k),
                Some(v),
                "increment by {by} of {k} (start {:?})",
                starts.get(k[1..].parse::<usize>().unwrap_or(99))
            );
        }
    }
}

/// A session written in layout 1 is read, and rewritten in layout 2 by its
/// next write, with nothing lost.
#[tokio::test]
async fn layout_1_sessions_are_read_and_upgraded() {
    let Some(url) = url(STANDALONE) else { return };
    let store = connect(&url).await;
    let key = fresh_key();
    let name = store.session_key_name(&key);
    let now = now_millis();
    let (created, idle, abs) = (now - 1_000, now + 60_000, now + 120_000);
    let mut conn = raw(&url).await;
    let _: () = conn
        .hset_multiple(
            &name,
            &[
                ("v", "1".to_owned()),
                ("m:created", created.to_string()),
                ("m:seen", created.to_string()),
                ("m:idle", idle.to_string()),
                ("m:abs", abs.to_string()),
                ("d:n", "41".to_owned()),
            ],
        )
        .await
        .unwrap();
    let _: () = conn.pexpire(&name, 60_000).await.unwrap();
    let loaded = store.load(&key).await.unwrap().expect("layout 1 is read");
    assert_eq!(
        (
            loaded.created_at,
            loaded.idle_deadline,
            loaded.absolute_deadline
        ),
        (created, idle, abs)
    );
    let change = [Change::Increment {
        key: "n".into(),
        by: 1,
    }];
    let after = store
        .apply_and_load(&key, &change, now)
        .await
        .unwrap()
        .expect("live");
    assert_eq!(after.data["n"], json!(42));
    // The next full write (a touch here) rewrites it in layout 2.
    let update = Update {
        changes: vec![],
        user_id: None,
        client: None,
        last_seen: now,
        idle_deadline: now + 30_000,
        absolute_deadline: abs,
    };
    assert_eq!(
        store.apply(&key, &update).await.unwrap(),
        ApplyOutcome::Applied
    );
    let fields: HashMap<String, String> = conn.hgetall(&name).await.unwrap();
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["d:n", "v"]);
    assert_eq!(
        fields["v"],
        format!("2 {created} {now} {} {abs}", now + 30_000)
    );
    let reloaded = store.load(&key).await.unwrap().expect("live");
    assert_eq!(reloaded.data["n"], json!(42));
    assert_eq!(
        (reloaded.created_at, reloaded.idle_deadline),
        (created, now + 30_000)
    );
}

/// Bad bytes under our key names are `Corrupt`, never a panic or a wrong record.
#[tokio::test]
async fn corrupt_records_are_reported_not_served() {
    let Some(url) = url(STANDALONE) else { return };
    // A prefix of its own: the junk must not show up in other tests' listings.
    let store = RedisStore::builder(&url)
        .prefix(unique_prefix())
        .connect()
        .await
        .unwrap();
    let mut conn = raw(&url).await;
    let cases: [&[(&str, &str)]; 6] = [
        &[("v", "9 1 1 1 1")],
        &[("v", "2 yesterday 1 1 1")],
        &[
            ("v", "1"),
            ("m:created", "yesterday"),
            ("m:seen", "1"),
            ("m:idle", "1"),
            ("m:abs", "1"),
        ],
        &[("m:user", "1")],
        &[("v", "2 1 1 9999999999999 9999999999999"), ("d:x", "{oops")],
        &[
            ("v", "1"),
            ("m:created", "1"),
            ("m:seen", "1"),
            ("m:idle", "9999999999999"),
            ("m:abs", "9999999999999"),
            ("d:x", "{oops"),
        ],
    ];
    for fields in cases {
        let key = fresh_key();
        let name = store.session_key_name(&key);
        let _: () = conn.hset_multiple(&name, fields).await.unwrap();
        let _: () = conn.pexpire(&name, 60_000).await.unwrap();
        assert!(
            matches!(store.load(&key).await, Err(StoreError::Corrupt(_))),
            "{fields:?}"
        );
    }
    // Unreadable deadlines: apply refuses rather than guessing.
    let key = fresh_key();
    let name = store.session_key_name(&key);
    let _: () = conn
        .hset_multiple(&name, &[("v", "1"), ("m:idle", "x"), ("m:abs", "1")])
        .await
        .unwrap();
    let _: () = conn.pexpire(&name, 60_000).await.unwrap();
    let record = Record::new(now_millis(), 60_000, 3_600_000);
    assert!(matches!(
        store.apply(&key, &update_for(&record, vec![])).await,
        Err(StoreError::Corrupt(_))
    ));
    // Not a hash at all.
    let key = fresh_key();
    let name = store.session_key_name(&key);
    let _: () = conn.set_ex(&name, "surprise", 60).await.unwrap();
    assert!(matches!(
        store.load(&key).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(store
        .apply(&key, &update_for(&record, vec![]))
        .await
        .is_err());

    // The admin listing skips every one of them, and still lists a good one.
    let good = fresh_key();
    store.create(&good, &record).await.unwrap();
    let listed: Vec<_> = store
        .list_all(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(listed, vec![good]);
}

/// A corrupt session in a user's index is skipped by the listing (and still
/// deleted by "log out everywhere"), not an error for the whole page.
#[tokio::test]
async fn a_corrupt_session_does_not_break_the_user_listing() {
    let Some(url) = url(STANDALONE) else { return };
    let store = RedisStore::builder(&url)
        .prefix(unique_prefix())
        .connect()
        .await
        .unwrap();
    let user = fresh_user();
    let (good, bad, not_a_hash) = (fresh_key(), fresh_key(), fresh_key());
    for key in [good, bad] {
        let mut record = Record::new(now_millis(), 60_000, 3_600_000);
        record.user_id = Some(user.clone());
        store.create(&key, &record).await.unwrap();
    }
    let mut conn = raw(&url).await;
    let _: () = conn
        .hset(store.session_key_name(&bad), "d:x", "{oops")
        .await
        .unwrap();
    let _: () = conn
        .set_ex(store.session_key_name(&not_a_hash), "junk", 60)
        .await
        .unwrap();
    let _: () = conn
        .sadd(store.user_index_name(&user), not_a_hash.to_hex())
        .await
        .unwrap();
    let listed: Vec<_> = store
        .list_for_user(&user)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(listed, vec![good]);
    assert_eq!(store.delete_for_user(&user, None).await.unwrap(), 2);
    let exists: bool = conn.exists(store.session_key_name(&bad)).await.unwrap();
    assert!(!exists);
}

/// "Log out everywhere" must not delete a session that moved to another user
/// while the old user's index still named it.
#[tokio::test]
async fn delete_for_user_spares_sessions_of_someone_else() {
    let Some(url) = url(STANDALONE) else { return };
    let store = connect(&url).await;
    let (alice, bob) = (fresh_user(), fresh_user());
    let key = fresh_key();
    let mut record = Record::new(now_millis(), 60_000, 3_600_000);
    record.user_id = Some(bob.clone());
    store.create(&key, &record).await.unwrap();
    // A stale entry, as a crash between the session write and the index write leaves.
    let mut conn = raw(&url).await;
    let _: () = conn
        .sadd(store.user_index_name(&alice), key.to_hex())
        .await
        .unwrap();
    let _: () = conn
        .sadd(store.user_index_name(&alice), "not-a-key")
        .await
        .unwrap();
    let _: () = conn
        .pexpire(store.user_index_name(&alice), 60_000)
        .await
        .unwrap();
    assert!(store.list_for_user(&alice).await.unwrap().is_empty());
    assert_eq!(store.delete_for_user(&alice, None).await.unwrap(), 0);
    assert!(store.load(&key).await.unwrap().is_some());
    assert_eq!(store.list_for_user(&bob).await.unwrap().len(), 1);
    let exists: bool = conn.exists(store.user_index_name(&alice)).await.unwrap();
    assert!(!exists, "the stale entries should be pruned");
}

/// A prefix keeps applications apart; listings see only their own prefix.
#[tokio::test]
async fn prefixes_keep_stores_apart() {
    let Some(url) = url(STANDALONE) else { return };
    let (p1, p2) = (unique_prefix(), unique_prefix());
    let one = RedisStore::builder(&url)
        .prefix(&p1)
        .connect()
        .await
        .unwrap();
    let two = RedisStore::builder(&url)
        .prefix(&p2)
        .timeout(Duration::from_millis(700))
        .connect()
        .await
        .unwrap();
    assert_eq!(
        (one.prefix(), two.timeout()),
        (p1.as_str(), Duration::from_millis(700))
    );
    let key = fresh_key();
    let record = Record::new(now_millis(), 60_000, 3_600_000);
    one.create(&key, &record).await.unwrap();
    assert!(two.load(&key).await.unwrap().is_none());
    two.create(&key, &record).await.unwrap();
    let listed: Vec<_> = one
        .list_all(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(listed, vec![key]);
    assert!(one.list_all(Some(&key), 100).await.unwrap().is_empty());
    assert!(one.list_all(None, 0).await.unwrap().is_empty());
    assert!(one
        .session_key_name(&key)
        .starts_with(&format!("{p1}:s:{{")));
    assert_eq!(one.sweep(now_millis(), 10).await.unwrap(), 0);
    one.delete(&key).await.unwrap();
    two.delete(&key).await.unwrap();

    for bad in ["", "a{b}", "two words"] {
        let result = RedisStore::builder(&url).prefix(bad).connect().await;
        assert!(matches!(result, Err(ConnectError::Config(_))), "{bad:?}");
    }
    let result = RedisStore::builder(&url)
        .timeout(Duration::ZERO)
        .connect()
        .await;
    assert!(matches!(result, Err(ConnectError::Config(_))));
}

/// Many data keys (more than one Lua `unpack` can take) and a big clear.
#[tokio::test]
async fn large_records_create_and_clear() {
    let Some(url) = url(STANDALONE) else { return };
    let store = connect(&url).await;
    let key = fresh_key();
    let mut record = Record::new(now_millis(), 60_000, 3_600_000);
    for i in 0..10_000 {
        record.data.insert(format!("k{i}"), Value::from(i));
    }
    store.create(&key, &record).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap(), Some(record.clone()));
    let update = update_for(&record, vec![Change::Clear]);
    store.apply(&key, &update).await.unwrap();
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert!(loaded.data.is_empty());
    assert_eq!(loaded.created_at, record.created_at);
}

/// Unreachable servers fail `connect` with a clear error, quickly.
#[tokio::test]
async fn connect_reports_bad_urls_and_dead_servers() {
    assert!(matches!(
        RedisStore::connect("127.0.0.1:6379").await,
        Err(ConnectError::Url(_))
    ));
    assert!(matches!(
        RedisStore::connect("redis+cluster://").await,
        Err(ConnectError::Url(_))
    ));
    let started = std::time::Instant::now();
    // Port 1 on loopback: nothing listens there.
    let result = RedisStore::builder("redis://127.0.0.1:1")
        .timeout(Duration::from_millis(300))
        .connect()
        .await;
    assert!(
        matches!(
            result,
            Err(ConnectError::Unavailable(_) | ConnectError::Timeout)
        ),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}
