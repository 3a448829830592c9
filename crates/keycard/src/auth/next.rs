//! Where to send a user after login: only a local path on this site.

/// Returns `next` if it is a safe local redirect target, else `None`.
///
/// Accepted: an absolute path (`/account?tab=1`). Refused: scheme-relative
/// (`//evil.example`), backslash tricks (`/\evil.example`, which browsers
/// read as `//`), any scheme (`https:`, `javascript:`), control characters
/// (CR/LF header injection), whitespace, dot segments (`/..//evil.example`,
/// which a browser resolves to the path `//evil.example`) and the
/// percent-encoded forms of all of these (`%2F%2F`, `%5C`, `%0d%0a`, `%2e%2e`),
/// so a decoding step later cannot revive them.
///
/// ```
/// use keycard::auth::safe_next;
/// assert_eq!(safe_next("/account"), Some("/account"));
/// for bad in ["//evil.com", "/\\evil.com", "https://evil.com", "javascript:alert(1)",
///             "/%2F%2Fevil.com", "/%5Cevil.com", "/a%0d%0aSet-Cookie:x", "account",
///             "/ /evil.com", "/..//evil.com", "/a/%2e%2e/b"] {
///     assert_eq!(safe_next(bad), None, "{bad}");
/// }
/// ```
pub fn safe_next(next: &str) -> Option<&str> {
    if next.len() > 2048 || !next.starts_with('/') {
        return None;
    }
    let decoded = percent_decode_repeatedly(next)?;
    let bytes = decoded.as_bytes();
    if bytes.get(1).is_some_and(|b| *b == b'/' || *b == b'\\') {
        return None;
    }
    // Whitespace as typed, not decoded: `%20` in a query is a value's space.
    if next.chars().any(char::is_whitespace) || decoded.chars().any(|c| c.is_control() || c == '\\')
    {
        return None;
    }
    // A colon before the first slash or query would be a scheme; after the
    // leading slash none can appear in a path we issue, so refuse it outright
    // in the path part. The path ends where the browser ends it: at a `?` or
    // `#` as typed (an encoded `%3F` is part of the path, and must not hide
    // the `..` after it).
    let path = percent_decode_repeatedly(next.split(['?', '#']).next().unwrap_or(""))?;
    if path.contains(':')
        || path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
    {
        return None;
    }
    Some(next)
}

/// Percent-decodes until stable (at most 4 rounds); `None` if still changing
/// or not UTF-8 (double-encoding is a common way past a single decode).
fn percent_decode_repeatedly(input: &str) -> Option<String> {
    let mut current = input.to_owned();
    for _ in 0..4 {
        let next = percent_decode(&current)?;
        if next == current {
            return Some(current);
        }
        current = next;
    }
    None
}

fn percent_decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16));
            let lo = bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16));
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes a path for a `next=` query parameter.
pub fn encode_next(path: &str) -> String {
    let mut out = String::with_capacity(path.len() * 3);
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_local_paths() {
        for ok in [
            "/",
            "/account",
            "/a/b?x=1&y=%20#frag",
            "/sessions?next=%2Faccount",
            "/search?q=a%20b",
            "/a..b/.c/..d",
            "/x?path=/../y",
        ] {
            assert_eq!(safe_next(ok), Some(ok));
        }
    }

    #[test]
    fn refuses_every_escape() {
        for bad in [
            "",
            "//x",
            "///x",
            "/\\x",
            "\\\\x",
            "http://x",
            "HTTPS://x",
            "javascript:alert(1)",
            "JaVaScRiPt:x",
            "data:text/html,x",
            "/%2f%2fx",
            "%2F%2Fx",
            "/%5cx",
            "/%255c%255cx",
            "/a\r\nb",
            "/a%0Ab",
            "/a%0d%0ab",
            " /x",
            "/x\t",
            "/%E0%A4%A",
            "/ok:colon",
            "/ /evil.com",
            "/a b",
            "/..//evil.com",
            "/a/../b",
            "/./x",
            "/a/%2e%2e/b",
            "/a/%2E/b",
            "/..",
            "/%3F/..//evil.example",
            "/%23/..//evil.example",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn encode_round_trips_through_decode() {
        assert_eq!(encode_next("/account"), "%2Faccount");
        assert_eq!(
            percent_decode(&encode_next("/a b?c=d")).unwrap(),
            "/a b?c=d"
        );
    }
}
