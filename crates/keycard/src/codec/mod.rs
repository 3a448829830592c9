//! Cookie codecs: turning bytes into a cookie value a client can neither read
//! nor change (sealed), or can read but not change (signed), and Flask's
//! session cookie format.

/// Why a cookie value was rejected. The variants are precise for logs and the
/// `keycard cookie inspect` command; a client only ever sees "no session".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The value is not in the codec's format (bad base64, too short, ...).
    #[error("malformed cookie: {0}")]
    Malformed(&'static str),
    /// The value names a key the ring does not hold (rotated out, or forged).
    #[error("cookie sealed with an unknown key")]
    UnknownKey,
    /// Authentication failed: the value was modified, truncated, sealed under
    /// another name or purpose, or with another key.
    #[error("bad signature or authentication tag")]
    BadSignature,
    /// The signature is valid but older than the allowed age.
    #[error("cookie expired")]
    Expired,
    /// The payload (or the cookie it makes) is larger than allowed.
    #[error("cookie too large: {0} bytes")]
    TooLarge(usize),
}

/// A payload opened from a cookie value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The authenticated bytes.
    pub payload: Vec<u8>,
    /// The value was sealed with a key that is no longer the newest: reseal it.
    pub stale_key: bool,
}

/// Turns payloads into cookie values and back, binding the cookie name in so a
/// value cut from one cookie is rejected in another.
pub trait CookieCodec: Send + Sync + 'static {
    /// Encodes `payload` as the value of the cookie `name`.
    fn seal(&self, name: &str, payload: &[u8]) -> Result<String, CodecError>;
    /// Decodes and authenticates the value of the cookie `name`.
    fn open(&self, name: &str, value: &str) -> Result<Opened, CodecError>;
}
