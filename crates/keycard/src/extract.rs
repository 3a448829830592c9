//! axum extractors (feature `axum`).

use crate::Session;
use axum::extract::FromRequestParts;
use http::request::Parts;
use http::StatusCode;

/// The session layer is missing: a server configuration error.
#[derive(Debug, thiserror::Error)]
#[error("no session on the request: is SessionLayer installed on this route?")]
pub struct MissingSessionLayer;

impl axum::response::IntoResponse for MissingSessionLayer {
    fn into_response(self) -> axum::response::Response {
        tracing::error!(target: "keycard", "{self}");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error: session layer missing.",
        )
            .into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(MissingSessionLayer)
    }
}
