//! The payload of a client-side (cookie-mode) session cookie, before sealing.
//!
//! In cookie mode ([`SessionLayer::client_side`](crate::SessionLayer::client_side))
//! the whole session travels in the session cookie: this payload, sealed by a
//! [`SealedCodec`](crate::SealedCodec) built for the purpose `"session"`, under
//! the session cookie's name (`__Host-keycard` by default). Public so tools (the
//! `keycard cookie` command, migrations, tests) read and write exactly what the
//! layer does.
//!
//! # Format (version 1)
//!
//! ```text
//! payload = version (1 byte, = 1) || session ID (32 raw bytes) || Record::encode()
//! ```
//!
//! [`Record::encode`] is versioned on its own (a version byte, then binary), so
//! either part can change format without the other.
//!
//! # Why would I decode one?
//!
//! To see what a browser holds (`keycard cookie inspect`). The session ID inside
//! is the secret that opens the session: show its key's
//! [`handle`](crate::SessionKey::handle), never the ID itself.
//!
//! ```
//! use keycard::{cookie_payload, Record, SessionId};
//!
//! let id = SessionId::generate()?;
//! let mut record = Record::new(1_000, 60_000, 3_600_000);
//! record.user_id = Some("ada".into());
//! let payload = cookie_payload::encode(&id, &record);
//!
//! let (read_id, read_record) = cookie_payload::decode(&payload)?;
//! assert_eq!(read_id, id);
//! assert_eq!(read_record, record);
//! assert!(cookie_payload::decode(b"\x02not a payload").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::{CodecError, Record, SessionId};

/// The payload format version [`encode`] writes and [`decode`] reads.
pub const FORMAT_VERSION: u8 = 1;

/// The payload of a cookie-mode session cookie for `id` and `record`, ready
/// to be sealed.
///
/// ```
/// use keycard::{cookie_payload, Record, SessionId};
/// let payload = cookie_payload::encode(&SessionId::generate()?, &Record::new(0, 1, 2));
/// assert_eq!(payload[0], cookie_payload::FORMAT_VERSION);
/// # Ok::<(), keycard::RandomError>(())
/// ```
pub fn encode(id: &SessionId, record: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&record.encode());
    out
}

/// Reads [`encode`] output back (after the codec opened it).
///
/// Errors: [`CodecError::Malformed`] naming what is wrong (empty, unknown
/// version, too short, corrupt record). Never panics, whatever the input.
///
/// ```
/// use keycard::{cookie_payload, CodecError};
/// assert_eq!(
///     cookie_payload::decode(b"").unwrap_err(),
///     CodecError::Malformed("empty session payload")
/// );
/// ```
pub fn decode(payload: &[u8]) -> Result<(SessionId, Record), CodecError> {
    let Some((&version, rest)) = payload.split_first() else {
        return Err(CodecError::Malformed("empty session payload"));
    };
    if version != FORMAT_VERSION {
        return Err(CodecError::Malformed(
            "session payload has an unknown format version",
        ));
    }
    let Some((id, record)) = rest.split_first_chunk::<{ crate::id::ID_BYTES }>() else {
        return Err(CodecError::Malformed("session payload is too short"));
    };
    let record = Record::decode(record)
        .map_err(|_| CodecError::Malformed("session payload holds a corrupt record"))?;
    Ok((SessionId::from_bytes(*id), record))
}
