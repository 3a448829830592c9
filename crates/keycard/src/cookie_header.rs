//! Finding one cookie in a request's `Cookie` headers.
//!
//! Pairs are separated by `; `, exactly as RFC 6265 §4.2.1 writes the header
//! (a `;` followed by anything but a space is part of the pair it is in; one
//! `;` closing the header is tolerated), and names are compared byte for
//! byte, so look-alikes (`__HOST-keycard`, `  __Host-keycard`,
//! `a=b;__Host-keycard`) are other cookies; the sought cookie's value holding
//! a bare `;` (`__Host-keycard=a;b=c`) is ambiguous. A name sent twice is ambiguous (one
//! of them may have been planted by a sibling subdomain or a network attacker),
//! so it counts as absent: the request proceeds without a session.
//!
//! The header is split as bytes: `;` and `=` are ASCII, and no byte of a
//! UTF-8 or Latin-1 character equals them, so another cookie's non-ASCII value
//! cannot hide or fake a pair. Only the sought cookie's own value must be
//! visible ASCII (what `HeaderValue::to_str` accepts); one that is not is
//! refused as ambiguous.

use http::{HeaderMap, HeaderValue};
use std::ops::Range;

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
    match locate_cookie(headers, name) {
        Located::Absent => CookieLookup::Absent,
        Located::Ambiguous => CookieLookup::Ambiguous,
        Located::One(header, range) => match text_of(header, range) {
            Some(text) => CookieLookup::One(text),
            None => CookieLookup::Ambiguous,
        },
    }
}

/// [`find_cookie`]'s answer, with the value as a part of its header (so the
/// session layer can keep it for the request without copying it).
pub(crate) enum Located<'a> {
    Absent,
    /// The header that holds the value, and where in it.
    One(&'a HeaderValue, Range<usize>),
    Ambiguous,
}

/// A cookie's value: a range of the `Cookie` header it came in, checked to
/// be visible ASCII. Cloning it shares the header's bytes (so a `Session`
/// kept past the request keeps that header's buffer alive with it).
#[derive(Clone)]
pub(crate) struct CookieValue {
    header: HeaderValue,
    range: Range<usize>,
}

impl CookieValue {
    pub(crate) fn new(header: &HeaderValue, range: Range<usize>) -> Self {
        CookieValue {
            header: header.clone(),
            range,
        }
    }

    /// The value as text. `None` never happens for a value [`locate_cookie`]
    /// found (it checked the bytes); it is not unwrapped all the same.
    pub(crate) fn as_str(&self) -> Option<&str> {
        text_of(&self.header, self.range.clone())
    }

    /// The value's bytes (visible ASCII: [`locate_cookie`] checked them), for
    /// parsers that need no `&str` and so no UTF-8 check.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.header
            .as_bytes()
            .get(self.range.clone())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for CookieValue {
    // The header holds the request's other cookies too: none of it is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieValue(..)")
    }
}

fn text_of(header: &HeaderValue, range: Range<usize>) -> Option<&str> {
    std::str::from_utf8(header.as_bytes().get(range)?).ok()
}

/// Finds `name` in every `Cookie` header, by [`find_cookie`]'s rules.
pub(crate) fn locate_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Located<'a> {
    let mut found = Located::Absent;
    for header in headers.get_all(http::header::COOKIE) {
        let bytes = header.as_bytes();
        // The usual header is all visible ASCII: one check covers every value
        // in it; otherwise the sought value is checked on its own.
        let all_visible = header.to_str().is_ok();
        let mut at = 0; // where the current pair starts
        loop {
            let rest = bytes.get(at..).unwrap_or_default();
            let len = pair_len(rest);
            let pair = &rest[..len];
            if let Some(eq) = memchr::memchr(b'=', pair) {
                if &pair[..eq] == name.as_bytes() {
                    let value = &pair[eq + 1..];
                    // A bare `;` in it: pairs run together, as no browser
                    // writes them (`__Host-keycard=a;x=1`): fail closed.
                    if !matches!(found, Located::Absent)
                        || value.len() > MAX_COOKIE_VALUE
                        || memchr::memchr(b';', value).is_some()
                    {
                        return Located::Ambiguous;
                    }
                    let start = at + eq + 1;
                    let end = start + value.len() - usize::from(value.last() == Some(&b' '));
                    let valid =
                        all_visible || bytes.get(start..end).and_then(visible_ascii).is_some();
                    if !valid {
                        return Located::Ambiguous;
                    }
                    found = Located::One(header, start..end);
                }
            }
            if len == rest.len() {
                break;
            }
            at += len + 2;
        }
    }
    found
}

/// The length of the pair `rest` starts with: up to the next `; `, a `;`
/// that ends the header, or the end.
fn pair_len(rest: &[u8]) -> usize {
    let mut from = 0;
    while let Some(found) = memchr::memchr(b';', rest.get(from..).unwrap_or_default()) {
        let semicolon = from + found;
        match rest.get(semicolon + 1) {
            Some(b' ') | None => return semicolon,
            Some(_) => from = semicolon + 1,
        }
    }
    rest.len()
}

/// `bytes` as text if every byte is visible ASCII, space or tab (the bytes
/// `HeaderValue::to_str` accepts).
fn visible_ascii(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        .then_some(text)
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
    fn pairs_are_separated_by_semicolon_space_only() {
        for (header, expected) in [
            ("a=b; __Host-keycard=abc", CookieLookup::One("abc")),
            ("__Host-keycard=abc; a=b", CookieLookup::One("abc")),
            ("__Host-keycard=abc;", CookieLookup::One("abc")),
            ("a=b; __Host-keycard=abc;", CookieLookup::One("abc")),
            // Not as a browser writes it: part of the pair before.
            ("a=b;__Host-keycard=abc", CookieLookup::Absent),
            ("a=b;\t__Host-keycard=abc", CookieLookup::Absent),
            ("a=b;  __Host-keycard=abc", CookieLookup::Absent),
            ("__Host-keycard=abc;x=1", CookieLookup::Ambiguous),
        ] {
            let h = headers(&[header]);
            assert_eq!(find_cookie(&h, "__Host-keycard"), expected, "{header:?}");
        }
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

    /// The straightforward reading of the rules, on text, for comparison.
    fn reference<'a>(headers: &'a [&'a str], name: &str) -> CookieLookup<'a> {
        let mut found = CookieLookup::Absent;
        for text in headers {
            let text = text.strip_suffix(';').unwrap_or(text);
            for pair in text.split("; ") {
                let Some((pair_name, value)) = pair.split_once('=') else {
                    continue;
                };
                if pair_name != name {
                    continue;
                }
                if !matches!(found, CookieLookup::Absent)
                    || value.len() > MAX_COOKIE_VALUE
                    || value.contains(';')
                {
                    return CookieLookup::Ambiguous;
                }
                found = CookieLookup::One(value.strip_suffix(' ').unwrap_or(value));
            }
        }
        found
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference_on_text(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec!["__Host-k", "__HOST-k", "=", ";", " ", "; ", "a", "=b"]),
                0..24,
            ),
            split in 0usize..24,
        ) {
            let joined = pieces.concat();
            let cut = split.min(pieces.len());
            let two = [pieces[..cut].concat(), pieces[cut..].concat()];
            for values in [vec![joined.as_str()], vec![two[0].as_str(), two[1].as_str()]] {
                let h = headers(&values);
                prop_assert_eq!(find_cookie(&h, "__Host-k"), reference(&values, "__Host-k"));
            }
        }

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
