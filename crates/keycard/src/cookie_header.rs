//! Finding one cookie in a request's `Cookie` headers.
//!
//! Names are compared byte for byte after the single space that RFC 6265
//! §4.2.1 puts between pairs, so look-alikes (`__HOST-keycard`,
//! `  __Host-keycard`) are other cookies. A name sent twice is ambiguous (one
//! of them may have been planted by a sibling subdomain or a network attacker),
//! so it counts as absent: the request proceeds without a session.

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
        let Ok(text) = header.to_str() else {
            // A header with non-ASCII bytes might hide a duplicate: fail closed
            // only if it mentions the name at all.
            if contains(header.as_bytes(), name.as_bytes()) {
                return CookieLookup::Ambiguous;
            }
            continue;
        };
        for pair in text.split(';') {
            let pair = pair.strip_prefix(' ').unwrap_or(pair);
            let Some((pair_name, value)) = pair.split_once('=') else {
                continue;
            };
            if pair_name != name {
                continue;
            }
            if !matches!(found, CookieLookup::Absent) || value.len() > MAX_COOKIE_VALUE {
                return CookieLookup::Ambiguous;
            }
            found = CookieLookup::One(value.strip_suffix(' ').unwrap_or(value));
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
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

    proptest! {
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
