//! What `FlaskCodec::decode_at` parses once a Flask cookie's signature
//! checks out: the timestamp, the (optionally zlib-compressed) base64url
//! payload, its JSON and Flask's tagged values (` t`, ` b`, ` u`, ` d`,
//! ` m`, ` di`).
//!
//! Input: `payload.timestamp`, the part of a cookie a signature covers. The
//! target signs it with the Flask secret (or, if the input ends in `\n`,
//! the fallback secret) and decodes, so the fuzzer reaches the parsers
//! behind the signature. A correctly signed cookie is never a bad
//! signature; what decodes must survive being encoded again.
#![no_main]

use keycard::codec::flask::FlaskCodec;
use keycard::CodecError;
use keycard_fuzz::{
    check_flask_session, flask_codec, flask_sign, FLASK_FALLBACK, FLASK_NOW, FLASK_SECRET,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn codecs() -> &'static (FlaskCodec, FlaskCodec) {
    static CODECS: OnceLock<(FlaskCodec, FlaskCodec)> = OnceLock::new();
    CODECS.get_or_init(|| {
        let unlimited = FlaskCodec::new(FLASK_SECRET)
            .with_fallbacks([FLASK_FALLBACK])
            .without_max_age();
        (flask_codec(), unlimited)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (signed, fallback) = match text.strip_suffix('\n') {
        Some(signed) => (signed, true),
        None => (text, false),
    };
    let secret = if fallback {
        FLASK_FALLBACK
    } else {
        FLASK_SECRET
    };
    let cookie = format!("{signed}.{}", flask_sign(secret, signed.as_bytes()));
    let (aged, unlimited) = codecs();
    for codec in [aged, unlimited] {
        match codec.decode_at(&cookie, FLASK_NOW) {
            Ok(session) => {
                assert_eq!(session.stale_key, fallback);
                check_flask_session(aged, &session);
            }
            Err(CodecError::BadSignature) => panic!("a correctly signed cookie was refused"),
            Err(CodecError::TooLarge(_)) => assert!(cookie.len() > 4096 || signed.starts_with('.')),
            Err(_) => {}
        }
    }
});
