//! `keycard::bearer_token`: the token of an `Authorization: Bearer` header.
//!
//! Input: header lines, `name: value`. A token is found only in the one
//! `Authorization` header, whose scheme is `bearer` in any case; it is the
//! trimmed rest of that header's text.
#![no_main]

use keycard::{bearer_token, SessionId};
use keycard_fuzz::header_lines;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let headers = header_lines(data);
    let Some(token) = bearer_token(&headers) else {
        return;
    };
    let all: Vec<_> = headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .collect();
    assert_eq!(
        all.len(),
        1,
        "a token from {} Authorization headers",
        all.len()
    );
    let text = all[0].to_str().expect("a token from a non-text header");
    let (scheme, rest) = text.split_at(6.min(text.len()));
    assert!(scheme.eq_ignore_ascii_case("bearer"), "scheme of {text:?}");
    assert!(
        rest.starts_with(' '),
        "no space after the scheme in {text:?}"
    );
    assert_eq!(token, token.trim());
    assert!(rest.contains(token.as_str()));
    let _ = SessionId::parse(&token);
});
