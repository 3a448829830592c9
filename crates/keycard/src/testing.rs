//! The store conformance kit: the executable definition of [`SessionStore`].
//!
//! Every store crate runs the whole kit against a real server with one macro:
//!
//! ```ignore
//! keycard::conformance_tests!(async { MyStore::connect(url).await.unwrap() });
//! ```
//!
//! which expands to one `#[tokio::test]` per check. Each check uses fresh random
//! keys and user IDs, so the kit may run against a shared server, in parallel.

use crate::{
    now_millis, ApplyOutcome, Change, ClientDetails, CreateError, Record, SessionId, SessionKey,
    SessionStore, Update,
};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Generates one `#[tokio::test]` per conformance check, each with a store
/// built by `$make` (an `async` block yielding a [`SessionStore`]).
///
/// For a store that needs a server, pass `optional: $make` where the block
/// yields `Option<S>`: `None` (no server configured) skips the check after a
/// loud message on stderr. Deciding whether a skip is allowed (it is not in
/// CI) is the block's job.
#[macro_export]
macro_rules! conformance_tests {
    (optional: $make:expr) => {
        $crate::__conformance_checks!($crate::conformance_tests, { $make });
    };
    ($make:expr) => {
        $crate::__conformance_checks!($crate::conformance_tests, { async { Some($make.await) } });
    };
    (@each $make:block; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                match $make.await {
                    Some(store) => $crate::testing::$check(std::sync::Arc::new(store)).await,
                    None => $crate::testing::skipped(stringify!($check)),
                }
            }
        )*
    };
}

/// The names of every conformance check (used by [`conformance_tests!`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks {
    ($callback:path, $make:block) => {
        $callback!(@each $make;
        create_then_load, create_duplicate_fails, load_missing_is_none,
        apply_changes_in_order, apply_to_missing_is_gone, apply_moves_deadlines,
        apply_sets_user_and_client, cycle_moves_record, cycle_missing_is_gone,
        delete_is_final, destroy_beats_late_write, list_and_delete_for_user,
        user_index_follows_changes, expired_records_are_not_served, sweep_removes_expired,
        concurrent_distinct_keys_all_kept, concurrent_increments_all_kept,
        apply_and_load_writes_then_reads, apply_and_load_never_revives,
        concurrent_apply_and_load_all_kept, answers_at_once_as_later,
        values_round_trip, list_all_pages, ping_answers);
    };
}

/// Reports a skipped check where it cannot be missed (straight to stderr:
/// the test harness hides captured output of passing tests).
pub fn skipped(check: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "*** SKIPPED conformance check {check}: no server configured ***"
    );
}

/// A fresh key nobody else uses.
pub fn fresh_key() -> SessionKey {
    SessionId::generate()
        .map(|id| id.key())
        .unwrap_or_else(|_| SessionKey::derive("test", "fallback"))
}

/// A fresh user ID nobody else uses.
pub fn fresh_user() -> String {
    format!("user-{}", &fresh_key().to_hex()[..16])
}

fn record_with(data: Value) -> Record {
    let mut record = Record::new(now_millis(), 60_000, 3_600_000);
    if let Value::Object(map) = data {
        record.data = map;
    }
    record
}

fn touch(record: &Record, changes: Vec<Change>) -> Update {
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

/// A created record loads back equal.
pub async fn create_then_load(store: Arc<impl SessionStore>) {
    let key = fresh_key();
    let mut record = record_with(json!({"theme": "dark", "n": 1}));
    record.ip = Some("127.0.0.1".into());
    record.user_agent = Some("kit/1.0".into());
    store.create(&key, &record).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap(), Some(record));
}

/// Creating over an existing key fails and changes nothing.
pub async fn create_duplicate_fails(store: Arc<impl SessionStore>) {
    let key = fresh_key();
    let first = record_with(json!({"who": "first"}));
    store.create(&key, &first).await.unwrap();
    let second = record_with(json!({"who": "second"}));
    assert!(matches!(
        store.create(&key, &second).await,
        Err(CreateError::DuplicateKey)
    ));
    assert_eq!(store.load(&key).await.unwrap(), Some(first));
}

/// A key never created loads as `None`.
pub async fn load_missing_is_none(store: Arc<impl SessionStore>) {
    assert_eq!(store.load(&fresh_key()).await.unwrap(), None);
}

/// Set, remove, clear and increment apply in order, exactly like [`Record::apply`].
pub async fn apply_changes_in_order(store: Arc<impl SessionStore>) {
    let key = fresh_key();
    let mut expected = record_with(json!({"a": 1, "b": 2, "c": "three"}));
    store.create(&key, &expected).await.unwrap();
    let update = touch(
        &expected,
        vec![
            Change::Set {
                key: "a".into(),
                value: json!({"nested": [1, 2]}),
            },
            Change::Remove { key: "b".into() },
            Change::Increment {
                key: "n".into(),
                by: 5,
            },
            Change::Increment {
                key: "n".into(),
                by: -2,
            },
            Change::Increment {
                key: "c".into(),
                by: 1,
            },
        ],
    );
    assert_eq!(
        store.apply(&key, &update).await.unwrap(),
        ApplyOutcome::Applied
    );
    expected.apply(&update);
    assert_eq!(store.load(&key).await.unwrap(), Some(expected.clone()));
    assert_eq!(expected.data["n"], json!(3));

    let update = touch(
        &expected,
        vec![
            Change::Clear,
            Change::Set {
                key: "z".into(),
                value: json!(true),
            },
        ],
    );
    store.apply(&key, &update).await.unwrap();
    expected.apply(&update);
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.data, expected.data);
    assert_eq!(loaded.data.len(), 1);
}

/// Applying to a missing record reports `Gone` and does not create it.
pub async fn apply_to_missing_is_gone(store: Arc<impl SessionStore>) {
    let key = fresh_key();
    let record = record_with(json!({}));
    let update = touch(
        &record,
        vec![Change::Set {
            key: "x".into(),
            value: json!(1),
        }],
    );
    assert_eq!(
        store.apply(&key, &update).await.unwrap(),
        ApplyOutcome::Gone
    );
    assert_eq!(store.load(&key).await.unwrap(), None);
}

/// A touch (no data changes) moves the deadlines and last-seen time.
pub async fn apply_moves_deadlines(store: Arc<impl SessionStore>) {
    let key = fresh_key();
    let record = record_with(json!({"k": "v"}));
    store.create(&key, &record).await.unwrap();
    let mut update = touch(&record, vec![]);
    update.last_seen = record.last_seen + 1_000;
    update.idle_deadline = record.idle_deadline + 1_000;
    store.apply(&key, &update).await.unwrap();
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.last_seen, update.last_seen);
    assert_eq!(loaded.idle_deadline, update.idle_deadline);
    assert_eq!(loaded.data, record.data);
}

/// An update can set and clear the user and record client details.
pub async fn apply_sets_user_and_client(store: Arc<impl SessionStore>) {
    let key = fresh_key();
    let record = record_with(json!({}));
    store.create(&key, &record).await.unwrap();
    let user = fresh_user();
    let mut update = touch(&record, vec![]);
    update.user_id = Some(Some(user.clone()));
    update.client = Some(ClientDetails {
        ip: Some("10.1.2.3".into()),
        user_agent: Some("UA é".into()),
    });
    store.apply(&key, &update).await.unwrap();
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.user_id.as_deref(), Some(user.as_str()));
    assert_eq!(loaded.ip.as_deref(), Some("10.1.2.3"));
    assert_eq!(loaded.user_agent.as_deref(), Some("UA é"));
    let mut update = touch(&loaded, vec![]);
    update.user_id = Some(None);
    store.apply(&key, &update).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap().unwrap().user_id, None);
    assert!(store.list_for_user(&user).await.unwrap().is_empty());
}

/// Cycling moves the data to the new key, applies the update, and kills the old key.
pub async fn cycle_moves_record(store: Arc<impl SessionStore>) {
    let (old, new) = (fresh_key(), fresh_key());
    let record = record_with(json!({"cart": [1, 2, 3]}));
    store.create(&old, &record).await.unwrap();
    let user = fresh_user();
    let mut update = touch(
        &record,
        vec![Change::Set {
            key: "step".into(),
            value: json!(2),
        }],
    );
    update.user_id = Some(Some(user.clone()));
    assert_eq!(
        store.cycle(&old, &new, &update).await.unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(store.load(&old).await.unwrap(), None);
    let loaded = store.load(&new).await.unwrap().unwrap();
    assert_eq!(loaded.data["cart"], json!([1, 2, 3]));
    assert_eq!(loaded.data["step"], json!(2));
    assert_eq!(loaded.created_at, record.created_at);
    let listed = store.list_for_user(&user).await.unwrap();
    assert_eq!(listed.iter().map(|s| s.key).collect::<Vec<_>>(), vec![new]);
    // A write aimed at the old key after the rotation finds it gone.
    let late = touch(
        &record,
        vec![Change::Set {
            key: "late".into(),
            value: json!(1),
        }],
    );
    assert_eq!(store.apply(&old, &late).await.unwrap(), ApplyOutcome::Gone);
    assert_eq!(store.load(&old).await.unwrap(), None);
}

/// Cycling a missing record reports `Gone` and creates nothing.
pub async fn cycle_missing_is_gone(store: Arc<impl SessionStore>) {
    let (old, new) = (fresh_key(), fresh_key());
    let record = record_with(json!({}));
    let outcome = store
        .cycle(&old, &new, &touch(&record, vec![]))
        .await
        .unwrap();
    assert_eq!(outcome, ApplyOutcome::Gone);
    assert_eq!(store.load(&new).await.unwrap(), None);
}

/// Delete removes the record; deleting again is fine.
pub async fn delete_is_final(store: Arc<impl SessionStore>) {
    let key = fresh_key();
    store
        .create(&key, &record_with(json!({"a": 1})))
        .await
        .unwrap();
    store.delete(&key).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap(), None);
    store.delete(&key).await.unwrap();
}

/// A slower request that writes after a destroy must not bring the session back,
/// even when many race.
pub async fn destroy_beats_late_write(store: Arc<impl SessionStore>) {
    let key = fresh_key();
    let record = record_with(json!({"a": 1}));
    store.create(&key, &record).await.unwrap();
    let mut writers = Vec::new();
    for i in 0..20 {
        let writer = store.clone();
        let update = touch(
            &record,
            vec![Change::Set {
                key: format!("k{i}"),
                value: json!(i),
            }],
        );
        writers.push(tokio::spawn(async move {
            writer.apply(&key, &update).await.map(|_| ())
        }));
        if i == 10 {
            store.delete(&key).await.unwrap();
        }
    }
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    let update = touch(
        &record,
        vec![Change::Set {
            key: "after".into(),
            value: json!(1),
        }],
    );
    assert_eq!(
        store.apply(&key, &update).await.unwrap(),
        ApplyOutcome::Gone
    );
    assert_eq!(store.load(&key).await.unwrap(), None);
}

/// A user's records are listed, and deleted all at once but for one.
pub async fn list_and_delete_for_user(store: Arc<impl SessionStore>) {
    let (user, other) = (fresh_user(), fresh_user());
    let mut keys = Vec::new();
    for i in 0..3 {
        let key = fresh_key();
        let mut record = record_with(json!({"i": i}));
        record.user_id = Some(user.clone());
        record.ip = Some(format!("127.0.0.{i}"));
        store.create(&key, &record).await.unwrap();
        keys.push(key);
    }
    let other_key = fresh_key();
    let mut record = record_with(json!({}));
    record.user_id = Some(other.clone());
    store.create(&other_key, &record).await.unwrap();

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

    assert_eq!(
        store.delete_for_user(&user, Some(&keys[0])).await.unwrap(),
        2
    );
    assert!(store.load(&keys[0]).await.unwrap().is_some());
    assert!(store.load(&keys[1]).await.unwrap().is_none());
    assert!(store.load(&keys[2]).await.unwrap().is_none());
    assert!(store.load(&other_key).await.unwrap().is_some());
    assert_eq!(store.delete_for_user(&user, None).await.unwrap(), 1);
    assert!(store.list_for_user(&user).await.unwrap().is_empty());
    assert_eq!(store.list_for_user(&other).await.unwrap().len(), 1);
}

/// The per-user index follows deletes and user changes.
pub async fn user_index_follows_changes(store: Arc<impl SessionStore>) {
    let (user, next) = (fresh_user(), fresh_user());
    let key = fresh_key();
    let mut record = record_with(json!({}));
    record.user_id = Some(user.clone());
    store.create(&key, &record).await.unwrap();
    let mut update = touch(&record, vec![]);
    update.user_id = Some(Some(next.clone()));
    store.apply(&key, &update).await.unwrap();
    assert!(store.list_for_user(&user).await.unwrap().is_empty());
    assert_eq!(store.list_for_user(&next).await.unwrap().len(), 1);
    store.delete(&key).await.unwrap();
    assert!(store.list_for_user(&next).await.unwrap().is_empty());
}

/// A record past its deadline is never served as live (it may be returned
/// expired, for the layer to reject, or not at all), nor listed.
pub async fn expired_records_are_not_served(store: Arc<impl SessionStore>) {
    let user = fresh_user();
    let key = fresh_key();
    let now = now_millis();
    let mut record = Record::new(now, 1_000, 3_600_000);
    record.user_id = Some(user.clone());
    store.create(&key, &record).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    if let Some(found) = store.load(&key).await.unwrap() {
        assert!(found.is_expired(now_millis()));
    }
    assert!(store.list_for_user(&user).await.unwrap().is_empty());
}

/// A sweep removes expired records and keeps live ones.
pub async fn sweep_removes_expired(store: Arc<impl SessionStore>) {
    let now = now_millis();
    let (dead, live) = (fresh_key(), fresh_key());
    store
        .create(&dead, &Record::new(now - 10_000, 1_000, 3_600_000))
        .await
        .unwrap();
    store
        .create(&live, &Record::new(now, 60_000, 3_600_000))
        .await
        .unwrap();
    let mut total = 0;
    loop {
        let swept = store.sweep(now_millis(), 1_000).await.unwrap();
        total += swept;
        if swept < 1_000 {
            break;
        }
    }
    let _ = total;
    assert!(store
        .load(&dead)
        .await
        .unwrap()
        .is_none_or(|r| r.is_expired(now_millis())));
    assert!(store.load(&live).await.unwrap().is_some());
}

/// 100 concurrent requests writing distinct keys on one session lose nothing.
pub async fn concurrent_distinct_keys_all_kept(store: Arc<impl SessionStore>) {
    let key = fresh_key();
    let record = record_with(json!({}));
    store.create(&key, &record).await.unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = store.clone();
            let update = touch(
                &record,
                vec![Change::Set {
                    key: format!("k{i}"),
                    value: json!(i),
                }],
            );
            tokio::spawn(async move { store.apply(&key, &update).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), ApplyOutcome::Applied);
    }
    let loaded = store.load(&key).await.unwrap().unwrap();
    for i in 0..100 {
        assert_eq!(
            loaded.data.get(&format!("k{i}")),
            Some(&json!(i)),
            "k{i} lost"
        );
    }
}

/// 32 concurrent writers each incrementing one counter 10 times lose nothing.
pub async fn concurrent_increments_all_kept(store: Arc<impl SessionStore>) {
    let key = fresh_key();
    let record = record_with(json!({"n": 0}));
    store.create(&key, &record).await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            let update = touch(
                &record,
                vec![Change::Increment {
                    key: "n".into(),
                    by: 1,
                }],
            );
            tokio::spawn(async move {
                for _ in 0..10 {
                    store.apply(&key, &update).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.data["n"], json!(320));
}

/// `apply_and_load` applies the changes, leaves the deadlines and
/// `last_seen` alone, and returns what a load then returns.
pub async fn apply_and_load_writes_then_reads(store: Arc<impl SessionStore>) {
    let key = fresh_key();
    let mut record = Record::new(now_millis() - 5_000, 60_000, 3_600_000);
    record.data = json!({"n": 40, "keep": "me"})
        .as_object()
        .cloned()
        .unwrap_or_default();
    record.user_id = Some(fresh_user());
    store.create(&key, &record).await.unwrap();
    let changes = [
        Change::Increment {
            key: "n".into(),
            by: 2,
        },
        Change::Set {
            key: "s".into(),
            value: json!([1, "two"]),
        },
    ];
    let after = store
        .apply_and_load(&key, &changes, now_millis())
        .await
        .unwrap()
        .expect("live record");
    assert_eq!(after.data["n"], json!(42));
    assert_eq!(after.data["s"], json!([1, "two"]));
    assert_eq!(after.data["keep"], json!("me"));
    assert_eq!(after.user_id, record.user_id);
    let times = |r: &Record| {
        (
            r.created_at,
            r.last_seen,
            r.idle_deadline,
            r.absolute_deadline,
        )
    };
    assert_eq!(times(&after), times(&record));
    assert_eq!(store.load(&key).await.unwrap(), Some(after));
}

/// A store that answers at once (`load_now`, `apply_and_load_now`) gives the
/// answers its futures give. Stores that do not (`None`) pass as they are.
pub async fn answers_at_once_as_later(store: Arc<impl SessionStore>) {
    let missing = fresh_key();
    if let Some(now) = store.load_now(&missing) {
        assert_eq!(now, store.load(&missing).await);
        assert_eq!(now, Ok(None));
    }
    let key = fresh_key();
    let record = record_with(json!({"n": 1}));
    store.create(&key, &record).await.unwrap();
    if let Some(now) = store.load_now(&key) {
        assert_eq!(now, Ok(Some(record.clone())));
    }
    let add = [Change::Increment {
        key: "n".into(),
        by: 2,
    }];
    if let Some(now) = store.apply_and_load_now(&key, &add, now_millis()) {
        let after = now.unwrap().expect("live record");
        assert_eq!(after.data["n"], json!(3));
        assert_eq!(store.load(&key).await.unwrap(), Some(after.clone()));
        if let Some(now) = store.load_now(&key) {
            assert_eq!(now, Ok(Some(after)));
        }
        assert_eq!(
            store.apply_and_load_now(&missing, &add, now_millis()),
            Some(Ok(None))
        );
        assert_eq!(store.load(&missing).await, Ok(None));
        // Neither a deleted nor an expired record comes back.
        store.delete(&key).await.unwrap();
        assert_eq!(
            store.apply_and_load_now(&key, &add, now_millis()),
            Some(Ok(None))
        );
        assert_eq!(store.load(&key).await, Ok(None));
        if let Some(now) = store.load_now(&key) {
            assert_eq!(now, Ok(None));
        }
        let expired = fresh_key();
        let mut record = record_with(json!({"n": 1}));
        record.idle_deadline = now_millis() - 1;
        store.create(&expired, &record).await.unwrap();
        assert_eq!(
            store.apply_and_load_now(&expired, &add, now_millis()),
            Some(Ok(None))
        );
        if let Ok(Some(found)) = store.load(&expired).await {
            assert_eq!(found.data["n"], json!(1), "an expired record took a change");
        }
    }
}

/// `apply_and_load` on a missing, deleted or expired record writes nothing
/// and brings nothing back.
pub async fn apply_and_load_never_revives(store: Arc<impl SessionStore>) {
    let change = [Change::Increment {
        key: "n".into(),
        by: 1,
    }];
    let missing = fresh_key();
    let now = now_millis();
    assert_eq!(
        store.apply_and_load(&missing, &change, now).await.unwrap(),
        None
    );
    assert_eq!(store.load(&missing).await.unwrap(), None);

    let deleted = fresh_key();
    store
        .create(&deleted, &record_with(json!({})))
        .await
        .unwrap();
    store.delete(&deleted).await.unwrap();
    assert_eq!(
        store.apply_and_load(&deleted, &change, now).await.unwrap(),
        None
    );
    assert_eq!(store.load(&deleted).await.unwrap(), None);

    let expired = fresh_key();
    store
        .create(&expired, &Record::new(now - 10_000, 1_000, 3_600_000))
        .await
        .unwrap();
    assert_eq!(
        store
            .apply_and_load(&expired, &change, now_millis())
            .await
            .unwrap(),
        None
    );
    if let Some(found) = store.load(&expired).await.unwrap() {
        assert!(
            found.is_expired(now_millis()),
            "an expired record came back"
        );
        assert!(
            !found.data.contains_key("n"),
            "an expired record was written"
        );
    }
}

/// 32 concurrent writers each incrementing one counter 10 times through
/// `apply_and_load` lose nothing, and every answer is a distinct count.
pub async fn concurrent_apply_and_load_all_kept(store: Arc<impl SessionStore>) {
    let key = fresh_key();
    store
        .create(&key, &record_with(json!({"n": 0})))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let change = [Change::Increment {
                    key: "n".into(),
                    by: 1,
                }];
                let mut seen = Vec::new();
                for _ in 0..10 {
                    let record = store
                        .apply_and_load(&key, &change, now_millis())
                        .await
                        .unwrap()
                        .expect("live record");
                    seen.push(record.data["n"].as_i64().unwrap_or(-1));
                }
                seen
            })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.extend(task.await.unwrap());
    }
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.data["n"], json!(320));
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=320).collect::<Vec<_>>(),
        "answers were not the counts"
    );
}

/// JSON values of every shape survive the store unchanged.
pub async fn values_round_trip(store: Arc<impl SessionStore>) {
    let key = fresh_key();
    let data = json!({
        "unicode": "naïve ☃ 日本 \u{0}",
        "quotes": "'\"\\ --; DROP TABLE sessions",
        "big": i64::MAX,
        "neg": -42,
        "float": 1.5,
        "null": null,
        "list": [1, "two", {"three": 3}],
        "key with spaces and . dots": true,
    });
    let record = record_with(data.clone());
    store.create(&key, &record).await.unwrap();
    let update = touch(
        &record,
        vec![Change::Set {
            key: "ünï".into(),
            value: json!({"deep": [[]]}),
        }],
    );
    store.apply(&key, &update).await.unwrap();
    let loaded = store.load(&key).await.unwrap().unwrap();
    for (k, v) in data.as_object().unwrap() {
        assert_eq!(loaded.data.get(k), Some(v), "value of {k:?}");
    }
    assert_eq!(loaded.data["ünï"], json!({"deep": [[]]}));
}

/// `list_all` pages through records in key order.
pub async fn list_all_pages(store: Arc<impl SessionStore>) {
    let mut mine = Vec::new();
    for _ in 0..5 {
        let key = fresh_key();
        store.create(&key, &record_with(json!({}))).await.unwrap();
        mine.push(key);
    }
    let mut seen = Vec::new();
    let mut after: Option<SessionKey> = None;
    loop {
        let page = store.list_all(after.as_ref(), 7).await.unwrap();
        assert!(page.len() <= 7);
        for pair in page.windows(2) {
            assert!(pair[0].key < pair[1].key, "pages must be in key order");
        }
        if let (Some(prev), Some(first)) = (after, page.first()) {
            assert!(prev < first.key);
        }
        seen.extend(page.iter().map(|s| s.key));
        match page.last() {
            Some(last) if page.len() == 7 => after = Some(last.key),
            _ => break,
        }
    }
    for key in &mine {
        assert!(seen.contains(key), "list_all missed a record");
    }
}

/// A working store answers a ping.
pub async fn ping_answers(store: Arc<impl SessionStore>) {
    store.ping().await.unwrap();
}
