//! Signed cookies: a value the client can read but not change.
//!
//! # Format
//!
//! ```text
//! value = base64url(payload) "." base64url( version (1 byte, = 1)
//!                                           || key id (2 bytes, big-endian)
//!                                           || HMAC-SHA256 tag (32 bytes) )
//! tag   = HMAC-SHA256(subkey(key id, purpose),
//!             "keycard signed v1" || version || key id
//!             || len(purpose) (4 bytes, big-endian) || purpose
//!             || len(cookie name) (4 bytes, big-endian) || cookie name
//!             || payload)
//! ```
//!
//! base64url is unpadded. Use it for values that are not secret but must not
//! be forged (a theme, a "seen the banner" flag, a user-visible preference);
//! use [`SealedCodec`](super::SealedCodec) for anything the client must not
//! read. Tags are compared in constant time (`subtle`).

use super::keyring::{DerivedKey, KeyRing, KeyUse};
use super::sealed::push_prefixed;
use super::{base64url_len, check_cookie_size, CodecError, CookieCodec, Opened, MAX_COOKIE_SIZE};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use subtle::ConstantTimeEq;

const VERSION: u8 = 1;
const DOMAIN: &[u8] = b"keycard signed v1";
const TAG_LEN: usize = 32;
/// version + key id + tag.
const SIGNATURE_LEN: usize = 1 + 2 + TAG_LEN;

/// HMAC-SHA256 signed cookies under a [`KeyRing`], for one purpose.
///
/// Same key-ring rules as [`SealedCodec`](super::SealedCodec): the newest key
/// signs, every key verifies, and a value verified with an older key comes
/// back with [`Opened::stale_key`] set.
///
/// ```
/// use keycard::codec::{KeyRing, SignedCodec};
/// use keycard::{CodecError, CookieCodec};
///
/// let codec = SignedCodec::new(&KeyRing::generate()?, "signed");
/// let value = codec.seal("theme", b"dark")?;
/// assert!(value.starts_with("ZGFyaw.")); // base64url("dark"): readable
/// assert_eq!(codec.open("theme", &value)?.payload, b"dark");
///
/// let forged = value.replacen("ZGFyaw", "bGlnaHQ", 1); // "light"
/// assert_eq!(codec.open("theme", &forged), Err(CodecError::BadSignature));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SignedCodec {
    purpose: String,
    /// Oldest first; the last signs.
    keys: Vec<DerivedKey>,
}

impl SignedCodec {
    /// A codec for `purpose` with subkeys derived from every key of `ring`.
    ///
    /// ```
    /// use keycard::codec::{KeyRing, SignedCodec};
    /// let codec = SignedCodec::new(&KeyRing::generate()?, "signed");
    /// assert_eq!(codec.purpose(), "signed");
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn new(ring: &KeyRing, purpose: &str) -> Self {
        SignedCodec {
            purpose: purpose.to_owned(),
            keys: ring.subkeys(KeyUse::Signed, purpose),
        }
    }

    /// The purpose this codec signs for.
    ///
    /// ```
    /// use keycard::codec::{KeyRing, SignedCodec};
    /// assert_eq!(SignedCodec::new(&KeyRing::generate()?, "prefs").purpose(), "prefs");
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn purpose(&self) -> &str {
        &self.purpose
    }

    fn tag(&self, key: &DerivedKey, name: &str, payload: &[u8]) -> Option<[u8; TAG_LEN]> {
        // HMAC takes keys of any length, so this never fails.
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).ok()?;
        let mut header = Vec::with_capacity(DOMAIN.len() + 11 + self.purpose.len() + name.len());
        header.extend_from_slice(DOMAIN);
        header.push(VERSION);
        header.extend_from_slice(&key.id().to_be_bytes());
        push_prefixed(&mut header, self.purpose.as_bytes());
        push_prefixed(&mut header, name.as_bytes());
        mac.update(&header);
        mac.update(payload);
        Some(mac.finalize().into_bytes().into())
    }
}

impl CookieCodec for SignedCodec {
    /// Signs `payload` for the cookie `name` with the newest key.
    ///
    /// Errors: [`CodecError::TooLarge`] (with the size the cookie would have,
    /// counting name, value and 100 bytes of attributes) when over 4096 bytes.
    fn seal(&self, name: &str, payload: &[u8]) -> Result<String, CodecError> {
        let value_len = base64url_len(payload.len())
            .saturating_add(1)
            .saturating_add(base64url_len(SIGNATURE_LEN));
        check_cookie_size(name, value_len)?;
        let Some(key) = self.keys.last() else {
            return Err(CodecError::UnknownKey);
        };
        let tag = self.tag(key, name, payload).ok_or(CodecError::UnknownKey)?;
        let mut signature = Vec::with_capacity(SIGNATURE_LEN);
        signature.push(VERSION);
        signature.extend_from_slice(&key.id().to_be_bytes());
        signature.extend_from_slice(&tag);
        let mut out = URL_SAFE_NO_PAD.encode(payload);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut out);
        Ok(out)
    }

    /// Verifies a value signed for the cookie `name` and returns its payload.
    ///
    /// Errors: [`CodecError::TooLarge`] for a value over 4096 bytes;
    /// [`CodecError::Malformed`] when it is not `payload.signature` in
    /// base64url or of another format version; [`CodecError::UnknownKey`]
    /// when its key ID is not in the ring; [`CodecError::BadSignature`] when
    /// the tag does not match.
    fn open(&self, name: &str, value: &str) -> Result<Opened, CodecError> {
        if value.len() > MAX_COOKIE_SIZE {
            return Err(CodecError::TooLarge(value.len()));
        }
        let Some((payload, signature)) = value.split_once('.') else {
            return Err(CodecError::Malformed("signed value has no `.`"));
        };
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| CodecError::Malformed("signed payload is not base64url"))?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| CodecError::Malformed("signature is not base64url"))?;
        let [version, id_hi, id_lo, tag @ ..] = signature.as_slice() else {
            return Err(CodecError::Malformed("signature is too short"));
        };
        if *version != VERSION {
            return Err(CodecError::Malformed(
                "signed value has an unknown format version",
            ));
        }
        if tag.len() != TAG_LEN {
            return Err(CodecError::Malformed("signature has the wrong length"));
        }
        let key_id = u16::from_be_bytes([*id_hi, *id_lo]);
        let Some(index) = self.keys.iter().position(|k| k.id() == key_id) else {
            return Err(CodecError::UnknownKey);
        };
        let expected = self
            .tag(&self.keys[index], name, &payload)
            .ok_or(CodecError::BadSignature)?;
        if !bool::from(expected.ct_eq(tag)) {
            return Err(CodecError::BadSignature);
        }
        Ok(Opened {
            payload,
            stale_key: index + 1 != self.keys.len(),
        })
    }
}

impl fmt::Debug for SignedCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedCodec")
            .field("purpose", &self.purpose)
            .field(
                "key_ids",
                &self.keys.iter().map(DerivedKey::id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::from_keys([(1, [1; 32]), (2, [2; 32])]).unwrap()
    }

    #[test]
    fn value_is_readable_payload_dot_signature() {
        let codec = SignedCodec::new(&ring(), "signed");
        let value = codec.seal("c", b"hello").unwrap();
        let (payload, signature) = value.split_once('.').unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(payload).unwrap(), b"hello");
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        assert_eq!(&signature[..3], &[1, 0, 2]);
        assert_eq!(signature.len(), SIGNATURE_LEN);
        // Deterministic: the same input signs the same.
        assert_eq!(codec.seal("c", b"hello").unwrap(), value);
        // An empty payload is fine.
        let empty = codec.seal("c", b"").unwrap();
        assert_eq!(codec.open("c", &empty).unwrap().payload, b"");
    }

    #[test]
    fn shape_errors_are_malformed() {
        let codec = SignedCodec::new(&ring(), "signed");
        for bad in [
            "",
            "abc",
            "a.b",
            "aGk.AQAC",
            "aGk.AQACAA",
            "a*b.cd",
            "aGk.!!",
        ] {
            assert!(
                matches!(codec.open("c", bad), Err(CodecError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_shows_no_key() {
        let codec = SignedCodec::new(&ring(), "signed");
        assert_eq!(
            format!("{codec:?}"),
            r#"SignedCodec { purpose: "signed", key_ids: [1, 2], .. }"#
        );
    }
}
