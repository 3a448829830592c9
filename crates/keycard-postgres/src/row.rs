//! How records and changes are written to, and read back from, table rows.

use crate::escape::{escape, escape_map, escape_value, unescape, unescape_value};
use keycard::{Change, Record, SessionKey, SessionSummary, StoreError};
use serde_json::{json, Value};
use std::borrow::Cow;
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;

/// How a row holds a record (the columns, and `data` as a JSON object of the
/// session's values with U+0000 escaped), written in the `format` column. A
/// release that changes it bumps this and keeps reading every older format.
pub(crate) const FORMAT: i16 = 1;

/// The columns [`record_from_row`] expects, in order.
pub(crate) const RECORD_COLUMNS: &str =
    "user_id, created_at, last_seen, idle_deadline, absolute_deadline, ip, user_agent, format, data::text";

/// The columns [`summary_from_row`] expects, in order: the kind comes out of
/// the JSON without shipping the whole record.
pub(crate) const SUMMARY_COLUMNS: &str = "key, user_id, created_at, last_seen, idle_deadline, \
    absolute_deadline, ip, user_agent, \
    CASE WHEN jsonb_typeof(data->'keycard.kind') = 'string' THEN data->>'keycard.kind' END";

fn get<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, StoreError> {
    row.try_get(index)
        .map_err(|e| StoreError::Corrupt(format!("column {index}: {e}")))
}

fn text(row: &Row, index: usize) -> Result<Option<String>, StoreError> {
    Ok(get::<Option<String>>(row, index)?.map(unescape))
}

/// Decodes a row selected with [`RECORD_COLUMNS`]; an unknown format or data
/// that is not a JSON object is [`StoreError::Corrupt`].
pub(crate) fn record_from_row(row: &Row) -> Result<Record, StoreError> {
    let format: i16 = get(row, 7)?;
    if format != FORMAT {
        return Err(StoreError::Corrupt(format!(
            "unknown record format version {format}"
        )));
    }
    let data: String = get(row, 8)?;
    let data: Value = serde_json::from_str(&data)
        .map_err(|e| StoreError::Corrupt(format!("record data: {e}")))?;
    let Value::Object(data) = unescape_value(data) else {
        return Err(StoreError::Corrupt(
            "record data is not a JSON object".into(),
        ));
    };
    Ok(Record {
        data,
        user_id: text(row, 0)?,
        created_at: get(row, 1)?,
        last_seen: get(row, 2)?,
        idle_deadline: get(row, 3)?,
        absolute_deadline: get(row, 4)?,
        ip: text(row, 5)?,
        user_agent: text(row, 6)?,
    })
}

/// Decodes a row selected with [`SUMMARY_COLUMNS`].
pub(crate) fn summary_from_row(row: &Row) -> Result<SessionSummary, StoreError> {
    let key: &[u8] = get(row, 0)?;
    let key = <[u8; 32]>::try_from(key)
        .map_err(|_| StoreError::Corrupt(format!("a key of {} bytes", key.len())))?;
    Ok(SessionSummary {
        key: SessionKey::from_bytes(key),
        user_id: text(row, 1)?,
        created_at: get(row, 2)?,
        last_seen: get(row, 3)?,
        idle_deadline: get(row, 4)?,
        absolute_deadline: get(row, 5)?,
        ip: text(row, 6)?,
        user_agent: text(row, 7)?,
        kind: text(row, 8)?.unwrap_or_else(|| "session".into()),
    })
}

/// A record's data as the JSON text the `data` column is cast from.
pub(crate) fn data_json(record: &Record) -> Result<String, StoreError> {
    serde_json::to_string(&escape_map(&record.data))
        .map_err(|e| StoreError::Corrupt(format!("record data: {e}")))
}

/// An optional string column's stored form.
pub(crate) fn text_param(value: Option<&String>) -> Option<Cow<'_, str>> {
    value.map(|v| escape(v))
}

/// The changes as the JSON array `keycard_apply_changes` reads, or `None`
/// when there are none (a touch), so the statement skips the function call.
pub(crate) fn changes_json(changes: &[Change]) -> Result<Option<String>, StoreError> {
    if changes.is_empty() {
        return Ok(None);
    }
    let ops: Vec<Value> = changes
        .iter()
        .map(|change| match change {
            Change::Set { key, value } => {
                json!({"op": "set", "key": escape(key), "value": escape_value(value)})
            }
            Change::Remove { key } => json!({"op": "remove", "key": escape(key)}),
            Change::Clear => json!({"op": "clear"}),
            Change::Increment { key, by } => {
                json!({"op": "increment", "key": escape(key), "by": by})
            }
        })
        .collect();
    serde_json::to_string(&ops)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("changes: {e}")))
}
