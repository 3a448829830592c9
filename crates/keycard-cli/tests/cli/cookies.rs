//! `keycard cookie inspect` and `keycard cookie seal`, against cookies made
//! (and opened) by keycard's codecs and by Flask.

use crate::common::{keycard, keycard_with_stdin, service_url};
use keycard::codec::flask::FlaskCodec;
use keycard::codec::{KeyRing, SealedCodec, SignedCodec};
use keycard::{cookie_payload, now_millis, reserved, CookieCodec, Record, SessionId};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const NAME: &str = "__Host-keycard";

/// A key ring written to a file of the test's own.
struct Ring {
    _dir: tempfile::TempDir,
    path: PathBuf,
    ring: KeyRing,
}

fn ring_file(ring: KeyRing) -> Ring {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    ring.write_file(&path).unwrap();
    Ring {
        _dir: dir,
        path,
        ring,
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A client-side session as the session layer seals it.
fn session(user: Option<&str>) -> (SessionId, Record) {
    let mut record = Record::new(now_millis(), 30 * 60_000, 8 * 3_600_000);
    record.user_id = user.map(str::to_owned);
    record.data.insert("cart".into(), json!({"items": [1, 2]}));
    record
        .data
        .insert(reserved::CSRF_SECRET.into(), json!("csrf-secret-value"));
    (SessionId::generate().unwrap(), record)
}

fn sealed(ring: &KeyRing, id: &SessionId, record: &Record) -> String {
    SealedCodec::new(ring, "session")
        .seal(NAME, &cookie_payload::encode(id, record))
        .unwrap()
}

/// Replaces one character in the middle of `value` with another base64url one.
fn tamper(value: &str) -> String {
    let mut chars: Vec<char> = value.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[test]
fn a_sealed_session_cookie_is_inspected() {
    let keys = ring_file(KeyRing::generate().unwrap());
    let (id, record) = session(Some("ada"));
    let value = sealed(&keys.ring, &id, &record);

    let run = keycard(&["cookie", "inspect", "--keys", path(&keys.path), &value]).ok();
    // The session ID opens the session: it is never printed, in any spelling.
    assert!(!run.stdout.contains(&id.to_string()));
    let id_hex: String = id.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert!(!run.stdout.contains(&id_hex));
    assert!(!run.stdout.contains("csrf-secret-value"));
    let shown: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(shown["format"], "keycard sealed");
    assert_eq!(shown["cookie"], NAME);
    assert_eq!(shown["key_id"], 1);
    assert_eq!(shown["stale_key"], false);
    let s = &shown["session"];
    assert_eq!(s["handle"], id.key().handle());
    assert_eq!(s["user_id"], "ada");
    assert_eq!(s["created_at"], record.created_at);
    assert_eq!(s["last_seen"], record.last_seen);
    assert_eq!(s["idle_deadline"], record.idle_deadline);
    assert_eq!(s["absolute_deadline"], record.absolute_deadline);
    assert_eq!(s["status"], "live");
    assert_eq!(s["data"]["cart"], json!({"items": [1, 2]}));
    assert_eq!(s["data"]["keycard.csrf"], "<hidden>");

    // As copied from a browser: `name=value`, or the whole Cookie header; or from stdin.
    let pair = format!("{NAME}={value}");
    let header = format!("Cookie: theme=dark; {NAME}={value}; other=1");
    for input in [pair.as_str(), header.as_str()] {
        let again = keycard(&["cookie", "inspect", "--keys", path(&keys.path), input]).json();
        assert_eq!(again["session"]["handle"], id.key().handle());
    }
    let piped = keycard_with_stdin(
        &["cookie", "inspect", "--keys", path(&keys.path), "-"],
        Some(&format!("{value}\n")),
    );
    assert_eq!(piped.json()["session"]["user_id"], "ada");
}

#[test]
fn rejections_say_why() {
    let keys = ring_file(KeyRing::generate().unwrap());
    let (id, record) = session(None);
    let value = sealed(&keys.ring, &id, &record);
    let inspect = |args: &[&str]| {
        let mut all = vec!["cookie", "inspect", "--keys", path(&keys.path)];
        all.extend(args);
        keycard(&all)
    };

    inspect(&[&tamper(&value)]).fails_with("bad signature");
    // Bound to the cookie name (byte for byte) and the purpose.
    inspect(&["--name", "__HOST-keycard", &value]).fails_with("bad signature");
    inspect(&[&format!("__HOST-keycard={value}")]).fails_with("bad signature");
    inspect(&["--purpose", "remember", &value]).fails_with("bad signature");
    inspect(&["definitely not a cookie"]).fails_with("malformed cookie");
    inspect(&["abc.def"]).fails_with("try --signed");

    // Sealed with a key the ring does not hold.
    let mut newer = keys.ring.clone();
    newer.rotate().unwrap();
    let (id, record) = session(None);
    let from_newer = sealed(&newer, &id, &record);
    inspect(&[&from_newer]).fails_with("unknown key (key id 2; the ring holds 1)");

    // A session past its idle deadline is what the server would reject.
    let mut old = Record::new(now_millis() - 3_600_000, 60_000, 8 * 3_600_000);
    old.user_id = Some("ada".into());
    let expired = sealed(&keys.ring, &SessionId::generate().unwrap(), &old);
    inspect(&[&expired]).fails_with("session expired (idle timeout)");
}

#[test]
fn an_older_key_still_opens_and_is_flagged() {
    let old = ring_file(KeyRing::generate().unwrap());
    let (id, record) = session(Some("ada"));
    let value = sealed(&old.ring, &id, &record);
    let mut rotated = old.ring.clone();
    rotated.rotate().unwrap();
    let rotated = ring_file(rotated);
    let shown = keycard(&["cookie", "inspect", "--keys", path(&rotated.path), &value]).json();
    assert_eq!(shown["stale_key"], true);
    assert_eq!(shown["key_id"], 1);
    assert_eq!(shown["session"]["user_id"], "ada");
}

#[test]
fn signed_cookies_are_inspected_with_signed() {
    let keys = ring_file(KeyRing::generate().unwrap());
    let (id, record) = session(Some("ada"));
    let value = SignedCodec::new(&keys.ring, "session")
        .seal(NAME, &cookie_payload::encode(&id, &record))
        .unwrap();
    let shown = keycard(&[
        "cookie",
        "inspect",
        "--signed",
        "--keys",
        path(&keys.path),
        &value,
    ])
    .json();
    assert_eq!(shown["format"], "keycard signed");
    assert_eq!(shown["session"]["handle"], id.key().handle());
    keycard(&["cookie", "inspect", "--keys", path(&keys.path), &value]).fails_with("try --signed");
    let (payload, signature) = value.split_once('.').unwrap();
    let forged = format!("{}.{signature}", tamper(payload));
    keycard(&[
        "cookie",
        "inspect",
        "--signed",
        "--keys",
        path(&keys.path),
        &forged,
    ])
    .fails_with("bad signature");

    // Another purpose: the payload is the application's, shown as it is.
    let theme = SignedCodec::new(&keys.ring, "prefs")
        .seal("theme", br#"{"dark":true}"#)
        .unwrap();
    let shown = keycard(&[
        "cookie",
        "inspect",
        "--signed",
        "--purpose",
        "prefs",
        "--keys",
        path(&keys.path),
        &format!("theme={theme}"),
    ])
    .json();
    assert_eq!(shown["payload"], json!({"dark": true}));
}

#[test]
fn sealed_cookies_open_with_the_codecs() {
    let keys = ring_file(KeyRing::generate().unwrap());
    let made = keycard(&[
        "cookie",
        "seal",
        "--json",
        "--keys",
        path(&keys.path),
        "--user",
        "ada",
        r#"{"theme":"dark","n":1}"#,
    ])
    .json();
    assert_eq!(made["name"], NAME);
    let value = made["value"].as_str().unwrap();
    let opened = SealedCodec::new(&keys.ring, "session")
        .open(NAME, value)
        .unwrap();
    let (id, record) = cookie_payload::decode(&opened.payload).unwrap();
    assert_eq!(made["handle"], id.key().handle());
    assert_eq!(record.user_id.as_deref(), Some("ada"));
    assert_eq!(record.data["theme"], "dark");
    assert_eq!(record.data["n"], 1);
    assert!(!record.is_expired(now_millis()));
    assert!(record.absolute_deadline - record.created_at == 8 * 3_600_000);

    let plain = keycard_with_stdin(
        &[
            "cookie",
            "seal",
            "--signed",
            "--idle-timeout",
            "5m",
            "--keys",
            path(&keys.path),
            "-",
        ],
        Some(r#"{"a":[1]}"#),
    )
    .ok()
    .stdout;
    let opened = SignedCodec::new(&keys.ring, "session")
        .open(NAME, plain.trim_end())
        .unwrap();
    let (_, record) = cookie_payload::decode(&opened.payload).unwrap();
    assert_eq!(record.data["a"], json!([1]));
    assert_eq!(record.idle_deadline - record.created_at, 5 * 60_000);
    assert!(record.user_id.is_none());

    keycard(&["cookie", "seal", "--keys", path(&keys.path), "[1]"])
        .fails_with("must be a JSON object");
    keycard(&["cookie", "seal", "--keys", path(&keys.path), "{"]).fails_with("not JSON");
    for secret in [["--keys", path(&keys.path)], ["--secret", "s"]] {
        keycard(
            &[
                &["cookie", "seal"],
                &secret[..],
                &[r#"{"n":18446744073709551616}"#],
            ]
            .concat(),
        )
        .fails_with("outside the 64-bit range");
    }
    keycard(&[
        "cookie",
        "seal",
        "--keys",
        path(&keys.path),
        &format!(r#"{{"big":"{}"}}"#, "x".repeat(5000)),
    ])
    .fails_with("too large");
}

#[test]
fn flask_cookies_are_sealed_and_inspected() {
    let value = keycard(&[
        "cookie",
        "seal",
        "--secret",
        "s3cret",
        r#"{"user_id":42,"t":{" t":[1,"a"]}}"#,
    ])
    .ok()
    .stdout;
    let session = FlaskCodec::new("s3cret").decode(value.trim_end()).unwrap();
    assert_eq!(
        session.to_tagged_json(),
        json!({"user_id": 42, "t": {" t": [1, "a"]}})
    );
    let shown = keycard(&[
        "cookie",
        "inspect",
        "--secret",
        "s3cret",
        &format!("session={}", value.trim_end()),
    ])
    .json();
    assert_eq!(shown["format"], "flask");
    assert_eq!(shown["data"], json!({"user_id": 42, "t": {" t": [1, "a"]}}));
    assert_eq!(shown["stale_key"], false);
    keycard(&["cookie", "inspect", "--secret", "other", value.trim_end()])
        .fails_with("bad signature");
    let shown = keycard(&[
        "cookie",
        "inspect",
        "--secret",
        "new",
        "--fallback",
        "s3cret",
        value.trim_end(),
    ])
    .json();
    assert_eq!(shown["stale_key"], true);
    keycard(&[
        "cookie",
        "inspect",
        "--secret",
        "new",
        "--fallback",
        "",
        value.trim_end(),
    ])
    .fails_with("--fallback secret is empty");
    // Text from the cookie is printed with terminal controls escaped: DEL,
    // CSI (U+009B) and a right-to-left override, as JSON escapes.
    let value = keycard(&[
        "cookie",
        "seal",
        "--secret",
        "s3cret",
        r#"{"ua":"\u007f\u009b2J\u202e"}"#,
    ])
    .ok()
    .stdout;
    let shown = keycard(&["cookie", "inspect", "--secret", "s3cret", value.trim_end()]);
    assert!(
        shown.stdout.contains(r"\u007f\u009b2J\u202e"),
        "{}",
        shown.stdout
    );
    assert_eq!(shown.json()["data"]["ua"], "\u{7f}\u{9b}2J\u{202e}");
}

/// Cookies Flask itself wrote (tests/data/flask/vectors.json of the core crate).
#[test]
fn flask_written_vectors_are_inspected() {
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../keycard/tests/data/flask/vectors.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let secret = file["secret"].as_str().unwrap();
    let fallbacks: Vec<&str> = file["fallbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let vectors = file["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 10);
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let cookie = v["cookie"].as_str().unwrap();
        let mut args = vec!["cookie", "inspect", "--secret", secret, "--max-age", "none"];
        for fallback in &fallbacks {
            args.extend(["--fallback", fallback]);
        }
        args.push(cookie);
        let shown = keycard(&args).json();
        assert_eq!(shown["data"], v["session"], "{name}");
        assert_eq!(shown["issued_at"], v["timestamp"], "{name}");
        assert_eq!(shown["stale_key"], v["secret"] != secret, "{name}");
        // Signed in 2023: past Flask's default 31-day lifetime.
        keycard(&[
            "cookie",
            "inspect",
            "--secret",
            v["secret"].as_str().unwrap(),
            cookie,
        ])
        .fails_with("cookie expired (signed 2023-11-14 22:13:20 UTC");
        keycard(&[
            "cookie",
            "inspect",
            "--secret",
            "not the secret",
            "--max-age",
            "none",
            cookie,
        ])
        .fails_with("bad signature");
    }
}

/// A cookie real Flask signs now, read with the default lifetime; and one
/// this command signs, read by real Flask.
#[test]
fn live_flask_round_trip() {
    let Some(python) = service_url(
        "live_flask_round_trip",
        "KEYCARD_TEST_PYTHON",
        "python3 with flask installed",
    ) else {
        return;
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../keycard/tests/flask/flask_interop.py"
    );
    let flask = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(&python)
            .arg(script)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "flask_interop.py {args:?} failed");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let by_flask = flask(
        &["sign", "--secret", "live-secret"],
        r#"{"user_id": 7, "b": {" b": "aGk="}}"#,
    );
    let shown = keycard(&["cookie", "inspect", "--secret", "live-secret", &by_flask]).json();
    assert_eq!(shown["data"], json!({"user_id": 7, "b": {" b": "aGk="}}));

    let by_us = keycard(&[
        "cookie",
        "seal",
        "--secret",
        "live-secret",
        r#"{"cart":{" t":[1,2]}}"#,
    ])
    .ok()
    .stdout;
    let verdict: Value = serde_json::from_str(&flask(
        &["verify", "--secret", "live-secret", by_us.trim_end()],
        "",
    ))
    .unwrap();
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["session"], json!({"cart": {" t": [1, 2]}}));
    assert_eq!(verdict["types"]["cart"], "tuple");
}
