//! Fixed vectors made once by real Flask (tests/data/flask/vectors.json, from
//! `tests/flask/flask_interop.py vectors`): keycard reads every cookie as Flask
//! does, and writes uncompressed ones byte for byte as Flask does. No Python.

use keycard::codec::flask::{FlaskCodec, FlaskSession, FlaskValue};
use keycard::CodecError;
use serde_json::Value;
use std::time::Duration;

struct Vector {
    name: String,
    secret: String,
    timestamp: u64,
    compressed: bool,
    cookie: String,
    session: Value,
    types: serde_json::Map<String, Value>,
}

struct Vectors {
    secret: String,
    fallbacks: Vec<String>,
    vectors: Vec<Vector>,
}

fn load() -> Vectors {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/flask/vectors.json");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let text = |v: &Value, key: &str| v[key].as_str().unwrap().to_owned();
    Vectors {
        secret: text(&file, "secret"),
        fallbacks: file["fallbacks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_owned())
            .collect(),
        vectors: file["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| Vector {
                name: text(v, "name"),
                secret: text(v, "secret"),
                timestamp: v["timestamp"].as_u64().unwrap(),
                compressed: v["compressed"].as_bool().unwrap(),
                cookie: text(v, "cookie"),
                session: v["session"].clone(),
                types: v["types"].as_object().unwrap().clone(),
            })
            .collect(),
    }
}

/// The Python type Flask reported must be the variant keycard decoded.
fn python_type(value: &FlaskValue) -> &'static str {
    match value {
        FlaskValue::Null => "NoneType",
        FlaskValue::Bool(_) => "bool",
        FlaskValue::Number(n) if n.is_f64() => "float",
        FlaskValue::Number(_) => "int",
        FlaskValue::String(_) => "str",
        FlaskValue::List(_) => "list",
        FlaskValue::Dict(_) => "dict",
        FlaskValue::Tuple(_) => "tuple",
        FlaskValue::Bytes(_) => "bytes",
        FlaskValue::Uuid(_) => "UUID",
        FlaskValue::DateTime(_) => "datetime",
        FlaskValue::Markup(_) => "Markup",
        _ => "unknown",
    }
}

fn reader(vectors: &Vectors) -> FlaskCodec {
    // The vectors are old: read them without the age check.
    FlaskCodec::new(&vectors.secret)
        .with_fallbacks(&vectors.fallbacks)
        .without_max_age()
}

#[test]
fn keycard_reads_every_flask_vector() {
    let vectors = load();
    let codec = reader(&vectors);
    assert!(vectors.vectors.len() >= 10);
    assert!(
        vectors.vectors.iter().any(|v| v.compressed),
        "no compressed vector"
    );
    for v in &vectors.vectors {
        let session = codec
            .decode(&v.cookie)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(session.to_tagged_json(), v.session, "{}", v.name);
        assert_eq!(session.issued_at, v.timestamp, "{}", v.name);
        assert_eq!(session.stale_key, v.secret != vectors.secret, "{}", v.name);
        assert_eq!(v.cookie.starts_with('.'), v.compressed, "{}", v.name);
        let types: serde_json::Map<String, Value> = session
            .values
            .iter()
            .map(|(k, value)| (k.clone(), Value::from(python_type(value))))
            .collect();
        assert_eq!(types, v.types, "{}", v.name);
    }
}

#[test]
fn tagged_vector_decodes_to_rust_types() {
    let vectors = load();
    let v = vectors.vectors.iter().find(|v| v.name == "tagged").unwrap();
    let session = reader(&vectors).decode(&v.cookie).unwrap();
    assert_eq!(
        session.get("bytes"),
        Some(&FlaskValue::Bytes(vec![0, 1, 255]))
    );
    assert_eq!(
        session.get("uuid"),
        Some(&FlaskValue::Uuid(0x12345678123456781234567812345678))
    );
    assert_eq!(
        session.get("markup"),
        Some(&FlaskValue::Markup("<b>bold</b> &amp;".into()))
    );
    let Some(FlaskValue::DateTime(when)) = session.get("when") else {
        panic!("no datetime")
    };
    assert_eq!(when.unix(), 1_445_412_480);
    assert_eq!(
        session.get("tuple"),
        Some(&FlaskValue::Tuple(vec![
            1.into(),
            "two".into(),
            FlaskValue::Tuple(vec![])
        ]))
    );
    let escaped = vectors
        .vectors
        .iter()
        .find(|v| v.name == "escaped_top_level")
        .unwrap();
    let session = reader(&vectors).decode(&escaped.cookie).unwrap();
    assert_eq!(session.get(" b"), Some(&FlaskValue::from("not bytes")));
}

#[test]
fn keycard_writes_what_flask_wrote() {
    let vectors = load();
    for v in &vectors.vectors {
        let session = reader(&vectors).decode(&v.cookie).unwrap();
        let writer = FlaskCodec::new(&v.secret);
        let ours = writer.encode_at(&session, v.timestamp).unwrap();
        if !v.compressed {
            assert_eq!(ours, v.cookie, "{}: not byte for byte", v.name);
        }
        // Compressed or not, the same session and the same compression choice.
        assert_eq!(ours.starts_with('.'), v.compressed, "{}", v.name);
        let again = reader(&vectors).decode(&ours).unwrap();
        assert_eq!(again.values, session.values, "{}", v.name);
    }
}

#[test]
fn vectors_expire_after_flasks_default_lifetime() {
    let vectors = load();
    let codec = FlaskCodec::new(&vectors.secret);
    let v = &vectors.vectors[0];
    let lifetime = 31 * 24 * 3600;
    assert!(codec.decode_at(&v.cookie, v.timestamp + lifetime).is_ok());
    assert_eq!(
        codec.decode_at(&v.cookie, v.timestamp + lifetime + 1),
        Err(CodecError::Expired)
    );
    assert_eq!(codec.decode(&v.cookie), Err(CodecError::Expired)); // today
    assert_eq!(
        codec.decode_at(&v.cookie, v.timestamp - 1),
        Err(CodecError::Expired)
    );
    let short = FlaskCodec::new(&vectors.secret).with_max_age(Duration::from_secs(60));
    assert!(short.decode_at(&v.cookie, v.timestamp + 60).is_ok());
    assert_eq!(
        short.decode_at(&v.cookie, v.timestamp + 61),
        Err(CodecError::Expired)
    );
}

#[test]
fn vectors_reject_tampering_and_wrong_keys() {
    let vectors = load();
    let codec = reader(&vectors);
    let wrong = FlaskCodec::new("not the secret").without_max_age();
    let no_fallback = FlaskCodec::new(&vectors.secret).without_max_age();
    for v in &vectors.vectors {
        assert_eq!(
            wrong.decode(&v.cookie),
            Err(CodecError::BadSignature),
            "{}",
            v.name
        );
        if v.secret != vectors.secret {
            assert_eq!(no_fallback.decode(&v.cookie), Err(CodecError::BadSignature));
        }
        // Change one character anywhere: payload, timestamp or signature.
        for at in [
            0,
            1,
            v.cookie.len() / 2,
            v.cookie.len() - 30,
            v.cookie.len() - 1,
        ] {
            let mut bytes = v.cookie.clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert!(
                codec.decode(&tampered).is_err(),
                "{}: changed at {at}",
                v.name
            );
        }
        // Truncated.
        assert!(codec.decode(&v.cookie[..v.cookie.len() - 1]).is_err());
        assert!(codec.decode(&v.cookie[1..]).is_err());
    }
}

#[test]
fn a_session_from_plain_json_is_flask_ready() {
    let map = serde_json::json!({"user": "ada", "roles": ["admin"]});
    let session = FlaskSession::from(map.as_object().unwrap().clone());
    assert_eq!(
        session.to_json_string().unwrap(),
        r#"{"roles":["admin"],"user":"ada"}"#
    );
}
