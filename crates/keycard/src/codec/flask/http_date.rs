//! The date Flask's ` d` tag carries: an RFC 7231 IMF-fixdate
//! (`Wed, 21 Oct 2015 07:28:00 GMT`), as werkzeug's `http_date` writes it.

use std::fmt;

const SECS_PER_DAY: i64 = 86_400;
/// 0100-01-01T00:00:00Z: Python reads years below 100 as two-digit years
/// (`0001` is 2001), so earlier dates cannot make the round trip through Flask.
const MIN_SECS: i64 = days_from_civil(100, 1, 1) * SECS_PER_DAY;
/// 9999-12-31T23:59:59Z: the last date with a four-digit year.
const MAX_SECS: i64 = days_from_civil(9999, 12, 31) * SECS_PER_DAY + SECS_PER_DAY - 1;

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A UTC date and time to the second, between the years 100 and 9999: the
/// value of Flask's ` d` tag (a Python `datetime`, sent as an HTTP date).
///
/// `Display` writes the HTTP date as Flask does.
///
/// ```
/// use keycard::codec::flask::HttpDate;
/// let date = HttpDate::from_unix(1_445_412_480).unwrap();
/// assert_eq!(date.to_string(), "Wed, 21 Oct 2015 07:28:00 GMT");
/// assert_eq!(HttpDate::parse("Wed, 21 Oct 2015 07:28:00 GMT"), Some(date));
/// assert_eq!(HttpDate::from_unix(i64::MAX), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HttpDate(i64);

impl HttpDate {
    /// The date `secs` seconds after 1970-01-01T00:00:00Z (negative: before);
    /// `None` outside the years 100 to 9999.
    ///
    /// ```
    /// use keycard::codec::flask::HttpDate;
    /// assert_eq!(HttpDate::from_unix(0).unwrap().to_string(), "Thu, 01 Jan 1970 00:00:00 GMT");
    /// ```
    pub fn from_unix(secs: i64) -> Option<Self> {
        (MIN_SECS..=MAX_SECS)
            .contains(&secs)
            .then_some(HttpDate(secs))
    }

    /// Seconds since 1970-01-01T00:00:00Z.
    ///
    /// ```
    /// use keycard::codec::flask::HttpDate;
    /// assert_eq!(HttpDate::from_unix(-1).unwrap().unix(), -1);
    /// ```
    pub fn unix(self) -> i64 {
        self.0
    }

    /// Parses `Www, DD Mmm YYYY HH:MM:SS GMT` the way Flask reads it back
    /// (Python's `email.utils.parsedate_to_datetime`): the weekday is not
    /// checked, and a year below 100 is a two-digit year (69-99: 19xx, 0-68:
    /// 20xx). Other date formats are `None`.
    ///
    /// ```
    /// use keycard::codec::flask::HttpDate;
    /// let date = HttpDate::parse("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
    /// assert_eq!(date.unix(), 784_111_777);
    /// assert_eq!(HttpDate::parse("Sunday, 06-Nov-94 08:49:37 GMT"), None);
    /// ```
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.get(3..)?.strip_prefix(", ")?;
        if !text.get(..3)?.bytes().all(|b| b.is_ascii_alphabetic()) {
            return None;
        }
        let mut parts = rest.split(' ');
        let (Some(day), Some(month), Some(year), Some(time), Some("GMT"), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let day = digits(day, 2)?;
        let month = MONTHS.iter().position(|m| *m == month)?;
        let mut year = i64::from(digits(year, 4)?);
        if year < 100 {
            year += if year > 68 { 1900 } else { 2000 };
        }
        let mut hms = time.split(':');
        let (Some(h), Some(m), Some(s), None) = (hms.next(), hms.next(), hms.next(), hms.next())
        else {
            return None;
        };
        let (h, m, s) = (digits(h, 2)?, digits(m, 2)?, digits(s, 2)?);
        let month = u32::try_from(month).ok()? + 1;
        if day == 0 || day > days_in_month(year, month) || h > 23 || m > 59 || s > 59 {
            return None;
        }
        let secs = days_from_civil(year, month, day) * SECS_PER_DAY
            + i64::from(h) * 3600
            + i64::from(m) * 60
            + i64::from(s);
        Self::from_unix(secs)
    }
}

impl fmt::Display for HttpDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(SECS_PER_DAY);
        let secs = self.0.rem_euclid(SECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        // 1970-01-01 was a Thursday (index 3 from Monday).
        let weekday = WEEKDAYS[usize::try_from((days + 3).rem_euclid(7)).unwrap_or(0)];
        let month = MONTHS[usize::try_from(month - 1).unwrap_or(0)];
        write!(
            f,
            "{weekday}, {day:02} {month} {year:04} {:02}:{:02}:{:02} GMT",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

/// Exactly `len` ASCII digits.
fn digits(text: &str, len: usize) -> Option<u32> {
    if text.len() != len || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`, public domain).
const fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_known_dates() {
        for (secs, text) in [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (-1, "Wed, 31 Dec 1969 23:59:59 GMT"),
            (MIN_SECS, "Fri, 01 Jan 0100 00:00:00 GMT"),
            (MAX_SECS, "Fri, 31 Dec 9999 23:59:59 GMT"),
            (4_102_444_800, "Fri, 01 Jan 2100 00:00:00 GMT"),
        ] {
            let date = HttpDate::from_unix(secs).unwrap();
            assert_eq!(date.to_string(), text);
            assert_eq!(HttpDate::parse(text), Some(date), "{text}");
        }
        assert_eq!(HttpDate::from_unix(MIN_SECS - 1), None);
        assert_eq!(HttpDate::from_unix(MAX_SECS + 1), None);
    }

    #[test]
    fn two_digit_years_follow_python() {
        let y2001 = HttpDate::parse("Mon, 01 Jan 2001 00:00:00 GMT").unwrap();
        assert_eq!(
            HttpDate::parse("Mon, 01 Jan 0001 00:00:00 GMT"),
            Some(y2001)
        );
        let y1999 = HttpDate::parse("Fri, 31 Dec 1999 00:00:00 GMT").unwrap();
        assert_eq!(
            HttpDate::parse("Fri, 31 Dec 0099 00:00:00 GMT"),
            Some(y1999)
        );
    }

    #[test]
    fn rejects_other_shapes() {
        for bad in [
            "",
            "Thu, 01 Jan 1970 00:00:00 UTC",
            "Thu, 1 Jan 1970 00:00:00 GMT",
            "Thu, 01 Jan 1970 00:00:00 GMT ",
            "Thu, 29 Feb 2001 00:00:00 GMT",
            "Thu, 01 Jan 1970 24:00:00 GMT",
            "Thu, 01 Jan 1970 00:00:60 GMT",
            "Thu, 01 Foo 1970 00:00:00 GMT",
            "Thu, 01 Jan +970 00:00:00 GMT",
            "Thu 01 Jan 1970 00:00:00 GMT",
            "éé, 01 Jan 1970 00:00:00 GMT",
        ] {
            assert_eq!(HttpDate::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_day_round_trips() {
        let mut secs = MIN_SECS;
        while secs <= MAX_SECS {
            let date = HttpDate(secs);
            assert_eq!(HttpDate::parse(&date.to_string()), Some(date));
            secs += SECS_PER_DAY * 7 + 3_601;
        }
    }
}
