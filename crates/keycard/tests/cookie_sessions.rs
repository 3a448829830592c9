//! Client-side sessions over real HTTP: sealed cookies, tampering, key
//! rotation, the 4096-byte limit, revocation, and the signed-only mode.

mod support;

use axum::extract::Path;
use axum::routing::{self, post};
use axum::Router;
use keycard::codec::{KeyRing, SealedCodec, SignedCodec};
use keycard::{CookieCodec, MemoryStore, Session, SessionLayer, SessionStore};
use std::sync::Arc;
use support::auth_app::{app as auth_app, Options, Users};
use support::{client, serve, set_cookie, Jar};

const NAME: &str = "__Host-keycard";

fn routes(layer: SessionLayer) -> Router {
    Router::new()
        .route(
            "/get/{key}",
            routing::get(|Path(key): Path<String>, s: Session| async move {
                Ok::<_, keycard::SessionError>(
                    s.get_value(&key)
                        .await?
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                )
            }),
        )
        .route(
            "/set/{key}/{value}",
            post(
                |Path((key, value)): Path<(String, String)>, s: Session| async move {
                    s.insert(&key, value).await
                },
            ),
        )
        .route(
            "/incr",
            post(|s: Session| async move { s.increment("n", 1).await.map(|n| n.to_string()) }),
        )
        .route(
            "/big",
            post(|s: Session| async move { s.insert("big", "x".repeat(5_000)).await }),
        )
        .route(
            "/destroy",
            post(|s: Session| async move { s.destroy().await }),
        )
        .layer(layer)
}

fn ring() -> KeyRing {
    KeyRing::generate().unwrap()
}

async fn get(base: &str, path: &str, cookie: &str) -> reqwest::Response {
    client()
        .get(format!("{base}{path}"))
        .header("cookie", format!("{NAME}={cookie}"))
        .send()
        .await
        .unwrap()
}

async fn start(codec: impl CookieCodec) -> (String, Arc<MemoryStore>) {
    let revocations = Arc::new(MemoryStore::new());
    (
        serve(routes(SessionLayer::client_side(
            codec,
            revocations.clone(),
        )))
        .await,
        revocations,
    )
}

async fn new_session(base: &str) -> String {
    let response = client()
        .post(format!("{base}/set/theme/dark"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    set_cookie(&response, NAME).unwrap()
}

#[tokio::test]
async fn the_record_lives_sealed_in_the_cookie() {
    let (base, revocations) = start(SealedCodec::new(&ring(), "session")).await;
    let cookie = new_session(&base).await;
    assert!(
        !cookie.contains("dark"),
        "sealed: the value is not readable"
    );
    assert_eq!(
        get(&base, "/get/theme", &cookie)
            .await
            .text()
            .await
            .unwrap(),
        "\"dark\""
    );
    assert!(
        revocations.is_empty(),
        "no server-side state for a live session"
    );
}

#[tokio::test]
async fn increments_count_once_per_request() {
    let (base, _) = start(SealedCodec::new(&ring(), "session")).await;
    let mut cookie = new_session(&base).await;
    for expected in 1..=3 {
        let response = client()
            .post(format!("{base}/incr"))
            .header("cookie", format!("{NAME}={cookie}"))
            .send()
            .await
            .unwrap();
        cookie = set_cookie(&response, NAME).unwrap();
        assert_eq!(response.text().await.unwrap(), expected.to_string());
        assert_eq!(
            get(&base, "/get/n", &cookie).await.text().await.unwrap(),
            expected.to_string()
        );
    }
}

#[tokio::test]
async fn any_tampering_gives_an_anonymous_session() {
    let (base, _) = start(SealedCodec::new(&ring(), "session")).await;
    let cookie = new_session(&base).await;
    let bytes = cookie.as_bytes();
    for position in [0, 1, bytes.len() / 2, bytes.len() - 2, bytes.len() - 1] {
        let mut tampered = bytes.to_vec();
        tampered[position] = if tampered[position] == b'A' {
            b'B'
        } else {
            b'A'
        };
        let response = get(&base, "/get/theme", std::str::from_utf8(&tampered).unwrap()).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            set_cookie(&response, NAME).as_deref(),
            Some(""),
            "the bad cookie is cleared"
        );
        assert_eq!(response.text().await.unwrap(), "", "flip at {position}");
    }
    let truncated = &cookie[..cookie.len() - 4];
    assert_eq!(
        get(&base, "/get/theme", truncated)
            .await
            .text()
            .await
            .unwrap(),
        ""
    );
    // Sealed under another key: rejected too.
    let (other, _) = start(SealedCodec::new(&ring(), "session")).await;
    assert_eq!(
        get(&other, "/get/theme", &cookie)
            .await
            .text()
            .await
            .unwrap(),
        ""
    );
}

#[tokio::test]
async fn rotated_keys_still_open_and_reseal_with_the_newest() {
    let mut keys = ring();
    let old_id = keys.newest_id();
    let (old_base, _) = start(SealedCodec::new(&keys, "session")).await;
    let cookie = new_session(&old_base).await;

    keys.rotate().unwrap();
    let (base, _) = start(SealedCodec::new(&keys, "session")).await;
    let response = get(&base, "/get/theme", &cookie).await;
    let resealed = set_cookie(&response, NAME).expect("opened with an old key: resealed");
    assert_ne!(resealed, cookie);
    assert_eq!(response.text().await.unwrap(), "\"dark\"");

    keys.remove(old_id).unwrap();
    let (newest_only, _) = start(SealedCodec::new(&keys, "session")).await;
    assert_eq!(
        get(&newest_only, "/get/theme", &cookie)
            .await
            .text()
            .await
            .unwrap(),
        "",
        "the removed key opens nothing"
    );
    assert_eq!(
        get(&newest_only, "/get/theme", &resealed)
            .await
            .text()
            .await
            .unwrap(),
        "\"dark\""
    );
}

#[tokio::test]
async fn a_cookie_over_4096_bytes_is_a_clear_error_not_a_truncation() {
    let (base, _) = start(SealedCodec::new(&ring(), "session")).await;
    let response = client().post(format!("{base}/big")).send().await.unwrap();
    assert_eq!(response.status(), 500);
    assert!(
        response.headers().get("set-cookie").is_none(),
        "no cookie the browser would drop"
    );
    let body = response.text().await.unwrap();
    assert!(body.contains("session"), "{body}");
}

#[tokio::test]
async fn a_destroyed_session_cannot_be_replayed() {
    let (base, revocations) = start(SealedCodec::new(&ring(), "session")).await;
    let cookie = new_session(&base).await;
    let response = client()
        .post(format!("{base}/destroy"))
        .header("cookie", format!("{NAME}={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(set_cookie(&response, NAME).as_deref(), Some(""));
    assert_eq!(
        revocations.len(),
        1,
        "one deny-list entry, kept until the session's natural expiry"
    );
    assert_eq!(
        get(&base, "/get/theme", &cookie)
            .await
            .text()
            .await
            .unwrap(),
        ""
    );
}

#[tokio::test]
async fn signed_mode_is_readable_but_not_modifiable() {
    use base64::Engine;
    let (base, _) = start(SignedCodec::new(&ring(), "session")).await;
    let cookie = new_session(&base).await;
    let payload = cookie.split('.').next().unwrap();
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    assert!(
        String::from_utf8_lossy(&decoded).contains("dark"),
        "signed, not encrypted"
    );
    let forged_payload = String::from_utf8_lossy(&decoded)
        .replace("dark", "evil")
        .into_bytes();
    let forged = format!(
        "{}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged_payload),
        cookie.split_once('.').unwrap().1
    );
    assert_eq!(
        get(&base, "/get/theme", &cookie)
            .await
            .text()
            .await
            .unwrap(),
        "\"dark\""
    );
    assert_eq!(
        get(&base, "/get/theme", &forged)
            .await
            .text()
            .await
            .unwrap(),
        ""
    );
}

/// GET /api/private with `Authorization: Bearer token`.
async fn with_token(base: &str, token: &str) -> reqwest::Response {
    client()
        .get(format!("{base}/api/private"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

struct Device {
    base: String,
    jar: Jar,
}

impl Device {
    async fn send(&mut self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let response = request
            .header("cookie", self.jar.header())
            .send()
            .await
            .unwrap();
        self.jar.update(&response);
        response
    }
    async fn text(&mut self, path: &str) -> String {
        let request = client().get(format!("{}{path}", self.base));
        self.send(request).await.text().await.unwrap()
    }
    /// Mints an API token for the logged-in user (POST /token with CSRF).
    async fn api_token(&mut self) -> String {
        let csrf = self.text("/csrf").await;
        let request = client()
            .post(format!("{}/token", self.base))
            .header("x-csrf-token", csrf);
        self.send(request).await.text().await.unwrap()
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let token = self.text("/csrf").await;
        let mut form = fields.to_vec();
        form.push(("csrf_token", &token));
        let request = client().post(format!("{}{path}", self.base)).form(&form);
        self.send(request).await
    }
}

#[tokio::test]
async fn logout_everywhere_and_password_changes_reach_client_side_sessions() {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let users = Users::with(&[("alice", "correct horse", &[][..])]);
    let options = Options {
        cookie_codec: Some(SealedCodec::new(&ring(), "session")),
        ..Options::default()
    };
    let base = serve(auth_app(store, users, options)).await;
    let mut laptop = Device {
        base: base.clone(),
        jar: Jar::default(),
    };
    let mut phone = Device {
        base: base.clone(),
        jar: Jar::default(),
    };
    for device in [&mut laptop, &mut phone] {
        device
            .post(
                "/login",
                &[("username", "alice"), ("password", "correct horse")],
            )
            .await;
        assert_eq!(device.text("/public").await, "alice");
    }
    let before = laptop.jar.clone();
    let login = laptop.text("/login-info").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // Sessions in cookies cannot be listed, but they can all be voided.
    laptop.post("/revoke-others", &[]).await;
    assert_eq!(
        laptop.text("/login-info").await,
        login,
        "the re-issued cookie keeps its login time, freshness and absolute deadline"
    );
    assert_eq!(phone.text("/public").await, "anonymous");
    assert_eq!(
        laptop.text("/public").await,
        "alice",
        "the device that asked stays logged in"
    );
    // The laptop's pre-revocation cookie is void too (its login predates the cut-off).
    let mut replay = Device {
        base: base.clone(),
        jar: before,
    };
    assert_eq!(replay.text("/public").await, "anonymous");
    // API tokens work in cookie mode too (they are records in the revocation store).
    let token = laptop.api_token().await;
    let api = with_token(&base, &token).await;
    assert_eq!(api.status(), 200);
    assert!(api.headers().get("set-cookie").is_none());
    let revoke = client()
        .delete(format!("{base}/token"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.text().await.unwrap(), "true");
    assert_eq!(with_token(&base, &token).await.status(), 401);
    // The sessions list shows this device (the others live in other cookies);
    // a request made with an API token lists no session of its own.
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&laptop.text("/sessions").await).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["current"], true);
    let token = laptop.api_token().await;
    let by_token: Vec<serde_json::Value> = client()
        .get(format!("{base}/sessions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(by_token.is_empty(), "{by_token:?}");
    // "Log out everywhere else" ends API tokens too.
    laptop.post("/revoke-others", &[]).await;
    assert_eq!(with_token(&base, &token).await.status(), 401);
    assert_eq!(laptop.text("/public").await, "alice");
    let current = laptop.jar.clone();
    laptop.post("/logout", &[]).await;
    let mut replay = Device { base, jar: current };
    assert_eq!(
        replay.text("/public").await,
        "anonymous",
        "a logged-out cookie is dead"
    );
}
