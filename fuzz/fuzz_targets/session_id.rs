//! `keycard::SessionId::parse`: the session ID in a cookie or bearer token.
//!
//! Checked: an ID parses exactly when the text is 43 base64url characters
//! whose last one carries no stray bits (one spelling per ID), and a parsed
//! ID writes back as the input. Any 32 input bytes, as an ID, round-trip.
#![no_main]

use keycard::SessionId;
use libfuzzer_sys::fuzz_target;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn canonical(text: &str) -> bool {
    let index = |b: u8| ALPHABET.iter().position(|a| *a == b);
    text.len() == 43
        && text.bytes().all(|b| index(b).is_some())
        // 43 characters hold 258 bits: the last character's low 2 bits are padding.
        && index(text.as_bytes()[42]).is_some_and(|i| i % 4 == 0)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let parsed = SessionId::parse(text);
        assert_eq!(parsed.is_some(), canonical(text), "{text:?}");
        if let Some(id) = parsed {
            assert_eq!(id.to_string(), text);
        }
    }
    if let Some(bytes) = data.get(..32) {
        let id = SessionId::from_bytes(bytes.try_into().expect("32 bytes"));
        assert_eq!(SessionId::parse(&id.to_string()), Some(id));
    }
});
