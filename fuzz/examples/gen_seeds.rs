//! Writes the generated part of the seed corpus (`fuzz/corpus/<target>/gen-*`):
//! real sealed and signed cookies under the fixed test keys, the Flask
//! vectors' cookies, a real record encoding, a real CSRF secret and token.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds
//! ```
//!
//! Sealed values carry a random nonce, so running it again rewrites those
//! files with different (equally valid) bytes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keycard::{CookieCodec, Record, SealedCodec, SessionId, SignedCodec};
use keycard_fuzz::{flask_codec, flask_sign, old_ring, ring, COOKIE_NAME, FLASK_NOW, PURPOSE};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn write(dir: &Path, target: &str, name: &str, bytes: impl AsRef<[u8]>) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(format!("gen-{name}")), bytes).expect("seed file");
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("corpus");

    let id = SessionId::from_bytes(*b"keycard fuzz seed session id 32b");
    let mut record = Record::new(1_700_000_000_000, 30 * 60 * 1000, 8 * 3600 * 1000);
    record.data.insert("visits".into(), Value::from(3));
    record.data.insert(
        "cart".into(),
        serde_json::json!([{"sku": "A-1", "qty": 2, "price": 9.95}]),
    );
    record.data.insert(
        "keycard.csrf".into(),
        Value::from(URL_SAFE_NO_PAD.encode([5u8; 32])),
    );
    record.user_id = Some("ada".into());
    record.ip = Some("203.0.113.7".into());
    record.user_agent = Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0".into());
    let encoded = record.encode();
    write(&corpus, "record_decode", "full", &encoded);
    write(
        &corpus,
        "record_decode",
        "new",
        Record::new(0, 1, 2).encode(),
    );

    let payload = keycard::cookie_payload::encode(&id, &record);
    let sealed = SealedCodec::new(&ring(), PURPOSE);
    let cookie = sealed.seal(COOKIE_NAME, &payload).expect("seal");
    assert_eq!(
        sealed.open(COOKIE_NAME, &cookie).expect("opens").payload,
        payload
    );
    assert_eq!(Record::decode(&payload[33..]).expect("record"), record);
    write(&corpus, "sealed_codec", "session", &cookie);
    let stale = SealedCodec::new(&old_ring(), PURPOSE)
        .seal(COOKIE_NAME, b"x")
        .expect("seal");
    assert!(sealed.open(COOKIE_NAME, &stale).expect("opens").stale_key);
    write(&corpus, "sealed_codec", "stale", &stale);
    write(
        &corpus,
        "cookie_header",
        "sealed",
        format!("\ntheme=dark; {COOKIE_NAME}={cookie}; lang=en"),
    );

    let signed = SignedCodec::new(&ring(), PURPOSE);
    write(
        &corpus,
        "signed_codec",
        "session",
        signed.seal(COOKIE_NAME, &payload).expect("sign"),
    );
    write(
        &corpus,
        "signed_codec",
        "dark",
        signed.seal(COOKIE_NAME, b"dark").expect("sign"),
    );
    let old_signed = SignedCodec::new(&old_ring(), PURPOSE);
    write(
        &corpus,
        "signed_codec",
        "stale",
        old_signed.seal(COOKIE_NAME, b"").expect("sign"),
    );

    write(&corpus, "session_id", "real", id.to_string());
    write(
        &corpus,
        "bearer_token",
        "real",
        format!("Authorization: Bearer {id}\nAccept: */*"),
    );
    write(
        &corpus,
        "cookie_header",
        "real",
        format!("__Host-keycard\n__Host-keycard={id}"),
    );

    let secret = [9u8; 32];
    let pad: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37)).collect();
    let mut token = pad.clone();
    token.extend(pad.iter().zip(secret).map(|(p, s)| p ^ s));
    let secret_b64 = URL_SAFE_NO_PAD.encode(secret);
    let token = URL_SAFE_NO_PAD.encode(&token);
    assert!(keycard::csrf::token_matches(&secret_b64, &token));
    write(
        &corpus,
        "csrf_token",
        "real",
        format!("{secret_b64}\n{token}"),
    );
    let mut raw = secret.to_vec();
    raw.extend(&pad);
    raw.push(77);
    write(&corpus, "csrf_token", "bytes", raw);

    let vectors_path = root.join("../crates/keycard/tests/data/flask/vectors.json");
    let vectors: Value =
        serde_json::from_slice(&std::fs::read(&vectors_path).expect("vectors.json"))
            .expect("vectors JSON");
    // A few vectors, to keep the corpus small: plain, compressed, every tag,
    // an escaped dict, a fallback secret.
    let wanted = [
        "simple",
        "json_types",
        "non_ascii",
        "tagged",
        "escaped_dict",
        "fallback",
    ];
    for vector in vectors["vectors"].as_array().expect("vectors") {
        let name = vector["name"].as_str().expect("name");
        let cookie = vector["cookie"].as_str().expect("cookie");
        if !wanted.contains(&name) {
            continue;
        }
        let session = flask_codec()
            .decode_at(cookie, FLASK_NOW)
            .expect("vector decodes");
        assert_eq!(session.stale_key, vector["secret"] != vectors["secret"]);
        write(&corpus, "flask_cookie", name, cookie);
        let (signed, signature) = cookie.rsplit_once('.').expect("signed cookie");
        let secret = vector["secret"].as_str().expect("secret");
        assert_eq!(flask_sign(secret, signed.as_bytes()), signature, "{name}");
        let seed = if session.stale_key {
            format!("{signed}\n")
        } else {
            signed.to_owned()
        };
        write(&corpus, "flask_payload", name, seed);
    }
}
