//! Finding one cookie in a request's `Cookie` headers.
//!
//! Names are compared byte for byte after the single space that RFC 6265
//! §4.2.1 puts between pairs, so look-alikes (`__HOST-keycard`,
//! `  __Host-keycard`) are other cookies. A name sent twice is ambiguous (one
//! of them may have been planted by a sibling subdomain or a network attacker),
//! so it counts as absent: the request proceeds without a session.
//!
//! The header is split as bytes: `;` and `=` are ASCII, and no byte of a
//! UTF-8 or Latin-1 character equals them, so another cookie's non-ASCII value
//! cannot hide or fake a pair. Only the sought cookie's own value must be
//! visible ASCII (what `HeaderValue::to_str` accepts); one that is not is
//! refused as ambiguous.

use http::HeaderMap;

/// The longest cookie value keycard will look at (4 KB, the RFC 6265 minimum a
/// browser stores); longer ones are treated as absent.
pub const MAX_COOKIE_VALUE: usize = 4096;

/// What the request carried under one cookie name.
#[derive(Debug, PartialEq, Eq)]
pub enum CookieLookup<'a> {
    /// No cookie of that name.
    Absent,
    /// Exactly one, with this value.
    One(&'a str),
    /// More than one, or a value too long or not text: fail closed.
    Ambiguous,
}

/// Looks up `name` in every `Cookie` header of `headers`.
///
/// ```
/// use http::HeaderMap;
/// use keycard::cookie_header::{find_cookie, CookieLookup};
/// let mut headers = HeaderMap::new();
/// headers.insert("cookie", "a=1; __HOST-k=evil; __Host-k=good".parse().unwrap());
/// assert_eq!(find_cookie(&headers, "__Host-k"), CookieLookup::One("good"));
/// headers.append("cookie", "__Host-k=second".parse().unwrap());
/// assert_eq!(find_cookie(&headers, "__Host-k"), CookieLookup::Ambiguous);
/// ```
pub fn find_cookie<'a>(headers: &'a HeaderMap, name: &str) -> CookieLookup<'a> {
    let mut found = CookieLookup::Absent;
    for header in headers.get_all(http::header::COOKIE) {
        for pair in header.as_bytes().split(|&b| b == b';') {
            let pair = pair.strip_prefix(b" ").unwrap_or(pair);
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            let (pair_name, rest) = pair.split_at(eq);
            if pair_name != name.as_bytes() {
                continue;
            }
            let value = rest.get(1..).unwrap_or_default();
            if !matches!(found, CookieLookup::Absent) || value.len() > MAX_COOKIE_VALUE {
                return CookieLookup::Ambiguous;
            }
            let value = value.strip_suffix(b" ").unwrap_or(value);
            match visible_ascii(value) {
                Some(value) => found = CookieLookup::One(value),
                None => return CookieLookup::Ambiguous,
            }
        }
    }
    found
}

/// `bytes` as text if every byte is visible ASCII, space or tab (the bytes
/// `HeaderValue::to_str` accepts).
fn visible_ascii(bytes: &[u8]) -> Option<&str> {
    let visible = bytes
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b));
    visible.then(|| std::str::from_utf8(bytes).ok()).flatten()
}

/// Whether the request carries any cookie whose name is `name` (even ambiguously).
pub fn has_cookie(headers: &HeaderMap, name: &str) -> bool {
    !matches!(find_cookie(headers, name), CookieLookup::Absent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(http::header::COOKIE, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn exact_names_only() {
        let h =
            headers(&["__Host-keycardx=1; x__Host-keycard=2;  __Host-keycard=3; __host-keycard=4"]);
        assert_eq!(find_cookie(&h, "__Host-keycard"), CookieLookup::Absent);
        let h = headers(&["__Host-keycard=abc"]);
        assert_eq!(find_cookie(&h, "__Host-keycard"), CookieLookup::One("abc"));
    }

    #[test]
    fn duplicates_across_headers_are_ambiguous() {
        let h = headers(&["__Host-keycard=a", "__Host-keycard=a"]);
        assert_eq!(find_cookie(&h, "__Host-keycard"), CookieLookup::Ambiguous);
    }

    #[test]
    fn oversized_values_are_ambiguous() {
        let big = format!("__Host-keycard={}", "a".repeat(MAX_COOKIE_VALUE + 1));
        assert_eq!(
            find_cookie(&headers(&[&big]), "__Host-keycard"),
            CookieLookup::Ambiguous
        );
    }

    fn byte_headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(
                http::header::COOKIE,
                http::HeaderValue::from_bytes(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn another_cookies_non_ascii_value_neither_hides_nor_fakes_the_session() {
        let name = "__Host-keycard";
        for other in [
            &b"other=\xc3\xa9t\xc3\xa9"[..],
            b"other=\xe9t\xe9",
            b"\xe9=1",
        ] {
            let mut before = other.to_vec();
            before.extend_from_slice(b"; __Host-keycard=abc");
            let mut after = b"__Host-keycard=abc; ".to_vec();
            after.extend_from_slice(other);
            for header in [&before, &after] {
                let h = byte_headers(&[header]);
                assert_eq!(find_cookie(&h, name), CookieLookup::One("abc"));
            }
            // In a header of its own, too, and a duplicate is still seen.
            let h = byte_headers(&[other, b"__Host-keycard=abc"]);
            assert_eq!(find_cookie(&h, name), CookieLookup::One("abc"));
            let mut dup = other.to_vec();
            dup.extend_from_slice(b"; __Host-keycard=planted");
            let h = byte_headers(&[b"__Host-keycard=abc", &dup]);
            assert_eq!(find_cookie(&h, name), CookieLookup::Ambiguous);
        }
    }

    #[test]
    fn a_non_ascii_session_value_is_refused() {
        let h = byte_headers(&[b"__Host-keycard=ab\xe9"]);
        assert_eq!(find_cookie(&h, "__Host-keycard"), CookieLookup::Ambiguous);
    }

    proptest! {
        #[test]
        fn never_panics_on_bytes(value in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(v) = http::HeaderValue::from_bytes(&value) {
                let mut map = HeaderMap::new();
                map.insert(http::header::COOKIE, v);
                let _ = find_cookie(&map, "__Host-keycard");
            }
        }


        #[test]
        fn never_panics(value in "\\PC*") {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                let mut map = HeaderMap::new();
                map.insert(http::header::COOKIE, v);
                let _ = find_cookie(&map, "__Host-keycard");
            }
        }
    }
}
