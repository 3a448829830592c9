//! The table layout, its migrations, and how a row becomes a record.

use crate::connections::store_error;
use keycard::{Record, SessionKey, SessionSummary, StoreError};
use rusqlite::{Connection, Row, TransactionBehavior};
use serde_json::{Map, Value};

/// Each migration runs once, in order, inside the same immediate transaction
/// that reads the schema version, so two processes opening one file together
/// cannot both apply it. Never edit a released entry: append a new one.
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "CREATE TABLE keycard_sessions (
        key BLOB PRIMARY KEY NOT NULL CHECK (length(key) = 32),
        user_id TEXT,
        created_at INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        idle_deadline INTEGER NOT NULL,
        absolute_deadline INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        ip TEXT,
        user_agent TEXT,
        format INTEGER NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX keycard_sessions_user ON keycard_sessions (user_id) WHERE user_id IS NOT NULL;
    CREATE INDEX keycard_sessions_expiry ON keycard_sessions (expires_at);",
)];

/// How a row holds a record (the columns, and `data` as a JSON object of
/// the session's values), written beside each row. A release that changes it
/// bumps this and keeps reading rows in every older format.
pub(crate) const ROW_FORMAT: i64 = 1;

/// The newest schema this release knows.
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// Brings the schema up to date; a no-op when it already is.
pub(crate) fn migrate(conn: &mut Connection, now: i64) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(store_error)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS keycard_schema_version (
            version INTEGER PRIMARY KEY NOT NULL,
            applied_at INTEGER NOT NULL
        )",
    )
    .map_err(store_error)?;
    let current: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM keycard_schema_version",
            [],
            |row| row.get(0),
        )
        .map_err(store_error)?;
    if current > SCHEMA_VERSION {
        // Migrations only add, so an older release can keep serving during a
        // rollback; say so rather than refuse to start.
        tracing::warn!(
            current,
            known = SCHEMA_VERSION,
            "keycard SQLite schema is newer than this release"
        );
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > current) {
        tx.execute_batch(sql).map_err(store_error)?;
        tx.execute(
            "INSERT INTO keycard_schema_version (version, applied_at) VALUES (?1, ?2)",
            (version, now),
        )
        .map_err(store_error)?;
    }
    tx.commit().map_err(store_error)
}

/// The columns [`read_record`] expects, in order.
pub(crate) const RECORD_COLUMNS: &str =
    "user_id, created_at, last_seen, idle_deadline, absolute_deadline, ip, user_agent, format, data";

/// The columns [`read_summary`] expects, in order. The kind comes out of the
/// JSON without decoding the whole record, and a corrupt record still lists
/// (as a plain session) so one bad row cannot hide all the others.
pub(crate) const SUMMARY_COLUMNS: &str = "key, user_id, created_at, last_seen, idle_deadline, \
     absolute_deadline, ip, user_agent, \
     CASE WHEN json_valid(data) THEN \
         CASE WHEN json_type(data, '$.\"keycard.kind\"') = 'text' \
         THEN json_extract(data, '$.\"keycard.kind\"') END \
     END";

/// Decodes a row selected with [`RECORD_COLUMNS`]. A value of the wrong type,
/// an unknown format or undecodable data is [`StoreError::Corrupt`].
pub(crate) fn read_record(row: &Row<'_>) -> Result<Record, StoreError> {
    let format: i64 = row.get(7).map_err(store_error)?;
    if format != ROW_FORMAT {
        return Err(StoreError::Corrupt(format!("unknown row format {format}")));
    }
    let data: String = row.get(8).map_err(store_error)?;
    let data: Map<String, Value> = serde_json::from_str(&data)
        .map_err(|e| StoreError::Corrupt(format!("record data: {e}")))?;
    Ok(Record {
        data,
        user_id: row.get(0).map_err(store_error)?,
        created_at: row.get(1).map_err(store_error)?,
        last_seen: row.get(2).map_err(store_error)?,
        idle_deadline: row.get(3).map_err(store_error)?,
        absolute_deadline: row.get(4).map_err(store_error)?,
        ip: row.get(5).map_err(store_error)?,
        user_agent: row.get(6).map_err(store_error)?,
    })
}

/// Decodes a row selected with [`SUMMARY_COLUMNS`].
pub(crate) fn read_summary(row: &Row<'_>) -> Result<SessionSummary, StoreError> {
    let key: Vec<u8> = row.get(0).map_err(store_error)?;
    let key = <[u8; 32]>::try_from(key.as_slice())
        .map_err(|_| StoreError::Corrupt(format!("a key of {} bytes", key.len())))?;
    Ok(SessionSummary {
        key: SessionKey::from_bytes(key),
        user_id: row.get(1).map_err(store_error)?,
        created_at: row.get(2).map_err(store_error)?,
        last_seen: row.get(3).map_err(store_error)?,
        idle_deadline: row.get(4).map_err(store_error)?,
        absolute_deadline: row.get(5).map_err(store_error)?,
        ip: row.get(6).map_err(store_error)?,
        user_agent: row.get(7).map_err(store_error)?,
        kind: row
            .get::<_, Option<String>>(8)
            .map_err(store_error)?
            .unwrap_or_else(|| "session".into()),
    })
}

/// The record's data as stored: JSON text.
pub(crate) fn encode_data(record: &Record) -> Result<String, StoreError> {
    serde_json::to_string(&record.data)
        .map_err(|e| StoreError::Corrupt(format!("record data: {e}")))
}

/// Reads the record under `key`, expired or not.
pub(crate) fn read(conn: &Connection, key: &SessionKey) -> Result<Option<Record>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM keycard_sessions WHERE key = ?1"
        ))
        .map_err(store_error)?;
    let mut rows = stmt
        .query([key.as_bytes().as_slice()])
        .map_err(store_error)?;
    match rows.next().map_err(store_error)? {
        Some(row) => read_record(row).map(Some),
        None => Ok(None),
    }
}
