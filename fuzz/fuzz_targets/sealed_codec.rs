//! `keycard::SealedCodec::open` (via `CookieCodec`): a sealed cookie value.
//!
//! The input is opened as a cookie value under fixed test keys (the seeds
//! hold real sealed cookies, so mutations start from valid structure). It is
//! also sealed as a payload and opened again, which must give it back, and
//! any one-character change to the sealed value must be rejected.
#![no_main]

use keycard::{CodecError, CookieCodec, SealedCodec};
use keycard_fuzz::{old_ring, ring, COOKIE_NAME, PURPOSE};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct Codecs {
    current: SealedCodec,
    old: SealedCodec,
    other_purpose: SealedCodec,
}

fn codecs() -> &'static Codecs {
    static CODECS: OnceLock<Codecs> = OnceLock::new();
    CODECS.get_or_init(|| Codecs {
        current: SealedCodec::new(&ring(), PURPOSE),
        old: SealedCodec::new(&old_ring(), PURPOSE),
        other_purpose: SealedCodec::new(&ring(), "remember"),
    })
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fuzz_target!(|data: &[u8]| {
    let c = codecs();
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
});
