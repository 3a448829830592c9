//! `keycard cookie`: reading and making session cookie values.
//!
//! keycard cookies are opened with the same codecs the session layer uses
//! ([`SealedCodec`] by default, [`SignedCodec`] with `--signed`), bound to the
//! cookie name and purpose; Flask cookies with [`FlaskCodec`]. What a
//! rejection says is the codec's exact reason, plus what to check.

use crate::cli::{CodecArgs, InspectArgs, MaxAge, SealArgs};
use crate::error::Failure;
use crate::keys;
use crate::output::{self, sanitize, time};
use crate::view;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keycard::codec::flask::{json_integers_fit, FlaskCodec, FlaskSession};
use keycard::codec::{KeyRing, SealedCodec, SignedCodec};
use keycard::{cookie_payload, now_millis, CodecError, CookieCodec, Record, SessionId};
use serde_json::{json, Value};
use std::io::Read;

/// The session cookie's name when none is given (keycard's default).
const KEYCARD_COOKIE: &str = "__Host-keycard";
/// Flask's default `SESSION_COOKIE_NAME`.
const FLASK_COOKIE: &str = "session";

/// `keycard cookie inspect`: always one JSON document (the data is JSON).
pub fn inspect(args: &InspectArgs) -> Result<(), Failure> {
    let input = read_argument(&args.value, "VALUE")?;
    let default_name = if args.codec.secret.is_some() {
        FLASK_COOKIE
    } else {
        KEYCARD_COOKIE
    };
    let (name, value) = pick_cookie(&input, args.codec.name.as_deref(), default_name)?;
    let document = match (&args.codec.keys, &args.codec.secret) {
        (Some(path), _) => inspect_keycard(&args.codec, &keys::load(path)?, &name, &value)?,
        (None, Some(secret)) => inspect_flask(args, secret, &name, &value)?,
        (None, None) => return Err(Failure::new("give --keys FILE or --secret S")),
    };
    output::print_json(&document)
}

/// `keycard cookie seal`: prints the new cookie's value (or, with `--json`,
/// a document with its name and value).
pub fn seal(args: &SealArgs, json: bool) -> Result<(), Failure> {
    let text = read_argument(&args.data, "JSON")?;
    let data: Value = serde_json::from_str(&text)
        .map_err(|e| Failure::new(format!("the session data is not JSON: {e}")))?;
    if !json_integers_fit(text.as_bytes()) {
        return Err(Failure::new(
            "the session data holds an integer outside the 64-bit range (it would become a float)",
        ));
    }
    let (name, value, handle) = match (&args.codec.keys, &args.codec.secret) {
        (Some(path), _) => {
            let Value::Object(data) = data else {
                return Err(Failure::new("the session data must be a JSON object"));
            };
            let ring = keys::load(path)?;
            let name = args
                .codec
                .name
                .clone()
                .unwrap_or_else(|| KEYCARD_COOKIE.into());
            let id = SessionId::generate().map_err(|e| Failure::new(e.to_string()))?;
            let now = now_millis();
            let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            let mut record = Record::new(now, ms(args.idle_timeout), ms(args.absolute_timeout));
            record.data = data;
            record.user_id.clone_from(&args.user);
            let payload = cookie_payload::encode(&id, &record);
            let value = codec(&args.codec, &ring)
                .seal(&name, &payload)
                .map_err(|e| Failure::new(format!("cannot seal the cookie: {e}")))?;
            (name, value, Some(id.key().handle()))
        }
        (None, Some(secret)) => {
            let name = args
                .codec
                .name
                .clone()
                .unwrap_or_else(|| FLASK_COOKIE.into());
            let session = FlaskSession::from_tagged_json(data).map_err(|e| {
                Failure::new(format!("the session data is not a Flask session: {e}"))
            })?;
            let value = flask_codec(secret, &[])?
                .with_cookie_name(name.as_str())
                .encode(&session)
                .map_err(|e| Failure::new(format!("cannot sign the cookie: {e}")))?;
            (name, value, None)
        }
        (None, None) => return Err(Failure::new("give --keys FILE or --secret S")),
    };
    if json {
        return output::print_json(&json!({"name": name, "value": value, "handle": handle}));
    }
    output::print(&(value + "\n"))
}

/// The argument, or standard input when it is `-` (which keeps a cookie or
/// its data out of the shell history and the process list).
fn read_argument(argument: &str, what: &str) -> Result<String, Failure> {
    if argument != "-" {
        return Ok(argument.to_owned());
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| Failure::new(format!("cannot read {what} from stdin: {e}")))?;
    Ok(text)
}

/// The cookie name and value in what the user pasted: a bare value,
/// `name=value`, or a whole `Cookie:` header (`a=1; b=2`), from which the
/// cookie named `wanted` (or `fallback`) is taken. Names match byte for
/// byte, as the session layer matches them.
fn pick_cookie(
    input: &str,
    wanted: Option<&str>,
    fallback: &str,
) -> Result<(String, String), Failure> {
    let mut text = input.trim();
    if text.len() > 7 && text.is_char_boundary(7) && text[..7].eq_ignore_ascii_case("cookie:") {
        text = text[7..].trim();
    }
    // No keycard or Flask value holds `=` or `;` (both are unpadded base64url).
    if !text.contains(['=', ';']) {
        return Ok((
            wanted.unwrap_or(fallback).to_owned(),
            unquote(text).to_owned(),
        ));
    }
    let pairs: Vec<(&str, &str)> = text
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .collect();
    let name = match (wanted, pairs.as_slice()) {
        (Some(name), _) => name,
        (None, [(only, _)]) => only,
        (None, _) => fallback,
    };
    let found: Vec<&str> = pairs
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .collect();
    match found.as_slice() {
        [value] => Ok((name.to_owned(), unquote(value.trim()).to_owned())),
        [] => {
            let names: Vec<String> = pairs.iter().map(|(n, _)| sanitize(n)).collect();
            Err(Failure::new(format!(
                "no cookie named {} in the input (it has: {}); see --name",
                sanitize(name),
                names.join(", ")
            )))
        }
        // The session layer treats a duplicated session cookie as no session.
        _ => Err(Failure::new(format!(
            "the cookie {} appears more than once in the input",
            sanitize(name)
        ))),
    }
}

/// A cookie value without the double quotes RFC 6265 allows around it.
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

fn codec(args: &CodecArgs, ring: &KeyRing) -> Box<dyn CookieCodec> {
    if args.signed {
        Box::new(SignedCodec::new(ring, &args.purpose))
    } else {
        Box::new(SealedCodec::new(ring, &args.purpose))
    }
}

/// The key ID a keycard value names in its header, if it has one: sealed
/// values start with it, signed ones carry it after the `.`.
fn key_id(value: &str, signed: bool) -> Option<u16> {
    let part = if signed {
        value.rsplit_once('.')?.1
    } else {
        value
    };
    // The first 4 characters decode to the version byte and the 2-byte key ID.
    let head = URL_SAFE_NO_PAD.decode(part.get(..4)?).ok()?;
    match head.as_slice() {
        [1, hi, lo] => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    }
}

fn inspect_keycard(
    args: &CodecArgs,
    ring: &KeyRing,
    name: &str,
    value: &str,
) -> Result<Value, Failure> {
    let format = if args.signed {
        "keycard signed"
    } else {
        "keycard sealed"
    };
    let opened = codec(args, ring).open(name, value).map_err(|e| {
        let hint = match &e {
            CodecError::UnknownKey => {
                let ids: Vec<String> = ring.ids().map(|id| id.to_string()).collect();
                match key_id(value, args.signed) {
                    Some(id) => format!("key id {id}; the ring holds {}", ids.join(", ")),
                    None => format!("the ring holds {}", ids.join(", ")),
                }
            }
            CodecError::BadSignature => format!(
                "checked as a {format} cookie named {} for purpose {}: it was modified, or made for another name, purpose or key ring{}",
                sanitize(name),
                sanitize(&args.purpose),
                if args.signed { "" } else { " (or it is a signed cookie: try --signed)" }
            ),
            CodecError::Malformed(_) if !args.signed && value.contains('.') => {
                "it looks like a signed or Flask cookie: try --signed, or --secret for Flask".into()
            }
            _ => format!("checked as a {format} cookie"),
        };
        Failure::new(format!("cookie rejected: {e} ({hint})"))
    })?;
    let key_id = key_id(value, args.signed);
    let mut document = json!({
        "format": format,
        "cookie": name,
        "purpose": args.purpose,
        "key_id": key_id,
        "stale_key": opened.stale_key,
    });
    match cookie_payload::decode(&opened.payload) {
        Ok((id, record)) => {
            let now = now_millis();
            if record.is_expired(now) {
                return Err(Failure::new(format!(
                    "cookie rejected: session {} at {} UTC; the server would start a new one",
                    view::status(&record, now),
                    time(record.expires_at())
                )));
            }
            // The ID is the secret that opens the session: only its key's handle is shown.
            document["session"] = view::record_json(&id.key(), &record, now, true);
        }
        Err(e) if args.purpose == "session" => {
            return Err(Failure::new(format!(
                "cookie rejected: it opened, but {e} (not a keycard session cookie?)"
            )))
        }
        // Another purpose (a remember-me cookie, an application's own): its
        // payload is the application's, shown as text when it is text.
        Err(_) => {
            document["payload"] = match std::str::from_utf8(&opened.payload) {
                Ok(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::from(text)),
                Err(_) => json!({"base64url": URL_SAFE_NO_PAD.encode(&opened.payload)}),
            };
        }
    }
    Ok(document)
}

fn flask_codec(secret: &str, fallbacks: &[String]) -> Result<FlaskCodec, Failure> {
    if secret.is_empty() {
        // Flask itself has no session at all with an empty SECRET_KEY.
        return Err(Failure::new("the Flask secret key is empty"));
    }
    if fallbacks.iter().any(String::is_empty) {
        // Anyone can sign with an empty key: keycard's codec never uses one.
        return Err(Failure::new(
            "a --fallback secret is empty (keycard never verifies with an empty key)",
        ));
    }
    Ok(FlaskCodec::new(secret).with_fallbacks(fallbacks))
}

fn inspect_flask(
    args: &InspectArgs,
    secret: &str,
    name: &str,
    value: &str,
) -> Result<Value, Failure> {
    let unlimited = flask_codec(secret, &args.fallback)?.without_max_age();
    let codec = match args.max_age {
        MaxAge::Limit(max_age) => unlimited.clone().with_max_age(max_age),
        MaxAge::Unlimited => unlimited.clone(),
    };
    let session = codec.decode(value).map_err(|e| {
        let hint = match (&e, unlimited.decode(value)) {
            (CodecError::Expired, Ok(old)) => format!(
                "signed {} UTC: older than --max-age, or dated in the future; --max-age none skips the check",
                time(i64::try_from(old.issued_at).unwrap_or(i64::MAX).saturating_mul(1000))
            ),
            (CodecError::BadSignature, _) => format!(
                "the value was modified, or another secret signed it: tried the secret and {} fallback{}",
                args.fallback.len(),
                if args.fallback.len() == 1 { "" } else { "s" }
            ),
            _ => "checked as a Flask session cookie".into(),
        };
        Failure::new(format!("cookie rejected: {e} ({hint})"))
    })?;
    Ok(json!({
        "format": "flask",
        "cookie": name,
        "issued_at": session.issued_at,
        "stale_key": session.stale_key,
        "permanent": session.is_permanent(),
        "data": session.to_tagged_json(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(input: &str, wanted: Option<&str>) -> Result<(String, String), Failure> {
        pick_cookie(input, wanted, KEYCARD_COOKIE)
    }

    #[test]
    fn values_come_bare_as_pairs_or_in_headers() {
        let ok = |name: &str, value: &str| Some((name.to_owned(), value.to_owned()));
        assert_eq!(pick(" abc.def ", None).ok(), ok(KEYCARD_COOKIE, "abc.def"));
        assert_eq!(pick("abc", Some("x")).ok(), ok("x", "abc"));
        assert_eq!(pick("session=abc", None).ok(), ok("session", "abc"));
        assert_eq!(pick("\"abc\"", None).ok(), ok(KEYCARD_COOKIE, "abc"));
        let header = "Cookie: theme=dark; __Host-keycard=\"v1\"; other=2";
        assert_eq!(pick(header, None).ok(), ok(KEYCARD_COOKIE, "v1"));
        assert_eq!(pick(header, Some("theme")).ok(), ok("theme", "dark"));
        // A look-alike name is not the session cookie.
        let message = pick("__HOST-keycard=v; a=b", None).unwrap_err().to_string();
        assert!(
            message.contains("no cookie named __Host-keycard"),
            "{message}"
        );
        assert!(pick("__Host-keycard=a; __Host-keycard=b", None).is_err());
    }

    #[test]
    fn key_ids_are_read_from_headers() {
        let ring = KeyRing::from_keys([(7, [1; 32])]).unwrap();
        let sealed = SealedCodec::new(&ring, "session").seal("c", b"x").unwrap();
        assert_eq!(key_id(&sealed, false), Some(7));
        let signed = SignedCodec::new(&ring, "session").seal("c", b"x").unwrap();
        assert_eq!(key_id(&signed, true), Some(7));
        assert_eq!(key_id("!!", false), None);
    }
}
