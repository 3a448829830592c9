//! Errors a handler sees from its session.

use crate::{RandomError, StoreError};
use http::StatusCode;

/// Why a session operation failed.
///
/// With the `axum` feature it is a response: 503 for a store failure, 500 for
/// the rest, with a plain-text body that names the cause but no secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store failed or timed out; the request must not go on as anonymous.
    #[error("session store unavailable")]
    Store(#[from] StoreError),
    /// A value could not be serialized to JSON.
    #[error("session value could not be serialized: {0}")]
    Serialize(#[source] serde_json::Error),
    /// A stored value did not have the type the handler asked for.
    #[error("session value has another type: {0}")]
    Deserialize(#[source] serde_json::Error),
    /// The key starts with `keycard.`, which keycard reserves for itself.
    #[error("session key `{0}` is reserved for keycard")]
    ReservedKey(String),
    /// The OS random generator failed.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The session cookie could not be sealed (no key in the ring, or the
    /// random generator failed).
    #[error("session cookie could not be sealed: {0}")]
    Seal(#[source] crate::CodecError),
    /// The sealed session cookie would exceed what browsers store (4096 bytes
    /// for name, value and attributes); keycard never truncates it silently.
    #[error("session cookie would be {size} bytes, over the 4096-byte limit")]
    CookieTooLarge {
        /// The size the Set-Cookie value would have had.
        size: usize,
    },
    /// The session was saved with its response already: a change made later
    /// (by a `Session` kept past its request, in a spawned task or a
    /// WebSocket) would be lost, so it is refused.
    #[error("the session was saved with its response; a later change would be lost")]
    AlreadyCommitted,
}

impl SessionError {
    /// The status the default layer answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            SessionError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The underlying error's text, for logs (the public message stays
    /// generic).
    pub(crate) fn cause(&self) -> Option<String> {
        std::error::Error::source(self).map(ToString::to_string)
    }

    /// The default response body.
    pub fn public_message(&self) -> &'static str {
        match self {
            SessionError::Store(_) => {
                "Service temporarily unavailable: the session store did not answer. Please retry."
            }
            SessionError::Deserialize(_) => {
                "Internal error: a session value does not have the type the application expects."
            }
            SessionError::Serialize(_) => "Internal error: a session value could not be stored.",
            SessionError::ReservedKey(_) => {
                "Internal error: the application used a session key reserved for keycard."
            }
            SessionError::Random(_)
            | SessionError::Seal(_)
            | SessionError::CookieTooLarge { .. }
            | SessionError::AlreadyCommitted => "Internal error while saving the session.",
        }
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for SessionError {
    fn into_response(self) -> axum::response::Response {
        match &self {
            // serde's text quotes the value, which may be anything the
            // session holds: the public message only.
            SessionError::Serialize(_) | SessionError::Deserialize(_) => {
                tracing::error!(target: "keycard", event = "session_error", status = self.status().as_u16(), error = self.public_message(), "session operation failed");
            }
            other => {
                let cause = other.cause();
                tracing::error!(target: "keycard", event = "session_error", status = self.status().as_u16(), error = %other, cause, "session operation failed");
            }
        }
        (
            self.status(),
            [(http::header::CACHE_CONTROL, "no-store")],
            self.public_message(),
        )
            .into_response()
    }
}
