//! `keycard::auth::safe_next`: the `next=` redirect target after login.
//!
//! Checked: an accepted target is the input itself, starts with `/` but not
//! `//` or `/\`, has no control characters or whitespace, and stays on this
//! site, on a path that does not start with `//`, when a browser resolves it
//! (the WHATWG URL parser of the `url` crate) against a page of the site, as
//! it is and after any number of percent-decodings.
#![no_main]

use keycard::auth::safe_next;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use url::Url;

fn base() -> &'static Url {
    static BASE: OnceLock<Url> = OnceLock::new();
    BASE.get_or_init(|| Url::parse("https://app.example/login?next=x").expect("base URL"))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |j: usize| bytes.get(j).and_then(|b| char::from(*b).to_digit(16));
        if bytes[i] == b'%' {
            if let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) {
                out.push(u8::try_from(hi * 16 + lo).expect("a byte"));
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn stays_on_site(target: &str) {
    if let Ok(url) = base().join(target) {
        assert_eq!(url.scheme(), "https", "{target:?} -> {url}");
        assert_eq!(url.host_str(), Some("app.example"), "{target:?} -> {url}");
        assert_eq!(url.port(), None, "{target:?} -> {url}");
        assert_eq!(url.username(), "", "{target:?} -> {url}");
        // Not even a path that reads as another host (`/..//evil` -> `//evil`).
        assert!(!url.path().starts_with("//"), "{target:?} -> {url}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(next) = std::str::from_utf8(data) else {
        return;
    };
    let Some(accepted) = safe_next(next) else {
        return;
    };
    assert_eq!(accepted, next);
    assert!(accepted.starts_with('/'));
    assert!(
        !accepted.starts_with("//") && !accepted.starts_with("/\\"),
        "{accepted:?}"
    );
    assert!(
        !accepted
            .chars()
            .any(|c| c.is_control() || c.is_whitespace()),
        "{accepted:?}"
    );
    let mut current = accepted.to_owned();
    for _ in 0..6 {
        stays_on_site(&current);
        match percent_decode(&current) {
            Some(next) if next != current => current = next,
            _ => break,
        }
    }
});
