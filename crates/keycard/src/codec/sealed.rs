//! Sealed cookies: a value the client can neither read nor change.
//!
//! # Format
//!
//! ```text
//! value = base64url( version (1 byte, = 1) || key id (2 bytes, big-endian)
//!                    || nonce (12 bytes) || ciphertext || tag (16 bytes) )
//! AAD   = "keycard sealed v1" || version || key id
//!         || len(purpose) (4 bytes, big-endian) || purpose
//!         || len(cookie name) (4 bytes, big-endian) || cookie name
//! ```
//!
//! base64url is unpadded; a sealed value is 31 bytes plus the payload before
//! encoding (about 4/3 of that after). Because the purpose and the cookie name
//! are authenticated (length-prefixed, so no two pairs give the same bytes), a
//! value cut from the `remember` cookie fails in the `session` cookie, and a
//! value sealed for one purpose fails under another even with the same name.
//! Each purpose also has its own HKDF subkey (see [`KeyRing`]).
//!
//! # Why AES-256-GCM (and not XChaCha20-Poly1305)
//!
//! - It is already in keycard's dependency tree (RustCrypto `aes-gcm`, audited
//!   by NCC Group), and it is the cipher `cookie`'s private cookies use, so
//!   reviewers know it.
//! - It runs on the AES and carry-less multiply instructions of every server
//!   CPU keycard targets, in constant time; without them, RustCrypto's `aes`
//!   falls back to a bitsliced, constant-time software implementation.
//! - Its 12-byte nonce keeps each cookie 12 bytes shorter than XChaCha20's
//!   24-byte nonce would, which matters under the 4096-byte cookie limit.
//!
//! The price is the random-nonce limit. With 96-bit random nonces, NIST SP
//! 800-38D §8.3 allows at most 2^32 encryptions under one key (nonce collision
//! probability below 2^-32); a collision would leak the XOR of two payloads
//! and let an attacker forge tags. keycard keeps far below it:
//!
//! - every purpose has its own subkey, so each purpose has its own 2^32 budget;
//! - every [`KeyRing::rotate`] derives brand-new subkeys, so the count starts
//!   again. At a sustained 100 seals per second (a cookie re-sealed on every
//!   request of a busy site), 2^32 takes 1.36 years; rotate at least yearly,
//!   or monthly past 1,000 seals per second.
//!
//! XChaCha20-Poly1305 (192-bit nonces) would remove that bookkeeping at the
//! cost of a new dependency and 12 bytes per cookie; the format's version byte
//! leaves room to switch if keycard ever targets hardware without AES.

use super::keyring::{KeyRing, KeyUse};
use super::{base64url_len, check_cookie_size, CodecError, CookieCodec, Opened, MAX_COOKIE_SIZE};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::fmt;

/// The format version this module writes and reads.
const VERSION: u8 = 1;
/// Domain tag at the start of the associated data.
const DOMAIN: &[u8] = b"keycard sealed v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// version + key id + nonce.
const HEADER_LEN: usize = 1 + 2 + NONCE_LEN;

/// AES-256-GCM sealed cookies under a [`KeyRing`], for one purpose.
///
/// The newest key of the ring seals; every key opens, and a value opened with
/// an older key comes back with [`Opened::stale_key`] set so the session layer
/// reseals it. The codec keeps the subkeys it derived when built: after
/// rotating the ring, build a new codec.
///
/// ```
/// use keycard::codec::{KeyRing, SealedCodec};
/// use keycard::{CodecError, CookieCodec};
///
/// let ring = KeyRing::generate()?;
/// let codec = SealedCodec::new(&ring, "session");
/// let value = codec.seal("__Host-keycard", b"secret payload")?;
/// assert!(!value.contains("secret"));
///
/// let opened = codec.open("__Host-keycard", &value)?;
/// assert_eq!(opened.payload, b"secret payload");
/// assert!(!opened.stale_key);
/// // Bound to the cookie name and the purpose:
/// assert_eq!(codec.open("other", &value), Err(CodecError::BadSignature));
/// let remember = SealedCodec::new(&ring, "remember");
/// assert_eq!(remember.open("__Host-keycard", &value), Err(CodecError::BadSignature));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SealedCodec {
    purpose: String,
    /// Oldest first; the last seals.
    keys: Vec<(u16, Aes256Gcm)>,
}

impl SealedCodec {
    /// A codec for `purpose` (e.g. `"session"`, `"remember"`) with subkeys
    /// derived from every key of `ring`.
    ///
    /// ```
    /// use keycard::codec::{KeyRing, SealedCodec};
    /// let codec = SealedCodec::new(&KeyRing::generate()?, "session");
    /// assert_eq!(codec.purpose(), "session");
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn new(ring: &KeyRing, purpose: &str) -> Self {
        let keys = ring
            .subkeys(KeyUse::Sealed, purpose)
            .iter()
            .map(|key| (key.id(), Aes256Gcm::new(key.as_bytes().into())))
            .collect();
        SealedCodec {
            purpose: purpose.to_owned(),
            keys,
        }
    }

    /// The purpose this codec seals for.
    ///
    /// ```
    /// use keycard::codec::{KeyRing, SealedCodec};
    /// assert_eq!(SealedCodec::new(&KeyRing::generate()?, "remember").purpose(), "remember");
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn purpose(&self) -> &str {
        &self.purpose
    }

    /// The AAD as one `Vec`, as the tests compare it.
    #[cfg(test)]
    fn aad(&self, key_id: u16, name: &str) -> Vec<u8> {
        self.with_aad_parts(key_id, name, |parts| parts.concat())
    }

    /// Calls `f` with the AAD's bytes, built on the stack when
    /// they fit (always, for the usual purpose and cookie names): every
    /// request that opens or seals a cookie builds one.
    fn with_aad<R>(&self, key_id: u16, name: &str, f: impl FnOnce(&[u8]) -> R) -> R {
        self.with_aad_parts(key_id, name, |parts| {
            let total: usize = parts.iter().map(|part| part.len()).sum();
            let mut stack = [0u8; 128];
            match stack.get_mut(..total) {
                Some(aad) => {
                    let mut rest = &mut aad[..];
                    for part in parts {
                        let (head, tail) = rest.split_at_mut(part.len());
                        head.copy_from_slice(part);
                        rest = tail;
                    }
                    f(aad)
                }
                None => f(&parts.concat()),
            }
        })
    }

    /// The AAD's pieces, in order (the format in the module docs).
    fn with_aad_parts<R>(&self, key_id: u16, name: &str, f: impl FnOnce([&[u8]; 7]) -> R) -> R {
        let version = [VERSION];
        let id = key_id.to_be_bytes();
        let purpose_len = prefix(self.purpose.as_bytes());
        let name_len = prefix(name.as_bytes());
        f([
            DOMAIN,
            &version,
            &id,
            &purpose_len,
            self.purpose.as_bytes(),
            &name_len,
            name.as_bytes(),
        ])
    }
}

/// The 4-byte big-endian length [`push_prefixed`] writes before `bytes`.
fn prefix(bytes: &[u8]) -> [u8; 4] {
    u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes()
}

/// Appends `bytes` after its length as 4 big-endian bytes. Lengths over 4 GiB
/// cannot occur: cookie names and purposes are short strings.
pub(crate) fn push_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&prefix(bytes));
    out.extend_from_slice(bytes);
}

impl CookieCodec for SealedCodec {
    /// Seals `payload` for the cookie `name` with the newest key and a fresh
    /// random nonce.
    ///
    /// Errors: [`CodecError::TooLarge`] (with the size the cookie would have,
    /// counting name, value and 100 bytes of attributes) when that is over
    /// 4096 bytes; [`CodecError::Malformed`] if the OS random generator fails.
    fn seal(&self, name: &str, payload: &[u8]) -> Result<String, CodecError> {
        let sealed_len = HEADER_LEN + payload.len() + TAG_LEN;
        check_cookie_size(name, base64url_len(sealed_len))?;
        let Some((key_id, cipher)) = self.keys.last() else {
            return Err(CodecError::UnknownKey);
        };
        let nonce = crate::random_bytes::<NONCE_LEN>().map_err(|_| CodecError::Random)?;
        // One buffer, encrypted in place: header, then ciphertext, then tag.
        let mut out = Vec::with_capacity(sealed_len);
        out.push(VERSION);
        out.extend_from_slice(&key_id.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(payload);
        let tag = self
            .with_aad(*key_id, name, |aad| {
                cipher.encrypt_in_place_detached(
                    Nonce::from_slice(&nonce),
                    aad,
                    &mut out[HEADER_LEN..],
                )
            })
            .map_err(|_| CodecError::TooLarge(payload.len()))?;
        out.extend_from_slice(&tag);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens a value sealed for the cookie `name`.
    ///
    /// Errors: [`CodecError::TooLarge`] for a value over 4096 bytes (no
    /// browser sends one); [`CodecError::Malformed`] for bad base64url, a
    /// value too short or of another format version;
    /// [`CodecError::UnknownKey`] when its key ID is not in the ring;
    /// [`CodecError::BadSignature`] when authentication fails.
    fn open(&self, name: &str, value: &str) -> Result<Opened, CodecError> {
        if value.len() > MAX_COOKIE_SIZE {
            return Err(CodecError::TooLarge(value.len()));
        }
        let mut bytes = URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| CodecError::Malformed("sealed value is not base64url"))?;
        if bytes.len() < HEADER_LEN + TAG_LEN {
            return Err(CodecError::Malformed("sealed value is too short"));
        }
        if bytes[0] != VERSION {
            return Err(CodecError::Malformed(
                "sealed value has an unknown format version",
            ));
        }
        let key_id = u16::from_be_bytes([bytes[1], bytes[2]]);
        let Some(index) = self.keys.iter().position(|(id, _)| *id == key_id) else {
            return Err(CodecError::UnknownKey);
        };
        let cipher = &self.keys[index].1;
        // Decrypted in place: the buffer becomes header, payload, tag.
        let tag_at = bytes.len() - TAG_LEN;
        let tag = Tag::clone_from_slice(&bytes[tag_at..]);
        let (header, ciphertext) = bytes[..tag_at].split_at_mut(HEADER_LEN);
        self.with_aad(key_id, name, |aad| {
            cipher.decrypt_in_place_detached(Nonce::from_slice(&header[3..]), aad, ciphertext, &tag)
        })
        .map_err(|_| CodecError::BadSignature)?;
        bytes.truncate(tag_at);
        bytes.drain(..HEADER_LEN);
        Ok(Opened {
            payload: bytes,
            stale_key: index + 1 != self.keys.len(),
        })
    }
}

impl fmt::Debug for SealedCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedCodec")
            .field("purpose", &self.purpose)
            .field(
                "key_ids",
                &self.keys.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
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
    fn layout_is_version_key_id_nonce_ciphertext_tag() {
        let codec = SealedCodec::new(&ring(), "session");
        let value = codec.seal("c", b"abc").unwrap();
        let bytes = URL_SAFE_NO_PAD.decode(&value).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + 3 + TAG_LEN);
        assert_eq!(&bytes[..3], &[1, 0, 2]);
        // A fresh nonce each time: the same payload seals differently.
        assert_ne!(codec.seal("c", b"abc").unwrap(), value);
    }

    #[test]
    fn header_tampering_is_rejected() {
        let codec = SealedCodec::new(&ring(), "session");
        let mut bytes = URL_SAFE_NO_PAD
            .decode(codec.seal("c", b"abc").unwrap())
            .unwrap();
        bytes[0] = 2;
        let err = codec
            .open("c", &URL_SAFE_NO_PAD.encode(&bytes))
            .unwrap_err();
        assert!(matches!(err, CodecError::Malformed(_)));
        bytes[0] = 1;
        bytes[2] = 1; // claims key 1: the tag was made with key 2's subkey
        let err = codec
            .open("c", &URL_SAFE_NO_PAD.encode(&bytes))
            .unwrap_err();
        assert_eq!(err, CodecError::BadSignature);
        bytes[2] = 9;
        let err = codec
            .open("c", &URL_SAFE_NO_PAD.encode(&bytes))
            .unwrap_err();
        assert_eq!(err, CodecError::UnknownKey);
    }

    #[test]
    fn aad_on_the_stack_is_the_same_bytes() {
        let codec = SealedCodec::new(&ring(), "session");
        let mut expected = b"keycard sealed v1\x01\x00\x02\x00\x00\x00\x07session".to_vec();
        expected.extend_from_slice(b"\x00\x00\x00\x0e__Host-keycard");
        assert_eq!(codec.aad(2, "__Host-keycard"), expected);
        assert_eq!(
            codec.with_aad(2, "__Host-keycard", <[u8]>::to_vec),
            expected
        );
        // Too long for the stack buffer: the same bytes from the heap.
        let long = "n".repeat(200);
        assert_eq!(
            codec.with_aad(2, &long, <[u8]>::to_vec),
            codec.aad(2, &long)
        );
        // Exactly the buffer's 128 bytes (35 besides the name), and one past.
        for len in [93, 94] {
            let name = "n".repeat(len);
            assert_eq!(
                codec.with_aad(1, &name, <[u8]>::to_vec),
                codec.aad(1, &name)
            );
        }
    }

    #[test]
    fn aad_is_unambiguous() {
        let a = SealedCodec::new(&ring(), "ab");
        let b = SealedCodec::new(&ring(), "a");
        assert_ne!(a.aad(1, "c"), b.aad(1, "bc"));
    }

    #[test]
    fn debug_shows_no_key() {
        let codec = SealedCodec::new(&ring(), "session");
        assert_eq!(
            format!("{codec:?}"),
            r#"SealedCodec { purpose: "session", key_ids: [1, 2], .. }"#
        );
    }
}
