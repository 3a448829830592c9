//! Flask's default session cookie, read and written in Flask's format, so a
//! Flask app and a Rust service can share one session.
//!
//! Flask's `SecureCookieSessionInterface` signs (it does not encrypt) the
//! session with itsdangerous' `URLSafeTimedSerializer`:
//!
//! ```text
//! cookie    = payload "." timestamp "." signature
//! payload   = base64url(json)  or  "." base64url(zlib(json))   (when shorter)
//! timestamp = base64url(seconds since the epoch, big-endian, leading zeros stripped)
//! signature = base64url(HMAC-SHA1(key, payload "." timestamp))
//! key       = HMAC-SHA1(SECRET_KEY, "cookie-session")
//! ```
//!
//! base64url is unpadded; `json` is Flask's tagged JSON ([`FlaskValue`]),
//! compact, keys sorted, non-ASCII escaped. Reading checks the signature
//! against `SECRET_KEY` and each of `SECRET_KEY_FALLBACKS`, then the age
//! against `PERMANENT_SESSION_LIFETIME` (31 days by default), and only then
//! decodes the payload; the inflated size is capped at 64 KiB.
//!
//! **The client can read every value** (base64 is not encryption): keep
//! secrets server-side. The cookie name is not bound in, unlike keycard's own
//! codecs, so `FlaskCodec` is not a [`CookieCodec`](crate::CookieCodec).

mod http_date;
mod value;

pub use http_date::HttpDate;
pub use value::{json_integers_fit, FlaskValue};

use super::{check_cookie_size, CodecError, MAX_COOKIE_SIZE};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha1::Sha1;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

/// itsdangerous' salt for Flask sessions (`SecureCookieSessionInterface.salt`).
const SALT: &[u8] = b"cookie-session";
/// Flask's `PERMANENT_SESSION_LIFETIME` default: 31 days.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(31 * 24 * 60 * 60);
/// The most a compressed payload may inflate to (zip bombs).
pub const MAX_INFLATED_SIZE: usize = 64 * 1024;
const SIGNATURE_LEN: usize = 20;

/// Python's base64 decoding (itsdangerous `base64_decode`) tolerates padding
/// and non-canonical trailing bits; only used after the signature checked out.
const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An itsdangerous signing key: `HMAC-SHA1(secret, salt)`. Wiped on drop.
type SigningKey = Zeroizing<[u8; SIGNATURE_LEN]>;

/// Reads and writes Flask's default session cookie.
///
/// Configure it as the Flask app is: `SECRET_KEY`, `SECRET_KEY_FALLBACKS`,
/// `PERMANENT_SESSION_LIFETIME` and `SESSION_COOKIE_NAME`. `Debug` shows no key.
///
/// ```
/// use keycard::codec::flask::{FlaskCodec, FlaskSession, FlaskValue};
/// use std::time::Duration;
///
/// let codec = FlaskCodec::new("new secret")
///     .with_fallbacks(["old secret"])
///     .with_max_age(Duration::from_secs(3600));
///
/// let mut session = FlaskSession::new();
/// session.insert("user_id", 42);
/// session.insert("cart", FlaskValue::Tuple(vec!["apple".into(), "pear".into()]));
/// let cookie = codec.encode(&session)?;
///
/// let read = codec.decode(&cookie)?;
/// assert_eq!(read.get("user_id").and_then(FlaskValue::as_i64), Some(42));
/// assert_eq!(read.values, session.values);
/// assert!(!read.stale_key);
///
/// // A cookie the old secret signed still opens, flagged for re-signing.
/// let old = FlaskCodec::new("old secret").encode(&session)?;
/// assert!(codec.decode(&old)?.stale_key);
/// # Ok::<(), keycard::CodecError>(())
/// ```
#[derive(Clone)]
pub struct FlaskCodec {
    /// `None` for an empty secret: Flask then has no session at all.
    current: Option<SigningKey>,
    fallbacks: Vec<SigningKey>,
    max_age: Option<Duration>,
    cookie_name: String,
}

impl FlaskCodec {
    /// A codec for Flask's `SECRET_KEY` (a Python `str` is its UTF-8 bytes),
    /// with no fallback, a 31-day maximum age and the cookie name `session`.
    ///
    /// As in Flask, an empty secret key means no session: every cookie is
    /// rejected ([`CodecError::BadSignature`]) and encoding fails
    /// ([`CodecError::UnknownKey`]).
    ///
    /// ```
    /// use keycard::codec::flask::FlaskCodec;
    /// let codec = FlaskCodec::new(b"bytes work too");
    /// assert_eq!(codec.cookie_name(), "session");
    /// ```
    pub fn new(secret_key: impl AsRef<[u8]>) -> Self {
        FlaskCodec {
            current: derive_key(secret_key.as_ref()),
            fallbacks: Vec::new(),
            max_age: Some(DEFAULT_MAX_AGE),
            cookie_name: "session".to_owned(),
        }
    }

    /// Flask's `SECRET_KEY_FALLBACKS`: older secrets that still verify (never
    /// sign). A cookie verified with one is decoded with
    /// [`FlaskSession::stale_key`] set. Empty secrets are ignored (in Flask
    /// they would let anyone forge a session).
    ///
    /// ```
    /// use keycard::codec::flask::FlaskCodec;
    /// let codec = FlaskCodec::new("current").with_fallbacks(["previous", "older"]);
    /// # let _ = codec;
    /// ```
    #[must_use]
    pub fn with_fallbacks<K: AsRef<[u8]>>(mut self, keys: impl IntoIterator<Item = K>) -> Self {
        self.fallbacks
            .extend(keys.into_iter().filter_map(|key| derive_key(key.as_ref())));
        self
    }

    /// Flask's `PERMANENT_SESSION_LIFETIME` (whole seconds count): an older
    /// cookie is [`CodecError::Expired`]. Flask checks it whether or not the
    /// session is permanent; so does keycard.
    ///
    /// ```
    /// use keycard::codec::flask::FlaskCodec;
    /// use std::time::Duration;
    /// let codec = FlaskCodec::new("s").with_max_age(Duration::from_secs(12 * 3600));
    /// # let _ = codec;
    /// ```
    #[must_use]
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// No age check: for inspecting old cookies and for fixed test vectors,
    /// never for serving requests.
    ///
    /// ```
    /// use keycard::codec::flask::{FlaskCodec, FlaskSession};
    /// let codec = FlaskCodec::new("s").without_max_age();
    /// let ancient = codec.encode_at(&FlaskSession::new(), 1)?;
    /// assert!(codec.decode(&ancient).is_ok());
    /// # Ok::<(), keycard::CodecError>(())
    /// ```
    #[must_use]
    pub fn without_max_age(mut self) -> Self {
        self.max_age = None;
        self
    }

    /// Flask's `SESSION_COOKIE_NAME` (default `session`): only used to check
    /// the 4096-byte cookie limit when encoding.
    ///
    /// ```
    /// use keycard::codec::flask::FlaskCodec;
    /// assert_eq!(FlaskCodec::new("s").with_cookie_name("app_session").cookie_name(), "app_session");
    /// ```
    #[must_use]
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// The cookie name this codec is configured for.
    ///
    /// ```
    /// use keycard::codec::flask::FlaskCodec;
    /// assert_eq!(FlaskCodec::new("s").cookie_name(), "session");
    /// ```
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// Verifies and decodes a cookie value now.
    ///
    /// Errors: [`CodecError::TooLarge`] for a value over 4096 bytes (more
    /// than a browser sends); [`CodecError::InflatedTooLarge`] for a payload
    /// inflating past 64 KiB; [`CodecError::BadSignature`] when no
    /// key verifies it; [`CodecError::Expired`] when it is older than the
    /// maximum age or dated in the future (as itsdangerous does);
    /// [`CodecError::Malformed`] for anything else that is not a Flask session.
    /// Never panics, whatever the input.
    ///
    /// ```
    /// use keycard::codec::flask::FlaskCodec;
    /// use keycard::CodecError;
    /// let codec = FlaskCodec::new("secret");
    /// assert_eq!(codec.decode("e30.Zr3rAA.bad").unwrap_err(), CodecError::BadSignature);
    /// ```
    pub fn decode(&self, value: &str) -> Result<FlaskSession, CodecError> {
        self.decode_at(value, unix_now())
    }

    /// [`decode`](Self::decode) as if the time were `now` (seconds since the
    /// Unix epoch).
    ///
    /// ```
    /// use keycard::codec::flask::{FlaskCodec, FlaskSession};
    /// use keycard::CodecError;
    /// let codec = FlaskCodec::new("secret");
    /// let cookie = codec.encode_at(&FlaskSession::new(), 1_000_000)?;
    /// assert!(codec.decode_at(&cookie, 1_000_000 + 31 * 86_400).is_ok());
    /// assert_eq!(codec.decode_at(&cookie, 1_000_001 + 31 * 86_400), Err(CodecError::Expired));
    /// # Ok::<(), CodecError>(())
    /// ```
    pub fn decode_at(&self, value: &str, now: u64) -> Result<FlaskSession, CodecError> {
        if value.len() > MAX_COOKIE_SIZE {
            return Err(CodecError::TooLarge(value.len()));
        }
        let Some((signed, signature)) = value.rsplit_once('.') else {
            return Err(CodecError::Malformed("Flask cookie has no signature"));
        };
        let stale_key = self.verify(signed.as_bytes(), signature)?;
        let Some((payload, timestamp)) = signed.rsplit_once('.') else {
            return Err(CodecError::Malformed("Flask cookie has no timestamp"));
        };
        let issued_at = decode_timestamp(timestamp)?;
        if let Some(max_age) = self.max_age {
            // itsdangerous: `age > max_age` or `age < 0` is expired.
            let age = i128::from(now) - i128::from(issued_at);
            if age > i128::from(max_age.as_secs()) || age < 0 {
                return Err(CodecError::Expired);
            }
        }
        let json = decode_payload(payload)?;
        let value: Value = serde_json::from_slice(&json).map_err(|_| {
            CodecError::Malformed(
                "Flask session is not JSON keycard can read (invalid JSON, a lone surrogate \\uD800-\\uDFFF, or nested deeper than 127 levels)",
            )
        })?;
        if !json_integers_fit(&json) {
            return Err(CodecError::Malformed(
                "Flask session holds an integer outside the 64-bit range (it would be read as a float)",
            ));
        }
        let FlaskValue::Dict(values) = FlaskValue::from_tagged_json(value)? else {
            return Err(CodecError::Malformed("Flask session is not a JSON object"));
        };
        Ok(FlaskSession {
            values,
            issued_at,
            stale_key,
        })
    }

    /// Encodes and signs `session` with the current secret, dated now, as
    /// Flask's `save_session` would.
    ///
    /// Errors: [`CodecError::TooLarge`] when the cookie (name, value and 100
    /// bytes of attributes) would be over 4096 bytes: Flask would send it and
    /// let browsers drop it, keycard refuses; [`CodecError::UnknownKey`] for
    /// an empty secret key.
    ///
    /// ```
    /// use keycard::codec::flask::{FlaskCodec, FlaskSession};
    /// use keycard::CodecError;
    /// let codec = FlaskCodec::new("secret");
    /// let mut session = FlaskSession::new();
    /// session.insert("big", "x".repeat(5000).as_str());
    /// // Compressible: fits.
    /// assert!(codec.encode(&session)?.starts_with('.'));
    /// let mut x = 0x2545_f491_4f6c_dd1d_u64; // xorshift: incompressible text
    /// let noise: String = (0..6000)
    ///     .map(|_| {
    ///         x ^= x << 13;
    ///         x ^= x >> 7;
    ///         x ^= x << 17;
    ///         char::from(b'a' + (x % 26) as u8)
    ///     })
    ///     .collect();
    /// session.insert("big", noise.as_str());
    /// assert!(matches!(codec.encode(&session), Err(CodecError::TooLarge(_))));
    /// # Ok::<(), CodecError>(())
    /// ```
    pub fn encode(&self, session: &FlaskSession) -> Result<String, CodecError> {
        self.encode_at(session, unix_now())
    }

    /// [`encode`](Self::encode) with the timestamp `issued_at` (seconds since
    /// the Unix epoch). Uncompressed payloads mostly come out byte for byte
    /// as Flask's; a float with a small exponent is spelled differently
    /// (`0.00003`, Python `3e-05`), and compressed ones differ in the zlib
    /// bytes (another deflate implementation, which also decides differently
    /// for a few small payloads whether compressing pays). Both sides read
    /// either form the same.
    ///
    /// ```
    /// use keycard::codec::flask::{FlaskCodec, FlaskSession};
    /// let cookie = FlaskCodec::new("secret").encode_at(&FlaskSession::new(), 1_700_000_000)?;
    /// assert!(cookie.starts_with("e30.ZVPxAA.")); // "{}" and the timestamp
    /// # Ok::<(), keycard::CodecError>(())
    /// ```
    pub fn encode_at(&self, session: &FlaskSession, issued_at: u64) -> Result<String, CodecError> {
        let Some(key) = &self.current else {
            return Err(CodecError::UnknownKey);
        };
        let json = session.to_json_string()?;
        let compressed = zlib(json.as_bytes())?;
        let mut out = String::new();
        // itsdangerous compresses only when that saves more than one byte.
        if compressed.len() < json.len().saturating_sub(1) {
            out.push('.');
            URL_SAFE_NO_PAD.encode_string(&compressed, &mut out);
        } else {
            URL_SAFE_NO_PAD.encode_string(json.as_bytes(), &mut out);
        }
        out.push('.');
        let timestamp = issued_at.to_be_bytes();
        let first = timestamp
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(timestamp.len());
        URL_SAFE_NO_PAD.encode_string(&timestamp[first..], &mut out);
        let signature = sign(key, out.as_bytes())?;
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut out);
        check_cookie_size(&self.cookie_name, out.len())?;
        Ok(out)
    }

    /// Checks `signature` over `signed` with every key, in constant time per
    /// key and without stopping at the first match. `Ok(true)`: a fallback
    /// verified it.
    fn verify(&self, signed: &[u8], signature: &str) -> Result<bool, CodecError> {
        let Some(current) = &self.current else {
            return Err(CodecError::BadSignature);
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| CodecError::BadSignature)?;
        if signature.len() != SIGNATURE_LEN {
            return Err(CodecError::BadSignature);
        }
        let by_current = sign(current, signed)?.ct_eq(signature.as_slice());
        let mut by_fallback = Choice::from(0);
        for key in &self.fallbacks {
            by_fallback |= sign(key, signed)?.ct_eq(signature.as_slice());
        }
        if bool::from(by_current) {
            Ok(false)
        } else if bool::from(by_fallback) {
            Ok(true)
        } else {
            Err(CodecError::BadSignature)
        }
    }
}

impl fmt::Debug for FlaskCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlaskCodec")
            .field("has_secret_key", &self.current.is_some())
            .field("fallbacks", &self.fallbacks.len())
            .field("max_age", &self.max_age)
            .field("cookie_name", &self.cookie_name)
            .finish()
    }
}

/// A Flask session: its values, and what the cookie said about it.
///
/// ```
/// use keycard::codec::flask::{FlaskSession, FlaskValue};
/// use serde_json::json;
///
/// let mut session = FlaskSession::new();
/// session.insert("n", 1);
/// session.set_permanent(true);
/// assert_eq!(session.to_json_string()?, r#"{"_permanent":true,"n":1}"#);
///
/// let plain = json!({"user": "ada"}).as_object().cloned().unwrap();
/// assert_eq!(FlaskSession::from(plain).get("user"), Some(&FlaskValue::from("ada")));
/// # Ok::<(), keycard::CodecError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlaskSession {
    /// The session's keys and values (Flask writes keys sorted).
    pub values: BTreeMap<String, FlaskValue>,
    /// When the cookie was signed, in seconds since the Unix epoch (0 for a
    /// session that was not read from a cookie).
    pub issued_at: u64,
    /// The cookie verified with a fallback secret, not the current one:
    /// encode the session again so it is signed with the current secret.
    pub stale_key: bool,
}

impl FlaskSession {
    /// An empty session.
    ///
    /// ```
    /// use keycard::codec::flask::FlaskSession;
    /// assert!(FlaskSession::new().values.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The value under `key`.
    ///
    /// ```
    /// use keycard::codec::flask::FlaskSession;
    /// assert_eq!(FlaskSession::new().get("missing"), None);
    /// ```
    pub fn get(&self, key: &str) -> Option<&FlaskValue> {
        self.values.get(key)
    }

    /// Sets `key` to `value`; returns the value it replaces.
    ///
    /// ```
    /// use keycard::codec::flask::FlaskSession;
    /// let mut session = FlaskSession::new();
    /// assert_eq!(session.insert("theme", "dark"), None);
    /// assert!(session.insert("theme", "light").is_some());
    /// ```
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: impl Into<FlaskValue>,
    ) -> Option<FlaskValue> {
        self.values.insert(key.into(), value.into())
    }

    /// Removes `key`; returns its value.
    ///
    /// ```
    /// use keycard::codec::flask::FlaskSession;
    /// let mut session = FlaskSession::new();
    /// session.insert("a", 1);
    /// assert!(session.remove("a").is_some());
    /// ```
    pub fn remove(&mut self, key: &str) -> Option<FlaskValue> {
        self.values.remove(key)
    }

    /// Flask's `session.permanent`: the `_permanent` key is `true`. Flask then
    /// gives the cookie an expiry; the signature's age is checked either way.
    ///
    /// ```
    /// use keycard::codec::flask::FlaskSession;
    /// assert!(!FlaskSession::new().is_permanent());
    /// ```
    pub fn is_permanent(&self) -> bool {
        self.values.get("_permanent").and_then(FlaskValue::as_bool) == Some(true)
    }

    /// Sets `session.permanent` as Flask does: `_permanent: true`, or no key.
    ///
    /// ```
    /// use keycard::codec::flask::FlaskSession;
    /// let mut session = FlaskSession::new();
    /// session.set_permanent(true);
    /// assert!(session.is_permanent());
    /// session.set_permanent(false);
    /// assert!(session.values.is_empty());
    /// ```
    pub fn set_permanent(&mut self, permanent: bool) {
        if permanent {
            self.values
                .insert("_permanent".to_owned(), FlaskValue::Bool(true));
        } else {
            self.values.remove("_permanent");
        }
    }

    /// Reads a session from Flask's tagged JSON (an object).
    ///
    /// ```
    /// use keycard::codec::flask::{FlaskSession, FlaskValue};
    /// use serde_json::json;
    /// let session = FlaskSession::from_tagged_json(json!({"b": {" b": "aGk="}}))?;
    /// assert_eq!(session.get("b"), Some(&FlaskValue::Bytes(b"hi".to_vec())));
    /// assert!(FlaskSession::from_tagged_json(json!([1])).is_err());
    /// # Ok::<(), keycard::CodecError>(())
    /// ```
    pub fn from_tagged_json(value: Value) -> Result<Self, CodecError> {
        match FlaskValue::from_tagged_json(value)? {
            FlaskValue::Dict(values) => Ok(FlaskSession {
                values,
                ..Self::default()
            }),
            _ => Err(CodecError::Malformed("Flask session is not a JSON object")),
        }
    }

    /// The session as Flask's tagged JSON.
    ///
    /// ```
    /// use keycard::codec::flask::{FlaskSession, FlaskValue};
    /// use serde_json::json;
    /// let mut session = FlaskSession::new();
    /// session.insert("m", FlaskValue::Markup("<b>".into()));
    /// assert_eq!(session.to_tagged_json(), json!({"m": {" m": "<b>"}}));
    /// ```
    pub fn to_tagged_json(&self) -> Value {
        value::dict_to_tagged_json(&self.values)
    }

    /// The JSON text Flask would sign for this session: tagged, compact, keys
    /// sorted, non-ASCII escaped as `\uXXXX`.
    ///
    /// ```
    /// use keycard::codec::flask::FlaskSession;
    /// let mut session = FlaskSession::new();
    /// session.insert("name", "Zoë");
    /// assert_eq!(session.to_json_string()?, r#"{"name":"Zo\u00eb"}"#);
    /// # Ok::<(), keycard::CodecError>(())
    /// ```
    pub fn to_json_string(&self) -> Result<String, CodecError> {
        value::python_json(&self.to_tagged_json())
    }
}

impl From<serde_json::Map<String, Value>> for FlaskSession {
    /// Plain JSON values, with no tag read (see [`FlaskValue`]'s `From<Value>`).
    fn from(map: serde_json::Map<String, Value>) -> Self {
        let values = map
            .into_iter()
            .map(|(k, v)| (k, FlaskValue::from(v)))
            .collect();
        FlaskSession {
            values,
            ..Self::default()
        }
    }
}

/// itsdangerous `derive_key` with `key_derivation="hmac"` and SHA-1.
fn derive_key(secret: &[u8]) -> Option<SigningKey> {
    if secret.is_empty() {
        return None;
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).ok()?;
    mac.update(SALT);
    Some(Zeroizing::new(mac.finalize().into_bytes().into()))
}

fn sign(key: &SigningKey, value: &[u8]) -> Result<[u8; SIGNATURE_LEN], CodecError> {
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac =
        Hmac::<Sha1>::new_from_slice(key.as_slice()).map_err(|_| CodecError::BadSignature)?;
    mac.update(value);
    Ok(mac.finalize().into_bytes().into())
}

/// itsdangerous `bytes_to_int(base64_decode(ts))`: at most 8 bytes, big-endian.
fn decode_timestamp(text: &str) -> Result<u64, CodecError> {
    let bytes = LENIENT_URL_SAFE
        .decode(text)
        .map_err(|_| CodecError::Malformed("Flask timestamp is not base64url"))?;
    if bytes.len() > 8 {
        return Err(CodecError::Malformed("Flask timestamp is over 8 bytes"));
    }
    Ok(bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
}

/// The JSON bytes of a payload: base64url, zlib-inflated (at most
/// [`MAX_INFLATED_SIZE`] bytes) when it starts with `.`.
fn decode_payload(payload: &str) -> Result<Vec<u8>, CodecError> {
    let (compressed, payload) = match payload.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, payload),
    };
    let bytes = LENIENT_URL_SAFE
        .decode(payload)
        .map_err(|_| CodecError::Malformed("Flask payload is not base64url"))?;
    if !compressed {
        return Ok(bytes);
    }
    let mut json = Vec::new();
    let limit = u64::try_from(MAX_INFLATED_SIZE)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    ZlibDecoder::new(bytes.as_slice())
        .take(limit)
        .read_to_end(&mut json)
        .map_err(|_| CodecError::Malformed("Flask payload is not valid zlib data"))?;
    if json.len() > MAX_INFLATED_SIZE {
        return Err(CodecError::InflatedTooLarge(MAX_INFLATED_SIZE));
    }
    Ok(json)
}

/// `zlib.compress(data)` at Python's default level (6).
fn zlib(data: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::new(6));
    encoder
        .write_all(data)
        .and_then(|()| encoder.finish())
        .map_err(|_| CodecError::Malformed("zlib compression failed"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_encoding_strips_leading_zero_bytes() {
        let codec = FlaskCodec::new("k").without_max_age();
        for ts in [0u64, 1, 255, 256, 1_700_000_000, u64::MAX] {
            let cookie = codec.encode_at(&FlaskSession::new(), ts).unwrap();
            assert_eq!(codec.decode(&cookie).unwrap().issued_at, ts);
        }
        // ts = 0 is the empty byte string: "e30..sig".
        assert!(codec
            .encode_at(&FlaskSession::new(), 0)
            .unwrap()
            .starts_with("e30.."));
        assert!(decode_timestamp("AAAAAAAAAAAA").is_err());
    }

    #[test]
    fn future_and_old_cookies_are_expired() {
        let codec = FlaskCodec::new("k").with_max_age(Duration::from_secs(10));
        let cookie = codec.encode_at(&FlaskSession::new(), 1000).unwrap();
        assert!(codec.decode_at(&cookie, 1010).is_ok());
        assert_eq!(codec.decode_at(&cookie, 1011), Err(CodecError::Expired));
        assert_eq!(codec.decode_at(&cookie, 999), Err(CodecError::Expired));
    }

    #[test]
    fn empty_secret_means_no_session() {
        let codec = FlaskCodec::new("");
        assert_eq!(
            codec.encode(&FlaskSession::new()),
            Err(CodecError::UnknownKey)
        );
        let cookie = FlaskCodec::new("k").encode(&FlaskSession::new()).unwrap();
        assert_eq!(codec.decode(&cookie), Err(CodecError::BadSignature));
        assert_eq!(FlaskCodec::new("k").with_fallbacks([""]).fallbacks.len(), 0);
    }

    #[test]
    fn zip_bomb_is_capped() {
        let json = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_INFLATED_SIZE));
        let payload = format!(
            ".{}",
            URL_SAFE_NO_PAD.encode(zlib(json.as_bytes()).unwrap())
        );
        assert_eq!(
            decode_payload(&payload),
            Err(CodecError::InflatedTooLarge(MAX_INFLATED_SIZE))
        );
        let small = format!(".{}", URL_SAFE_NO_PAD.encode(zlib(b"{}").unwrap()));
        assert_eq!(decode_payload(&small).unwrap(), b"{}");
        assert!(decode_payload(".AAAA").is_err());
    }

    #[test]
    fn debug_shows_no_key() {
        let codec = FlaskCodec::new("hunter2").with_fallbacks(["old"]);
        let debug = format!("{codec:?}");
        assert!(!debug.contains("hunter2"));
        assert!(debug.contains("fallbacks: 1"));
    }
}
