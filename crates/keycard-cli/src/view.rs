//! One session as `sessions show` and `cookie inspect` print it.

use crate::output::{sanitize, time};
use keycard::{Record, SessionKey, UnixMillis};
use serde_json::{json, Map, Value};

/// Data keys whose values are never printed, even with `--values`: the CSRF
/// secret lets whoever reads it forge requests in that session.
const HIDDEN: &[&str] = &[keycard::reserved::CSRF_SECRET];
const HIDDEN_VALUE: &str = "<hidden>";

/// Whether a record is live at `now`, or which deadline it passed.
pub fn status(record: &Record, now: UnixMillis) -> &'static str {
    if now >= record.absolute_deadline {
        "expired (absolute timeout)"
    } else if now >= record.idle_deadline {
        "expired (idle timeout)"
    } else {
        "live"
    }
}

/// The data with hidden values replaced.
fn visible_data(data: &Map<String, Value>) -> Map<String, Value> {
    data.iter()
        .map(|(k, v)| {
            let value = if HIDDEN.contains(&k.as_str()) {
                Value::from(HIDDEN_VALUE)
            } else {
                v.clone()
            };
            (k.clone(), value)
        })
        .collect()
}

/// The record as JSON: metadata, the data keys, and the data itself when
/// `values` (never the session ID: only its key's handle).
pub fn record_json(key: &SessionKey, record: &Record, now: UnixMillis, values: bool) -> Value {
    let summary = record.summary(*key);
    let mut keys: Vec<&String> = record.data.keys().collect();
    keys.sort();
    let mut out = json!({
        "handle": key.handle(),
        "key": key.to_hex(),
        "user_id": record.user_id,
        "kind": summary.kind,
        "created_at": record.created_at,
        "last_seen": record.last_seen,
        "idle_deadline": record.idle_deadline,
        "absolute_deadline": record.absolute_deadline,
        "expires_at": record.expires_at(),
        "status": status(record, now),
        "expired": record.is_expired(now),
        "ip": record.ip,
        "user_agent": record.user_agent,
        "data_keys": keys,
    });
    if values {
        out["data"] = Value::Object(visible_data(&record.data));
    }
    out
}

/// The record as `label  value` lines for a terminal.
pub fn record_text(key: &SessionKey, record: &Record, now: UnixMillis, values: bool) -> String {
    let summary = record.summary(*key);
    let optional = |v: &Option<String>| v.as_deref().map_or_else(|| "-".to_owned(), sanitize);
    let mut lines = vec![
        ("handle", key.handle()),
        ("key", key.to_hex()),
        ("user", optional(&record.user_id)),
        ("kind", sanitize(&summary.kind)),
        ("status", status(record, now).to_owned()),
        ("created", utc(record.created_at)),
        ("last seen", utc(record.last_seen)),
        ("idle deadline", utc(record.idle_deadline)),
        ("absolute deadline", utc(record.absolute_deadline)),
        ("ip", optional(&record.ip)),
        ("user agent", optional(&record.user_agent)),
    ];
    let count = record.data.len();
    lines.push((
        "data",
        format!("{count} key{}", if count == 1 { "" } else { "s" }),
    ));
    let mut out = String::new();
    for (label, value) in lines {
        out.push_str(&format!("{label:<18} {value}\n"));
    }
    let data = visible_data(&record.data);
    let mut keys: Vec<&String> = data.keys().collect();
    keys.sort();
    for k in keys {
        match (values, data.get(k)) {
            (true, Some(v)) => out.push_str(&format!(
                "  {} = {}\n",
                sanitize(k),
                sanitize(&v.to_string())
            )),
            _ => out.push_str(&format!("  {}\n", sanitize(k))),
        }
    }
    out
}

fn utc(millis: UnixMillis) -> String {
    format!("{} UTC", time(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csrf_secret_is_never_shown() {
        let mut record = Record::new(0, 10, 20);
        record
            .data
            .insert(keycard::reserved::CSRF_SECRET.into(), json!("s3cret"));
        record.data.insert("theme".into(), json!("dark"));
        let key = SessionKey::derive("test", "view");
        let shown = record_json(&key, &record, 5, true).to_string();
        assert!(!shown.contains("s3cret"));
        assert!(shown.contains("dark"));
        assert!(!record_text(&key, &record, 5, true).contains("s3cret"));
        assert_eq!(status(&record, 10), "expired (idle timeout)");
        assert_eq!(status(&record, 20), "expired (absolute timeout)");
    }
}
