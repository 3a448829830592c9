//! Request handlers: server-rendered pages and the JSON API.

pub mod api;
pub mod pages;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keycard::auth::AuthError;
use keycard::SessionError;

/// A failure a handler cannot recover from: the store or the users database.
pub struct AppError(Response);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.0
    }
}

impl From<SessionError> for AppError {
    fn from(error: SessionError) -> Self {
        AppError(error.into_response())
    }
}

impl From<AuthError> for AppError {
    fn from(error: AuthError) -> Self {
        AppError(error.into_response())
    }
}

impl From<keycard::StoreError> for AppError {
    fn from(error: keycard::StoreError) -> Self {
        SessionError::Store(error).into()
    }
}

impl From<crate::users::UsersError> for AppError {
    fn from(error: crate::users::UsersError) -> Self {
        tracing::error!(%error, "users database failed");
        AppError(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(axum::http::header::CACHE_CONTROL, "no-store")],
                "Service temporarily unavailable.",
            )
                .into_response(),
        )
    }
}

pub type Result<T> = std::result::Result<T, AppError>;

/// An API error: `{"error": "<status in snake case>", "message": "…"}`.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    let code = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
        .replace([' ', '-'], "_");
    (
        status,
        axum::Json(serde_json::json!({ "error": code, "message": message })),
    )
        .into_response()
}
