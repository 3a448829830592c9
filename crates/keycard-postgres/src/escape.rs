//! A reversible escape for the one character PostgreSQL text cannot hold.
//!
//! `jsonb` and `text` reject U+0000, yet it is a valid character in a JSON
//! string and in a Rust `String`, so a session value containing it would fail
//! to save. Every string we store (data keys and values, user ID, client
//! details) goes through [`escape`]: U+0000 becomes `MARK 0` and `MARK` itself
//! becomes `MARK MARK`, so the mapping is one-to-one and a string with neither
//! character (nearly all of them) is stored exactly as written.

use serde_json::{Map, Value};
use std::borrow::Cow;

/// A noncharacter: valid UTF-8 that no text is meant to contain.
const MARK: char = '\u{FFFF}';

fn needs_escape(text: &str) -> bool {
    text.contains(['\0', MARK])
}

/// The stored form of `text`.
pub(crate) fn escape(text: &str) -> Cow<'_, str> {
    if !needs_escape(text) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\0' => out.extend([MARK, '0']),
            MARK => out.extend([MARK, MARK]),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The original of a stored string. A lone mark (which [`escape`] never
/// writes) is kept as it is rather than rejected.
pub(crate) fn unescape(text: String) -> String {
    if !text.contains(MARK) {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == MARK {
            match chars.peek() {
                Some('0') => {
                    chars.next();
                    out.push('\0');
                }
                Some(&MARK) => {
                    chars.next();
                    out.push(MARK);
                }
                _ => out.push(MARK),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn value_needs_escape(value: &Value) -> bool {
    match value {
        Value::String(s) => needs_escape(s),
        Value::Array(items) => items.iter().any(value_needs_escape),
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| needs_escape(k) || value_needs_escape(v)),
        _ => false,
    }
}

/// The stored form of a JSON value: every string and object key escaped.
pub(crate) fn escape_value(value: &Value) -> Cow<'_, Value> {
    if !value_needs_escape(value) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(match value {
        Value::String(s) => Value::String(escape(s).into_owned()),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| escape_value(v).into_owned()).collect())
        }
        Value::Object(map) => Value::Object(escape_map(map).into_owned()),
        other => other.clone(),
    })
}

/// The stored form of a data map.
pub(crate) fn escape_map(map: &Map<String, Value>) -> Cow<'_, Map<String, Value>> {
    if !map
        .iter()
        .any(|(k, v)| needs_escape(k) || value_needs_escape(v))
    {
        return Cow::Borrowed(map);
    }
    Cow::Owned(
        map.iter()
            .map(|(k, v)| (escape(k).into_owned(), escape_value(v).into_owned()))
            .collect(),
    )
}

/// The original of a stored JSON value.
pub(crate) fn unescape_value(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(unescape(s)),
        Value::Array(items) => Value::Array(items.into_iter().map(unescape_value).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (unescape(k), unescape_value(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_leaves_plain_text_alone() {
        for text in [
            "",
            "plain",
            "a\0b",
            "\u{FFFF}",
            "\u{FFFF}0",
            "\0\0\u{FFFF}\u{FFFF}0",
            "x\u{FFFF}",
        ] {
            let stored = escape(text);
            assert!(!stored.contains('\0'));
            assert_eq!(unescape(stored.into_owned()), text);
        }
        assert!(matches!(escape("naïve ☃"), Cow::Borrowed(_)));
    }

    #[test]
    fn escapes_values_deeply() {
        let value = json!({"k\0": ["\0", {"\u{FFFF}": "v\0"}], "n": 1});
        let stored = escape_value(&value).into_owned();
        assert!(!stored.to_string().contains("\\u0000"));
        assert_eq!(unescape_value(stored), value);
    }
}
