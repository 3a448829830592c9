//! Synchronizer tokens: a per-session secret, masked afresh on every render.
//!
//! The token a page carries is `base64url(mask || mask XOR secret)`: a new
//! random mask each time, so the token differs on every response and a
//! compression side channel (BREACH) cannot recover the secret byte by byte.
//! Verification unmasks and compares with the session's secret in constant time.

use crate::{reserved, Session, SessionError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use subtle::ConstantTimeEq;

const SECRET_BYTES: usize = 32;

/// A new random secret, encoded for the session.
pub(crate) fn new_secret() -> Result<String, SessionError> {
    Ok(URL_SAFE_NO_PAD.encode(crate::random_bytes::<SECRET_BYTES>()?))
}

fn decode_secret(value: Option<&Value>) -> Option<[u8; SECRET_BYTES]> {
    decode_secret_text(value?.as_str()?)
}

fn decode_secret_text(text: &str) -> Option<[u8; SECRET_BYTES]> {
    URL_SAFE_NO_PAD.decode(text).ok()?.try_into().ok()
}

/// Masks a secret into a token.
fn mask(secret: &[u8; SECRET_BYTES]) -> Result<String, SessionError> {
    let pad = crate::random_bytes::<SECRET_BYTES>()?;
    let mut token = Vec::with_capacity(2 * SECRET_BYTES);
    token.extend_from_slice(&pad);
    token.extend(pad.iter().zip(secret).map(|(p, s)| p ^ s));
    Ok(URL_SAFE_NO_PAD.encode(token))
}

/// Unmasks a token; `None` if it is not one.
fn unmask(token: &str) -> Option<[u8; SECRET_BYTES]> {
    if token.len() > 128 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
    if bytes.len() != 2 * SECRET_BYTES {
        return None;
    }
    let (pad, masked) = bytes.split_at(SECRET_BYTES);
    let mut secret = [0u8; SECRET_BYTES];
    for (i, (p, m)) in pad.iter().zip(masked).enumerate() {
        secret[i] = p ^ m;
    }
    Some(secret)
}

/// A fresh masked CSRF token for the session, creating the session's secret
/// if it has none (so an anonymous visitor's login form is protected by a
/// pre-session token, rotated when they log in).
///
/// ```no_run
/// # async fn page(session: keycard::Session) -> Result<String, keycard::SessionError> {
/// let token = keycard::csrf::token(&session).await?;
/// Ok(format!(r#"<input type="hidden" name="csrf_token" value="{token}">"#))
/// # }
/// ```
pub async fn token(session: &Session) -> Result<String, SessionError> {
    let existing = session.get_value(reserved::CSRF_SECRET).await?;
    let secret = match decode_secret(existing.as_ref()) {
        Some(secret) => secret,
        None => {
            let encoded = new_secret()?;
            let secret = decode_secret(Some(&Value::from(encoded.clone())))
                .ok_or(SessionError::Random(crate::RandomError))?;
            session
                .set_reserved(reserved::CSRF_SECRET, Value::from(encoded))
                .await?;
            secret
        }
    };
    mask(&secret)
}

/// Whether `token` is a valid masked token for the session's secret.
/// A session without a secret accepts no token.
pub async fn verify(session: &Session, token: &str) -> Result<bool, SessionError> {
    let stored = session.get_value(reserved::CSRF_SECRET).await?;
    Ok(stored
        .as_ref()
        .and_then(Value::as_str)
        .is_some_and(|secret| token_matches(secret, token)))
}

/// Whether `token` is a masked form of `secret_b64`, a CSRF secret as a
/// session stores it (32 bytes, unpadded base64url): the token is unmasked
/// and compared with the secret in constant time. A malformed secret or token
/// (not base64url, the wrong length, a token over 128 bytes) is `false`;
/// never panics, whatever the input. [`verify`] is this over the session's
/// secret; it is public for fuzzing and for checking tokens outside a request.
///
/// ```
/// use keycard::csrf::token_matches;
/// let secret = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"; // 32 zero bytes
/// // A 0x01 mask, and the secret XOR the mask: 64 bytes of 0x01.
/// let token = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ";
/// assert!(token_matches(secret, token));
/// assert!(!token_matches(secret, &token[..43])); // too short
/// assert!(!token_matches(secret, &token.replacen('A', "B", 1))); // another secret
/// assert!(!token_matches("not a secret", token));
/// ```
pub fn token_matches(secret_b64: &str, token: &str) -> bool {
    let (Some(secret), Some(presented)) = (decode_secret_text(secret_b64), unmask(token)) else {
        return false;
    };
    bool::from(secret.ct_eq(&presented))
}

/// Replaces the session's CSRF secret (at login), so a token seen before the
/// login is worthless after it.
pub async fn rotate(session: &Session) -> Result<(), SessionError> {
    session
        .set_reserved(reserved::CSRF_SECRET, Value::from(new_secret()?))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masking_round_trips_and_differs_each_time() {
        let secret = [7u8; SECRET_BYTES];
        let (a, b) = (mask(&secret).unwrap(), mask(&secret).unwrap());
        assert_ne!(a, b);
        assert_eq!(unmask(&a), Some(secret));
        assert_eq!(unmask(&b), Some(secret));
    }

    proptest! {
        #[test]
        fn unmask_never_panics(token in "\\PC*") {
            let _ = unmask(&token);
        }
    }
}
