//! `keycard::SealedCodec::open` (via `CookieCodec`): a sealed cookie value.
//!
//! The input is opened as a cookie value under fixed test keys (the seeds
//! hold real sealed cookies, so mutations start from valid structure). It is
//! also sealed as a payload and opened again, which must give it back, and
//! any one-character change to the sealed value must be rejected.
#![no_main]

use keycard::SealedCodec;
use keycard_fuzz::{check_cookie_codec, CodecSet};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn codecs() -> &'static CodecSet<SealedCodec> {
    static CODECS: OnceLock<CodecSet<SealedCodec>> = OnceLock::new();
    CODECS.get_or_init(|| CodecSet::new(SealedCodec::new))
}

fuzz_target!(|data: &[u8]| check_cookie_codec(codecs(), data));
