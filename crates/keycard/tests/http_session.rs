//! The session layer over real HTTP: a 127.0.0.1 listener and a real client.

mod support;

use axum::extract::Path;
use axum::routing::{self, post};
use axum::Router;
use keycard::Session;
use keycard::{SessionConfig, SessionId, SessionLayer, SessionStore};
use std::time::Duration;
use support::{client, serve, set_cookie, set_cookie_header, ProbeStore};

const NAME: &str = "__Host-keycard";

fn app(store: ProbeStore, config: SessionConfig) -> Router {
    Router::new()
        .route("/plain", routing::get(|| async { "no session here" }))
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
            "/typed/{key}",
            routing::get(|Path(key): Path<String>, s: Session| async move {
                // The same value read as three types: what each gives.
                let text = match s.get::<String>(&key).await {
                    Ok(v) => format!("{v:?}"),
                    Err(e) => format!("error: {e}"),
                };
                let number = match s.get::<i64>(&key).await {
                    Ok(v) => format!("{v:?}"),
                    Err(keycard::SessionError::Deserialize(_)) => "not an i64".to_owned(),
                    Err(e) => format!("error: {e}"),
                };
                format!("{text} {number}")
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
            "/slow-set/{key}",
            post(|Path(key): Path<String>, s: Session| async move {
                s.get_value("x").await?;
                tokio::time::sleep(Duration::from_millis(300)).await;
                s.insert(&key, 1).await
            }),
        )
        .route(
            "/insert-remove",
            post(|s: Session| async move {
                s.insert("tmp", 1).await?;
                s.remove("tmp").await.map(|_| ())
            }),
        )
        .route(
            "/cycle",
            post(|s: Session| async move { s.cycle_id().await }),
        )
        .route(
            "/destroy",
            post(|s: Session| async move { s.destroy().await }),
        )
        .route(
            "/reserved",
            post(|s: Session| async move {
                match s.insert("keycard.auth", 1).await {
                    Err(keycard::SessionError::ReservedKey(_)) => "refused",
                    _ => "accepted",
                }
            }),
        )
        .layer(SessionLayer::new(store).with_config(config))
}

async fn start(config: SessionConfig) -> (String, ProbeStore) {
    let store = ProbeStore::default();
    (serve(app(store.clone(), config)).await, store)
}

fn cookie(id: &str) -> String {
    format!("{NAME}={id}")
}

async fn new_session(base: &str) -> String {
    let r = client()
        .post(format!("{base}/set/theme/dark"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    set_cookie(&r, NAME).expect("a new session sets the cookie")
}

async fn get(base: &str, path: &str, id: &str) -> reqwest::Response {
    client()
        .get(format!("{base}{path}"))
        .header("cookie", cookie(id))
        .send()
        .await
        .unwrap()
}

async fn post_with(base: &str, path: &str, id: &str) -> reqwest::Response {
    client()
        .post(format!("{base}{path}"))
        .header("cookie", cookie(id))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn new_session_cookie_has_secure_defaults() {
    let (base, store) = start(SessionConfig::default()).await;
    let r = client()
        .post(format!("{base}/set/theme/dark"))
        .send()
        .await
        .unwrap();
    let header = set_cookie_header(&r, NAME).unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    for attr in ["; Path=/", "; Secure", "; HttpOnly", "; SameSite=Lax"] {
        assert!(header.contains(attr), "{header} lacks {attr}");
    }
    assert!(
        !header.contains("Max-Age") && !header.contains("Domain"),
        "{header}"
    );
    let id = set_cookie(&r, NAME).unwrap();
    let parsed = SessionId::parse(&id).expect("256-bit base64url ID");
    // The store files the record under the hash of the ID, never the ID.
    assert!(store.inner.load(&parsed.key()).await.unwrap().is_some());
    assert_eq!(
        get(&base, "/get/theme", &id).await.text().await.unwrap(),
        "\"dark\""
    );
}

#[tokio::test]
async fn typed_reads_deserialize_or_name_the_mismatch() {
    let (base, _store) = start(SessionConfig::default()).await;
    let id = new_session(&base).await;
    let typed = |key: &'static str| {
        let (base, id) = (base.clone(), id.clone());
        async move {
            get(&base, &format!("/typed/{key}"), &id)
                .await
                .text()
                .await
                .unwrap()
        }
    };
    assert_eq!(typed("theme").await, "Some(\"dark\") not an i64");
    assert_eq!(typed("absent").await, "None None");
    post_with(&base, "/incr", &id).await;
    let n = typed("n").await;
    assert!(n.starts_with("error: ") && n.ends_with(" Some(1)"), "{n}");
}

#[tokio::test]
async fn untouched_sessions_cost_no_store_call() {
    let (base, store) = start(SessionConfig::default()).await;
    let id = new_session(&base).await;
    let (loads, writes) = (store.loads(), store.writes());
    let r = get(&base, "/plain", &id).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.headers().get("vary").is_none());
    assert_eq!((store.loads(), store.writes()), (loads, writes));
}

#[tokio::test]
async fn read_only_traffic_does_not_write_every_time() {
    let config = SessionConfig::default().with_idle_timeout(Duration::from_secs(4));
    let (base, store) = start(config).await;
    let id = new_session(&base).await;
    let writes = store.writes();
    for _ in 0..5 {
        let r = get(&base, "/get/theme", &id).await;
        assert_eq!(r.headers()["vary"], "Cookie");
    }
    assert_eq!(
        store.writes(),
        writes,
        "reads within the touch interval must not write"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    get(&base, "/get/theme", &id).await;
    assert_eq!(
        store.writes(),
        writes + 1,
        "a read after a quarter of the idle timeout touches once"
    );
}

#[tokio::test]
async fn idle_timeout_is_enforced_server_side_and_reads_extend_it() {
    let config = SessionConfig::default().with_idle_timeout(Duration::from_millis(1_200));
    let (base, _store) = start(config).await;
    let id = new_session(&base).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            get(&base, "/get/theme", &id).await.text().await.unwrap(),
            "\"dark\"",
            "reads keep it alive"
        );
    }
    tokio::time::sleep(Duration::from_millis(1_400)).await;
    let r = get(&base, "/get/theme", &id).await;
    assert_eq!(
        set_cookie(&r, NAME).as_deref(),
        Some(""),
        "the stale cookie is cleared"
    );
    assert_eq!(r.text().await.unwrap(), "");
}

#[tokio::test]
async fn absolute_timeout_ends_an_active_session() {
    let config = SessionConfig::default()
        .with_idle_timeout(Duration::from_secs(60))
        .with_absolute_timeout(Duration::from_millis(1_500));
    let (base, _store) = start(config).await;
    let id = new_session(&base).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        get(&base, "/get/theme", &id).await.text().await.unwrap(),
        "\"dark\""
    );
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        get(&base, "/get/theme", &id).await.text().await.unwrap(),
        ""
    );
}

#[tokio::test]
async fn unknown_ids_are_never_adopted() {
    let (base, store) = start(SessionConfig::default()).await;
    let planted = SessionId::generate().unwrap();
    let r = post_with(&base, "/set/a/1", &planted.to_string()).await;
    let issued = set_cookie(&r, NAME).unwrap();
    assert_ne!(issued, planted.to_string());
    assert!(store.inner.load(&planted.key()).await.unwrap().is_none());
}

#[tokio::test]
async fn garbage_tampered_oversized_and_duplicate_cookies_never_500() {
    let (base, _store) = start(SessionConfig::default()).await;
    let id = new_session(&base).await;
    let mut tampered = id.clone().into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let cases = vec![
        format!("{NAME}=garbage"),
        format!("{NAME}=;"),
        format!("{NAME}={tampered}"),
        format!("{NAME}={}", "A".repeat(10 * 1024)),
        format!("{NAME}={}", "A".repeat(64 * 1024)),
        format!("x={}; {NAME}={id}", "y".repeat(10 * 1024)),
        format!("{NAME}=%00%ff\\\"'"),
    ];
    for value in cases {
        let r = client()
            .get(format!("{base}/get/theme"))
            .header("cookie", &value)
            .send()
            .await
            .unwrap();
        assert!(
            r.status() != 500,
            "{} for {}",
            r.status(),
            &value[..value.len().min(60)]
        );
        if r.status() == 200 {
            let body = r.text().await.unwrap();
            let legit = value.starts_with("x=");
            assert_eq!(
                body.is_empty(),
                !legit,
                "cookie {}",
                &value[..value.len().min(60)]
            );
        }
    }
    // A duplicate of the session cookie fails closed, whichever comes first.
    let other = new_session(&base).await;
    for header in [
        format!("{NAME}={id}; {NAME}={other}"),
        format!("{NAME}={id}; {NAME}={id}"),
    ] {
        let r = client()
            .get(format!("{base}/get/theme"))
            .header("cookie", header)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.text().await.unwrap(),
            "",
            "duplicated cookies must give no session"
        );
    }
    let r = client()
        .get(format!("{base}/get/theme"))
        .header("cookie", cookie(&id))
        .header("cookie", cookie(&other))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "");
    // Look-alike names are other cookies.
    for header in [
        format!("__HOST-keycard={id}"),
        format!("a=1;  {NAME}={id}"),
        format!("{NAME}x={id}"),
    ] {
        let r = client()
            .get(format!("{base}/get/theme"))
            .header("cookie", header)
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "");
    }
}

/// Another application's cookie with a UTF-8 or Latin-1 value (a sibling
/// subdomain can set one) must not log the user out.
#[tokio::test]
async fn another_cookies_non_ascii_value_keeps_the_session() {
    let (base, _store) = start(SessionConfig::default()).await;
    let id = new_session(&base).await;
    for other in [&b"other=\xc3\xa9t\xc3\xa9"[..], b"other=\xe9t\xe9"] {
        let mut header = other.to_vec();
        header.extend_from_slice(format!("; {NAME}={id}").as_bytes());
        let r = client()
            .get(format!("{base}/get/theme"))
            .header(
                "cookie",
                reqwest::header::HeaderValue::from_bytes(&header).unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            set_cookie(&r, NAME).is_none(),
            "the cookie must not be cleared"
        );
        assert_eq!(r.text().await.unwrap(), "\"dark\"");
    }
}

#[tokio::test]
async fn cycle_id_keeps_data_and_kills_the_old_id() {
    let (base, _store) = start(SessionConfig::default()).await;
    let id = new_session(&base).await;
    let r = post_with(&base, "/cycle", &id).await;
    let new_id = set_cookie(&r, NAME).unwrap();
    assert_ne!(new_id, id);
    assert_eq!(
        get(&base, "/get/theme", &new_id)
            .await
            .text()
            .await
            .unwrap(),
        "\"dark\""
    );
    assert_eq!(
        get(&base, "/get/theme", &id).await.text().await.unwrap(),
        ""
    );
}

#[tokio::test]
async fn destroy_clears_the_cookie_and_a_late_write_does_not_revive() {
    let (base, _store) = start(SessionConfig::default()).await;
    let id = new_session(&base).await;
    let slow = {
        let (base, id) = (base.clone(), id.clone());
        tokio::spawn(async move { post_with(&base, "/slow-set/late", &id).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = post_with(&base, "/destroy", &id).await;
    let cleared = set_cookie_header(&r, NAME).unwrap();
    assert!(
        cleared.contains("Max-Age=0") && cleared.contains("Path=/") && cleared.contains("Secure")
    );
    let slow = slow.await.unwrap();
    assert_eq!(slow.status(), 200);
    assert_eq!(
        set_cookie(&slow, NAME).as_deref(),
        Some(""),
        "the slow request learns the session is gone"
    );
    assert_eq!(
        get(&base, "/get/theme", &id).await.text().await.unwrap(),
        ""
    );
    assert_eq!(get(&base, "/get/late", &id).await.text().await.unwrap(), "");
}

#[tokio::test]
async fn an_increment_first_is_one_store_call() {
    let (base, store) = start(SessionConfig::default()).await;
    let id = new_session(&base).await;
    let (loads, writes) = (store.loads(), store.writes());
    for expected in 1..=3 {
        let r = post_with(&base, "/incr", &id).await;
        assert_eq!(r.status(), 200);
        assert_eq!(set_cookie(&r, NAME), None, "the session kept its cookie");
        assert_eq!(r.text().await.unwrap(), expected.to_string());
    }
    // Each increment was one combined write-and-read: no load, no apply.
    assert_eq!(store.combined(), 3);
    assert_eq!((store.loads(), store.writes()), (loads, writes));
    assert_eq!(get(&base, "/get/n", &id).await.text().await.unwrap(), "3");
    assert_eq!(
        get(&base, "/get/theme", &id).await.text().await.unwrap(),
        "\"dark\""
    );
}

#[tokio::test]
async fn writes_alone_keep_a_session_alive() {
    // The one-round-trip write moves no deadline itself; the layer's
    // throttled touch (every quarter of the idle timeout) must still do it.
    let config = SessionConfig::default().with_idle_timeout(Duration::from_millis(2_000));
    let (base, _store) = start(config).await;
    let id = new_session(&base).await;
    for expected in 1..=6 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let r = post_with(&base, "/incr", &id).await;
        assert_eq!(
            set_cookie(&r, NAME),
            None,
            "request {expected} lost the session"
        );
        assert_eq!(r.text().await.unwrap(), expected.to_string());
    }
}

#[tokio::test]
async fn an_increment_first_on_a_dead_session_starts_a_new_one() {
    let (base, store) = start(SessionConfig::default()).await;
    let id = new_session(&base).await;
    post_with(&base, "/destroy", &id).await;
    let r = post_with(&base, "/incr", &id).await;
    assert_eq!(r.status(), 200);
    let fresh = set_cookie(&r, NAME).expect("a new session");
    assert_eq!(r.text().await.unwrap(), "1");
    let fresh = fresh.as_str();
    assert_ne!(fresh, id);
    assert_eq!(get(&base, "/get/n", fresh).await.text().await.unwrap(), "1");
    assert_eq!(
        get(&base, "/get/theme", fresh).await.text().await.unwrap(),
        ""
    );
    assert!(store.combined() >= 1);
}

#[tokio::test]
async fn an_increment_first_renews_a_persistent_cookie() {
    let mut config = SessionConfig::default();
    config.cookie.max_age = Some(Duration::from_secs(3_600));
    let (base, _store) = start(config).await;
    let id = new_session(&base).await;
    let r = post_with(&base, "/incr", &id).await;
    assert_eq!(set_cookie(&r, NAME).as_deref(), Some(id.as_str()));
    let header = set_cookie_header(&r, NAME).expect("the write renews Max-Age");
    assert!(header.contains("Max-Age=3600"), "{header}");
}

#[tokio::test]
async fn concurrent_requests_keep_every_change() {
    let (base, _store) = start(SessionConfig::default()).await;
    let id = new_session(&base).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (base, id) = (base.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            post_with(&base, &format!("/set/k{i}/v{i}"), &id)
                .await
                .status()
        }));
    }
    for _ in 0..32 {
        let (base, id) = (base.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            post_with(&base, "/incr", &id).await.status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    for i in 0..20 {
        assert_eq!(
            get(&base, &format!("/get/k{i}"), &id)
                .await
                .text()
                .await
                .unwrap(),
            format!("\"v{i}\"")
        );
    }
    assert_eq!(get(&base, "/get/n", &id).await.text().await.unwrap(), "32");
}

#[tokio::test]
async fn empty_sessions_are_not_persisted() {
    let (base, store) = start(SessionConfig::default()).await;
    let r = client()
        .post(format!("{base}/insert-remove"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(set_cookie(&r, NAME).is_none());
    assert_eq!(store.writes(), 0);
    assert!(store.inner.is_empty());
}

#[tokio::test]
async fn reserved_keys_are_refused() {
    let (base, _store) = start(SessionConfig::default()).await;
    let r = client()
        .post(format!("{base}/reserved"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "refused");
}

#[tokio::test]
async fn store_failure_is_503_without_a_cookie_and_recovers() {
    let config = SessionConfig::default().with_store_timeout(Duration::from_millis(300));
    let (base, store) = start(config).await;
    let id = new_session(&base).await;
    store.set_down(true);
    for (method, path) in [
        ("GET", "/get/theme"),
        ("POST", "/set/a/b"),
        ("POST", "/destroy"),
    ] {
        let r = client()
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .header("cookie", cookie(&id))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{method} {path}");
        assert!(r.headers().get("set-cookie").is_none());
        assert!(!r.text().await.unwrap().is_empty(), "503 explains itself");
    }
    // A request that never touches the session is unaffected.
    assert_eq!(get(&base, "/plain", &id).await.status(), 200);
    store.set_down(false);
    assert_eq!(
        get(&base, "/get/theme", &id).await.text().await.unwrap(),
        "\"dark\""
    );
    // A hanging store answers 503 within the store timeout.
    store.hang.store(true, std::sync::atomic::Ordering::SeqCst);
    let started = std::time::Instant::now();
    assert_eq!(get(&base, "/get/theme", &id).await.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(2));
    store.hang.store(false, std::sync::atomic::Ordering::SeqCst);
}

#[tokio::test]
async fn a_change_after_the_response_is_refused_not_lost_silently() {
    // A handler hands its session to a task that writes after the response
    // went out: the write would be lost, so it is an error the task sees.
    let (outcome_tx, outcome_rx) = tokio::sync::oneshot::channel::<String>();
    let outcome_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(outcome_tx)));
    let store = ProbeStore::default();
    let app = Router::new()
        .route(
            "/later",
            post(move |s: Session| {
                let outcome_tx = outcome_tx.clone();
                async move {
                    s.insert("now", 1).await?;
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let outcome = match s.insert("later", 1).await {
                            Err(keycard::SessionError::AlreadyCommitted) => "refused".to_owned(),
                            other => format!("{other:?}"),
                        };
                        if let Some(tx) = outcome_tx.lock().unwrap().take() {
                            let _ = tx.send(outcome);
                        }
                    });
                    Ok::<_, keycard::SessionError>("ok")
                }
            }),
        )
        .layer(SessionLayer::new(store.clone()));
    let base = serve(app).await;
    let r = client().post(format!("{base}/later")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = set_cookie(&r, NAME).unwrap();
    assert_eq!(outcome_rx.await.unwrap(), "refused");
    let record = store
        .inner
        .load(&SessionId::parse(&id).unwrap().key())
        .await
        .unwrap()
        .unwrap();
    assert!(record.data.contains_key("now") && !record.data.contains_key("later"));
}
