//! The data keys keycard itself writes into a session. Applications may read
//! them but [`Session::insert`](crate::Session::insert) refuses to write under
//! the `keycard.` prefix, so an application value can never pose as one.

/// The prefix of every reserved key.
pub const PREFIX: &str = "keycard.";
/// What the record is, when it is not a browser session (`remember`, `bearer`, `throttle`, ...).
pub const KIND: &str = "keycard.kind";
/// The CSRF secret (base64url).
pub const CSRF_SECRET: &str = "keycard.csrf";
/// The login details: auth hash, login time, freshness.
pub const AUTH: &str = "keycard.auth";
/// Client-side sessions: when "log out everywhere else" last re-issued this
/// session's cookie. The cookie counts as issued at the later of this and the
/// login time when checked against the user's not-before time, so it
/// survives its own clean-up without a new login time (which would make the
/// login fresh again and restart the absolute timeout).
pub const REISSUED_AT: &str = "keycard.reissued_at";

/// Whether `key` is reserved for keycard.
pub fn is_reserved(key: &str) -> bool {
    key.starts_with(PREFIX)
}
