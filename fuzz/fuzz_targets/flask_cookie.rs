//! `keycard::codec::flask::FlaskCodec::decode_at`: a Flask session cookie
//! as a Flask app with the vectors' secrets
//! (`crates/keycard/tests/data/flask/vectors.json`) would receive it.
//!
//! The seeds are the real cookies of those vectors. A cookie that decodes
//! must decode without the age limit too, to the same session, and must
//! survive being encoded again (see `check_flask_session`).
#![no_main]

use keycard::codec::flask::FlaskCodec;
use keycard_fuzz::{check_flask_session, flask_codec, FLASK_FALLBACK, FLASK_NOW, FLASK_SECRET};
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
    let (aged, unlimited) = codecs();
    let within_age = aged.decode_at(text, FLASK_NOW);
    let any_age = unlimited.decode_at(text, FLASK_NOW);
    if let Ok(session) = &within_age {
        assert_eq!(any_age.as_ref(), Ok(session));
    }
    if let Ok(session) = &any_age {
        check_flask_session(aged, session);
    }
});
