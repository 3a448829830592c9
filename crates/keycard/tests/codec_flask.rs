//! keycard and real Flask share one session cookie, both ways.
//!
//! Runs `tests/flask/flask_interop.py` with the Python named by
//! `KEYCARD_TEST_PYTHON` (default `python3`). Without Flask the tests are
//! skipped with a loud message, unless `CI=true` or `KEYCARD_TEST_PYTHON` is
//! set: then a missing Flask fails them.

use keycard::codec::flask::{FlaskCodec, FlaskSession, FlaskValue, HttpDate};
use keycard::CodecError;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/flask/flask_interop.py");

/// The Python with Flask, or `None` (after saying so loudly) to skip.
fn python() -> Option<String> {
    let configured = std::env::var("KEYCARD_TEST_PYTHON")
        .ok()
        .filter(|p| !p.is_empty());
    let python = configured.clone().unwrap_or_else(|| "python3".to_owned());
    let has_flask = Command::new(&python)
        .args(["-c", "import flask"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if has_flask {
        return Some(python);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if ci || configured.is_some() {
        panic!(
            "`{python} -c 'import flask'` failed: the Flask interop tests need Flask \
             (pip install flask, or point KEYCARD_TEST_PYTHON at a Python that has it)"
        );
    }
    // libtest captures `eprintln!` of passing tests; write to the stderr
    // handle itself so the skip shows in a plain `cargo test`, once.
    static SKIP_NOTICE: std::sync::Once = std::sync::Once::new();
    SKIP_NOTICE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "\n\
             ******************************************************************\n\
             * SKIPPED: Flask interop tests: `{python} -c 'import flask'` failed.\n\
             * pip install flask, or set KEYCARD_TEST_PYTHON=/path/to/python.\n\
             ******************************************************************\n"
        );
    });
    None
}

/// Runs a batch of jobs through real Flask; one result per job.
fn flask(python: &str, jobs: &[Value]) -> Vec<Value> {
    let mut child = Command::new(python)
        .args([SCRIPT, "batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    let input = serde_json::to_vec(jobs).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "flask_interop.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(results.len(), jobs.len());
    results
}

fn sign_job(secret: &str, session: &FlaskSession, timestamp: Option<u64>) -> Value {
    json!({"op": "sign", "secret": secret, "session": session.to_tagged_json(), "timestamp": timestamp})
}

fn verify_job(secret: &str, fallbacks: &[&str], cookie: &str) -> Value {
    json!({"op": "verify", "secret": secret, "fallbacks": fallbacks, "cookie": cookie})
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sessions covering plain JSON, every tag, escaping, non-ASCII, compression.
fn sessions() -> Vec<(&'static str, FlaskSession)> {
    let mut plain = FlaskSession::new();
    plain.insert("user_id", 42);
    plain.insert("name", "ada");
    plain.set_permanent(true);

    let mut tagged = FlaskSession::new();
    tagged.insert(
        "tuple",
        FlaskValue::Tuple(vec![1.into(), "two".into(), FlaskValue::Null]),
    );
    tagged.insert("bytes", FlaskValue::Bytes(vec![0, 1, 2, 254, 255]));
    tagged.insert(
        "uuid",
        FlaskValue::Uuid(0x6ba7b810_9dad_11d1_80b4_00c04fd430c8),
    );
    tagged.insert("when", HttpDate::from_unix(1_445_412_480).unwrap());
    tagged.insert("markup", FlaskValue::Markup("<em>hi</em> &amp; bye".into()));
    tagged.insert(
        "nested",
        FlaskValue::List(vec![
            FlaskValue::Tuple(vec![FlaskValue::Bytes(b"x".to_vec())]),
            FlaskValue::Dict(BTreeMap::from([(
                " t".to_owned(),
                FlaskValue::from("escaped"),
            )])),
        ]),
    );
    tagged.insert("text", "Zoë 😀 \u{7f} \"quoted\"\n");

    let mut escaped_top = FlaskSession::new();
    escaped_top.insert(" u", "a plain string under a tag-like key");

    let mut compressed = FlaskSession::new();
    let items = (0..80)
        .map(|i| FlaskValue::from(format!("item-{}", i % 5)))
        .collect();
    compressed.insert("cart", FlaskValue::List(items));
    compressed.insert(
        "seen",
        FlaskValue::Tuple(vec![HttpDate::from_unix(0).unwrap().into(); 20]),
    );

    vec![
        ("plain", plain),
        ("tagged", tagged),
        ("escaped_top", escaped_top),
        ("compressed", compressed),
    ]
}

#[test]
fn flask_reads_what_keycard_writes() {
    let Some(python) = python() else { return };
    let codec = FlaskCodec::new("shared secret");
    let sessions = sessions();
    let cookies: Vec<String> = sessions
        .iter()
        .map(|(_, s)| codec.encode(s).unwrap())
        .collect();
    assert!(
        cookies[3].starts_with('.'),
        "the compressed case is not compressed"
    );
    let jobs: Vec<Value> = cookies
        .iter()
        .map(|c| verify_job("shared secret", &[], c))
        .collect();
    let results = flask(&python, &jobs);
    for ((name, session), result) in sessions.iter().zip(&results) {
        assert_eq!(result["valid"], json!(true), "{name}: {result}");
        assert_eq!(result["session"], session.to_tagged_json(), "{name}");
    }
    let types = &results[1]["types"];
    for (key, python_type) in [
        ("tuple", "tuple"),
        ("bytes", "bytes"),
        ("uuid", "UUID"),
        ("when", "datetime"),
        ("markup", "Markup"),
        ("nested", "list"),
        ("text", "str"),
    ] {
        assert_eq!(types[key], json!(python_type), "{key}");
    }
    assert_eq!(results[2]["types"][" u"], json!("str"));
}

#[test]
fn keycard_reads_what_flask_writes() {
    let Some(python) = python() else { return };
    let codec = FlaskCodec::new("shared secret");
    let sessions = sessions();
    let jobs: Vec<Value> = sessions
        .iter()
        .map(|(_, s)| sign_job("shared secret", s, None))
        .collect();
    let cookies = flask(&python, &jobs);
    for ((name, session), cookie) in sessions.iter().zip(&cookies) {
        let cookie = cookie.as_str().unwrap();
        let read = codec
            .decode(cookie)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(read.values, session.values, "{name}");
        assert!(!read.stale_key);
        assert!(read.issued_at.abs_diff(now()) < 60);
    }
    assert!(
        cookies[3].as_str().unwrap().starts_with('.'),
        "Flask did not compress"
    );
}

/// Python's integers are unbounded; a `serde_json::Value` would hold 2**64 as
/// a float. Such a cookie is refused, never read with its number changed.
#[test]
fn integers_beyond_64_bits_are_refused_not_rounded() {
    let Some(python) = python() else { return };
    let codec = FlaskCodec::new("shared secret");
    let texts = [
        r#"{"n": 18446744073709551616}"#,
        r#"{"n": -9223372036854775809}"#,
        r#"{"deep": [{"n": 100000000000000000000000000000000000000000}]}"#,
        r#"{"n": 18446744073709551615, "m": -9223372036854775808, "s": "18446744073709551616"}"#,
    ];
    let jobs: Vec<Value> = texts
        .iter()
        .map(|text| json!({"op": "sign", "secret": "shared secret", "session_json": text}))
        .collect();
    let cookies = flask(&python, &jobs);
    for cookie in &cookies[..3] {
        let error = codec.decode(cookie.as_str().unwrap()).unwrap_err();
        assert!(
            matches!(error, CodecError::Malformed(m) if m.contains("64-bit")),
            "{error}"
        );
    }
    let read = codec.decode(cookies[3].as_str().unwrap()).unwrap();
    assert!(
        matches!(read.get("n"), Some(FlaskValue::Number(n)) if n.as_u64() == Some(u64::MAX)),
        "{:?}",
        read.get("n")
    );
    assert_eq!(read.get("m").and_then(FlaskValue::as_i64), Some(i64::MIN));
}

#[test]
fn uncompressed_cookies_are_byte_identical() {
    let Some(python) = python() else { return };
    let codec = FlaskCodec::new("shared secret");
    let at = 1_700_000_000;
    let sessions = sessions();
    let jobs: Vec<Value> = sessions
        .iter()
        .map(|(_, s)| sign_job("shared secret", s, Some(at)))
        .collect();
    let cookies = flask(&python, &jobs);
    for ((name, session), cookie) in sessions.iter().zip(&cookies) {
        let ours = codec.encode_at(session, at).unwrap();
        if !ours.starts_with('.') {
            assert_eq!(cookie.as_str().unwrap(), ours, "{name}");
        }
    }
}

#[test]
fn fallback_keys_work_both_ways() {
    let Some(python) = python() else { return };
    let mut session = FlaskSession::new();
    session.insert("user_id", 7);
    session.insert("roles", FlaskValue::Tuple(vec!["admin".into()]));

    // Flask still signs with the old secret; keycard moved on and keeps it as a fallback.
    let old_cookie = flask(&python, &[sign_job("old secret", &session, None)]);
    let old_cookie = old_cookie[0].as_str().unwrap();
    let rotated = FlaskCodec::new("new secret").with_fallbacks(["older secret", "old secret"]);
    let read = rotated.decode(old_cookie).unwrap();
    assert!(read.stale_key);
    assert_eq!(read.values, session.values);
    assert_eq!(
        FlaskCodec::new("new secret").decode(old_cookie),
        Err(CodecError::BadSignature)
    );

    // keycard re-signs with the current secret; Flask (rotated too) reads it,
    // and a Flask that rotated further reads it through its fallbacks.
    let new_cookie = rotated.encode(&read).unwrap();
    let stale_cookie = FlaskCodec::new("old secret").encode(&session).unwrap();
    let wrong_cookie = FlaskCodec::new("wrong secret").encode(&session).unwrap();
    let results = flask(
        &python,
        &[
            verify_job("new secret", &["old secret"], &new_cookie),
            verify_job("newest secret", &["old secret", "new secret"], &new_cookie),
            verify_job("new secret", &["old secret"], &stale_cookie),
            verify_job("new secret", &["old secret"], &wrong_cookie),
        ],
    );
    for result in &results[..3] {
        assert_eq!(result["valid"], json!(true), "{result}");
        assert_eq!(result["session"], session.to_tagged_json());
    }
    assert_eq!(results[3]["valid"], json!(false));
    assert_eq!(results[3]["session"], json!({}));
}

#[test]
fn both_sides_agree_on_expiry() {
    let Some(python) = python() else { return };
    let mut session = FlaskSession::new();
    session.insert("user_id", 1);
    let now = now();
    // Flask-signed 32 days ago: past Flask's 31-day default for keycard too.
    let cookies = flask(
        &python,
        &[
            sign_job("s", &session, Some(now - 32 * 86_400)),
            sign_job("s", &session, Some(now - 30 * 86_400)),
        ],
    );
    let codec = FlaskCodec::new("s");
    assert_eq!(
        codec.decode(cookies[0].as_str().unwrap()),
        Err(CodecError::Expired)
    );
    assert!(codec.decode(cookies[1].as_str().unwrap()).is_ok());
    let hour = codec.clone().with_max_age(Duration::from_secs(3600));
    assert_eq!(
        hour.decode(cookies[1].as_str().unwrap()),
        Err(CodecError::Expired)
    );

    // keycard-signed two hours ago: Flask with a one-hour lifetime refuses it.
    let cookie = codec.encode_at(&session, now - 7200).unwrap();
    let results = flask(
        &python,
        &[
            json!({"op": "verify", "secret": "s", "cookie": cookie, "lifetime": 3600}),
            json!({"op": "verify", "secret": "s", "cookie": cookie, "lifetime": 10_800}),
        ],
    );
    assert_eq!(
        results[0]["error"],
        json!("SignatureExpired"),
        "{}",
        results[0]
    );
    assert_eq!(results[1]["valid"], json!(true));
}
