//! `keycard::Record::decode`: a stored session record (a version byte, then
//! the binary format 2 or the JSON of format 1) as read back from a store,
//! or from inside a sealed cookie.
//!
//! Checked: what decodes encodes to the current version and decodes again
//! to an equal record, and encoding is stable.
#![no_main]

use keycard::{Record, SessionKey, RECORD_FORMAT_VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = Record::decode(data) else {
        return;
    };
    let encoded = record.encode();
    assert_eq!(encoded.first(), Some(&RECORD_FORMAT_VERSION));
    let again = Record::decode(&encoded).expect("an encoded record decodes");
    assert_eq!(again, record, "a record changed in a round trip");
    assert_eq!(again.encode(), encoded);
    // What the session layer and stores compute from a record.
    let _ = record.is_expired(0);
    let _ = record.summary(SessionKey::from_bytes([0; 32]));
});
