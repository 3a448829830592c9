//! How the session layer behaves: cookie attributes, timeouts, store limits.

use std::time::Duration;

/// The `SameSite` attribute of the session cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    /// Sent on same-site requests and top-level cross-site navigations (the default).
    Lax,
    /// Sent only on same-site requests.
    Strict,
    /// Always sent (requires `Secure`).
    None,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        }
    }
}

/// The session cookie's name and attributes.
///
/// The defaults follow OWASP's Session Management Cheat Sheet and RFC 6265bis:
/// the `__Host-` prefix (which makes browsers insist on `Secure`, `Path=/` and
/// no `Domain`, so a sibling subdomain cannot plant or overwrite the cookie),
/// `HttpOnly` (no script access), `SameSite=Lax`, and no `Max-Age`: a
/// browser-session cookie, since the server enforces expiry anyway.
///
/// ```
/// use keycard::CookieConfig;
/// let cookie = CookieConfig::default();
/// assert_eq!(cookie.name, "__Host-keycard");
/// assert_eq!(
///     cookie.set_cookie("abc"),
///     "__Host-keycard=abc; Path=/; Secure; HttpOnly; SameSite=Lax"
/// );
/// ```
#[derive(Clone, Debug)]
pub struct CookieConfig {
    /// The cookie name. Default: `__Host-keycard`.
    pub name: String,
    /// The `Path`. Default: `/` (required by the `__Host-` prefix).
    pub path: String,
    /// The `Domain`, if any. Default: none (required by the `__Host-` prefix).
    pub domain: Option<String>,
    /// The `Secure` attribute. Default: on. Turn off only for plain-HTTP
    /// development on a host other than localhost, and drop the `__Host-` prefix then.
    pub secure: bool,
    /// The `HttpOnly` attribute. Default: on.
    pub http_only: bool,
    /// The `SameSite` attribute. Default: `Lax`.
    pub same_site: SameSite,
    /// `Max-Age`, making the cookie outlive the browser session. Default: none.
    pub max_age: Option<Duration>,
}

impl Default for CookieConfig {
    fn default() -> Self {
        CookieConfig {
            name: "__Host-keycard".into(),
            path: "/".into(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            max_age: None,
        }
    }
}

impl CookieConfig {
    /// A cookie config with another name and the default attributes.
    pub fn named(name: impl Into<String>) -> Self {
        CookieConfig {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Why browsers would refuse this cookie, if they would: a `__Host-`
    /// name needs `Secure`, `Path=/` and no `Domain`, a `__Secure-` name
    /// needs `Secure`, and `SameSite=None` needs `Secure`. A refused cookie
    /// means a new session on every request (and every form failing CSRF), so
    /// the layers log this as an error when they are configured.
    ///
    /// ```
    /// use keycard::CookieConfig;
    /// assert_eq!(CookieConfig::default().browser_refusal(), None);
    /// let plain = CookieConfig { secure: false, ..CookieConfig::default() };
    /// assert!(plain.browser_refusal().is_some());
    /// let renamed = CookieConfig { secure: false, ..CookieConfig::named("dev-session") };
    /// assert_eq!(renamed.browser_refusal(), None);
    /// ```
    pub fn browser_refusal(&self) -> Option<&'static str> {
        // Browsers match the prefixes case-insensitively (RFC 6265bis).
        let prefixed = |prefix: &str| {
            self.name
                .get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
        };
        if prefixed("__Host-") && (!self.secure || self.path != "/" || self.domain.is_some()) {
            return Some("a __Host- cookie must be Secure, with Path=/ and no Domain");
        }
        if prefixed("__Secure-") && !self.secure {
            return Some("a __Secure- cookie must be Secure");
        }
        if self.same_site == SameSite::None && !self.secure {
            return Some("a SameSite=None cookie must be Secure");
        }
        None
    }

    fn attributes(&self, out: &mut String) {
        out.push_str("; Path=");
        out.push_str(&self.path);
        if let Some(domain) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(domain);
        }
        if self.secure {
            out.push_str("; Secure");
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        out.push_str("; SameSite=");
        out.push_str(self.same_site.as_str());
    }

    /// The `Set-Cookie` value that stores `value`.
    pub fn set_cookie(&self, value: &str) -> String {
        let mut out = String::with_capacity(self.name.len() + value.len() + 64);
        out.push_str(&self.name);
        out.push('=');
        out.push_str(value);
        self.attributes(&mut out);
        if let Some(max_age) = self.max_age {
            out.push_str(&format!("; Max-Age={}", max_age.as_secs()));
        }
        out
    }

    /// The `Set-Cookie` value that deletes the cookie: the same name, path,
    /// domain and prefix-relevant attributes, so the browser matches it.
    pub fn clear_cookie(&self) -> String {
        let mut out = format!("{}=", self.name);
        self.attributes(&mut out);
        out.push_str("; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
        out
    }
}

/// Session lifetime and store settings.
///
/// ```
/// use keycard::SessionConfig;
/// use std::time::Duration;
/// let config = SessionConfig::default()
///     .with_idle_timeout(Duration::from_secs(15 * 60))
///     .with_absolute_timeout(Duration::from_secs(4 * 3600));
/// assert_eq!(config.touch_interval(), Duration::from_secs(225));
/// ```
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The session cookie.
    pub cookie: CookieConfig,
    /// A session unused for this long ends. Default: 30 minutes (OWASP suggests
    /// 15-30 minutes for most applications; ASVS 5.0 V7.3.1).
    pub idle_timeout: Duration,
    /// A session ends this long after creation or login, however active.
    /// Default: 8 hours (ASVS 5.0 V7.3.2; NIST SP 800-63B-4 §2.2.3 asks AAL2
    /// to re-authenticate at least every 24 h, a working day is the common
    /// choice).
    pub absolute_timeout: Duration,
    /// A read-only request moves the idle deadline only when at least this
    /// fraction of the idle timeout has passed since the last move, so
    /// read-only traffic does not write on every request. Default: 1/4.
    /// Cost: the idle deadline may be early by up to this fraction.
    pub touch_fraction: f64,
    /// How long one store call may take before the request answers 503.
    /// Default: 1 second.
    pub store_timeout: Duration,
    /// Where the session ID may come from besides the cookie. Default: also
    /// `Authorization: Bearer` (API tokens are sessions of their own).
    pub accept_bearer: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            cookie: CookieConfig::default(),
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(8 * 3600),
            touch_fraction: 0.25,
            store_timeout: Duration::from_secs(1),
            accept_bearer: true,
        }
    }
}

impl SessionConfig {
    /// Sets the idle timeout.
    #[must_use]
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the absolute timeout.
    #[must_use]
    pub fn with_absolute_timeout(mut self, timeout: Duration) -> Self {
        self.absolute_timeout = timeout;
        self
    }

    /// Sets the cookie config.
    #[must_use]
    pub fn with_cookie(mut self, cookie: CookieConfig) -> Self {
        self.cookie = cookie;
        self
    }

    /// Sets the store timeout.
    #[must_use]
    pub fn with_store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// Sets the fraction of the idle timeout after which a read-only request
    /// moves the idle deadline (0: every request; 1: only when it would
    /// otherwise lapse). Kept within 0 and 1; NaN keeps the default.
    ///
    /// ```
    /// use keycard::SessionConfig;
    /// let every_request = SessionConfig::default().with_touch_fraction(0.0);
    /// assert_eq!(every_request.touch_interval(), std::time::Duration::ZERO);
    /// assert_eq!(SessionConfig::default().with_touch_fraction(7.0).touch_fraction, 1.0);
    /// assert_eq!(SessionConfig::default().with_touch_fraction(f64::NAN).touch_fraction, 0.25);
    /// ```
    #[must_use]
    pub fn with_touch_fraction(mut self, fraction: f64) -> Self {
        if !fraction.is_nan() {
            self.touch_fraction = fraction.clamp(0.0, 1.0);
        }
        self
    }

    /// Whether an `Authorization: Bearer` header may carry a session ID (API
    /// tokens). Turn it off when no API client uses tokens.
    #[must_use]
    pub fn with_accept_bearer(mut self, accept: bool) -> Self {
        self.accept_bearer = accept;
        self
    }

    /// The minimum time between two deadline moves of a read-only session.
    ///
    /// Never panics: a fraction outside 0..=1 is clamped, NaN counts as the
    /// default 1/4, and an interval too long to represent is the idle timeout.
    pub fn touch_interval(&self) -> Duration {
        Duration::try_from_secs_f64(
            self.idle_timeout.as_secs_f64() * self.effective_touch_fraction(),
        )
        .unwrap_or(self.idle_timeout)
    }

    /// `touch_fraction` as used: NaN counts as the default 0.25, the rest
    /// is clamped to 0..=1.
    fn effective_touch_fraction(&self) -> f64 {
        if self.touch_fraction.is_nan() {
            0.25
        } else {
            self.touch_fraction.clamp(0.0, 1.0)
        }
    }

    pub(crate) fn idle_ms(&self) -> i64 {
        i64::try_from(self.idle_timeout.as_millis()).unwrap_or(i64::MAX)
    }

    pub(crate) fn absolute_ms(&self) -> i64 {
        i64::try_from(self.absolute_timeout.as_millis()).unwrap_or(i64::MAX)
    }

    /// [`touch_interval`](Self::touch_interval) in whole milliseconds (to
    /// within 1 ms), worked out in milliseconds: every request asks, and this
    /// skips the `Duration` round trip.
    pub(crate) fn touch_ms(&self) -> i64 {
        // `as` saturates: an idle timeout of i64::MAX ms stays i64::MAX.
        (self.idle_ms() as f64 * self.effective_touch_fraction()) as i64
    }
}

/// Parses a duration written as a number and a unit: `90s`, `30m`, `8h`, `7d`
/// (or `500ms`). A bare number is seconds.
///
/// ```
/// use keycard::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("8h"), Ok(Duration::from_secs(8 * 3600)));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 90s, 30m or 8h"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit (use ms, s, m, h or d)"
            ))
        }
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touch_interval_never_panics() {
        let nan = SessionConfig {
            touch_fraction: f64::NAN,
            ..SessionConfig::default()
        };
        assert_eq!(nan.touch_interval(), Duration::from_secs(450));
        let huge = SessionConfig::default()
            .with_idle_timeout(Duration::MAX)
            .with_touch_fraction(1.0);
        assert_eq!(huge.touch_interval(), Duration::MAX);
        let negative = SessionConfig {
            touch_fraction: -3.0,
            ..SessionConfig::default()
        };
        assert_eq!(negative.touch_interval(), Duration::ZERO);
    }

    #[test]
    fn touch_ms_is_touch_interval_in_milliseconds() {
        let idles = [
            0,
            1,
            999,
            1_000,
            90_000,
            1_800_000,
            86_400_000,
            u64::from(u32::MAX),
        ];
        let fractions = [
            f64::NAN,
            -1.0,
            0.0,
            0.1,
            0.25,
            1.0 / 3.0,
            0.5,
            0.999,
            1.0,
            7.0,
        ];
        for idle in idles {
            for fraction in fractions {
                let config = SessionConfig {
                    touch_fraction: fraction,
                    ..SessionConfig::default().with_idle_timeout(Duration::from_millis(idle))
                };
                let expected = i64::try_from(config.touch_interval().as_millis()).unwrap();
                let got = config.touch_ms();
                // Two float routes to the same figure may round 1 ms apart.
                assert!(
                    (got - expected).abs() <= 1,
                    "{idle} ms x {fraction}: {got} vs {expected}"
                );
            }
        }
        // No overflow at the extreme: still millions of years.
        let huge = SessionConfig::default().with_idle_timeout(Duration::MAX);
        assert!(huge.touch_ms() > 1 << 60);
    }
}
