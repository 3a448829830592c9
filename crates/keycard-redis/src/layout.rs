//! How a [`Record`] is laid out in Redis: key names and hash fields.
//!
//! ```text
//! {prefix}:s:{<64 hex>}        hash, one per session, PEXPIREAT = Record::expires_at
//!     v                        "2 <created> <seen> <idle> <abs>": layout version 2,
//!                              then created_at, last_seen, idle and absolute
//!                              deadlines (decimal Unix millis)
//!     m:user m:ip m:ua         user_id, ip, user_agent     (absent when None)
//!     d:<data key>             one JSON value per data key
//! {prefix}:u:{<64 hex>}        set of session key hexes of one user; the hex is
//!                              SessionKey::derive("redis-user-index", user_id)
//! ```
//!
//! Layout 1 kept each time in a field of its own (`v` = "1", `m:created`,
//! `m:seen`, `m:idle`, `m:abs`). It is still read, and the apply script
//! rewrites such a session in layout 2 on its next write. Layout 2 has the
//! same meaning in a third of the fields, which is what a load costs: every
//! field is two values to send and parse.
//!
//! The braces are Redis Cluster hash tags: only the text between them picks the
//! slot. A session is a single key, so every script on it runs in one slot;
//! the user index is a different key in another slot, which is why index
//! updates are separate round trips (see the crate docs).

use keycard::{Record, SessionKey, StoreError};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The layout version at the start of the `v` field. Bump it (and keep a
/// reader for the old one) whenever the meaning of a field changes.
pub(crate) const LAYOUT_VERSION: &str = "2";

pub(crate) const F_VERSION: &str = "v";
pub(crate) const F_USER: &str = "m:user";
pub(crate) const F_IP: &str = "m:ip";
pub(crate) const F_UA: &str = "m:ua";
// Layout 1's time fields, read only.
const F1_CREATED: &str = "m:created";
const F1_SEEN: &str = "m:seen";
const F1_IDLE: &str = "m:idle";
const F1_ABS: &str = "m:abs";
/// Prefix of a data field: `d:` followed by the application's key.
pub(crate) const DATA_PREFIX: &str = "d:";

/// The purpose tag for hashing user IDs into index key names. Hashing keeps the
/// key name bounded and free of `{`/`}` (which would change the hash tag), and
/// keeps user names out of `SCAN` output and `MONITOR` key names.
const USER_INDEX_PURPOSE: &str = "redis-user-index";

/// Key names under one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    prefix: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Self {
        Names {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}:s:{<hex>}`.
    pub(crate) fn session(&self, key: &SessionKey) -> String {
        format!("{}:s:{{{}}}", self.prefix, key.to_hex())
    }

    /// `{prefix}:u:{<hex of derived key>}`.
    pub(crate) fn user_index(&self, user_id: &str) -> String {
        let hashed = SessionKey::derive(USER_INDEX_PURPOSE, user_id);
        format!("{}:u:{{{}}}", self.prefix, hashed.to_hex())
    }

    /// The `SCAN MATCH` pattern for every session key, with glob characters of
    /// the prefix escaped so a prefix like `app[1]` matches only itself.
    pub(crate) fn session_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + 8);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str(":s:{*");
        pattern
    }

    /// The session key a `SCAN` result names, if it is one of ours.
    pub(crate) fn parse_session(&self, name: &[u8]) -> Option<SessionKey> {
        let rest = name.strip_prefix(self.prefix.as_bytes())?;
        let hex = rest.strip_prefix(b":s:{")?.strip_suffix(b"}")?;
        SessionKey::from_hex(std::str::from_utf8(hex).ok()?)
    }
}

/// Checks a prefix: non-empty, no hash-tag braces (a `{` in the prefix would
/// become the hash tag and put every session in one slot), no whitespace or
/// control characters (keeps `redis-cli` output readable).
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("the key prefix must not be empty".into());
    }
    if let Some(bad) = prefix
        .chars()
        .find(|c| matches!(c, '{' | '}') || c.is_whitespace() || c.is_control())
    {
        return Err(format!("the key prefix must not contain {bad:?}"));
    }
    Ok(())
}

/// Serializes a JSON value for a `d:` field.
pub(crate) fn json_text(value: &Value) -> String {
    // A `Value` always serializes (its map keys are strings); `Null` is the
    // harmless answer should that ever change.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// The `v` field of layout 2: the version, then the four times.
pub(crate) fn version_field(record: &Record) -> String {
    format!(
        "{LAYOUT_VERSION} {} {} {} {}",
        record.created_at, record.last_seen, record.idle_deadline, record.absolute_deadline
    )
}

/// The field/value pairs of a new record, metadata first.
pub(crate) fn record_fields(record: &Record) -> Vec<(String, String)> {
    let mut fields = Vec::with_capacity(4 + record.data.len());
    fields.push((F_VERSION.to_owned(), version_field(record)));
    for (field, value) in [
        (F_USER, &record.user_id),
        (F_IP, &record.ip),
        (F_UA, &record.user_agent),
    ] {
        if let Some(value) = value {
            fields.push((field.to_owned(), value.clone()));
        }
    }
    for (key, value) in &record.data {
        fields.push((format!("{DATA_PREFIX}{key}"), json_text(value)));
    }
    fields
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn text(field: &str, bytes: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(bytes).map_err(|_| corrupt(format_args!("field {field:?} is not UTF-8")))
}

fn integer(field: &str, text: &str) -> Result<i64, StoreError> {
    text.parse().map_err(|_| {
        corrupt(format_args!(
            "field {field:?} holds a time that is not an integer"
        ))
    })
}

fn millis(fields: &mut HashMap<Vec<u8>, Vec<u8>>, field: &str) -> Result<i64, StoreError> {
    let bytes = fields
        .remove(field.as_bytes())
        .ok_or_else(|| corrupt(format_args!("missing field {field:?}")))?;
    integer(field, &text(field, bytes)?)
}

fn optional(
    fields: &mut HashMap<Vec<u8>, Vec<u8>>,
    field: &str,
) -> Result<Option<String>, StoreError> {
    fields
        .remove(field.as_bytes())
        .map(|bytes| text(field, bytes))
        .transpose()
}

/// created_at, last_seen, idle and absolute deadline, from either layout.
fn times(fields: &mut HashMap<Vec<u8>, Vec<u8>>) -> Result<[i64; 4], StoreError> {
    let version = fields
        .remove(F_VERSION.as_bytes())
        .ok_or_else(|| corrupt("missing layout version"))?;
    let version = text(F_VERSION, version)?;
    if version == "1" {
        return Ok([
            millis(fields, F1_CREATED)?,
            millis(fields, F1_SEEN)?,
            millis(fields, F1_IDLE)?,
            millis(fields, F1_ABS)?,
        ]);
    }
    let mut parts = version.split(' ');
    if parts.next() != Some(LAYOUT_VERSION) {
        return Err(corrupt(format_args!("unknown layout version {version:?}")));
    }
    let mut out = [0; 4];
    for slot in &mut out {
        let part = parts
            .next()
            .ok_or_else(|| corrupt("the version field is missing a time"))?;
        *slot = integer(F_VERSION, part)?;
    }
    if parts.next().is_some() {
        return Err(corrupt("the version field has extra values"));
    }
    Ok(out)
}

/// Rebuilds a record from `HGETALL` output. `Ok(None)` for an empty hash (Redis
/// has no empty hashes: the key does not exist). Anything malformed is
/// [`StoreError::Corrupt`], never a panic: the bytes may have been written by
/// anyone with access to the server.
pub(crate) fn decode_record(
    mut fields: HashMap<Vec<u8>, Vec<u8>>,
) -> Result<Option<Record>, StoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let [created_at, last_seen, idle_deadline, absolute_deadline] = times(&mut fields)?;
    let user_id = optional(&mut fields, F_USER)?;
    let ip = optional(&mut fields, F_IP)?;
    let user_agent = optional(&mut fields, F_UA)?;
    let mut data = Map::new();
    for (field, value) in fields {
        // Unknown non-data fields are skipped rather than rejected, so that a
        // reader of this version tolerates metadata a later patch release adds.
        let Some(key) = field.strip_prefix(DATA_PREFIX.as_bytes()) else {
            continue;
        };
        let key = text("data key", key.to_vec())?;
        let value: Value = serde_json::from_slice(&value)
            .map_err(|e| corrupt(format_args!("data key {key:?}: {e}")))?;
        data.insert(key, value);
    }
    Ok(Some(Record {
        data,
        user_id,
        created_at,
        last_seen,
        idle_deadline,
        absolute_deadline,
        ip,
        user_agent,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn to_map(fields: Vec<(String, String)>) -> HashMap<Vec<u8>, Vec<u8>> {
        fields
            .into_iter()
            .map(|(k, v)| (k.into_bytes(), v.into_bytes()))
            .collect()
    }

    #[test]
    fn fields_round_trip() {
        let mut record = Record::new(5, 10, 20);
        record.data.insert("a".into(), json!({"b": [1, "two"]}));
        record.data.insert("".into(), json!(null));
        record.user_id = Some("ü".into());
        record.ip = Some("::1".into());
        let decoded = decode_record(to_map(record_fields(&record))).unwrap();
        assert_eq!(decoded, Some(record));
        assert_eq!(decode_record(HashMap::new()).unwrap(), None);
    }

    #[test]
    fn malformed_hashes_are_corrupt() {
        let mut record = Record::new(5, 10, 20);
        record.data.insert("x".into(), json!(1));
        let good = to_map(record_fields(&record));
        // (field, Some(new bytes)) overwrites, (field, None) removes.
        let cases: [(&[u8], Option<&[u8]>); 9] = [
            (b"v", None),
            (b"v", Some(b"9 1 2 3 4")),
            (b"v", Some(b"2 1 2 3")),
            (b"v", Some(b"2 1 2 3 4 5")),
            (b"v", Some(b"2 1 soon 3 4")),
            (b"v", Some(b"1")),
            (b"m:user", Some(&[0xff, 0xfe])),
            (b"d:x", Some(b"{not json")),
            (&[b'd', b':', 0xff], Some(b"1")),
        ];
        for (i, (field, value)) in cases.into_iter().enumerate() {
            let mut fields = good.clone();
            match value {
                Some(value) => fields.insert(field.to_vec(), value.to_vec()),
                None => fields.remove(field),
            };
            assert!(
                matches!(decode_record(fields), Err(StoreError::Corrupt(_))),
                "case {i}"
            );
        }
    }

    #[test]
    fn layout_1_is_still_read() {
        let mut record = Record::new(5, 10, 20);
        record.data.insert("n".into(), json!(3));
        record.user_id = Some("u".into());
        let fields = to_map(vec![
            ("v".into(), "1".into()),
            ("m:created".into(), "5".into()),
            ("m:seen".into(), "5".into()),
            ("m:idle".into(), "15".into()),
            ("m:abs".into(), "25".into()),
            ("m:user".into(), "u".into()),
            ("d:n".into(), "3".into()),
        ]);
        assert_eq!(decode_record(fields).unwrap(), Some(record));
    }

    #[test]
    fn names_use_hash_tags_and_parse_back() {
        let names = Names::new("app*1");
        let key = SessionKey::derive("t", "k");
        let name = names.session(&key);
        assert_eq!(name, format!("app*1:s:{{{}}}", key.to_hex()));
        assert_eq!(names.parse_session(name.as_bytes()), Some(key));
        assert_eq!(names.parse_session(b"app*1:u:{00}"), None);
        assert_eq!(names.session_pattern(), "app\\*1:s:{*");
        let index = names.user_index("alice{x}");
        assert!(index.starts_with("app*1:u:{") && index.ends_with('}'));
        assert_eq!(index.matches('{').count(), 1);
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(validate_prefix("keycard").is_ok());
        assert!(validate_prefix("my-app:sessions").is_ok());
        for bad in ["", "a{b", "a}b", "a b", "a\nb"] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
