//! Session IDs and the keys a store files them under.
//!
//! A [`SessionId`] is the secret the client holds: 256 bits from the operating
//! system's CSPRNG, written as 43 characters of unpadded base64url. A store never
//! sees it: records are filed under a [`SessionKey`], the SHA-256 of the ID, so a
//! leaked store dump or log line opens no session.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;

/// The number of random bytes in a session ID (256 bits).
pub const ID_BYTES: usize = 32;
/// The length of a session ID once encoded (unpadded base64url).
pub const ID_ENCODED_LEN: usize = 43;

/// The operating system's random number generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomError;

/// Fills an array with bytes from the operating system's CSPRNG.
///
/// Every call asks the kernel (`getrandom`): no user-space buffer that a
/// forked child could hand out a second time.
///
/// ```
/// let a: [u8; 32] = keycard::random_bytes()?;
/// let b: [u8; 32] = keycard::random_bytes()?;
/// assert_ne!(a, b);
/// # Ok::<(), keycard::RandomError>(())
/// ```
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|_| RandomError)?;
    Ok(bytes)
}

/// A session ID: the secret a client presents, in a cookie or a bearer token.
///
/// Its `Debug` output never shows the value.
///
/// ```
/// use keycard::SessionId;
/// let id = SessionId::generate().unwrap();
/// let text = id.to_string();
/// assert_eq!(text.len(), 43);
/// assert_eq!(SessionId::parse(&text), Some(id));
/// assert_eq!(SessionId::parse("not-an-id"), None);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId([u8; ID_BYTES]);

impl SessionId {
    /// A fresh ID: 256 bits from the OS CSPRNG.
    pub fn generate() -> Result<Self, RandomError> {
        random_bytes().map(SessionId)
    }

    /// Parses the encoded form; anything but exactly 43 base64url characters
    /// decoding to 32 bytes is `None`. Never panics, whatever the input.
    pub fn parse(text: &str) -> Option<Self> {
        Self::parse_bytes(text.as_bytes())
    }

    /// [`parse`](Self::parse) of the text's bytes (a cookie value straight
    /// from its header: no UTF-8 check needed).
    pub(crate) fn parse_bytes(text: &[u8]) -> Option<Self> {
        if text.len() != ID_ENCODED_LEN {
            return None;
        }
        let mut bytes = [0u8; ID_BYTES];
        // decode_slice rejects non-canonical trailing bits, so each ID has one spelling.
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(ID_BYTES) => Some(SessionId(bytes)),
            _ => None,
        }
    }

    /// Builds an ID from raw bytes (for codecs that carry it in binary).
    pub fn from_bytes(bytes: [u8; ID_BYTES]) -> Self {
        SessionId(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; ID_BYTES] {
        &self.0
    }

    /// The key a store files this session under: SHA-256 of the ID.
    pub fn key(&self) -> SessionKey {
        SessionKey(Sha256::digest(self.0).into())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// The key a store files a record under: the SHA-256 of a [`SessionId`].
///
/// Not a secret (it opens no session), so it may be logged and listed.
///
/// ```
/// use keycard::{SessionId, SessionKey};
/// let key = SessionId::generate().unwrap().key();
/// assert_eq!(SessionKey::from_hex(&key.to_hex()), Some(key));
/// assert_ne!(key.handle(), key.to_hex());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SessionKey([u8; 32]);

/// Hashes the first 16 bytes only: a key is a SHA-256 output, so half of it is
/// as evenly spread as all of it, and maps keyed by it (the memory store's)
/// hash a key on every request. Equal keys still hash alike (equality
/// compares all 32 bytes), and `HashMap`'s hasher stays keyed (SipHash), so
/// an attacker still cannot aim keys at one bucket.
impl std::hash::Hash for SessionKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.0[..16]);
    }
}

impl SessionKey {
    /// Wraps 32 bytes (as read back from a store).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SessionKey(bytes)
    }

    /// A key derived from a name, for records that are not sessions (a throttle
    /// counter, a deny-list entry): SHA-256 of a domain tag and the name, so it
    /// can never equal the key of a session ID.
    pub fn derive(purpose: &str, name: &str) -> Self {
        Self::derive_bytes(purpose, name.as_bytes())
    }

    /// [`derive`](Self::derive) for a name held as bytes.
    pub(crate) fn derive_bytes(purpose: &str, name: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"keycard derived key\0");
        hasher.update(purpose.as_bytes());
        hasher.update([0]);
        hasher.update(name);
        SessionKey(hasher.finalize().into())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, 64 characters: how stores name the record.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        self.write_hex(&mut out);
        out
    }

    /// Appends [`to_hex`](Self::to_hex)'s 64 characters to `out`, for a store
    /// that builds a longer key name around them without a second allocation.
    ///
    /// ```
    /// let key = keycard::SessionKey::derive("doc", "example");
    /// let mut name = String::from("app:s:");
    /// key.write_hex(&mut name);
    /// assert_eq!(name, format!("app:s:{}", key.to_hex()));
    /// ```
    pub fn write_hex(&self, out: &mut String) {
        // Always ASCII; pushed as one str rather than 64 chars (every store
        // call names its key this way).
        if let Ok(text) = std::str::from_utf8(&self.hex_bytes()) {
            out.push_str(text);
        }
    }

    /// [`to_hex`](Self::to_hex)'s characters, on the stack.
    pub(crate) fn hex_bytes(&self) -> [u8; 64] {
        let mut hex = [0u8; 64];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0xf)];
        }
        hex
    }

    /// Parses [`to_hex`](Self::to_hex) output.
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Some(SessionKey(out))
    }

    /// A short public handle for "your sessions" pages: the first 16 bytes of
    /// the key, hex. It names the record to its owner without being the ID.
    pub fn handle(&self) -> String {
        self.to_hex()[..32].to_owned()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({}…)", &self.to_hex()[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_round_trip() {
        let a = SessionId::generate().unwrap();
        let b = SessionId::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(&a.to_string()), Some(a.clone()));
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn parse_rejects_wrong_shapes() {
        let good = SessionId::generate().unwrap().to_string();
        assert!(SessionId::parse(&good[..42]).is_none());
        assert!(SessionId::parse(&format!("{good}A")).is_none());
        assert!(SessionId::parse(&good.replace(|_| true, "+")).is_none());
        assert!(SessionId::parse("").is_none());
        assert!(SessionId::parse(&"é".repeat(22)).is_none());
    }

    #[test]
    fn debug_hides_the_id() {
        let id = SessionId::generate().unwrap();
        assert!(!format!("{id:?}").contains(&id.to_string()));
    }

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        // Stores name records by this text: it must never change.
        let bytes: Vec<u8> = (0..32u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        let key = SessionKey(bytes.try_into().unwrap());
        let expected: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(key.to_hex(), expected);
        let mut appended = String::from("x");
        key.write_hex(&mut appended);
        assert_eq!(appended, format!("x{expected}"));
        assert_eq!(SessionKey::from_hex(&expected), Some(key));
    }

    #[test]
    fn derived_keys_are_namespaced() {
        assert_ne!(SessionKey::derive("a", "bc"), SessionKey::derive("ab", "c"));
    }
}
