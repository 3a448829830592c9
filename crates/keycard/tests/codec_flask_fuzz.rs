//! The Flask codec against hostile input: any text, and any payload carrying
//! a valid signature (what someone holding the secret could send), is decoded
//! or rejected, never a panic; any session keycard can build makes the round trip.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use hmac::{Hmac, Mac};
use keycard::codec::flask::{FlaskCodec, FlaskSession, FlaskValue, HttpDate};
use keycard::CodecError;
use proptest::prelude::*;
use sha1::Sha1;
use std::collections::BTreeMap;
use std::io::Write;

const SECRET: &str = "fuzz secret";

/// Signs `payload "." timestamp` as itsdangerous does, independently of keycard.
fn forge(payload: &str, timestamp: &str) -> String {
    let mut derive = Hmac::<Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
    derive.update(b"cookie-session");
    let key = derive.finalize().into_bytes();
    let signed = format!("{payload}.{timestamp}");
    let mut mac = Hmac::<Sha1>::new_from_slice(&key).unwrap();
    mac.update(signed.as_bytes());
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn codec() -> FlaskCodec {
    FlaskCodec::new(SECRET).without_max_age()
}

#[test]
fn independently_forged_cookie_is_accepted() {
    // Checks forge() itself, so the properties below do reach the payload.
    let cookie = forge(&URL_SAFE_NO_PAD.encode(br#"{"a":{" t":[1]}}"#), "ZVPxAA");
    let session = codec().decode(&cookie).unwrap();
    assert_eq!(session.get("a"), Some(&FlaskValue::Tuple(vec![1.into()])));
    assert_eq!(session.issued_at, 1_700_000_000);
}

#[test]
fn zip_bomb_with_a_valid_signature_is_too_large() {
    // 2 MiB of spaces deflate to about 2 KB: a cookie a browser would carry.
    let bomb = zlib(&vec![b' '; 2 << 20]);
    let cookie = forge(&format!(".{}", URL_SAFE_NO_PAD.encode(&bomb)), "ZVPxAA");
    assert!(cookie.len() < 4000, "bomb cookie is {} bytes", cookie.len());
    assert!(matches!(
        codec().decode(&cookie),
        Err(CodecError::InflatedTooLarge(65_536))
    ));
    // Exactly at the cap is fine.
    let json = format!(r#"{{"a":"{}"}}"#, "x".repeat(64 * 1024 - 8));
    assert_eq!(json.len(), 64 * 1024);
    let cookie = forge(
        &format!(".{}", URL_SAFE_NO_PAD.encode(zlib(json.as_bytes()))),
        "ZVPxAA",
    );
    assert!(codec().decode(&cookie).is_ok());
}

#[test]
fn signed_but_wrong_shapes_are_malformed() {
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
    for (payload, timestamp) in [
        (b64("[1]"), "ZVPxAA".to_owned()),                 // not an object
        (b64("{\"a\":"), "ZVPxAA".to_owned()),             // not JSON
        (b64("{\"a\":NaN}"), "ZVPxAA".to_owned()),         // Python-only JSON
        (b64("{\"a\":{\" b\":5}}"), "ZVPxAA".to_owned()),  // bad tag
        (b64("{\" t\":[]}"), "ZVPxAA".to_owned()),         // a tuple, not a dict
        (".AAAA".to_owned(), "ZVPxAA".to_owned()),         // bad zlib
        ("!!".to_owned(), "ZVPxAA".to_owned()),            // bad base64
        (b64("{}"), "AAAAAAAAAAAA".to_owned()),            // 9-byte timestamp
        (b64("{}"), "!!".to_owned()),                      // bad timestamp
        (format!("{}.x", b64("{}")), "ZVPxAA".to_owned()), // extra dot
    ] {
        let cookie = forge(&payload, &timestamp);
        assert!(
            matches!(codec().decode(&cookie), Err(CodecError::Malformed(_))),
            "{payload} {timestamp}: {:?}",
            codec().decode(&cookie)
        );
    }
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let cookie = forge(
        &URL_SAFE_NO_PAD.encode(format!("{{\"a\":{deep}}}")),
        "ZVPxAA",
    );
    assert!(codec().decode(&cookie).is_err());
}

fn value() -> impl Strategy<Value = FlaskValue> {
    let leaf = prop_oneof![
        Just(FlaskValue::Null),
        any::<bool>().prop_map(FlaskValue::Bool),
        any::<i64>().prop_map(FlaskValue::from),
        any::<u64>().prop_map(FlaskValue::from),
        any::<i32>().prop_map(|i| FlaskValue::Number(
            serde_json::Number::from_f64(f64::from(i) / 8.0).unwrap()
        )),
        any::<String>().prop_map(FlaskValue::String),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(FlaskValue::Bytes),
        any::<u128>().prop_map(FlaskValue::Uuid),
        (-50_000_000_000i64..250_000_000_000)
            .prop_map(|s| FlaskValue::DateTime(HttpDate::from_unix(s).unwrap())),
        any::<String>().prop_map(FlaskValue::Markup),
    ];
    let key = prop_oneof![
        Just(" t".to_owned()),
        Just(" di".to_owned()),
        Just(" b".to_owned()),
        "[ a-z_]{0,6}",
        any::<String>(),
    ];
    leaf.prop_recursive(4, 32, 4, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(FlaskValue::List),
            proptest::collection::vec(inner.clone(), 0..4).prop_map(FlaskValue::Tuple),
            proptest::collection::btree_map(key.clone(), inner, 0..4).prop_map(FlaskValue::Dict),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_text_is_rejected_or_decoded_never_a_panic(text in any::<String>()) {
        let _ = codec().decode(&text);
        let _ = FlaskCodec::new(SECRET).decode(&text);
    }

    #[test]
    fn any_text_shaped_like_a_cookie_is_rejected(a in "[A-Za-z0-9_.-]{0,80}", b in "[A-Za-z0-9_-]{0,8}", c in "[A-Za-z0-9_-]{0,30}") {
        let cookie = [a, b, c].join(".");
        prop_assert!(codec().decode(&cookie).is_err());
    }

    #[test]
    fn any_signed_payload_is_decoded_or_rejected_never_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        compressed in any::<bool>(),
        timestamp in proptest::collection::vec(any::<u8>(), 0..10),
    ) {
        let payload = if compressed {
            format!(".{}", URL_SAFE_NO_PAD.encode(zlib(&bytes)))
        } else {
            URL_SAFE_NO_PAD.encode(&bytes)
        };
        let cookie = forge(&payload, &URL_SAFE_NO_PAD.encode(&timestamp));
        let _ = codec().decode(&cookie);
        let _ = FlaskCodec::new(SECRET).decode(&cookie);
    }

    #[test]
    fn any_signed_json_text_is_decoded_or_rejected_never_a_panic(json in r#"\{("( [a-z]{1,2}|[a-z]{0,3})":(\{"( t| b| u| d| m| di|x)":("[A-Za-z0-9+/=_, :-]{0,40}"|\[[0-9,"a]{0,10}\]|\{"[a-z_]{0,4}":1\}|1)\}|\[\]|1),?){0,4}\}"#) {
        let cookie = forge(&URL_SAFE_NO_PAD.encode(&json), "ZVPxAA");
        let _ = codec().decode(&cookie);
    }

    #[test]
    fn any_session_makes_the_round_trip(values in proptest::collection::btree_map(".{0,8}", value(), 0..6)) {
        let session = FlaskSession { values: values.clone(), ..FlaskSession::default() };
        match codec().encode_at(&session, 1_700_000_000) {
            Ok(cookie) => {
                let read = codec().decode(&cookie).unwrap();
                prop_assert_eq!(read.to_tagged_json(), session.to_tagged_json());
                prop_assert_eq!(read.values, values);
            }
            Err(CodecError::TooLarge(size)) => prop_assert!(size > 4096),
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn any_bit_flip_of_a_flask_cookie_is_rejected(at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut session = FlaskSession::new();
        session.insert("user_id", 42);
        session.insert("cart", FlaskValue::Tuple(vec!["a".into(); 30]));
        for cookie in [codec().encode(&session).unwrap(), codec().encode(&FlaskSession { values: BTreeMap::from([("a".to_owned(), 1.into())]), ..FlaskSession::default() }).unwrap()] {
            let mut bytes = cookie.clone().into_bytes();
            let index = at.index(bytes.len());
            bytes[index] ^= 1 << bit;
            if let Ok(text) = String::from_utf8(bytes) {
                prop_assert!(codec().decode(&text).is_err(), "accepted a flip at {} of {}", index, cookie);
            }
        }
    }
}
