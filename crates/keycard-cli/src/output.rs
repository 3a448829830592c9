//! What the commands print: JSON documents, tables, times, and text made safe
//! for a terminal.

use crate::error::Failure;
use keycard::UnixMillis;
use std::io::Write;
use std::time::Duration;

/// Writes `text` to stdout. A closed pipe (`keycard ... | head`) is not an
/// error worth a message: the reader has what it wanted.
pub fn print(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::new(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

/// Prints `value` as one pretty JSON document and a newline.
pub fn print_json(value: &serde_json::Value) -> Result<(), Failure> {
    print(&(json_text(value)? + "\n"))
}

/// `value` as pretty JSON that is safe on a terminal: JSON escapes only the
/// C0 controls, so the other [terminal hazards](terminal_hazard) in its
/// strings are written as `\uXXXX` escapes too (the same JSON value).
fn json_text(value: &serde_json::Value) -> Result<String, Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::new(format!("cannot format JSON: {e}")))?;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if terminal_hazard(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Characters a terminal acts on besides the C0 controls: DEL, the C1
/// controls (U+009B is CSI, the same as ESC `[`), the bidirectional marks and
/// overrides (they reorder what the operator reads) and the line and
/// paragraph separators.
fn terminal_hazard(c: char) -> bool {
    matches!(
        c,
        '\u{7f}'..='\u{9f}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// A warning on stderr (the result still goes to stdout).
pub fn warn(message: &str) {
    let _ = writeln!(std::io::stderr(), "keycard: warning: {message}");
}

/// Text from a store or a cookie, safe to print on a terminal: control
/// characters and the other [terminal hazards](terminal_hazard) (a
/// User-Agent is attacker-chosen, and an escape sequence in it could rewrite
/// the operator's screen) are shown escaped, as `\u{1b}`.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || terminal_hazard(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// [`sanitize`]d, then cut to `max` characters with an ellipsis.
pub fn truncate(text: &str, max: usize) -> String {
    let clean = sanitize(text);
    if clean.chars().count() <= max {
        return clean;
    }
    let mut cut: String = clean.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A time as `YYYY-MM-DD HH:MM:SS` UTC (what the tables show).
pub fn time(millis: UnixMillis) -> String {
    let seconds = millis.div_euclid(1000);
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A duration as its largest whole unit (`3s`, `500ms`, `2h`).
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        ms if ms % 3_600_000 == 0 && ms > 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 && ms > 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// A plain text table: a header row and left-aligned columns two spaces apart.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Table {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Adds a row (cells already [`sanitize`]d).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(i))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < row.len() {
                    let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(time(-1000), "1969-12-31 23:59:59");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(sanitize("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\n");
        assert_eq!(
            sanitize("\u{7f}\u{9b}2J\u{202e}é"),
            "\\u{7f}\\u{9b}2J\\u{202e}é"
        );
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }

    #[test]
    fn json_escapes_terminal_hazards_and_keeps_the_value() {
        let value = serde_json::json!({"ua": "a\u{1b}[2J\u{7f}\u{9b}\u{202e}\u{2028}é", "n": 1});
        let text = json_text(&value).unwrap();
        assert!(
            !text.chars().any(|c| terminal_hazard(c) || c == '\u{1b}'),
            "{text}"
        );
        assert!(
            text.contains("\\u007f") && text.contains("\\u202e"),
            "{text}"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            value
        );
    }

    #[test]
    fn tables_align() {
        let mut table = Table::new(&["A", "BB"]);
        table.row(vec!["long".into(), "x".into()]);
        assert_eq!(table.render(), "A     BB\nlong  x\n");
    }

    #[test]
    fn durations_use_their_largest_unit() {
        assert_eq!(duration(Duration::from_secs(3)), "3s");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration(Duration::from_secs(7200)), "2h");
    }
}
