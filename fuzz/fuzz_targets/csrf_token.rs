//! `keycard::csrf::token_matches`: a CSRF token from a form field or the
//! `X-CSRF-Token` header, unmasked and compared with the session's secret.
//!
//! Input: `secret\ntoken` as text, checked for panics. The raw bytes also
//! build a secret and a mask (the first 64 bytes): the token masked as the
//! layer masks it must match, with surrounding whitespace too, and with any
//! one bit flipped must not.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keycard::csrf::token_matches;
use keycard_fuzz::first_line;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (secret, token) = first_line(data);
    if let (Ok(secret), Ok(token)) = (std::str::from_utf8(secret), std::str::from_utf8(token)) {
        if token_matches(secret, token) {
            assert_eq!(URL_SAFE_NO_PAD.decode(secret).map(|s| s.len()), Ok(32));
            assert!(token.len() <= 128);
            assert_eq!(
                URL_SAFE_NO_PAD.decode(token.trim()).map(|t| t.len()),
                Ok(64)
            );
        }
    }

    let Some(bytes) = data.get(..64) else {
        return;
    };
    let (secret, pad) = bytes.split_at(32);
    let mut masked: Vec<u8> = pad.to_vec();
    masked.extend(pad.iter().zip(secret).map(|(p, s)| p ^ s));
    let secret = URL_SAFE_NO_PAD.encode(secret);
    let token = URL_SAFE_NO_PAD.encode(&masked);
    assert!(token_matches(&secret, &token));
    assert!(token_matches(&secret, &format!(" {token}\t")));
    let bit = data.get(64).map_or(0, |b| usize::from(*b)) % (masked.len() * 8);
    masked[bit / 8] ^= 1 << (bit % 8);
    assert!(!token_matches(&secret, &URL_SAFE_NO_PAD.encode(&masked)));
});
