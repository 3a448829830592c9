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
    /// The operating system's random generator failed while sealing.
    #[error("the random number generator failed")]
    Random,
    /// The payload (or the cookie it makes) is larger than allowed.
    #[error("cookie too large: {0} bytes")]
    TooLarge(usize),
    /// A compressed Flask payload inflates past the limit given here (64
    /// KiB): a zip bomb, or more than any browser could have carried.
    #[error("Flask payload too large once decompressed: over {0} bytes")]
    InflatedTooLarge(usize),
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

pub mod flask;
pub mod keyring;
pub mod sealed;
pub mod signed;

pub use flask::{FlaskCodec, FlaskSession, FlaskValue, HttpDate};
pub use keyring::{DerivedKey, KeyRing, KeyRingError};
pub use sealed::SealedCodec;
pub use signed::SignedCodec;

/// The largest cookie, name, value and attributes together, that browsers
/// must store (RFC 6265 §6.1; RFC 6265bis keeps it): keycard refuses to make a
/// larger one rather than let the browser drop or truncate it.
///
/// ```
/// assert_eq!(keycard::codec::MAX_COOKIE_SIZE, 4096);
/// ```
pub const MAX_COOKIE_SIZE: usize = 4096;

/// Bytes set aside for a cookie's attributes (`Path=/; Secure; HttpOnly;
/// SameSite=Lax; Max-Age=...`) when checking a value against
/// [`MAX_COOKIE_SIZE`].
///
/// ```
/// use keycard::codec::{ATTRIBUTE_ALLOWANCE, MAX_COOKIE_SIZE};
/// assert!(ATTRIBUTE_ALLOWANCE < MAX_COOKIE_SIZE);
/// ```
pub const ATTRIBUTE_ALLOWANCE: usize = 100;

/// `TooLarge(size)` when cookie `name` with a value of `value_len` bytes and
/// the attribute allowance is over [`MAX_COOKIE_SIZE`].
pub(crate) fn check_cookie_size(name: &str, value_len: usize) -> Result<(), CodecError> {
    let size = name
        .len()
        .saturating_add(1) // "="
        .saturating_add(value_len)
        .saturating_add(ATTRIBUTE_ALLOWANCE);
    if size > MAX_COOKIE_SIZE {
        return Err(CodecError::TooLarge(size));
    }
    Ok(())
}

/// The length of `bytes` bytes in unpadded base64url.
pub(crate) fn base64url_len(bytes: usize) -> usize {
    base64::encoded_len(bytes, false).unwrap_or(usize::MAX)
}
