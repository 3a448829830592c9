//! The JSON API.

use super::Result;
use crate::app::AppState;
use crate::prefs;
use crate::users::Users;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keycard::auth::{Auth, CurrentUser};
use keycard::csrf::CsrfToken;
use serde_json::{json, Value};
use std::time::Duration;

type A = Auth<Users>;

/// How long an API token lives.
const TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

pub async fn get_preferences(auth: A) -> Result<Response> {
    Ok(Json(prefs::load(auth.session()).await?).into_response())
}

fn bad_request(message: &str) -> Response {
    super::json_error(StatusCode::BAD_REQUEST, message)
}

pub async fn patch_preferences(
    auth: A,
    body: std::result::Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Response> {
    let fields = match body {
        Ok(Json(Value::Object(fields))) => fields,
        Ok(Json(_)) => return Ok(bad_request("expected a JSON object")),
        Err(rejection) => {
            return Ok(super::json_error(
                rejection.status(),
                &rejection.body_text(),
            ))
        }
    };
    if let Err(message) = prefs::save(auth.session(), &fields).await? {
        return Ok(bad_request(&message));
    }
    Ok(Json(prefs::load(auth.session()).await?).into_response())
}

pub async fn me(auth: A) -> Result<Response> {
    Ok(match auth.user().await? {
        Some(user) => {
            Json(json!({ "authenticated": true, "username": user.username })).into_response()
        }
        None => unauthenticated(),
    })
}

/// 401 `{"error":"unauthenticated"}`: no login (DESIGN §5's answer of `/api/me`).
pub fn unauthenticated() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "error": "unauthenticated" })),
    )
        .into_response()
}

pub async fn csrf(CsrfToken(token): CsrfToken) -> Response {
    Json(json!({ "csrf_token": token })).into_response()
}

pub async fn create_token(auth: A, CurrentUser(_user): CurrentUser<Users>) -> Result<Response> {
    // Tokens come from a browser login (which passed CSRF): a stolen token
    // must not be able to mint others that outlive its revocation.
    if auth.session().is_bearer() {
        return Ok(super::json_error(
            StatusCode::FORBIDDEN,
            "Tokens are issued to a signed-in browser session.",
        ));
    }
    let token = auth.issue_token(TOKEN_LIFETIME).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": token, "expires_in": TOKEN_LIFETIME.as_secs() })),
    )
        .into_response())
}

pub async fn revoke_token(auth: A) -> Result<Response> {
    Ok(if auth.revoke_current_token().await? {
        Json(json!({ "revoked": true })).into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "unauthenticated" })),
        )
            .into_response()
    })
}

pub async fn healthz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(state.store_timeout, state.store.ping()).await {
        Ok(Ok(())) => Json(json!({ "status": "ok" })).into_response(),
        Ok(Err(error)) => {
            tracing::warn!(%error, "health check: store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable" })),
            )
                .into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "timeout" })),
        )
            .into_response(),
    }
}
