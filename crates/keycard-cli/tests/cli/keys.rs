//! `keycard keygen` and `keycard keys`.

use crate::common::keycard;
use keycard::codec::{KeyRing, SealedCodec};
use keycard::CookieCodec;
use std::os::unix::fs::PermissionsExt;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn keygen_writes_a_private_file_and_never_overwrites_by_accident() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let file = path.to_str().unwrap();
    let made = keycard(&["keygen", "--out", file, "--json"]).json();
    assert_eq!(made["ids"], serde_json::json!([1]));
    assert_eq!(mode(&path), 0o600);
    let first = std::fs::read_to_string(&path).unwrap();
    assert_eq!(KeyRing::from_file(&path).unwrap().newest_id(), 1);
    // Only the path and IDs are printed, never the keys.
    let key = first
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap();
    assert!(!made.to_string().contains(key));

    keycard(&["keygen", "--out", file]).fails_with("already exists");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        first,
        "the ring was replaced"
    );

    keycard(&["keygen", "--out", file, "--force"]).ok();
    assert_ne!(std::fs::read_to_string(&path).unwrap(), first);
    assert_eq!(mode(&path), 0o600);
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(leftovers, 1, "temporary files left behind");
}

#[test]
fn keygen_prints_a_ring_in_either_format() {
    let text = keycard(&["keygen"]).ok().stdout;
    assert_eq!(KeyRing::parse(&text).unwrap().newest_id(), 1);
    let env = keycard(&["keygen", "--env"]).ok().stdout;
    assert_eq!(KeyRing::from_env_value(env.trim()).unwrap().newest_id(), 1);
    let json = keycard(&["keygen", "--json"]).json();
    assert!(KeyRing::parse(json["ring"].as_str().unwrap()).is_ok());
    assert_ne!(
        text,
        keycard(&["keygen"]).ok().stdout,
        "two rings are the same"
    );
}

#[test]
fn rotate_keeps_the_old_keys_and_list_shows_ids_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let file = path.to_str().unwrap();
    let original = KeyRing::generate().unwrap();
    original.write_file(&path).unwrap();
    let old_cookie = SealedCodec::new(&original, "session")
        .seal("c", b"payload")
        .unwrap();

    let rotated = keycard(&["keys", "rotate", file, "--json"]).json();
    assert_eq!(rotated["added"], 2);
    assert_eq!(rotated["ids"], serde_json::json!([1, 2]));
    keycard(&["keys", "rotate", file]).ok();
    assert_eq!(mode(&path), 0o600);
    let ring = KeyRing::from_file(&path).unwrap();
    assert_eq!(ring.ids().collect::<Vec<_>>(), [1, 2, 3]);
    // The old key is still the same key: its cookies open, flagged for resealing.
    let opened = SealedCodec::new(&ring, "session")
        .open("c", &old_cookie)
        .unwrap();
    assert!(opened.stale_key);

    let listed = keycard(&["keys", "list", file]).ok().stdout;
    assert_eq!(listed, "1\n2\n3  (newest: seals)\n");
    let text = std::fs::read_to_string(&path).unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let key = line.split_whitespace().nth(1).unwrap();
        assert!(!listed.contains(key));
    }
    let listed = keycard(&["keys", "list", file, "--json"]).json();
    assert_eq!(listed["ids"], serde_json::json!([1, 2, 3]));
    assert_eq!(listed["newest"], 3);

    keycard(&["keys", "remove", file, "1"]).ok();
    assert_eq!(
        KeyRing::from_file(&path).unwrap().ids().collect::<Vec<_>>(),
        [2, 3]
    );
    keycard(&["keys", "remove", file, "9"]).fails_with("no key with id 9");
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(leftovers, 1, "temporary files left behind");
}

#[test]
fn bad_key_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::write(&path, "1 not-a-key\n").unwrap();
    let run = keycard(&["keys", "list", path.to_str().unwrap()]).fails_with("key ring line 1");
    assert!(
        !run.stderr.contains("not-a-key"),
        "the line's content was repeated"
    );
    keycard(&[
        "keys",
        "rotate",
        dir.path().join("missing").to_str().unwrap(),
    ])
    .fails_with("No such file");
    keycard(&[
        "cookie",
        "inspect",
        "--keys",
        path.to_str().unwrap(),
        "AQAB",
    ])
    .fails_with("cannot read the key ring");
    // A ring others can read still works, with a warning.
    KeyRing::generate().unwrap().write_file(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = keycard(&["keys", "list", path.to_str().unwrap()]).ok();
    assert!(
        run.stderr.contains("readable by other users"),
        "{}",
        run.stderr
    );
}
