//! Display preferences, kept in the session one key each (so concurrent
//! changes to different preferences both stick).

use keycard::{Session, SessionError};
use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Prefs {
    pub background_color: String,
    pub font_size: String,
    pub theme: String,
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs {
            background_color: "#ffffff".into(),
            font_size: "medium".into(),
            theme: "light".into(),
        }
    }
}

pub const FIELDS: [&str; 3] = ["background_color", "font_size", "theme"];

/// Checks one preference; `Err` names what is wrong.
pub fn validate(field: &str, value: &str) -> Result<(), String> {
    let ok = match field {
        "background_color" => {
            value.len() == 7
                && value.starts_with('#')
                && value[1..].bytes().all(|b| b.is_ascii_hexdigit())
        }
        "font_size" => matches!(value, "small" | "medium" | "large"),
        "theme" => matches!(value, "light" | "dark"),
        _ => return Err(format!("unknown preference `{field}`")),
    };
    if ok {
        Ok(())
    } else {
        Err(match field {
            "background_color" => "background_color must be a colour like #1a2b3c".into(),
            "font_size" => "font_size must be small, medium or large".into(),
            _ => "theme must be light or dark".into(),
        })
    }
}

/// The visitor's preferences, with defaults for unset ones.
pub async fn load(session: &Session) -> Result<Prefs, SessionError> {
    let mut prefs = Prefs::default();
    for field in FIELDS {
        if let Some(Value::String(value)) = session.get_value(field).await? {
            if validate(field, &value).is_ok() {
                match field {
                    "background_color" => prefs.background_color = value,
                    "font_size" => prefs.font_size = value,
                    _ => prefs.theme = value,
                }
            }
        }
    }
    Ok(prefs)
}

/// Validates every given field first, then stores them all (nothing is
/// stored if any is invalid).
pub async fn save(
    session: &Session,
    fields: &Map<String, Value>,
) -> Result<Result<(), String>, SessionError> {
    let mut valid = Vec::new();
    for (field, value) in fields {
        // An unknown field is named as such, whatever its value.
        let known = FIELDS.contains(&field.as_str());
        let Some(text) = value.as_str().filter(|_| known) else {
            return Ok(Err(if known {
                format!("{field} must be a string")
            } else {
                format!("unknown preference `{field}`")
            }));
        };
        if let Err(message) = validate(field, text) {
            return Ok(Err(message));
        }
        // Kept as sent (`#AABBCC` stays upper case): the client reads back
        // what it wrote; CSS takes either case.
        valid.push((field.as_str(), text.to_owned()));
    }
    for (field, value) in valid {
        session.insert(field, value).await?;
    }
    Ok(Ok(()))
}
