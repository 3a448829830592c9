//! The application: shared state, routes and the layer stack.

use crate::render::{self, Templates};
use crate::routes;
use crate::users::Users;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use keycard::auth::{Auth, AuthLayer, LoginThrottle};
use keycard::csrf::CsrfLayer;
use keycard::transport::{HeaderLimitLayer, HstsLayer, QuerySecretsLayer};
use keycard::{SessionLayer, SessionStore};
use std::sync::Arc;
use std::time::Duration;

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    pub users: Users,
    pub templates: Templates,
    pub throttle: LoginThrottle,
    pub store: Arc<dyn SessionStore>,
    pub store_timeout: Duration,
    pub idle_timeout: Duration,
    pub client_side: bool,
}

/// The HTTPS application with every defence in place. Layers run outside-in
/// in the order listed at the bottom: HSTS on every response (errors too),
/// the header cap and query-secret refusal before anything reads the request,
/// then sessions, authentication and CSRF.
pub fn router(state: AppState, sessions: SessionLayer) -> Router {
    let auth = AuthLayer::new(state.users.clone());
    Router::new()
        .route("/", get(routes::pages::home))
        .route(
            "/register",
            get(routes::pages::register_form).post(routes::pages::register),
        )
        .route(
            "/login",
            get(routes::pages::login_form).post(routes::pages::login),
        )
        .route("/logout", post(routes::pages::logout))
        .route("/account", get(routes::pages::account))
        .route(
            "/preferences",
            get(routes::pages::preferences_form).post(routes::pages::preferences),
        )
        .route("/sessions", get(routes::pages::sessions))
        .route("/sessions/revoke", post(routes::pages::revoke))
        .route(
            "/sessions/revoke-others",
            post(routes::pages::revoke_others),
        )
        .route(
            "/reauth",
            get(routes::pages::reauth_form).post(routes::pages::reauth),
        )
        .route("/password", post(routes::pages::change_password))
        .route(
            "/api/preferences",
            get(routes::api::get_preferences).patch(routes::api::patch_preferences),
        )
        .route("/api/me", get(routes::api::me))
        .route("/api/csrf", get(routes::api::csrf))
        .route("/api/tokens", post(routes::api::create_token))
        .route("/api/tokens/current", delete(routes::api::revoke_token))
        .route("/healthz", get(routes::api::healthz))
        .route("/static/app.css", get(stylesheet))
        .fallback(routes::pages::not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(64 * 1024))
        // On routed paths only: an unsafe request for a path with no route is
        // a 404 (as with Django and Rails), not a CSRF refusal; nothing runs
        // for it either way. A wrong method on a routed path is checked
        // first (403 without a token, as with Django), then 405.
        .route_layer(CsrfLayer::default())
        .route_layer(axum::middleware::from_fn(refuse_dead_tokens))
        .layer(auth)
        .layer(sessions)
        .layer(axum::middleware::from_fn(api_errors_as_json))
        .layer(axum::middleware::map_response(security_headers))
        .layer(query_secrets())
        .layer(HeaderLimitLayer::default())
        .layer(HstsLayer::default())
}

/// Refuses secrets in the URL (DESIGN §4) on both listeners: the default
/// names plus this app's own password fields.
pub fn query_secrets() -> QuerySecretsLayer {
    QuerySecretsLayer::default()
        .also("current_password")
        .also("new_password")
}

async fn stylesheet() -> Response {
    let mut response = Response::new(render::STYLESHEET.into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// Whether `path` is the JSON API's.
fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// An API call whose `Authorization: Bearer` token opens no live login
/// (revoked, expired, made up) is refused with 401 and `WWW-Authenticate:
/// Bearer error="invalid_token"` (RFC 6750), the body `/api/me` gives the
/// anonymous: it is not served as an anonymous request, whose answer (a write
/// that "succeeds" and is stored nowhere) would mislead the client.
async fn refuse_dead_tokens(auth: Auth<Users>, request: Request, next: Next) -> Response {
    if !auth.session().is_bearer() || !is_api(request.uri().path()) {
        return next.run(request).await;
    }
    match auth.user().await {
        Ok(Some(_)) => next.run(request).await,
        Ok(None) => {
            let mut response = routes::api::unauthenticated();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            response
        }
        Err(error) => routes::AppError::from(error).into_response(),
    }
}

/// The API answers in JSON, its errors too: a refusal that a layer or an
/// extractor wrote as text or HTML (a CSRF failure, a store outage's 503, a
/// body over the limit, a 404) is rewrapped by [`routes::json_error`], status
/// and other headers unchanged. Errors already in JSON pass as they are.
async fn api_errors_as_json(request: Request, next: Next) -> Response {
    let api = is_api(request.uri().path());
    let response = next.run(request).await;
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !api
        || content_type.contains("json")
        || !(status.is_client_error() || status.is_server_error())
    {
        return response;
    }
    let is_text = content_type.starts_with("text/plain");
    let (parts, body) = response.into_parts();
    // Error texts are short; anything else is not worth repeating.
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(bytes) if is_text && !bytes.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
        _ => status.canonical_reason().unwrap_or("Error").to_owned(),
    };
    let mut json = routes::json_error(status, &text);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().append(name, value.clone());
        }
    }
    json
}

/// Headers every page gets: no framing, no sniffing, no foreign resources, no
/// scripts at all (the demo needs none), no full URLs leaking in Referer, and
/// no caching unless a handler says otherwise (the stylesheet): every other
/// response may depend on who asks, the health check and errors included.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("cache-control", "no-store"),
        ("content-security-policy", "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        ("cross-origin-opener-policy", "same-origin"),
    ] {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    }
    response
}
