//! The conformance kit and the SQLite-specific behaviour, on real database files.

use async_trait::async_trait;
use keycard::testing::fresh_key;
use keycard::{
    now_millis, ApplyOutcome, Change, CreateError, Record, SessionKey, SessionStore,
    SessionSummary, StoreError, UnixMillis, Update,
};
use keycard_sqlite::{SqliteOptions, SqliteStore};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A path in the temp directory nobody else uses.
fn temp_db() -> PathBuf {
    std::env::temp_dir().join(format!("keycard-sqlite-{}.db", &fresh_key().to_hex()[..16]))
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

/// A store on a fresh file that deletes the file when dropped, so test runs
/// leave nothing behind.
struct TempStore {
    store: SqliteStore,
    path: PathBuf,
}

impl TempStore {
    async fn new() -> Self {
        let path = temp_db();
        let store = SqliteStore::open(&path).await.unwrap();
        TempStore { store, path }
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        remove_db(&self.path);
    }
}

#[async_trait]
impl SessionStore for TempStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        self.store.load(key).await
    }
    async fn create(&self, key: &SessionKey, record: &Record) -> Result<(), CreateError> {
        self.store.create(key, record).await
    }
    async fn apply(&self, key: &SessionKey, update: &Update) -> Result<ApplyOutcome, StoreError> {
        self.store.apply(key, update).await
    }
    async fn apply_and_load(
        &self,
        key: &SessionKey,
        changes: &[Change],
        now: UnixMillis,
    ) -> Result<Option<Record>, StoreError> {
        self.store.apply_and_load(key, changes, now).await
    }
    async fn cycle(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        update: &Update,
    ) -> Result<ApplyOutcome, CreateError> {
        self.store.cycle(old, new, update).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.store.delete(key).await
    }
    async fn list_for_user(&self, user_id: &str) -> Result<Vec<SessionSummary>, StoreError> {
        self.store.list_for_user(user_id).await
    }
    async fn delete_for_user(
        &self,
        user_id: &str,
        except: Option<&SessionKey>,
    ) -> Result<u64, StoreError> {
        self.store.delete_for_user(user_id, except).await
    }
    async fn sweep(&self, now: UnixMillis, limit: usize) -> Result<u64, StoreError> {
        self.store.sweep(now, limit).await
    }
    async fn list_all(
        &self,
        after: Option<&SessionKey>,
        limit: usize,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        self.store.list_all(after, limit).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }
}

mod on_file {
    keycard::conformance_tests!(async { super::TempStore::new().await });
}

mod in_memory {
    keycard::conformance_tests!(async {
        keycard_sqlite::SqliteStore::open_in_memory().await.unwrap()
    });
}

fn count_rows(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT COUNT(*) FROM keycard_sessions", [], |row| {
        row.get(0)
    })
    .unwrap()
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

#[tokio::test]
async fn survives_a_restart() {
    let path = temp_db();
    let key = fresh_key();
    let mut record = Record::new(now_millis(), 60_000, 3_600_000);
    record.user_id = Some("ada".into());
    record.data.insert("cart".into(), json!([1, 2]));
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.create(&key, &record).await.unwrap();
        let update = touch(
            &record,
            vec![Change::Increment {
                key: "n".into(),
                by: 7,
            }],
        );
        store.apply(&key, &update).await.unwrap();
        record.apply(&update);
    }
    // Every connection is closed; opening again migrates nothing twice and
    // finds the record.
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap(), Some(record));
    assert_eq!(store.list_for_user("ada").await.unwrap().len(), 1);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let versions: i64 = conn
        .query_row("SELECT COUNT(*) FROM keycard_schema_version", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(versions, 1);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop((store, conn));
    remove_db(&path);
}

#[tokio::test]
async fn processes_opening_together_migrate_once() {
    let path = temp_db();
    let opens: Vec<_> = (0..4)
        .map(|_| tokio::spawn(SqliteStore::open(path.clone())))
        .collect();
    for open in opens {
        open.await.unwrap().unwrap().ping().await.unwrap();
    }
    remove_db(&path);
}

#[tokio::test]
async fn sweep_deletes_in_bounded_batches() {
    let temp = TempStore::new().await;
    let now = now_millis();
    for _ in 0..25 {
        temp.store
            .create(&fresh_key(), &Record::new(now - 10_000, 1_000, 3_600_000))
            .await
            .unwrap();
    }
    let live = fresh_key();
    temp.store
        .create(&live, &Record::new(now, 60_000, 3_600_000))
        .await
        .unwrap();
    let mut batches = Vec::new();
    loop {
        let swept = temp.store.sweep(now_millis(), 10).await.unwrap();
        batches.push(swept);
        if swept < 10 {
            break;
        }
    }
    assert_eq!(batches, vec![10, 10, 5]);
    assert_eq!(count_rows(&temp.path), 1);
    assert!(temp.store.load(&live).await.unwrap().is_some());
}

#[tokio::test]
async fn the_sweeper_empties_expired_rows_and_stops_with_the_store() {
    let path = temp_db();
    let store = SqliteStore::open(&path).await.unwrap();
    let now = now_millis();
    for _ in 0..12 {
        store
            .create(&fresh_key(), &Record::new(now - 10_000, 1_000, 3_600_000))
            .await
            .unwrap();
    }
    let sweeper = store.spawn_sweeper(Duration::from_millis(20), 5);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while count_rows(&path) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sweeper did not sweep"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(store);
    tokio::time::timeout(Duration::from_secs(2), sweeper)
        .await
        .unwrap()
        .unwrap();
    remove_db(&path);
}

#[tokio::test]
async fn a_corrupt_row_is_an_error_not_a_panic() {
    let temp = TempStore::new().await;
    let (garbage, unknown_format) = (fresh_key(), fresh_key());
    let record = Record::new(now_millis(), 60_000, 3_600_000);
    temp.store.create(&garbage, &record).await.unwrap();
    temp.store.create(&unknown_format, &record).await.unwrap();
    let conn = rusqlite::Connection::open(&temp.path).unwrap();
    conn.execute(
        "UPDATE keycard_sessions SET data = 'not json {' WHERE key = ?1",
        [garbage.as_bytes().as_slice()],
    )
    .unwrap();
    conn.execute(
        "UPDATE keycard_sessions SET format = 99 WHERE key = ?1",
        [unknown_format.as_bytes().as_slice()],
    )
    .unwrap();

    assert!(matches!(
        temp.store.load(&garbage).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        temp.store.load(&unknown_format).await,
        Err(StoreError::Corrupt(_))
    ));
    let update = touch(
        &record,
        vec![Change::Set {
            key: "a".into(),
            value: json!(1),
        }],
    );
    assert!(matches!(
        temp.store.apply(&garbage, &update).await,
        Err(StoreError::Corrupt(_))
    ));
    // One bad row does not hide the others from the administrator.
    let listed = temp.store.list_all(None, 1_000).await.unwrap();
    assert_eq!(listed.len(), 2);
    // And the layer can still delete it.
    temp.store.delete(&garbage).await.unwrap();
    assert_eq!(temp.store.load(&garbage).await.unwrap(), None);
}

#[tokio::test]
async fn an_expired_record_is_replaced_by_create_but_not_revived_by_apply() {
    let temp = TempStore::new().await;
    let key = fresh_key();
    let stale = Record::new(now_millis() - 10_000, 1_000, 3_600_000);
    temp.store.create(&key, &stale).await.unwrap();
    let update = touch(
        &stale,
        vec![Change::Set {
            key: "x".into(),
            value: json!(1),
        }],
    );
    assert_eq!(
        temp.store.apply(&key, &update).await.unwrap(),
        ApplyOutcome::Gone
    );
    assert_eq!(temp.store.load(&key).await.unwrap(), Some(stale));
    let fresh = Record::new(now_millis(), 60_000, 3_600_000);
    temp.store.create(&key, &fresh).await.unwrap();
    assert_eq!(temp.store.load(&key).await.unwrap(), Some(fresh));
}

#[tokio::test]
async fn cycle_onto_a_live_key_fails_and_keeps_both() {
    let temp = TempStore::new().await;
    let (old, new) = (fresh_key(), fresh_key());
    let record = Record::new(now_millis(), 60_000, 3_600_000);
    temp.store.create(&old, &record).await.unwrap();
    temp.store.create(&new, &record).await.unwrap();
    let outcome = temp.store.cycle(&old, &new, &touch(&record, vec![])).await;
    assert!(matches!(outcome, Err(CreateError::DuplicateKey)));
    assert!(temp.store.load(&old).await.unwrap().is_some());
    assert!(temp.store.load(&new).await.unwrap().is_some());
}

#[tokio::test]
async fn urls_open_files_and_memory() {
    let path = temp_db();
    let store = SqliteStore::from_url(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(store.path(), Some(path.as_path()));
    store.ping().await.unwrap();
    drop(store);
    remove_db(&path);
    SqliteStore::from_url("sqlite::memory:")
        .await
        .unwrap()
        .ping()
        .await
        .unwrap();
    assert!(SqliteStore::from_url("redis://localhost").await.is_err());
}

#[tokio::test]
async fn a_missing_directory_is_an_error() {
    let path = std::env::temp_dir()
        .join(format!("keycard-missing-{}", fresh_key().to_hex()))
        .join("s.db");
    assert!(matches!(
        SqliteStore::open(&path).await,
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn works_without_reader_connections() {
    let path = temp_db();
    let store = SqliteStore::open_with(&path, SqliteOptions::new().readers(0))
        .await
        .unwrap();
    let key = fresh_key();
    let record = Record::new(now_millis(), 60_000, 3_600_000);
    store.create(&key, &record).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap(), Some(record));
    drop(store);
    remove_db(&path);
}

#[tokio::test]
async fn the_user_index_is_used() {
    let temp = TempStore::new().await;
    let conn = rusqlite::Connection::open(&temp.path).unwrap();
    let plan: String = conn
        .query_row(
            "EXPLAIN QUERY PLAN SELECT key FROM keycard_sessions WHERE user_id = 'u'",
            [],
            |row| row.get(3),
        )
        .unwrap();
    assert!(plan.contains("keycard_sessions_user"), "{plan}");
}
