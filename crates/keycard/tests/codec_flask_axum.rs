//! The axum side of docs/flask-migration.md, runnable: a Rust service reading
//! and writing the session cookie a Flask app set.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use keycard::codec::flask::{FlaskCodec, FlaskSession, FlaskValue};
use keycard::cookie_header::{find_cookie, CookieLookup};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

// --- as in docs/flask-migration.md -------------------------------------------

/// Configured as the Flask app is: SECRET_KEY, SECRET_KEY_FALLBACKS,
/// PERMANENT_SESSION_LIFETIME, SESSION_COOKIE_NAME.
fn flask_codec() -> FlaskCodec {
    FlaskCodec::new(std::env::var("FLASK_SECRET_KEY").unwrap_or_else(|_| "dev secret".into()))
        .with_fallbacks(["previous secret"])
        .with_max_age(Duration::from_secs(31 * 24 * 3600))
        .with_cookie_name("session")
}

/// The Flask session of this request: `None` when absent, forged, expired
/// or sent twice (all the same to the handler: not signed in).
fn flask_session(codec: &FlaskCodec, headers: &HeaderMap) -> Option<FlaskSession> {
    match find_cookie(headers, codec.cookie_name()) {
        CookieLookup::One(value) => codec.decode(value).ok(),
        CookieLookup::Absent | CookieLookup::Ambiguous => None,
    }
}

/// `Set-Cookie` for the session, with the attributes the Flask app uses
/// (SESSION_COOKIE_PATH, _HTTPONLY, _SECURE, _SAMESITE).
fn set_flask_cookie(codec: &FlaskCodec, session: &FlaskSession) -> Result<String, StatusCode> {
    let value = codec
        .encode(session)
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let max_age = if session.is_permanent() {
        "; Max-Age=2678400"
    } else {
        ""
    };
    Ok(format!(
        "{}={value}; Path=/; HttpOnly; Secure; SameSite=Lax{max_age}",
        codec.cookie_name()
    ))
}

/// Flask-Login keeps the user ID under `_user_id`.
async fn whoami(State(codec): State<Arc<FlaskCodec>>, headers: HeaderMap) -> Response {
    let session = flask_session(&codec, &headers);
    match session
        .as_ref()
        .and_then(|s| s.get("_user_id"))
        .and_then(FlaskValue::as_str)
    {
        Some(user) => format!("user {user}").into_response(),
        None => (StatusCode::UNAUTHORIZED, "not signed in").into_response(),
    }
}

async fn dark_theme(State(codec): State<Arc<FlaskCodec>>, headers: HeaderMap) -> Response {
    let mut session = flask_session(&codec, &headers).unwrap_or_default();
    session.insert("theme", "dark");
    match set_flask_cookie(&codec, &session) {
        Ok(cookie) => ([(header::SET_COOKIE, cookie)], "theme saved").into_response(),
        Err(status) => status.into_response(),
    }
}

fn app() -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/theme/dark", post(dark_theme))
        .with_state(Arc::new(flask_codec()))
}

// --- tests -------------------------------------------------------------------

async fn call(method: &str, path: &str, cookie: Option<&str>) -> (StatusCode, HeaderMap, String) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = app()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

/// What the Flask app (Flask-Login) would have set after a login.
fn flask_login_cookie(secret: &str) -> String {
    let mut session = FlaskSession::new();
    session.insert("_user_id", "7");
    session.insert("_fresh", true);
    session.set_permanent(true);
    FlaskCodec::new(secret).encode(&session).unwrap()
}

#[tokio::test]
async fn reads_the_user_flask_logged_in() {
    let cookie = format!("session={}", flask_login_cookie("dev secret"));
    assert_eq!(call("GET", "/whoami", Some(&cookie)).await.2, "user 7");
    // Signed with the previous secret (a fallback): still read.
    let cookie = format!("session={}", flask_login_cookie("previous secret"));
    assert_eq!(call("GET", "/whoami", Some(&cookie)).await.2, "user 7");
    // Forged, or no cookie: not signed in.
    let cookie = format!("session={}", flask_login_cookie("guessed secret"));
    assert_eq!(
        call("GET", "/whoami", Some(&cookie)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call("GET", "/whoami", None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn writes_back_the_cookie_keeping_flasks_values_and_current_key() {
    let cookie = format!("session={}", flask_login_cookie("previous secret"));
    let (status, headers, _) = call("POST", "/theme/dark", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    let set_cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(set_cookie.ends_with("; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=2678400"));
    let value = set_cookie
        .strip_prefix("session=")
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    // Re-signed with the current secret, Flask-Login's keys kept.
    let session = FlaskCodec::new("dev secret").decode(value).unwrap();
    assert!(!session.stale_key);
    assert_eq!(session.get("theme"), Some(&FlaskValue::from("dark")));
    assert_eq!(session.get("_user_id"), Some(&FlaskValue::from("7")));
    assert!(session.is_permanent());
}
