//! Templates (minijinja, compiled into the binary) and page responses.

use crate::prefs::Prefs;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;
use std::sync::Arc;

pub type Templates = Arc<Environment<'static>>;

pub fn templates() -> Result<Templates, minijinja::Error> {
    let mut env = Environment::new();
    // Escape what HTML needs and nothing more, so text such as a User-Agent
    // reads verbatim in the page source too (minijinja's default also
    // escapes `/`).
    env.set_formatter(|out, state, value| {
        if state.auto_escape() == minijinja::AutoEscape::None || value.is_safe() {
            return minijinja::escape_formatter(out, state, value);
        }
        let text = value.to_string();
        let mut escaped = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                '&' => escaped.push_str("&amp;"),
                '<' => escaped.push_str("&lt;"),
                '>' => escaped.push_str("&gt;"),
                '"' => escaped.push_str("&quot;"),
                '\'' => escaped.push_str("&#39;"),
                c => escaped.push(c),
            }
        }
        out.write_str(&escaped)
            .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write failed"))
    });
    for (name, source) in [
        ("base.html", include_str!("../templates/base.html")),
        ("home.html", include_str!("../templates/home.html")),
        ("login.html", include_str!("../templates/login.html")),
        ("register.html", include_str!("../templates/register.html")),
        ("reauth.html", include_str!("../templates/reauth.html")),
        ("account.html", include_str!("../templates/account.html")),
        (
            "preferences.html",
            include_str!("../templates/preferences.html"),
        ),
        ("sessions.html", include_str!("../templates/sessions.html")),
        ("message.html", include_str!("../templates/message.html")),
    ] {
        env.add_template(name, source)?;
    }
    Ok(Arc::new(env))
}

pub const STYLESHEET: &str = include_str!("../templates/app.css");

/// What every page shows.
#[derive(Serialize)]
pub struct Page<T: Serialize> {
    pub user: Option<String>,
    pub prefs: Prefs,
    pub csrf_token: Option<String>,
    pub message: Option<&'static str>,
    pub message_kind: &'static str,
    #[serde(flatten)]
    pub extra: T,
}

pub fn page<T: Serialize>(
    templates: &Templates,
    status: StatusCode,
    name: &str,
    page: &Page<T>,
) -> Response {
    match templates.get_template(name).and_then(|t| t.render(page)) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, template = name, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal error.").into_response()
        }
    }
}

/// A notice chosen by a `?m=` code, so redirects can say what happened
/// without writing to the session.
pub fn notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "saved" => "Preferences saved.",
        "registered" => "Welcome! Your account is ready and you are signed in.",
        "password" => "Password changed. Every other session of yours has ended.",
        "revoked" => "Session revoked.",
        "others" => "Every other session has been logged out.",
        "reauth" => "Thanks, your login is fresh again.",
        "loggedout" => "You have been logged out.",
        _ => return None,
    })
}

/// `2026-11-30 08:00 UTC` from Unix milliseconds.
pub fn utc(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats_known_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc(1_796_025_600_000), "2026-11-30 08:00 UTC");
    }
}
