//! The sealed and signed codecs under a key ring: what they accept, what they
//! reject, and never a panic. Every test runs against both codecs.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keycard::codec::{KeyRing, SealedCodec, SignedCodec, MAX_COOKIE_SIZE};
use keycard::{CodecError, CookieCodec};
use proptest::prelude::*;

type Make = fn(&KeyRing, &str) -> Box<dyn CookieCodec>;

fn codecs() -> [(&'static str, Make); 2] {
    [
        ("sealed", |ring, purpose| {
            Box::new(SealedCodec::new(ring, purpose))
        }),
        ("signed", |ring, purpose| {
            Box::new(SignedCodec::new(ring, purpose))
        }),
    ]
}

const NAME: &str = "__Host-keycard";

fn ring() -> KeyRing {
    KeyRing::generate().unwrap()
}

/// Every value that differs from `value` by one bit, at the start, in the
/// middle and at the end (the tag), flipped in the decoded bytes of each part
/// and re-encoded, plus flips of the text itself.
fn bit_flips(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    // In the text: every bit of the first, middle and last 8 characters that
    // keeps the text valid UTF-8.
    let len = value.len();
    let positions = (0..8.min(len))
        .chain(len / 2..(len / 2 + 8).min(len))
        .chain(len.saturating_sub(8)..len);
    for at in positions {
        for bit in 0..8 {
            let mut bytes = value.as_bytes().to_vec();
            bytes[at] ^= 1 << bit;
            if let Ok(text) = String::from_utf8(bytes) {
                out.push(text);
            }
        }
    }
    // In the decoded bytes of each base64url part (signed: payload and signature).
    let parts: Vec<&str> = value.split('.').collect();
    for (index, part) in parts.iter().enumerate() {
        let decoded = URL_SAFE_NO_PAD.decode(part).unwrap();
        let n = decoded.len();
        let positions = (0..4.min(n))
            .chain(n / 2..(n / 2 + 4).min(n))
            .chain(n.saturating_sub(16)..n);
        for at in positions {
            for bit in 0..8 {
                let mut bytes = decoded.clone();
                bytes[at] ^= 1 << bit;
                let mut new_parts: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
                new_parts[index] = URL_SAFE_NO_PAD.encode(&bytes);
                out.push(new_parts.join("."));
            }
        }
    }
    out
}

#[test]
fn round_trip_and_fresh_key_is_not_stale() {
    for (kind, make) in codecs() {
        let codec = make(&ring(), "session");
        for payload in [&b""[..], b"x", &[0u8; 1000], "ünïcode".as_bytes()] {
            let value = codec.seal(NAME, payload).unwrap();
            let opened = codec.open(NAME, &value).unwrap();
            assert_eq!(opened.payload, payload, "{kind}");
            assert!(!opened.stale_key, "{kind}");
        }
    }
}

#[test]
fn any_single_bit_flip_is_rejected() {
    for (kind, make) in codecs() {
        let codec = make(&ring(), "session");
        let value = codec
            .seal(NAME, b"user=42; role=admin; a payload of some length")
            .unwrap();
        let flips = bit_flips(&value);
        assert!(flips.len() > 200, "{kind}: only {} flips", flips.len());
        for flipped in flips {
            assert_ne!(flipped, value);
            assert!(
                codec.open(NAME, &flipped).is_err(),
                "{kind}: accepted {flipped}"
            );
        }
    }
}

#[test]
fn truncation_is_rejected() {
    for (kind, make) in codecs() {
        let codec = make(&ring(), "session");
        let value = codec.seal(NAME, b"some payload").unwrap();
        for end in 0..value.len() {
            assert!(
                codec.open(NAME, &value[..end]).is_err(),
                "{kind}: prefix {end}"
            );
        }
        for start in 1..value.len() {
            assert!(
                codec.open(NAME, &value[start..]).is_err(),
                "{kind}: suffix {start}"
            );
        }
        assert!(
            codec.open(NAME, &format!("{value}A")).is_err(),
            "{kind}: extended"
        );
    }
}

#[test]
fn another_key_is_rejected() {
    for (kind, make) in codecs() {
        // Same key ID, other key bytes: authentication fails.
        let a = make(&KeyRing::from_keys([(1, [1; 32])]).unwrap(), "session");
        let b = make(&KeyRing::from_keys([(1, [2; 32])]).unwrap(), "session");
        let value = a.seal(NAME, b"payload").unwrap();
        assert_eq!(
            b.open(NAME, &value),
            Err(CodecError::BadSignature),
            "{kind}"
        );
        // Another ring altogether (generated: ID 1, random key).
        assert_eq!(
            make(&ring(), "session").open(NAME, &value),
            Err(CodecError::BadSignature)
        );
    }
}

#[test]
fn bound_to_cookie_name_and_purpose() {
    for (kind, make) in codecs() {
        let ring = ring();
        let session = make(&ring, "session");
        let value = session.seal("a", b"payload").unwrap();
        assert!(session.open("a", &value).is_ok());
        assert_eq!(
            session.open("b", &value),
            Err(CodecError::BadSignature),
            "{kind}: name"
        );
        assert_eq!(
            session.open("A", &value),
            Err(CodecError::BadSignature),
            "{kind}: case"
        );
        assert_eq!(
            session.open("a ", &value),
            Err(CodecError::BadSignature),
            "{kind}: space"
        );
        for purpose in ["remember", "csrf", "bearer", "signed", "Session", ""] {
            let other = make(&ring, purpose);
            assert_eq!(
                other.open("a", &value),
                Err(CodecError::BadSignature),
                "{kind}: {purpose}"
            );
        }
    }
}

#[test]
fn sealed_and_signed_values_are_not_interchangeable() {
    let ring = ring();
    let sealed = SealedCodec::new(&ring, "session");
    let signed = SignedCodec::new(&ring, "session");
    assert!(signed
        .open(NAME, &sealed.seal(NAME, b"x").unwrap())
        .is_err());
    assert!(sealed
        .open(NAME, &signed.seal(NAME, b"x").unwrap())
        .is_err());
}

#[test]
fn rotation_keeps_old_values_open_but_stale() {
    for (kind, make) in codecs() {
        let mut ring = ring();
        let old_id = ring.newest_id();
        let before = make(&ring, "session");
        let old_value = before.seal(NAME, b"payload").unwrap();

        ring.rotate().unwrap();
        let after = make(&ring, "session");
        let opened = after.open(NAME, &old_value).unwrap();
        assert_eq!(opened.payload, b"payload", "{kind}");
        assert!(opened.stale_key, "{kind}: opened with a rotated-out key");
        // Resealed with the newest key: no longer stale.
        let resealed = after.seal(NAME, &opened.payload).unwrap();
        assert!(!after.open(NAME, &resealed).unwrap().stale_key, "{kind}");
        // The codec from before the rotation does not know the new key.
        assert_eq!(
            before.open(NAME, &resealed),
            Err(CodecError::UnknownKey),
            "{kind}"
        );

        // Once the old key is removed from the ring, its values are unknown.
        ring.remove(old_id).unwrap();
        let pruned = make(&ring, "session");
        assert_eq!(
            pruned.open(NAME, &old_value),
            Err(CodecError::UnknownKey),
            "{kind}"
        );
        assert!(pruned.open(NAME, &resealed).is_ok(), "{kind}");
    }
}

#[test]
fn ring_reloaded_from_file_or_env_opens_the_same_values() {
    for (kind, make) in codecs() {
        let mut ring = ring();
        ring.rotate().unwrap();
        let value = make(&ring, "session").seal(NAME, b"payload").unwrap();
        let from_file = KeyRing::parse(&ring.to_file_string()).unwrap();
        let from_env = KeyRing::from_env_value(&ring.to_env_value()).unwrap();
        assert_eq!(
            make(&from_file, "session")
                .open(NAME, &value)
                .unwrap()
                .payload,
            b"payload"
        );
        assert_eq!(
            make(&from_env, "session")
                .open(NAME, &value)
                .unwrap()
                .payload,
            b"payload",
            "{kind}"
        );
    }
}

#[test]
fn cookies_over_4096_bytes_are_refused_not_truncated() {
    for (kind, make) in codecs() {
        let codec = make(&ring(), "session");
        // Find the largest payload that fits, by seal itself.
        let mut fits = 0;
        while codec.seal(NAME, &vec![7u8; fits + 1]).is_ok() {
            fits += 1;
        }
        let value = codec.seal(NAME, &vec![7u8; fits]).unwrap();
        let size = NAME.len() + 1 + value.len() + 100;
        assert!(size <= MAX_COOKIE_SIZE, "{kind}: {size}");
        assert!(
            size > MAX_COOKIE_SIZE - 4,
            "{kind}: refused too early at {size}"
        );
        assert_eq!(codec.open(NAME, &value).unwrap().payload.len(), fits);
        match codec.seal(NAME, &vec![7u8; fits + 1]) {
            Err(CodecError::TooLarge(size)) => assert!(size > MAX_COOKIE_SIZE, "{kind}"),
            other => panic!("{kind}: {other:?}"),
        }
        match codec.seal(NAME, &vec![0u8; 1 << 20]) {
            Err(CodecError::TooLarge(size)) => assert!(size > 1 << 20, "{kind}"),
            other => panic!("{kind}: {other:?}"),
        }
        // A longer name leaves less room.
        let long_name = "n".repeat(1000);
        assert!(matches!(
            codec.seal(&long_name, &vec![7u8; fits]),
            Err(CodecError::TooLarge(_))
        ));
        // Opening refuses oversized input before decoding it.
        let huge = "A".repeat(MAX_COOKIE_SIZE + 1);
        assert_eq!(
            codec.open(NAME, &huge),
            Err(CodecError::TooLarge(MAX_COOKIE_SIZE + 1))
        );
    }
}

#[test]
fn garbage_is_malformed() {
    for (kind, make) in codecs() {
        let codec = make(&ring(), "session");
        for bad in ["", "=", "....", "not base64!", "AAAA", "é", "\0", "a.b.c"] {
            assert!(
                matches!(codec.open(NAME, bad), Err(CodecError::Malformed(_))),
                "{kind}: {bad:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_text_is_rejected_or_opened_never_a_panic(value in any::<String>(), name in "[a-zA-Z_-]{0,12}") {
        let ring = KeyRing::from_keys([(1, [9; 32])]).unwrap();
        for (_, make) in codecs() {
            let _ = make(&ring, "session").open(&name, &value);
        }
    }

    #[test]
    fn any_bytes_as_base64_are_rejected_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let ring = KeyRing::from_keys([(1, [9; 32])]).unwrap();
        let sealed = SealedCodec::new(&ring, "session");
        let signed = SignedCodec::new(&ring, "session");
        let text = URL_SAFE_NO_PAD.encode(&bytes);
        // Random bytes are never a valid value (forging needs the key).
        prop_assert!(sealed.open(NAME, &text).is_err());
        let doubled = format!("{text}.{text}");
        let after_empty_object = format!("e30.{text}");
        prop_assert!(signed.open(NAME, &doubled).is_err());
        prop_assert!(signed.open(NAME, &after_empty_object).is_err());
    }

    #[test]
    fn any_payload_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..2000), name in "[a-zA-Z_-]{1,20}") {
        let ring = KeyRing::from_keys([(1, [9; 32]), (2, [8; 32])]).unwrap();
        for (_, make) in codecs() {
            let codec = make(&ring, "session");
            match codec.seal(&name, &payload) {
                Ok(value) => {
                    prop_assert!(name.len() + 1 + value.len() + 100 <= MAX_COOKIE_SIZE);
                    let opened = codec.open(&name, &value).unwrap();
                    prop_assert_eq!(opened.payload, payload.clone());
                    prop_assert!(!opened.stale_key);
                }
                Err(CodecError::TooLarge(size)) => prop_assert!(size > MAX_COOKIE_SIZE),
                Err(other) => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }

    #[test]
    fn any_random_bit_flip_is_rejected(payload in proptest::collection::vec(any::<u8>(), 0..200), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let ring = KeyRing::from_keys([(1, [9; 32])]).unwrap();
        for (_, make) in codecs() {
            let codec = make(&ring, "session");
            let value = codec.seal(NAME, &payload).unwrap();
            let mut bytes = value.clone().into_bytes();
            let index = at.index(bytes.len());
            bytes[index] ^= 1 << bit;
            if let Ok(text) = String::from_utf8(bytes) {
                prop_assert!(codec.open(NAME, &text).is_err(), "accepted a flip at {}", index);
            }
        }
    }
}
