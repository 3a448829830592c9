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
use redis::{FromRedisValue, RedisResult};
use serde_json::{Map, Value};

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
        self.name(":s:{", key)
    }

    /// `{prefix}:u:{<hex of derived key>}`.
    pub(crate) fn user_index(&self, user_id: &str) -> String {
        self.name(":u:{", &SessionKey::derive(USER_INDEX_PURPOSE, user_id))
    }

    /// `{prefix}{kind}<hex>}`, written into one allocation: every store call
    /// names its key, so this is on every request's path.
    fn name(&self, kind: &str, key: &SessionKey) -> String {
        let mut name = String::with_capacity(self.prefix.len() + kind.len() + 65);
        name.push_str(&self.prefix);
        name.push_str(kind);
        key.write_hex(&mut name);
        name.push('}');
        name
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

/// A session hash's fields and values, as Redis sent them (`HGETALL`, or a
/// script returning its output).
///
/// A list, not a map: a session has a handful of fields and each is read
/// once, so a hash map built per load cost more than the lookups it saved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fields(pub(crate) Vec<(Vec<u8>, Vec<u8>)>);

impl FromRedisValue for Fields {
    fn from_redis_value(value: &redis::Value) -> RedisResult<Self> {
        Self::from_owned_redis_value(value.clone())
    }

    /// A flat array of field, value, field, value... (RESP2) or a map (RESP3).
    /// Anything else, an odd-length array or a value that is not a string, is
    /// a type error (never a panic: a script's reply is not trusted).
    fn from_owned_redis_value(value: redis::Value) -> RedisResult<Self> {
        let pairs = match value {
            redis::Value::Nil => Vec::new(),
            redis::Value::Array(items) if items.len() % 2 == 0 => {
                let mut pairs = Vec::with_capacity(items.len() / 2);
                let mut items = items.into_iter();
                while let (Some(field), Some(value)) = (items.next(), items.next()) {
                    pairs.push((bytes(field)?, bytes(value)?));
                }
                pairs
            }
            redis::Value::Map(items) => items
                .into_iter()
                .map(|(field, value)| Ok((bytes(field)?, bytes(value)?)))
                .collect::<RedisResult<_>>()?,
            // RESP3 metadata around the reply: the reply is inside.
            redis::Value::Attribute { data, .. } => return Self::from_owned_redis_value(*data),
            other => return Err(type_error(&other)),
        };
        Ok(Fields(pairs))
    }
}

fn bytes(value: redis::Value) -> RedisResult<Vec<u8>> {
    match value {
        redis::Value::BulkString(bytes) => Ok(bytes),
        redis::Value::SimpleString(text) => Ok(text.into_bytes()),
        other => Err(type_error(&other)),
    }
}

/// Names the reply's shape only: its values are session data (the CSRF
/// secret, the login) and must not reach a log through the error text.
fn type_error(value: &redis::Value) -> redis::RedisError {
    let shape = match value {
        redis::Value::Array(items) => format!("an array of {} items", items.len()),
        redis::Value::Map(items) => format!("a map of {} entries", items.len()),
        redis::Value::BulkString(_) | redis::Value::SimpleString(_) => "a string".into(),
        redis::Value::Int(_) => "an integer".into(),
        _ => "another type".into(),
    };
    redis::RedisError::from((
        redis::ErrorKind::TypeError,
        "a session hash reply that is not a list of field/value strings",
        shape,
    ))
}

/// created_at, last_seen, idle and absolute deadline, from layout 2's `v`
/// field, or from layout 1's four time fields (`v` = "1").
fn times(version: Vec<u8>, layout_1: [Option<Vec<u8>>; 4]) -> Result<[i64; 4], StoreError> {
    let version = text(F_VERSION, version)?;
    let mut out = [0; 4];
    if version == "1" {
        let names = [F1_CREATED, F1_SEEN, F1_IDLE, F1_ABS];
        for ((slot, field), bytes) in out.iter_mut().zip(names).zip(layout_1) {
            let bytes = bytes.ok_or_else(|| corrupt(format_args!("missing field {field:?}")))?;
            *slot = integer(field, &text(field, bytes)?)?;
        }
        return Ok(out);
    }
    let mut parts = version.split(' ');
    if parts.next() != Some(LAYOUT_VERSION) {
        return Err(corrupt(format_args!("unknown layout version {version:?}")));
    }
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

/// Rebuilds a record from a session hash's fields. `Ok(None)` for an empty
/// hash (Redis has no empty hashes: the key does not exist). Anything
/// malformed is [`StoreError::Corrupt`], never a panic: the bytes may have
/// been written by anyone with access to the server.
pub(crate) fn decode_record(fields: Fields) -> Result<Option<Record>, StoreError> {
    if fields.0.is_empty() {
        return Ok(None);
    }
    let mut version = None;
    let mut layout_1: [Option<Vec<u8>>; 4] = Default::default();
    let (mut user_id, mut ip, mut user_agent) = (None, None, None);
    let mut data = Map::new();
    for (field, value) in fields.0 {
        match field.as_slice() {
            b"v" => version = Some(value),
            b"m:created" => layout_1[0] = Some(value),
            b"m:seen" => layout_1[1] = Some(value),
            b"m:idle" => layout_1[2] = Some(value),
            b"m:abs" => layout_1[3] = Some(value),
            b"m:user" => user_id = Some(text(F_USER, value)?),
            b"m:ip" => ip = Some(text(F_IP, value)?),
            b"m:ua" => user_agent = Some(text(F_UA, value)?),
            other => {
                // Unknown non-data fields are skipped rather than rejected, so
                // a reader of this version tolerates metadata a later patch adds.
                let Some(key) = other.strip_prefix(DATA_PREFIX.as_bytes()) else {
                    continue;
                };
                let key = text("data key", key.to_vec())?;
                let value: Value = serde_json::from_slice(&value)
                    .map_err(|e| corrupt(format_args!("data key {key:?}: {e}")))?;
                data.insert(key, value);
            }
        }
    }
    let version = version.ok_or_else(|| corrupt("missing layout version"))?;
    let [created_at, last_seen, idle_deadline, absolute_deadline] = times(version, layout_1)?;
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

    fn to_fields(fields: Vec<(String, String)>) -> Fields {
        Fields(
            fields
                .into_iter()
                .map(|(k, v)| (k.into_bytes(), v.into_bytes()))
                .collect(),
        )
    }

    #[test]
    fn fields_round_trip() {
        let mut record = Record::new(5, 10, 20);
        record.data.insert("a".into(), json!({"b": [1, "two"]}));
        record.data.insert("".into(), json!(null));
        record.user_id = Some("ü".into());
        record.ip = Some("::1".into());
        let decoded = decode_record(to_fields(record_fields(&record))).unwrap();
        assert_eq!(decoded, Some(record));
        assert_eq!(decode_record(Fields::default()).unwrap(), None);
    }

    #[test]
    fn malformed_hashes_are_corrupt() {
        let mut record = Record::new(5, 10, 20);
        record.data.insert("x".into(), json!(1));
        let good = to_fields(record_fields(&record));
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
            fields.0.retain(|(name, _)| name.as_slice() != field);
            if let Some(value) = value {
                fields.0.push((field.to_vec(), value.to_vec()));
            }
            assert!(
                matches!(decode_record(fields), Err(StoreError::Corrupt(_))),
                "case {i}"
            );
        }
    }

    #[test]
    fn replies_become_fields_or_type_errors() {
        use redis::Value as V;
        let bulk = |s: &str| V::BulkString(s.as_bytes().to_vec());
        let pairs = vec![
            (b"v".to_vec(), b"x".to_vec()),
            (b"d:n".to_vec(), b"1".to_vec()),
        ];
        let flat = V::Array(vec![bulk("v"), bulk("x"), bulk("d:n"), bulk("1")]);
        assert_eq!(
            Fields::from_owned_redis_value(flat.clone()).unwrap().0,
            pairs
        );
        assert_eq!(Fields::from_redis_value(&flat).unwrap().0, pairs);
        let map = V::Map(vec![
            (bulk("v"), bulk("x")),
            (V::SimpleString("d:n".into()), bulk("1")),
        ]);
        assert_eq!(Fields::from_owned_redis_value(map).unwrap().0, pairs);
        assert_eq!(
            Fields::from_owned_redis_value(V::Nil).unwrap(),
            Fields::default()
        );
        assert_eq!(
            Fields::from_owned_redis_value(V::Array(vec![])).unwrap(),
            Fields::default()
        );
        let wrapped = V::Attribute {
            data: Box::new(V::Array(vec![bulk("v"), bulk("x"), bulk("d:n"), bulk("1")])),
            attributes: vec![],
        };
        assert_eq!(Fields::from_owned_redis_value(wrapped).unwrap().0, pairs);
        let secret = V::Array(vec![bulk("d:_csrf"), bulk("s3cret"), bulk("v")]);
        let error = Fields::from_owned_redis_value(secret).unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
        for bad in [
            V::Array(vec![bulk("v"), bulk("x"), bulk("d:n")]),
            V::Array(vec![bulk("v"), V::Int(1)]),
            V::Array(vec![V::Array(vec![]), bulk("x")]),
            V::Int(3),
            bulk("v"),
        ] {
            let error = Fields::from_owned_redis_value(bad.clone()).unwrap_err();
            assert_eq!(error.kind(), redis::ErrorKind::TypeError, "{bad:?}");
        }
    }

    #[test]
    fn layout_1_is_still_read() {
        let mut record = Record::new(5, 10, 20);
        record.data.insert("n".into(), json!(3));
        record.user_id = Some("u".into());
        let fields = to_fields(vec![
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
