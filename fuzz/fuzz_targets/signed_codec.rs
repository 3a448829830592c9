//! `keycard::SignedCodec::open` (via `CookieCodec`): a signed cookie value.
//!
//! The input is opened as a cookie value under fixed test keys (the seeds
//! hold real signed cookies, so mutations start from valid structure). It is
//! also signed as a payload and opened again, which must give it back, and
//! any one-character change to the signed value must be rejected.
#![no_main]

use keycard::SignedCodec;
use keycard_fuzz::{check_cookie_codec, CodecSet};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn codecs() -> &'static CodecSet<SignedCodec> {
    static CODECS: OnceLock<CodecSet<SignedCodec>> = OnceLock::new();
    CODECS.get_or_init(|| CodecSet::new(SignedCodec::new))
}

fuzz_target!(|data: &[u8]| check_cookie_codec(codecs(), data));
