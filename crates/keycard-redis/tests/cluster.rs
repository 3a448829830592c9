//! The store against a Redis Cluster: `KEYCARD_TEST_REDIS_CLUSTER_URL`
//! (`scripts/cluster.sh start DIR` makes one on 127.0.0.1:7001-7003).

mod common;

use common::{connect, unique_prefix, url, CLUSTER};
use keycard::testing::{fresh_key, fresh_user};
use keycard::{now_millis, ApplyOutcome, Change, Record, SessionStore, Update};
use keycard_redis::RedisStore;
use serde_json::json;

mod conformance {
    keycard::conformance_tests!(optional: crate::common::kit_store(crate::common::CLUSTER));
}

/// One user's sessions sit in many slots (on every node); listing, rotating
/// and deleting them all still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_sessions_span_slots() {
    let Some(url) = url(CLUSTER) else { return };
    let store = connect(&url).await;
    assert!(store.is_cluster());
    let user = fresh_user();
    let mut keys = Vec::new();
    for i in 0..24 {
        let key = fresh_key();
        let mut record = Record::new(now_millis(), 60_000, 3_600_000);
        record.user_id = Some(user.clone());
        record.data.insert("i".into(), json!(i));
        store.create(&key, &record).await.unwrap();
        keys.push(key);
    }
    let mut listed: Vec<_> = store
        .list_for_user(&user)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    listed.sort();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(listed, expected);

    // Rotate one: old and new key are (almost surely) in different slots.
    let new = fresh_key();
    let record = store.load(&keys[0]).await.unwrap().unwrap();
    let update = Update {
        changes: vec![Change::Set {
            key: "rotated".into(),
            value: json!(true),
        }],
        user_id: None,
        client: None,
        last_seen: now_millis(),
        idle_deadline: now_millis() + 60_000,
        absolute_deadline: record.absolute_deadline,
    };
    assert_eq!(
        store.cycle(&keys[0], &new, &update).await.unwrap(),
        ApplyOutcome::Applied
    );
    let listed: Vec<_> = store
        .list_for_user(&user)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert!(listed.contains(&new) && !listed.contains(&keys[0]));

    assert_eq!(store.delete_for_user(&user, Some(&new)).await.unwrap(), 23);
    let listed: Vec<_> = store
        .list_for_user(&user)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(listed, vec![new]);
}

/// `list_all` scans every primary, not just the one it happens to talk to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_all_covers_every_primary() {
    let Some(url) = url(CLUSTER) else { return };
    let store = RedisStore::builder(&url)
        .prefix(unique_prefix())
        .connect()
        .await
        .unwrap();
    let mut keys = Vec::new();
    for _ in 0..30 {
        let key = fresh_key();
        store
            .create(&key, &Record::new(now_millis(), 60_000, 3_600_000))
            .await
            .unwrap();
        keys.push(key);
    }
    keys.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_all(after.as_ref(), 8).await.unwrap();
        seen.extend(page.iter().map(|s| s.key));
        match page.last() {
            Some(last) if page.len() == 8 => after = Some(last.key),
            _ => break,
        }
    }
    assert_eq!(seen, keys);
    for key in &keys {
        store.delete(key).await.unwrap();
    }
    assert!(store.list_all(None, 100).await.unwrap().is_empty());
}
