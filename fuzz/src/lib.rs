//! Fixtures shared by the fuzz targets and the seed generator
//! (`examples/gen_seeds.rs`): fixed keys, so the committed seeds hold real
//! sealed, signed and Flask cookies the fuzzer can mutate from, and helpers
//! that turn fuzz input into requests' headers.
//!
//! These keys are public test fixtures: never use them anywhere else.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use keycard::codec::flask::{FlaskCodec, FlaskSession};
use keycard::{CodecError, CookieCodec, KeyRing};
use sha1::Sha1;

/// The session cookie's default name, which every cookie seed is sealed for.
pub const COOKIE_NAME: &str = "__Host-keycard";
/// The purpose the session layer seals session cookies for.
pub const PURPOSE: &str = "session";
/// The older master key (ID 1): values sealed with it open as stale.
pub const OLD_KEY: (u16, [u8; 32]) = (1, [0x11; 32]);
/// The newest master key (ID 2): it seals.
pub const NEW_KEY: (u16, [u8; 32]) = (2, [0x22; 32]);

/// The ring the targets open with: the old key, then the newest.
pub fn ring() -> KeyRing {
    KeyRing::from_keys([OLD_KEY, NEW_KEY]).expect("fixed keys")
}

/// A ring holding only the old key, to make stale values.
pub fn old_ring() -> KeyRing {
    KeyRing::from_keys([OLD_KEY]).expect("fixed key")
}

/// `SECRET_KEY` of `crates/keycard/tests/data/flask/vectors.json`.
pub const FLASK_SECRET: &str = "keycard-flask-vector-secret";
/// `SECRET_KEY_FALLBACKS` of the same vectors.
pub const FLASK_FALLBACK: &str = "keycard-flask-vector-old-secret";
/// "Now" for Flask decoding: a day after the vectors were signed, so they are
/// within Flask's default 31-day lifetime.
pub const FLASK_NOW: u64 = 1_700_000_000 + 86_400;

/// The codec a Flask app with the vectors' configuration would use.
pub fn flask_codec() -> FlaskCodec {
    FlaskCodec::new(FLASK_SECRET).with_fallbacks([FLASK_FALLBACK])
}

/// itsdangerous' signature of `signed` under the Flask secret `secret`:
/// `base64url(HMAC-SHA1(HMAC-SHA1(secret, "cookie-session"), signed))`.
/// Written here independently of keycard, so a target can sign any payload
/// and reach the JSON, zlib and tag parsers behind the signature check.
pub fn flask_sign(secret: &str, signed: &[u8]) -> String {
    let mut derive = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    derive.update(b"cookie-session");
    let key = derive.finalize().into_bytes();
    let mut mac = Hmac::<Sha1>::new_from_slice(&key).expect("any key length");
    mac.update(signed);
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Checks what a decoded Flask session must satisfy: encoded again with the
/// current secret it decodes to the same values and time, not stale.
pub fn check_flask_session(codec: &FlaskCodec, session: &FlaskSession) {
    let reencoded = match codec.encode_at(session, session.issued_at) {
        Ok(value) => value,
        // Re-encoding may not fit 4096 bytes (another compression, escapes).
        Err(keycard::CodecError::TooLarge(_)) => return,
        Err(e) => panic!("a decoded session does not encode: {e}"),
    };
    let again = FlaskCodec::new(FLASK_SECRET)
        .without_max_age()
        .decode_at(&reencoded, FLASK_NOW)
        .expect("a re-encoded session decodes");
    assert_eq!(
        again.values, session.values,
        "values changed in a round trip"
    );
    assert_eq!(again.issued_at, session.issued_at);
    assert!(!again.stale_key);
}

/// The three codecs a cookie-codec target checks an input against: the
/// current key ring, the ring before rotation, and another purpose.
pub struct CodecSet<C> {
    pub current: C,
    pub old: C,
    pub other_purpose: C,
}

impl<C: CookieCodec> CodecSet<C> {
    /// The set built by `make` (`SealedCodec::new` or `SignedCodec::new`).
    pub fn new(make: fn(&KeyRing, &str) -> C) -> Self {
        CodecSet {
            current: make(&ring(), PURPOSE),
            old: make(&old_ring(), PURPOSE),
            other_purpose: make(&ring(), "remember"),
        }
    }
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// What both cookie codecs (sealed and signed) must do with any input: a
/// value that opens is bound to the cookie name and the purpose; the input
/// as a payload seals (unless too large), opens back to itself, is refused by
/// the old ring and after any one-character change; the old ring's value
/// opens as stale.
pub fn check_cookie_codec<C: CookieCodec>(c: &CodecSet<C>, data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(opened) = c.current.open(COOKIE_NAME, text) {
            // Authentic: bound to the name and the purpose.
            assert_eq!(c.current.open(COOKIE_NAME, text), Ok(opened));
            assert!(c.current.open("__Host-other", text).is_err());
            assert!(c.other_purpose.open(COOKIE_NAME, text).is_err());
        }
    }

    match c.current.seal(COOKIE_NAME, data) {
        Ok(value) => {
            let opened = c
                .current
                .open(COOKIE_NAME, &value)
                .expect("own value opens");
            assert_eq!(opened.payload, data);
            assert!(!opened.stale_key);
            assert_eq!(c.old.open(COOKIE_NAME, &value), Err(CodecError::UnknownKey));
            // One character changed, anywhere, to anything: rejected.
            let seed = data.iter().fold(0usize, |h, b| {
                h.wrapping_mul(31).wrapping_add(usize::from(*b))
            });
            let mut bytes = value.into_bytes();
            let at = seed % bytes.len();
            let replacement = ALPHABET[(seed / 7) % ALPHABET.len()];
            if bytes[at] != replacement {
                bytes[at] = replacement;
                let tampered = String::from_utf8(bytes).expect("ASCII");
                assert!(
                    c.current.open(COOKIE_NAME, &tampered).is_err(),
                    "tampered value opened"
                );
            }
        }
        Err(CodecError::TooLarge(_)) => assert!(data.len() > 2900),
        Err(e) => panic!("seal failed: {e}"),
    }
    if let Ok(value) = c.old.seal(COOKIE_NAME, data) {
        let opened = c.current.open(COOKIE_NAME, &value).expect("old key opens");
        assert!(opened.stale_key);
        assert_eq!(opened.payload, data);
    }
}

/// Splits `data` at the first `\n`: the first line and the rest.
pub fn first_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Headers from lines of `name: value` (a line `name:value` works too);
/// lines that make no valid header name or value are skipped, so the fuzzer
/// can still mutate names (`forwarded`, `X-Forwarded-For`, `Authorization`)
/// and values (including non-ASCII bytes, which `to_str` refuses).
pub fn header_lines(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    headers
}

/// What `HeaderValue::to_str` accepts: visible ASCII, space and tab.
pub fn is_header_text(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}
