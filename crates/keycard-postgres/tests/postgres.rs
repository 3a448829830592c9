//! The conformance kit and the PostgreSQL-specific behaviour, against a real
//! server named by `KEYCARD_TEST_POSTGRES_URL`.

mod common;

use common::{test_url, TempDatabase};
use keycard::testing::{fresh_key, fresh_user};
use keycard::{
    now_millis, ApplyOutcome, Change, ClientDetails, CreateError, Record, SessionStore, StoreError,
    Update,
};
use keycard_postgres::{PostgresOptions, PostgresStore};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

mod conformance {
    keycard::conformance_tests!(optional: super::common::shared_store());
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

fn live_record() -> Record {
    Record::new(now_millis(), 60_000, 3_600_000)
}

#[tokio::test]
async fn two_instances_share_records() {
    let Some(url) = test_url("two_instances_share_records") else {
        return;
    };
    // Separate pools, as two servers behind a load balancer would have.
    let first = PostgresStore::connect(&url).await.unwrap();
    let second = PostgresStore::connect(&url).await.unwrap();
    let key = fresh_key();
    let mut record = live_record();
    record.data.insert("from".into(), json!("first"));
    first.create(&key, &record).await.unwrap();
    assert_eq!(second.load(&key).await.unwrap(), Some(record.clone()));
    assert!(matches!(
        second.create(&key, &record).await,
        Err(CreateError::DuplicateKey)
    ));

    let update = touch(
        &record,
        vec![Change::Set {
            key: "seen_by".into(),
            value: json!("second"),
        }],
    );
    assert_eq!(
        second.apply(&key, &update).await.unwrap(),
        ApplyOutcome::Applied
    );
    record.apply(&update);
    assert_eq!(first.load(&key).await.unwrap(), Some(record.clone()));

    first.delete(&key).await.unwrap();
    assert_eq!(second.load(&key).await.unwrap(), None);
    assert_eq!(
        second.apply(&key, &update).await.unwrap(),
        ApplyOutcome::Gone
    );
    assert_eq!(first.load(&key).await.unwrap(), None);
}

#[tokio::test]
async fn increment_matches_the_reference_semantics() {
    let Some(url) = test_url("increment_matches_the_reference_semantics") else {
        return;
    };
    let store = PostgresStore::connect(&url).await.unwrap();
    let key = fresh_key();
    let mut expected = live_record();
    expected.data = json!({
        "int": 41, "neg": -3, "text": "7", "float": 1.5, "whole_float": 2.0, "null": null,
        "bool": true, "list": [1], "max": i64::MAX, "min": i64::MIN, "huge": u64::MAX,
    })
    .as_object()
    .unwrap()
    .clone();
    store.create(&key, &expected).await.unwrap();
    let mut changes: Vec<Change> = [
        "int",
        "neg",
        "text",
        "float",
        "whole_float",
        "null",
        "bool",
        "list",
        "missing",
        "huge",
    ]
    .iter()
    .map(|key| Change::Increment {
        key: (*key).into(),
        by: 1,
    })
    .collect();
    changes.push(Change::Increment {
        key: "max".into(),
        by: 5,
    });
    changes.push(Change::Increment {
        key: "min".into(),
        by: -5,
    });
    changes.push(Change::Increment {
        key: "int".into(),
        by: i64::MIN,
    });
    let update = touch(&expected, changes);
    store.apply(&key, &update).await.unwrap();
    expected.apply(&update);
    assert_eq!(store.load(&key).await.unwrap().unwrap().data, expected.data);
    assert_eq!(expected.data["max"], json!(i64::MAX));
    assert_eq!(expected.data["float"], json!(1));
}

#[tokio::test]
async fn nul_characters_round_trip() {
    let Some(url) = test_url("nul_characters_round_trip") else {
        return;
    };
    let store = PostgresStore::connect(&url).await.unwrap();
    let key = fresh_key();
    let user = format!("{}\0admin", fresh_user());
    let mut record = live_record();
    record.user_id = Some(user.clone());
    record.data = json!({"a\0b": ["\0", {"k\u{FFFF}": "v\u{FFFF}0"}], "mark\u{FFFF}": 1})
        .as_object()
        .unwrap()
        .clone();
    store.create(&key, &record).await.unwrap();
    let mut update = touch(
        &record,
        vec![
            Change::Set {
                key: "x\0".into(),
                value: json!("y\0"),
            },
            Change::Increment {
                key: "n\0".into(),
                by: 2,
            },
            Change::Remove {
                key: "mark\u{FFFF}".into(),
            },
        ],
    );
    update.client = Some(ClientDetails {
        ip: None,
        user_agent: Some("agent\0".into()),
    });
    store.apply(&key, &update).await.unwrap();
    record.apply(&update);
    assert_eq!(store.load(&key).await.unwrap(), Some(record));
    let listed = store.list_for_user(&user).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].user_agent.as_deref(), Some("agent\0"));
    // The escape keeps apart users that differ only in the escaped characters.
    assert!(store
        .list_for_user(&user.replace('\0', "\u{FFFF}0"))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn kinds_are_listed() {
    let Some(url) = test_url("kinds_are_listed") else {
        return;
    };
    let store = PostgresStore::connect(&url).await.unwrap();
    let user = fresh_user();
    for kind in [json!("remember"), json!(7)] {
        let mut record = live_record();
        record.user_id = Some(user.clone());
        record.data.insert(keycard::reserved::KIND.into(), kind);
        store.create(&fresh_key(), &record).await.unwrap();
    }
    let mut kinds: Vec<String> = store
        .list_for_user(&user)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.kind)
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["remember", "session"]);
}

#[tokio::test]
async fn racing_creates_on_one_key_let_exactly_one_win() {
    let Some(url) = test_url("racing_creates_on_one_key_let_exactly_one_win") else {
        return;
    };
    let store = PostgresStore::connect(&url).await.unwrap();
    let key = fresh_key();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut record = live_record();
                record.data.insert("writer".into(), json!(i));
                store.create(&key, &record).await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => wins += 1,
            Err(CreateError::DuplicateKey) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn cycle_onto_a_live_key_fails_and_keeps_both() {
    let Some(url) = test_url("cycle_onto_a_live_key_fails_and_keeps_both") else {
        return;
    };
    let store = PostgresStore::connect(&url).await.unwrap();
    let (old, new) = (fresh_key(), fresh_key());
    let record = live_record();
    store.create(&old, &record).await.unwrap();
    store.create(&new, &record).await.unwrap();
    let outcome = store.cycle(&old, &new, &touch(&record, vec![])).await;
    assert!(matches!(outcome, Err(CreateError::DuplicateKey)));
    assert_eq!(store.load(&old).await.unwrap(), Some(record.clone()));
    // An expired record under the new key is replaced, as `create` would.
    let (stale_target, source) = (fresh_key(), fresh_key());
    store
        .create(
            &stale_target,
            &Record::new(now_millis() - 10_000, 1_000, 3_600_000),
        )
        .await
        .unwrap();
    store.create(&source, &record).await.unwrap();
    let outcome = store
        .cycle(&source, &stale_target, &touch(&record, vec![]))
        .await
        .unwrap();
    assert_eq!(outcome, ApplyOutcome::Applied);
    assert_eq!(
        store.load(&stale_target).await.unwrap().unwrap().created_at,
        record.created_at
    );
}

#[tokio::test]
async fn corrupt_rows_are_errors_not_panics() {
    let Some(url) = test_url("corrupt_rows_are_errors_not_panics") else {
        return;
    };
    let store = PostgresStore::connect(&url).await.unwrap();
    let (not_an_object, unknown_format) = (fresh_key(), fresh_key());
    store.create(&not_an_object, &live_record()).await.unwrap();
    store.create(&unknown_format, &live_record()).await.unwrap();
    let client = store.pool().get().await.unwrap();
    client
        .execute(
            "UPDATE keycard_sessions SET data = '[1, 2]' WHERE key = $1",
            &[&not_an_object.as_bytes().as_slice()],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE keycard_sessions SET format = 99 WHERE key = $1",
            &[&unknown_format.as_bytes().as_slice()],
        )
        .await
        .unwrap();
    assert!(matches!(
        store.load(&not_an_object).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.load(&unknown_format).await,
        Err(StoreError::Corrupt(_))
    ));
    store.delete(&not_an_object).await.unwrap();
    store.delete(&unknown_format).await.unwrap();
}

#[tokio::test]
async fn migrations_run_once_when_servers_start_together() {
    let Some(url) = test_url("migrations_run_once_when_servers_start_together") else {
        return;
    };
    let database = TempDatabase::create(&url).await;
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let url = database.url.clone();
            tokio::spawn(async move { PostgresStore::connect(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for start in starts {
        stores.push(start.await.unwrap().unwrap());
    }
    let client = stores[0].pool().get().await.unwrap();
    let versions: i64 = client
        .query_one("SELECT COUNT(*) FROM keycard_schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, 1);
    drop((client, stores));
    database.drop_now().await;
}

#[tokio::test]
async fn sweep_deletes_in_bounded_batches() {
    let Some(url) = test_url("sweep_deletes_in_bounded_batches") else {
        return;
    };
    let database = TempDatabase::create(&url).await;
    let store = PostgresStore::connect(&database.url).await.unwrap();
    let now = now_millis();
    for _ in 0..25 {
        store
            .create(&fresh_key(), &Record::new(now - 10_000, 1_000, 3_600_000))
            .await
            .unwrap();
    }
    let live = fresh_key();
    store.create(&live, &live_record()).await.unwrap();
    let mut batches = Vec::new();
    loop {
        let swept = store.sweep(now_millis(), 10).await.unwrap();
        batches.push(swept);
        if swept < 10 {
            break;
        }
    }
    assert_eq!(batches, vec![10, 10, 5]);
    assert_eq!(store.list_all(None, 100).await.unwrap().len(), 1);
    assert!(store.load(&live).await.unwrap().is_some());

    // The background sweeper does the same by itself.
    for _ in 0..7 {
        store
            .create(&fresh_key(), &Record::new(now - 10_000, 1_000, 3_600_000))
            .await
            .unwrap();
    }
    let sweeper = store.spawn_sweeper(Duration::from_millis(20), 3);
    let client = store.pool().get().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows: i64 = client
            .query_one("SELECT COUNT(*) FROM keycard_sessions", &[])
            .await
            .unwrap()
            .get(0);
        if rows == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the sweeper did not sweep");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // It ends once the store is gone.
    drop((client, store));
    tokio::time::timeout(Duration::from_secs(2), sweeper)
        .await
        .unwrap()
        .unwrap();
    database.drop_now().await;
}

#[tokio::test]
async fn an_unreachable_server_fails_fast() {
    let Some(_) = test_url("an_unreachable_server_fails_fast") else {
        return;
    };
    let started = Instant::now();
    // Nothing listens on port 1.
    let result = PostgresStore::connect_with(
        "postgres://postgres@127.0.0.1:1/test",
        PostgresOptions::new().pool_timeout(Duration::from_millis(500)),
    )
    .await;
    assert!(matches!(
        result,
        Err(StoreError::Unavailable(_) | StoreError::Timeout)
    ));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(PostgresStore::connect("not a url").await.is_err());
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let Some(_) = test_url("a_silent_server_times_out") else {
        return;
    };
    // Accepts connections and never says a word, like a wedged proxy.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = Instant::now();
    let result = PostgresStore::connect_with(
        &format!("postgres://postgres@127.0.0.1:{port}/test"),
        PostgresOptions::new().pool_timeout(Duration::from_millis(300)),
    )
    .await;
    assert!(matches!(result, Err(StoreError::Timeout)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    silent.abort();
}

#[tokio::test]
async fn values_keep_their_shape() {
    let Some(url) = test_url("values_keep_their_shape") else {
        return;
    };
    let store = PostgresStore::connect(&url).await.unwrap();
    let key = fresh_key();
    let mut record = live_record();
    let data: Value =
        json!({"f": 0.1, "e": 1.0e-7, "whole": 3.0, "neg0": -0.0, "s": "'); DROP TABLE x; --"});
    record.data = data.as_object().unwrap().clone();
    store.create(&key, &record).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap().unwrap().data, record.data);
}
