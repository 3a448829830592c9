//! Flask's tagged JSON (`flask.json.tag.TaggedJSONSerializer`) as Rust values.
//!
//! Flask stores Python types JSON has no word for as one-key objects whose key
//! is a tag: ` t` tuple, ` b` bytes (standard base64), ` u` UUID (32 hex
//! digits), ` d` datetime (HTTP date), ` m` Markup (HTML-safe string), and
//! ` di` for a plain one-key dict whose key happens to be a tag (the key gets
//! a `__` suffix). [`FlaskValue`] has one variant per type, so a cookie read
//! from Flask and written back by keycard carries the same tags, and a plain
//! dict that looks like a tag stays a plain dict.

use super::http_date::HttpDate;
use crate::CodecError;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde_json::{Map, Number, Value};
use std::collections::BTreeMap;

/// Whether every integer in the JSON text `json` fits an `i64` or a `u64`.
///
/// Python's integers are unbounded and Flask writes them as they are, but a
/// `serde_json::Value` holds a larger one as the nearest float: 2**64 would
/// come back as 18446744073709551616.0. [`FlaskCodec`](super::FlaskCodec)
/// refuses such a cookie instead of changing its data. Meant for text that
/// already parsed as JSON (anything else answers `true` or `false` without
/// meaning); never panics.
///
/// ```
/// use keycard::codec::flask::json_integers_fit;
/// assert!(json_integers_fit(br#"{"n": -9223372036854775808, "f": 1e40, "s": "99999999999999999999"}"#));
/// assert!(!json_integers_fit(br#"{"n": 18446744073709551616}"#));
/// ```
pub fn json_integers_fit(json: &[u8]) -> bool {
    let mut rest = json;
    while let Some((&byte, tail)) = rest.split_first() {
        match byte {
            b'"' => rest = after_string(tail),
            b'-' | b'0'..=b'9' => {
                let len = rest
                    .iter()
                    .position(|b| !matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'))
                    .unwrap_or(rest.len());
                let (number, tail) = rest.split_at(len);
                rest = tail;
                let is_integer = !number.iter().any(|b| matches!(b, b'.' | b'e' | b'E'));
                if is_integer
                    && !std::str::from_utf8(number)
                        .is_ok_and(|n| n.parse::<i64>().is_ok() || n.parse::<u64>().is_ok())
                {
                    return false;
                }
            }
            _ => rest = tail,
        }
    }
    true
}

/// The text after a JSON string whose opening quote was just read.
fn after_string(mut rest: &[u8]) -> &[u8] {
    while let Some((&byte, tail)) = rest.split_first() {
        rest = match byte {
            b'\\' => tail.get(1..).unwrap_or_default(),
            b'"' => return tail,
            _ => tail,
        };
    }
    rest
}

/// The tags Flask registers by default (`TaggedJSONSerializer.default_tags`).
const TAGS: [&str; 6] = [" di", " t", " b", " m", " u", " d"];

/// Python's `base64.b64decode` accepts missing padding and stray trailing
/// bits; Flask's own output is canonical either way.
const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A value in a Flask session: JSON plus the types Flask's tagged JSON adds.
///
/// ```
/// use keycard::codec::flask::{FlaskValue, HttpDate};
/// use serde_json::json;
///
/// let tuple = FlaskValue::Tuple(vec![1.into(), "a".into()]);
/// assert_eq!(tuple.to_tagged_json(), json!({" t": [1, "a"]}));
/// assert_eq!(FlaskValue::from_tagged_json(json!({" t": [1, "a"]}))?, tuple);
///
/// let when = FlaskValue::DateTime(HttpDate::from_unix(0).unwrap());
/// assert_eq!(when.to_tagged_json(), json!({" d": "Thu, 01 Jan 1970 00:00:00 GMT"}));
///
/// // Plain JSON is taken as is: a dict that looks like a tag stays a dict
/// // (Flask escapes it with ` di`).
/// let plain = FlaskValue::from(json!({" t": [1]}));
/// assert_eq!(plain.to_tagged_json(), json!({" di": {" t__": [1]}}));
/// # Ok::<(), keycard::CodecError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlaskValue {
    /// `None`.
    Null,
    /// `bool`.
    Bool(bool),
    /// `int` or `float`.
    Number(Number),
    /// `str`.
    String(String),
    /// `list`.
    List(Vec<FlaskValue>),
    /// `dict` (keys sorted, as Flask writes them).
    Dict(BTreeMap<String, FlaskValue>),
    /// `tuple` (tag ` t`).
    Tuple(Vec<FlaskValue>),
    /// `bytes` (tag ` b`).
    Bytes(Vec<u8>),
    /// `uuid.UUID` (tag ` u`), as its 128-bit integer (`UUID.int`).
    Uuid(u128),
    /// `datetime.datetime` in UTC, to the second (tag ` d`).
    DateTime(HttpDate),
    /// `markupsafe.Markup`: a string already safe as HTML (tag ` m`).
    Markup(String),
}

impl FlaskValue {
    /// Reads Flask's tagged JSON, as `TaggedJSONSerializer.loads` does after
    /// parsing: inner values first, then any one-key object whose key is a tag.
    ///
    /// Errors ([`CodecError::Malformed`]) where Flask would fail or drop the
    /// value: a tag over the wrong JSON type, bad base64, a UUID that is not
    /// 32 hex digits, a date that is not an HTTP date of the years 100-9999.
    ///
    /// ```
    /// use keycard::codec::flask::FlaskValue;
    /// use serde_json::json;
    /// let bytes = FlaskValue::from_tagged_json(json!({" b": "AAE="}))?;
    /// assert_eq!(bytes, FlaskValue::Bytes(vec![0, 1]));
    /// assert!(FlaskValue::from_tagged_json(json!({" u": "not-a-uuid"})).is_err());
    /// # Ok::<(), keycard::CodecError>(())
    /// ```
    pub fn from_tagged_json(value: Value) -> Result<Self, CodecError> {
        Ok(match value {
            Value::Null => FlaskValue::Null,
            Value::Bool(b) => FlaskValue::Bool(b),
            Value::Number(n) => FlaskValue::Number(n),
            Value::String(s) => FlaskValue::String(s),
            Value::Array(items) => FlaskValue::List(list_from_tagged(items)?),
            Value::Object(map) => {
                let tagged = map.len() == 1 && map.keys().all(|k| TAGS.contains(&k.as_str()));
                let mut entries = map.into_iter();
                match entries.next() {
                    Some((tag, inner)) if tagged => untag(&tag, Self::from_tagged_json(inner)?)?,
                    first => FlaskValue::Dict(
                        first
                            .into_iter()
                            .chain(entries)
                            .map(|(k, v)| Ok((k, Self::from_tagged_json(v)?)))
                            .collect::<Result<_, CodecError>>()?,
                    ),
                }
            }
        })
    }

    /// Writes Flask's tagged JSON, as `TaggedJSONSerializer.tag` does.
    ///
    /// ```
    /// use keycard::codec::flask::FlaskValue;
    /// use serde_json::json;
    /// let id = FlaskValue::Uuid(0x0123456789abcdef0123456789abcdef);
    /// assert_eq!(id.to_tagged_json(), json!({" u": "0123456789abcdef0123456789abcdef"}));
    /// ```
    pub fn to_tagged_json(&self) -> Value {
        let tagged = |tag: &str, inner: Value| {
            let mut map = Map::new();
            map.insert(tag.to_owned(), inner);
            Value::Object(map)
        };
        match self {
            FlaskValue::Null => Value::Null,
            FlaskValue::Bool(b) => Value::Bool(*b),
            FlaskValue::Number(n) => Value::Number(n.clone()),
            FlaskValue::String(s) => Value::String(s.clone()),
            FlaskValue::List(items) => {
                Value::Array(items.iter().map(Self::to_tagged_json).collect())
            }
            FlaskValue::Dict(map) => dict_to_tagged_json(map),
            FlaskValue::Tuple(items) => tagged(
                " t",
                Value::Array(items.iter().map(Self::to_tagged_json).collect()),
            ),
            FlaskValue::Bytes(bytes) => tagged(" b", Value::String(STANDARD.encode(bytes))),
            FlaskValue::Uuid(uuid) => tagged(" u", Value::String(format!("{uuid:032x}"))),
            FlaskValue::DateTime(date) => tagged(" d", Value::String(date.to_string())),
            FlaskValue::Markup(s) => tagged(" m", Value::String(s.clone())),
        }
    }

    /// The string of a `String` value (not of `Markup`).
    ///
    /// ```
    /// use keycard::codec::flask::FlaskValue;
    /// assert_eq!(FlaskValue::from("hi").as_str(), Some("hi"));
    /// assert_eq!(FlaskValue::from(1).as_str(), None);
    /// ```
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FlaskValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer of a `Number` value that fits an `i64`.
    ///
    /// ```
    /// use keycard::codec::flask::FlaskValue;
    /// assert_eq!(FlaskValue::from(-3).as_i64(), Some(-3));
    /// ```
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            FlaskValue::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    /// The value of a `Bool`.
    ///
    /// ```
    /// use keycard::codec::flask::FlaskValue;
    /// assert_eq!(FlaskValue::from(true).as_bool(), Some(true));
    /// ```
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            FlaskValue::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

fn list_from_tagged(items: Vec<Value>) -> Result<Vec<FlaskValue>, CodecError> {
    items
        .into_iter()
        .map(FlaskValue::from_tagged_json)
        .collect()
}

/// A dict as Flask tags it: a one-key dict whose key is a tag is escaped
/// (`TagDict`), any other dict has its values tagged (`PassDict`).
pub(crate) fn dict_to_tagged_json(map: &BTreeMap<String, FlaskValue>) -> Value {
    let mut out = Map::new();
    if let (1, Some((key, value))) = (map.len(), map.iter().next()) {
        if TAGS.contains(&key.as_str()) {
            let mut inner = Map::new();
            inner.insert(format!("{key}__"), value.to_tagged_json());
            out.insert(" di".to_owned(), Value::Object(inner));
            return Value::Object(out);
        }
    }
    for (key, value) in map {
        out.insert(key.clone(), value.to_tagged_json());
    }
    Value::Object(out)
}

/// `JSONTag.to_python` of each default tag, over an already untagged value.
fn untag(tag: &str, inner: FlaskValue) -> Result<FlaskValue, CodecError> {
    let malformed = |what| CodecError::Malformed(what);
    Ok(match (tag, inner) {
        (" t", FlaskValue::List(items)) => FlaskValue::Tuple(items),
        (" b", FlaskValue::String(text)) => FlaskValue::Bytes(
            LENIENT_STANDARD
                .decode(text)
                .map_err(|_| malformed("bad base64 in a ` b` tag"))?,
        ),
        (" m", FlaskValue::String(text)) => FlaskValue::Markup(text),
        (" u", FlaskValue::String(text)) => {
            FlaskValue::Uuid(parse_uuid(&text).ok_or(malformed("bad UUID in a ` u` tag"))?)
        }
        (" d", FlaskValue::String(text)) => {
            FlaskValue::DateTime(HttpDate::parse(&text).ok_or(malformed("bad date in a ` d` tag"))?)
        }
        (" di", FlaskValue::Dict(map)) if map.len() == 1 => {
            // TagDict.to_python: the key minus its last two characters (`__`).
            let Some((key, value)) = map.into_iter().next() else {
                return Err(malformed("empty ` di` tag"));
            };
            let mut chars = key.chars();
            chars.next_back();
            chars.next_back();
            FlaskValue::Dict(BTreeMap::from([(chars.as_str().to_owned(), value)]))
        }
        _ => return Err(malformed("a Flask tag holds the wrong JSON type")),
    })
}

/// Python's `uuid.UUID(text)`: optional `urn:`/`uuid:` prefixes, braces and
/// hyphens around exactly 32 hex digits.
fn parse_uuid(text: &str) -> Option<u128> {
    let text = text.replace("urn:", "").replace("uuid:", "");
    let hex: String = text.trim_matches(|c| c == '{' || c == '}').replace('-', "");
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(&hex, 16).ok()
}

impl From<Value> for FlaskValue {
    /// Plain JSON, with no tag read: `{" t": [1]}` is a dict here.
    fn from(value: Value) -> Self {
        match value {
            Value::Null => FlaskValue::Null,
            Value::Bool(b) => FlaskValue::Bool(b),
            Value::Number(n) => FlaskValue::Number(n),
            Value::String(s) => FlaskValue::String(s),
            Value::Array(items) => FlaskValue::List(items.into_iter().map(Self::from).collect()),
            Value::Object(map) => {
                FlaskValue::Dict(map.into_iter().map(|(k, v)| (k, Self::from(v))).collect())
            }
        }
    }
}

impl From<&str> for FlaskValue {
    fn from(value: &str) -> Self {
        FlaskValue::String(value.to_owned())
    }
}

impl From<String> for FlaskValue {
    fn from(value: String) -> Self {
        FlaskValue::String(value)
    }
}

impl From<bool> for FlaskValue {
    fn from(value: bool) -> Self {
        FlaskValue::Bool(value)
    }
}

impl From<i64> for FlaskValue {
    fn from(value: i64) -> Self {
        FlaskValue::Number(value.into())
    }
}

impl From<i32> for FlaskValue {
    fn from(value: i32) -> Self {
        FlaskValue::Number(value.into())
    }
}

impl From<u64> for FlaskValue {
    fn from(value: u64) -> Self {
        FlaskValue::Number(value.into())
    }
}

impl From<HttpDate> for FlaskValue {
    fn from(value: HttpDate) -> Self {
        FlaskValue::DateTime(value)
    }
}

/// Compact JSON exactly as Flask writes a session: no spaces, keys sorted
/// (serde_json's map is a `BTreeMap`, or keeps the sorted insertion order of
/// [`dict_to_tagged_json`]), and Python's `ensure_ascii`: every character
/// outside `' '..='~'` that serde_json leaves as is is written `\uXXXX`
/// (UTF-16, lower-case hex). JSON puts such characters only inside strings,
/// so escaping them in the whole text is safe.
pub(crate) fn python_json(value: &Value) -> Result<String, CodecError> {
    let text = serde_json::to_string(value)
        .map_err(|_| CodecError::Malformed("session could not be written as JSON"))?;
    if text.bytes().all(|b| b < 0x7f) {
        return Ok(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut units = [0u16; 2];
    for c in text.chars() {
        if u32::from(c) < 0x7f {
            out.push(c);
            continue;
        }
        for unit in c.encode_utf16(&mut units) {
            out.push_str(&format!("\\u{unit:04x}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_tag_round_trips() {
        let tagged = json!({
            "tuple": {" t": [1, {" b": "AP8="}]},
            "bytes": {" b": "aGk="},
            "uuid": {" u": "12345678123456781234567812345678"},
            "date": {" d": "Wed, 21 Oct 2015 07:28:00 GMT"},
            "markup": {" m": "<b>hi</b>"},
            "escaped": {" di": {" t__": {" t": ["x"]}}},
            "plain": {"a": [1, 2.5, null, true, "s"]},
        });
        let value = FlaskValue::from_tagged_json(tagged.clone()).unwrap();
        let FlaskValue::Dict(map) = &value else {
            panic!("not a dict")
        };
        assert_eq!(
            map["tuple"],
            FlaskValue::Tuple(vec![1.into(), FlaskValue::Bytes(vec![0, 255])])
        );
        assert_eq!(
            map["uuid"],
            FlaskValue::Uuid(0x12345678123456781234567812345678)
        );
        assert_eq!(
            map["escaped"],
            FlaskValue::Dict(BTreeMap::from([(
                " t".to_owned(),
                FlaskValue::Tuple(vec!["x".into()])
            )]))
        );
        assert_eq!(value.to_tagged_json(), tagged);
    }

    #[test]
    fn uuid_accepts_python_spellings() {
        let want = Some(0x12345678123456781234567812345678);
        assert_eq!(parse_uuid("12345678-1234-5678-1234-567812345678"), want);
        assert_eq!(parse_uuid("{12345678-1234-5678-1234-567812345678}"), want);
        assert_eq!(
            parse_uuid("urn:uuid:12345678123456781234567812345678"),
            want
        );
        assert_eq!(parse_uuid("+2345678123456781234567812345678"), None);
        assert_eq!(parse_uuid("1234"), None);
    }

    #[test]
    fn wrong_tag_contents_are_malformed() {
        for bad in [
            json!({" t": "abc"}),
            json!({" b": 5}),
            json!({" b": "***"}),
            json!({" m": [1]}),
            json!({" u": "zz"}),
            json!({" d": "yesterday"}),
            json!({" di": 1}),
            json!({" di": {"a__": 1, "b__": 2}}),
        ] {
            assert!(FlaskValue::from_tagged_json(bad.clone()).is_err(), "{bad}");
        }
        // Not tags: two keys, or an unknown tag.
        assert!(FlaskValue::from_tagged_json(json!({" t": [1], "x": 1})).is_ok());
        assert!(FlaskValue::from_tagged_json(json!({" z": 1})).is_ok());
    }

    #[test]
    fn json_text_matches_python() {
        let value = json!({"b": "é\u{7f}😀\n", "a": [1, 2.5], "c": {" m": "<"}});
        assert_eq!(
            python_json(&value).unwrap(),
            r#"{"a":[1,2.5],"b":"\u00e9\u007f\ud83d\ude00\n","c":{" m":"<"}}"#
        );
    }
}
