//! `keycard::cookie_header::find_cookie`: the session cookie's value from
//! the request's `Cookie` headers.
//!
//! Input: the first line is the cookie name to look up (`__Host-keycard`
//! when empty or not UTF-8); every further line is one `Cookie` header.
//! Checked against a model written from the documented rules: each header's
//! bytes (less one closing `;`) split on `; `, the name (up to the first `=`)
//! compared byte for byte, so another cookie's non-ASCII bytes change
//! nothing; a name present twice, a value over 4096 bytes, a value holding a
//! `;` or a value that is not visible ASCII is ambiguous.
#![no_main]

use http::{HeaderMap, HeaderValue};
use keycard::cookie_header::{find_cookie, has_cookie, CookieLookup, MAX_COOKIE_VALUE};
use keycard_fuzz::{first_line, is_header_text, COOKIE_NAME};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
enum Expected<'a> {
    Absent,
    One(&'a str),
    Ambiguous,
}

fn model<'a>(values: &[&'a [u8]], name: &str) -> Expected<'a> {
    let mut found = Vec::new();
    for value in values {
        let value = value.strip_suffix(b";").unwrap_or(value);
        for pair in split_pairs(value) {
            if name.contains('=') {
                continue; // a pair's name ends at its first `=`
            }
            if let Some(v) = pair
                .strip_prefix(name.as_bytes())
                .and_then(|r| r.strip_prefix(b"="))
            {
                found.push(v);
            }
        }
    }
    match found.as_slice() {
        [] => Expected::Absent,
        [v] if v.len() <= MAX_COOKIE_VALUE && !v.contains(&b';') => {
            let v = v.strip_suffix(b" ").unwrap_or(v);
            match std::str::from_utf8(v) {
                Ok(text) if is_header_text(v) => Expected::One(text),
                _ => Expected::Ambiguous,
            }
        }
        _ => Expected::Ambiguous,
    }
}

/// `bytes` split at every `; `.
fn split_pairs(bytes: &[u8]) -> Vec<&[u8]> {
    let mut pairs = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b';' && bytes[i + 1] == b' ' {
            pairs.push(&bytes[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    pairs.push(&bytes[start..]);
    pairs
}

fuzz_target!(|data: &[u8]| {
    let (name, rest) = first_line(data);
    let name = match std::str::from_utf8(name) {
        Ok("") | Err(_) => COOKIE_NAME,
        Ok(name) => name,
    };
    let mut headers = HeaderMap::new();
    let mut values = Vec::new();
    for line in rest.split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(http::header::COOKIE, value);
            values.push(line);
        }
    }
    let got = find_cookie(&headers, name);
    let want = model(&values, name);
    match (&got, &want) {
        (CookieLookup::Absent, Expected::Absent)
        | (CookieLookup::Ambiguous, Expected::Ambiguous) => {}
        (CookieLookup::One(a), Expected::One(b)) if a == b => {}
        _ => panic!("find_cookie({name:?}) = {got:?}, model says {want:?}"),
    }
    if let CookieLookup::One(value) = got {
        assert!(!value.contains(';'), "a value holds `;`: {value:?}");
        assert!(value.len() <= MAX_COOKIE_VALUE);
    }
    assert_eq!(
        has_cookie(&headers, name),
        !matches!(got, CookieLookup::Absent)
    );
});
