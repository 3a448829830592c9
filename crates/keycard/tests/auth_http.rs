//! Authentication over real HTTP: login, logout, fixation, freshness,
//! remember-me, binding, throttling, tokens, the sessions list, permissions.

mod support;

use keycard::auth::AuthConfig;
use keycard::{BindIp, BindMode, Binding, MemoryStore, SessionId, SessionStore};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::auth_app::{app, Options, Users};
use support::{serve, Jar};

const SESSION: &str = "__Host-keycard";
const REMEMBER: &str = "__Host-keycard-remember";

/// One user agent: its own cookies, optionally its own source address.
#[derive(Clone)]
struct Browser {
    base: String,
    jar: Jar,
    client: reqwest::Client,
}

impl Browser {
    fn new(base: &str) -> Self {
        Self::from(base, None)
    }

    fn from(base: &str, local: Option<&str>) -> Self {
        let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if let Some(ip) = local {
            builder = builder.local_address(ip.parse::<IpAddr>().unwrap());
        }
        Browser {
            base: base.to_owned(),
            jar: Jar::default(),
            client: builder.build().unwrap(),
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let response = request
            .header("cookie", self.jar.header())
            .send()
            .await
            .unwrap();
        self.jar.update(&response);
        response
    }

    async fn get(&mut self, path: &str) -> reqwest::Response {
        let request = self.client.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    async fn text(&mut self, path: &str) -> String {
        self.get(path).await.text().await.unwrap()
    }

    async fn token(&mut self) -> String {
        self.text("/csrf").await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let token = self.token().await;
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf_token", &token));
        let request = self.client.post(format!("{}{path}", self.base)).form(&form);
        self.send(request).await
    }

    async fn login(&mut self, user: &str, password: &str) -> reqwest::Response {
        self.post("/login", &[("username", user), ("password", password)])
            .await
    }

    /// Mints an API token for the logged-in user (POST /token with CSRF).
    async fn api_token(&mut self) -> String {
        let csrf = self.token().await;
        let request = self
            .client
            .post(format!("{}/token", self.base))
            .header("x-csrf-token", csrf);
        self.send(request).await.text().await.unwrap()
    }

    /// Logs in with "remember me" ticked.
    async fn login_remembered(&mut self, user: &str, password: &str) -> reqwest::Response {
        let fields = [
            ("username", user),
            ("password", password),
            ("remember", "on"),
        ];
        self.post("/login", &fields).await
    }
}

async fn start(options: Options) -> (String, Arc<MemoryStore>, Users) {
    let store = Arc::new(MemoryStore::new());
    let users = Users::with(&[
        ("alice", "correct horse", &[][..]),
        ("root", "root password", &["admin"][..]),
    ]);
    let base = serve(app(store.clone(), users.clone(), options)).await;
    (base, store, users)
}

/// The test app with sessions bound to the client's address.
async fn start_bound(ip: BindIp, mode: BindMode) -> String {
    let binding = Binding {
        ip,
        mode,
        ..Binding::default()
    };
    let options = Options {
        binding,
        ..Options::default()
    };
    start(options).await.0
}

#[tokio::test]
async fn login_rotates_the_session_id_and_the_pre_login_cookie_dies() {
    let (base, store, _) = start(Options::default()).await;
    let mut browser = Browser::new(&base);
    browser.token().await;
    let before = browser.jar.get(SESSION).unwrap().to_owned();
    let response = browser.login("alice", "correct horse").await;
    assert_eq!(response.status(), 303);
    let after = browser.jar.get(SESSION).unwrap().to_owned();
    assert_ne!(before, after, "login must issue a new session ID");
    assert!(store
        .load(&SessionId::parse(&before).unwrap().key())
        .await
        .unwrap()
        .is_none());
    assert_eq!(browser.text("/private").await, "hello alice");
    // An attacker who planted (or kept) the pre-login cookie gets nothing.
    let mut attacker = Browser::new(&base);
    attacker.jar.cookies.insert(SESSION.into(), before);
    assert_eq!(attacker.text("/public").await, "anonymous");
}

#[tokio::test]
async fn twenty_parallel_logins_with_one_pre_login_cookie_get_distinct_ids() {
    let (base, _store, _) = start(Options::default()).await;
    let mut first = Browser::new(&base);
    let token = first.token().await;
    let pre = first.jar.get(SESSION).unwrap().to_owned();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (base, pre, token) = (base.clone(), pre.clone(), token.clone());
            tokio::spawn(async move {
                let response = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap()
                    .post(format!("{base}/login"))
                    .header("cookie", format!("{SESSION}={pre}"))
                    .form(&[
                        ("username", "alice"),
                        ("password", "correct horse"),
                        ("csrf_token", &token),
                    ])
                    .send()
                    .await
                    .unwrap();
                support::set_cookie(&response, SESSION)
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        if let Some(id) = task.await.unwrap().filter(|id| !id.is_empty()) {
            assert_ne!(id, pre);
            assert!(ids.insert(id), "two logins got the same session ID");
        }
    }
    assert!(!ids.is_empty());
    let mut stale = Browser::new(&base);
    stale.jar.cookies.insert(SESSION.into(), pre);
    assert_eq!(stale.text("/public").await, "anonymous");
}

#[tokio::test]
async fn logout_deletes_the_record_and_clears_both_cookies() {
    let (base, store, _) = start(Options::default()).await;
    let mut browser = Browser::new(&base);
    browser.login_remembered("alice", "correct horse").await;
    let session = browser.jar.get(SESSION).unwrap().to_owned();
    assert!(browser.jar.get(REMEMBER).is_some());
    let stolen = browser.jar.clone();
    let response = browser.post("/logout", &[]).await;
    assert_eq!(
        response.headers()["clear-site-data"],
        "\"cache\", \"cookies\", \"storage\""
    );
    let cleared: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    for name in [SESSION, REMEMBER] {
        let header = cleared
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap();
        assert!(
            header.contains("Max-Age=0")
                && header.contains("Path=/")
                && header.contains("Secure")
                && header.contains("HttpOnly"),
            "{header}"
        );
    }
    assert!(store
        .load(&SessionId::parse(&session).unwrap().key())
        .await
        .unwrap()
        .is_none());
    // Replaying the old cookies (session and remember-me) gets nothing.
    let mut replay = Browser::new(&base);
    replay.jar = stolen;
    assert_eq!(replay.text("/public").await, "anonymous");
}

#[tokio::test]
async fn login_required_redirects_browsers_and_refuses_api_calls() {
    let (base, _store, _) = start(Options::default()).await;
    let mut browser = Browser::new(&base);
    let response = browser.get("/private?tab=1").await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "/login?next=%2Fprivate%3Ftab%3D1"
    );
    let response = browser.get("/members").await;
    assert_eq!(response.status(), 303);
    // Inside `Router::nest`, the redirect and the API test use the whole path.
    let response = browser.get("/nested/panel?x=1").await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "/login?next=%2Fnested%2Fpanel%3Fx%3D1"
    );
    let response = browser.get("/api/nested/me").await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"error":"unauthenticated"}"#
    );
    let response = browser.get("/api/private").await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"error":"unauthenticated"}"#
    );
    let response = browser
        .send(
            browser
                .client
                .get(format!("{base}/private"))
                .header("accept", "application/json"),
        )
        .await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn login_redirects_only_to_safe_local_next() {
    let (base, _store, _) = start(Options::default()).await;
    for (next, expected) in [
        ("/private", "/private"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/%2F%2Fevil.example", "/"),
        ("/a%0d%0aSet-Cookie:x=1", "/"),
    ] {
        let mut browser = Browser::new(&base);
        let response = browser
            .post(
                "/login",
                &[
                    ("username", "alice"),
                    ("password", "correct horse"),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(response.headers()["location"], expected, "next={next}");
    }
}

#[tokio::test]
async fn a_refused_form_post_comes_back_to_its_form_not_to_itself() {
    // A redirect cannot replay a POST: after logging in (or re-entering the
    // password) the browser returns to the page that held the form, or home.
    let options = Options {
        auth: AuthConfig::default().with_fresh_for(Duration::from_millis(300)),
        ..Options::default()
    };
    let (base, _store, _) = start(options).await;
    let mut browser = Browser::new(&base);
    let fields = [("password", "new password")];
    let response = browser.post("/password", &fields).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/login?next=%2F");
    let token = browser.token().await;
    let form = browser
        .client
        .post(format!("{base}/password"))
        .header("referer", format!("{base}/account?tab=security"))
        .form(&[("password", "new password"), ("csrf_token", &token)]);
    let response = browser.send(form).await;
    assert_eq!(
        response.headers()["location"],
        "/login?next=%2Faccount%3Ftab%3Dsecurity"
    );
    browser.login("alice", "correct horse").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let response = browser.post("/password", &fields).await;
    assert_eq!(response.headers()["location"], "/reauth?next=%2F");
}

#[tokio::test]
async fn fresh_login_expires_and_reauthentication_restores_it() {
    let options = Options {
        auth: AuthConfig::default().with_fresh_for(Duration::from_millis(800)),
        ..Options::default()
    };
    let (base, _store, _) = start(options).await;
    let mut browser = Browser::new(&base);
    browser.login("alice", "correct horse").await;
    assert_eq!(browser.text("/fresh").await, "fresh alice");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let response = browser.get("/fresh").await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/reauth?next=%2Ffresh");
    let response = browser.get("/nested/fresh").await;
    assert_eq!(
        response.headers()["location"],
        "/reauth?next=%2Fnested%2Ffresh"
    );
    let before = browser.jar.get(SESSION).unwrap().to_owned();
    assert_eq!(
        browser
            .post("/reauth", &[("password", "wrong")])
            .await
            .status(),
        401
    );
    assert_eq!(
        browser
            .post("/reauth", &[("password", "correct horse")])
            .await
            .status(),
        204
    );
    assert_ne!(
        browser.jar.get(SESSION).unwrap(),
        before,
        "reauthentication rotates the ID"
    );
    assert_eq!(browser.text("/fresh").await, "fresh alice");
}

#[tokio::test]
async fn a_password_change_ends_every_other_session() {
    let (base, _store, _) = start(Options::default()).await;
    let (mut laptop, mut phone) = (Browser::new(&base), Browser::new(&base));
    laptop.login("alice", "correct horse").await;
    phone.login("alice", "correct horse").await;
    let token = laptop
        .send(
            laptop
                .client
                .post(format!("{base}/token"))
                .header("x-csrf-token", "none"),
        )
        .await;
    assert_eq!(token.status(), 403, "token creation needs CSRF too");
    let token = laptop.api_token().await;
    assert_eq!(
        laptop
            .post("/password", &[("password", "new horse battery")])
            .await
            .status(),
        204
    );
    assert_eq!(
        laptop.text("/public").await,
        "alice",
        "the session that changed it stays"
    );
    assert_eq!(phone.text("/public").await, "anonymous");
    let api = reqwest::Client::new()
        .get(format!("{base}/public"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(api.text().await.unwrap(), "anonymous", "API tokens end too");
}

#[tokio::test]
async fn a_changed_auth_hash_ends_the_session_even_without_keycard_being_told() {
    let (base, _store, users) = start(Options::default()).await;
    let mut browser = Browser::new(&base);
    browser.login("alice", "correct horse").await;
    users.set_password("alice", "changed elsewhere");
    assert_eq!(browser.text("/public").await, "anonymous");
}

#[tokio::test]
async fn a_request_with_an_api_token_cannot_log_in_or_reauthenticate() {
    let (base, _store, _) = start(Options::default()).await;
    let mut browser = Browser::new(&base);
    browser.login("alice", "correct horse").await;
    let token = browser.api_token().await;
    // Such requests skip CSRF (no ambient credentials), so a login from one
    // would be a login form without CSRF protection, and would set cookies.
    for bearer in [token.as_str(), "made-up"] {
        for path in ["/login", "/reauth-as"] {
            let response = reqwest::Client::new()
                .post(format!("{base}{path}"))
                .bearer_auth(bearer)
                .form(&[
                    ("username", "alice"),
                    ("password", "correct horse"),
                    ("remember", "on"),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 403, "{path} {bearer}");
            assert!(
                response.headers().get("set-cookie").is_none(),
                "{path} {bearer}"
            );
        }
    }
    let me = reqwest::Client::new()
        .get(format!("{base}/public"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.text().await.unwrap(), "alice", "the token still works");
}

#[tokio::test]
async fn reauthentication_never_switches_accounts() {
    let (base, _store, _) = start(Options::default()).await;
    let mut browser = Browser::new(&base);
    let fields = [("username", "root"), ("password", "root password")];
    let response = browser.post("/reauth-as", &fields).await;
    assert_eq!(response.status(), 401, "nobody logged in");
    browser.login("alice", "correct horse").await;
    let response = browser.post("/reauth-as", &fields).await;
    assert_eq!(response.status(), 403);
    assert_eq!(browser.text("/public").await, "alice");
    let own = [("username", "alice"), ("password", "correct horse")];
    assert_eq!(browser.post("/reauth-as", &own).await.status(), 204);
    assert_eq!(browser.text("/public").await, "alice");
}

#[tokio::test]
async fn logout_clear_site_data_is_configurable() {
    for (setting, expected) in [(Some("\"cache\""), Some("\"cache\"")), (None, None)] {
        let auth = AuthConfig {
            clear_site_data: setting.map(str::to_owned),
            ..AuthConfig::default()
        };
        let (base, _store, _) = start(Options {
            auth,
            ..Options::default()
        })
        .await;
        let mut browser = Browser::new(&base);
        browser.login("alice", "correct horse").await;
        let response = browser.post("/logout", &[]).await;
        let header = response.headers().get("clear-site-data");
        assert_eq!(header.map(|v| v.to_str().unwrap()), expected);
        assert_eq!(browser.text("/public").await, "anonymous");
    }
}

#[tokio::test]
async fn remember_me_restores_a_not_fresh_login_and_rotates() {
    let config = keycard::SessionConfig::default().with_idle_timeout(Duration::from_millis(600));
    let auth = AuthConfig {
        remember_grace: Duration::from_millis(200),
        ..AuthConfig::default()
    };
    let (base, _store, _) = start(Options {
        config,
        auth,
        ..Options::default()
    })
    .await;
    let mut browser = Browser::new(&base);
    let response = browser.login_remembered("alice", "correct horse").await;
    let header = support::set_cookie_header(&response, REMEMBER).unwrap();
    assert!(
        header.contains("Max-Age=2592000") && header.starts_with(REMEMBER),
        "{header}"
    );
    let first = browser.jar.get(REMEMBER).unwrap().to_owned();
    assert!(!first.contains(&browser.jar.get(SESSION).unwrap().to_owned()));

    tokio::time::sleep(Duration::from_millis(800)).await; // the session idles out
    assert_eq!(
        browser.text("/public").await,
        "alice",
        "restored from remember-me"
    );
    let second = browser.jar.get(REMEMBER).unwrap().to_owned();
    assert_ne!(first, second, "the remember-me value rotates on use");
    assert_eq!(
        browser.get("/fresh").await.status(),
        303,
        "a restored login is not fresh"
    );

    // Someone replays the first value after the grace period: theft.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_replay_is_theft(&base, &mut browser, first, second).await;
}

/// A thief replays the `stolen` (superseded) remember-me value: it opens
/// nothing, and every session, remember and API token of the user is gone, the
/// victim's `current` one and its browser's session too.
async fn assert_replay_is_theft(base: &str, victim: &mut Browser, stolen: String, current: String) {
    let mut thief = Browser::new(base);
    thief.jar.cookies.insert(REMEMBER.into(), stolen);
    assert_eq!(thief.text("/public").await, "anonymous");
    assert_eq!(victim.text("/public").await, "anonymous");
    let mut victim_again = Browser::new(base);
    victim_again.jar.cookies.insert(REMEMBER.into(), current);
    assert_eq!(victim_again.text("/public").await, "anonymous");
}

#[tokio::test]
async fn a_token_is_no_session_cookie_and_a_session_id_no_token() {
    let (base, _store, _) = start(Options::default()).await;
    let mut browser = Browser::new(&base);
    browser.login("alice", "correct horse").await;
    let token = browser.api_token().await;
    let session_id = browser.jar.get(SESSION).unwrap().to_owned();
    let api = reqwest::Client::new();
    let private = |credential: String| {
        api.get(format!("{base}/api/private"))
            .bearer_auth(credential)
            .send()
    };
    // Each works as what it is.
    assert_eq!(private(token.clone()).await.unwrap().status(), 200);
    assert_eq!(browser.text("/public").await, "alice");
    // The token as the session cookie opens nothing (it would skip every
    // check made of token requests) and is not deleted for it.
    let mut cookie_thief = Browser::new(&base);
    cookie_thief
        .jar
        .cookies
        .insert(SESSION.into(), token.clone());
    assert_eq!(cookie_thief.text("/public").await, "anonymous");
    assert_eq!(private(token.clone()).await.unwrap().status(), 200);
    // The session ID as a token opens nothing either.
    assert_eq!(private(session_id).await.unwrap().status(), 401);
    assert_eq!(browser.text("/public").await, "alice");
    // A token cannot mint another.
    let minted = api
        .post(format!("{base}/token"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(minted.status(), 403);
}

#[tokio::test]
async fn by_default_an_old_remember_me_value_replayed_at_once_is_theft() {
    let (base, _store, _) = start(Options::default()).await;
    let mut browser = Browser::new(&base);
    browser.login_remembered("alice", "correct horse").await;
    let first = browser.jar.get(REMEMBER).unwrap().to_owned();
    browser.jar.cookies.remove(SESSION); // the browser was closed
    assert_eq!(browser.text("/public").await, "alice", "restored");
    let second = browser.jar.get(REMEMBER).unwrap().to_owned();
    assert_ne!(first, second);
    // Whoever restored first (it may be the thief) mints an API token.
    let token = browser.api_token().await;
    // No grace period: a copy replayed a moment later is theft.
    assert_replay_is_theft(&base, &mut browser, first, second).await;
    let api = reqwest::Client::new()
        .get(format!("{base}/api/private"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401, "the token ends with the rest");
}

#[tokio::test]
async fn two_requests_restoring_at_once_rotate_the_remember_me_value_once() {
    let store = support::ProbeStore::default();
    let users = Users::with(&[("alice", "correct horse", &[][..])]);
    let base = serve(app(Arc::new(store.clone()), users, Options::default())).await;
    let mut browser = Browser::new(&base);
    browser.login_remembered("alice", "correct horse").await;
    // The browser was closed; two tabs restore together. Every store call
    // takes 40 ms, so both load the series before either has rotated it.
    browser.jar.cookies.remove(SESSION);
    store.set_latency(40);
    let (mut tab1, mut tab2) = (browser.clone(), browser.clone());
    let (a, b) = tokio::join!(tab1.text("/public"), tab2.text("/public"));
    store.set_latency(0);
    assert_eq!((a.as_str(), b.as_str()), ("alice", "alice"));
    let handed_out: Vec<String> = [&tab1, &tab2]
        .iter()
        .map(|tab| tab.jar.get(REMEMBER).unwrap().to_owned())
        .filter(|value| *value != browser.jar.get(REMEMBER).unwrap())
        .collect();
    assert_eq!(handed_out.len(), 1, "one rotation, one new value");
    // The value the browser keeps works: no false theft alarm.
    let mut later = Browser::new(&base);
    later
        .jar
        .cookies
        .insert(REMEMBER.into(), handed_out[0].clone());
    assert_eq!(later.text("/public").await, "alice");
}

#[tokio::test]
async fn exact_ip_binding_ends_a_session_used_from_another_address() {
    let base = start_bound(BindIp::Exact, BindMode::Hard).await;
    let mut home = Browser::from(&base, Some("127.0.0.1"));
    home.login("alice", "correct horse").await;
    assert_eq!(home.text("/public").await, "alice");
    let mut elsewhere = Browser::from(&base, Some("127.0.0.2"));
    elsewhere.jar = home.jar.clone();
    assert_eq!(elsewhere.text("/public").await, "anonymous");
    assert_eq!(
        home.text("/public").await,
        "anonymous",
        "hard binding ends the session"
    );
}

#[tokio::test]
async fn a_binding_mismatch_also_ends_the_remember_me_series_sent_with_it() {
    let base = start_bound(BindIp::Exact, BindMode::Hard).await;
    let mut home = Browser::from(&base, Some("127.0.0.1"));
    home.login_remembered("alice", "correct horse").await;
    let mut thief = Browser::from(&base, Some("127.0.0.2"));
    thief.jar = home.jar.clone();
    // Session and remember-me copied together: neither logs the thief in.
    assert_eq!(thief.text("/public").await, "anonymous");
    assert_eq!(
        thief.jar.get(REMEMBER),
        None,
        "the remember cookie is cleared"
    );
    assert_eq!(thief.text("/public").await, "anonymous");
    // The series is gone for its owner too (it may have been stolen).
    assert_eq!(home.text("/public").await, "anonymous");
}

#[tokio::test]
async fn ip_binding_without_the_peer_address_fails_closed() {
    // Served without `into_make_service_with_connect_info`: the layer cannot
    // see any address, so a session bound to one is not accepted.
    let options = Options {
        binding: Binding {
            ip: BindIp::Exact,
            ..Binding::default()
        },
        ..Options::default()
    };
    let users = Users::with(&[("alice", "correct horse", &[][..])]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = app(Arc::new(MemoryStore::new()), users, options);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut browser = Browser::new(&base);
    browser.login("alice", "correct horse").await;
    assert_eq!(browser.text("/public").await, "anonymous");
}

#[tokio::test]
async fn subnet_binding_allows_the_same_network() {
    let base = start_bound(BindIp::Subnet, BindMode::Hard).await;
    let mut home = Browser::from(&base, Some("127.0.0.1"));
    home.login("alice", "correct horse").await;
    let mut nearby = Browser::from(&base, Some("127.0.0.9"));
    nearby.jar = home.jar.clone();
    assert_eq!(nearby.text("/public").await, "alice");
}

#[tokio::test]
async fn soft_binding_only_marks_the_login_not_fresh() {
    let base = start_bound(BindIp::Exact, BindMode::Soft).await;
    let mut home = Browser::from(&base, Some("127.0.0.1"));
    home.login("alice", "correct horse").await;
    assert_eq!(home.text("/fresh").await, "fresh alice");
    let mut elsewhere = Browser::from(&base, Some("127.0.0.3"));
    elsewhere.jar = home.jar.clone();
    assert_eq!(elsewhere.text("/public").await, "alice");
    assert_eq!(elsewhere.get("/fresh").await.status(), 303);
}

#[tokio::test]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    let base = start_bound(BindIp::Exact, BindMode::Hard).await;
    let mut browser = Browser::new(&base);
    browser.login("alice", "correct horse").await;
    // Not a trusted proxy: a spoofed X-Forwarded-For is ignored, the session lives.
    let request = browser
        .client
        .get(format!("{base}/public"))
        .header("x-forwarded-for", "203.0.113.7");
    assert_eq!(browser.send(request).await.text().await.unwrap(), "alice");

    let resolver = keycard::ClientAddrResolver::default().trust("127.0.0.0/8".parse().unwrap());
    let (base, _store, _) = start(Options {
        binding: Binding {
            ip: BindIp::Exact,
            ..Binding::default()
        },
        resolver,
        ..Options::default()
    })
    .await;
    let mut proxied = Browser::new(&base);
    let token = proxied
        .send(
            proxied
                .client
                .get(format!("{base}/csrf"))
                .header("x-forwarded-for", "198.51.100.1"),
        )
        .await
        .text()
        .await
        .unwrap();
    let login = proxied
        .client
        .post(format!("{base}/login"))
        .header("x-forwarded-for", "198.51.100.1")
        .form(&[
            ("username", "alice"),
            ("password", "correct horse"),
            ("csrf_token", &token),
        ]);
    proxied.send(login).await;
    let same = proxied
        .client
        .get(format!("{base}/public"))
        .header("x-forwarded-for", "198.51.100.1");
    assert_eq!(proxied.send(same).await.text().await.unwrap(), "alice");
    let moved = proxied
        .client
        .get(format!("{base}/public"))
        .header("x-forwarded-for", "198.51.100.2");
    assert_eq!(proxied.send(moved).await.text().await.unwrap(), "anonymous");
}

#[tokio::test]
async fn throttling_locks_an_account_after_ten_failures_even_for_the_right_password() {
    let (base, _store, _) = start(Options::default()).await;
    let mut attacker = Browser::new(&base);
    for _ in 0..10 {
        assert_eq!(attacker.login("alice", "guess").await.status(), 401);
    }
    let response = attacker.login("alice", "guess").await;
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    // From another address, with the right password: the account still waits.
    let mut owner = Browser::from(&base, Some("127.0.0.5"));
    assert_eq!(owner.login("alice", "correct horse").await.status(), 429);
    // Other accounts are not affected.
    assert_eq!(owner.login("root", "root password").await.status(), 303);
}

#[tokio::test]
async fn throttling_locks_an_address_after_fifty_failures() {
    let (base, _store, _) = start(Options::default()).await;
    let mut attacker = Browser::from(&base, Some("127.0.0.7"));
    for i in 0..50 {
        let response = attacker.login(&format!("user{i}"), "guess").await;
        assert_eq!(response.status(), 401, "attempt {i}");
    }
    assert_eq!(attacker.login("alice", "correct horse").await.status(), 429);
    let mut other = Browser::from(&base, Some("127.0.0.8"));
    assert_eq!(other.login("alice", "correct horse").await.status(), 303);
}

#[tokio::test]
async fn unknown_user_and_wrong_password_look_the_same() {
    let (base, _store, _) = start(Options::default()).await;
    let mut browser = Browser::new(&base);
    let token = browser.token().await;
    let mut timings: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut answers = Vec::new();
    // Interleaved, 30 tries each, through the credential check alone (the
    // throttle would otherwise answer 429 quickly after ten failures).
    for round in 0..30 {
        for (i, user) in ["alice", "nobody-here"].iter().enumerate() {
            let request = browser
                .client
                .post(format!("{base}/authenticate"))
                .header("cookie", browser.jar.header())
                .form(&[
                    ("username", *user),
                    ("password", &format!("wrong-{round}")),
                    ("csrf_token", &token),
                ]);
            let started = Instant::now();
            let response = request.send().await.unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            timings[i].push(started.elapsed());
            assert_eq!(status, 401);
            answers.push(body);
        }
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "same body for both"
    );
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (known, unknown) = (median(&mut timings[0]), median(&mut timings[1]));
    let ratio = known.as_secs_f64() / unknown.as_secs_f64();
    println!("timing parity over 30 tries each: wrong password median {known:?}, unknown user median {unknown:?}, ratio {ratio:.2}");
    assert!(
        known > Duration::from_millis(2),
        "the password hash must actually run: {known:?}"
    );
    assert!(
        (0.5..2.0).contains(&ratio),
        "timing differs: {known:?} vs {unknown:?}"
    );
}

#[tokio::test]
async fn bearer_tokens_authenticate_api_calls_and_are_revocable() {
    let (base, store, _) = start(Options::default()).await;
    let mut browser = Browser::new(&base);
    browser.login("alice", "correct horse").await;
    let token = browser.api_token().await;
    let id = SessionId::parse(&token).expect("an opaque 256-bit token");
    // Hashed at rest: the store has the token's hash as key, never the token.
    let record = store.load(&id.key()).await.unwrap().unwrap();
    assert_eq!(record.user_id.as_deref(), Some("alice"));
    assert!(!serde_json::to_string(&record).unwrap().contains(&token));

    let api = reqwest::Client::new();
    let me = api
        .get(format!("{base}/api/private"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert!(
        me.headers().get("set-cookie").is_none(),
        "a token never becomes a cookie"
    );
    // Bearer requests carry no ambient credentials: exempt from CSRF.
    let write = api
        .post(format!("{base}/write/from-api"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 200);
    let revoke = api
        .delete(format!("{base}/token"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.text().await.unwrap(), "true");
    let after = api
        .get(format!("{base}/api/private"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    let garbage = api
        .get(format!("{base}/api/private"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 401);
}

#[tokio::test]
async fn users_list_and_revoke_their_sessions() {
    let (base, _store, _) = start(Options::default()).await;
    let mut laptop = Browser::new(&base);
    let mut phone = Browser::new(&base);
    let mut tablet = Browser::new(&base);
    let mut mallory = Browser::new(&base);
    for b in [&mut laptop, &mut phone, &mut tablet] {
        b.login("alice", "correct horse").await;
    }
    mallory.login("root", "root password").await;
    let list: Vec<serde_json::Value> = laptop.get("/sessions").await.json().await.unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    let session_id = laptop.jar.get(SESSION).unwrap().to_owned();
    for entry in &list {
        let handle = entry["handle"].as_str().unwrap();
        assert_ne!(handle, session_id);
        assert!(!session_id.contains(handle));
    }
    let other = list.iter().find(|s| s["current"] == false).unwrap()["handle"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another user cannot revoke alice's session by its handle.
    assert_eq!(
        mallory
            .post(&format!("/revoke/{other}"), &[])
            .await
            .text()
            .await
            .unwrap(),
        "false"
    );
    assert_eq!(
        laptop
            .post(&format!("/revoke/{other}"), &[])
            .await
            .text()
            .await
            .unwrap(),
        "true"
    );
    let still: Vec<String> = [phone.text("/public").await, tablet.text("/public").await].into();
    assert_eq!(still.iter().filter(|s| *s == "anonymous").count(), 1);
    // An API token minted earlier is a login elsewhere too.
    let api_token = laptop.api_token().await;
    let api_me = |token: String| {
        let base = base.clone();
        async move {
            reqwest::Client::new()
                .get(format!("{base}/api/private"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(api_me(api_token.clone()).await, 200);
    assert_eq!(
        laptop
            .post("/revoke-others", &[])
            .await
            .text()
            .await
            .unwrap(),
        "2",
        "the remaining other session and the token"
    );
    assert_eq!(api_me(api_token).await, 401, "the token ended too");
    assert_eq!(phone.text("/public").await, "anonymous");
    assert_eq!(tablet.text("/public").await, "anonymous");
    assert_eq!(laptop.text("/public").await, "alice");
    assert_eq!(mallory.text("/public").await, "root");
}

#[tokio::test]
async fn log_out_everywhere_else_also_ends_copies_of_this_browsers_cookies() {
    let (base, _store, _) = start(Options::default()).await;
    let mut browser = Browser::new(&base);
    browser.login_remembered("alice", "correct horse").await;
    let copied = browser.jar.clone();
    let login = browser.text("/login-info").await;
    let response = browser.post("/revoke-others", &[]).await;
    assert_eq!(response.text().await.unwrap(), "0", "no other login to end");
    assert_ne!(
        browser.jar.get(SESSION),
        copied.get(SESSION),
        "a new session ID"
    );
    assert_ne!(
        browser.jar.get(REMEMBER),
        copied.get(REMEMBER),
        "a new series"
    );
    assert_eq!(browser.text("/public").await, "alice");
    assert_eq!(
        browser.text("/login-info").await,
        login,
        "login time, freshness and absolute deadline kept"
    );
    // Whoever copied the cookies (session and remember-me) is out.
    let mut thief = Browser::new(&base);
    thief.jar = copied;
    assert_eq!(thief.text("/public").await, "anonymous");
    assert_eq!(browser.text("/public").await, "alice", "and no theft alarm");
}

#[tokio::test]
async fn permissions_are_checked_on_top_of_login() {
    let (base, _store, _) = start(Options::default()).await;
    let mut anonymous = Browser::new(&base);
    assert_eq!(anonymous.get("/admin").await.status(), 303);
    let mut alice = Browser::new(&base);
    alice.login("alice", "correct horse").await;
    let refused = alice.get("/admin").await;
    assert_eq!(refused.status(), 403);
    assert!(
        refused.text().await.unwrap().starts_with("Forbidden:"),
        "a page for a browser"
    );
    let request = alice
        .client
        .get(format!("{base}/admin"))
        .header("accept", "application/json");
    let refused = alice.send(request).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.text().await.unwrap(), r#"{"error":"forbidden"}"#);
    assert_eq!(alice.text("/members").await, "members area");
    let mut root = Browser::new(&base);
    root.login("root", "root password").await;
    assert_eq!(root.text("/admin").await, "admin area");
}

/// The auth layer calls the service it wraps directly (no clone per request),
/// so that service need not be `Clone` at all.
#[tokio::test]
async fn the_auth_layer_wraps_a_service_that_cannot_be_cloned() {
    use axum::body::Body;
    use http::{Request, Response, StatusCode};
    use tower::{Layer, Service, ServiceExt};

    struct NotClone(u32);
    impl Service<Request<Body>> for NotClone {
        type Response = Response<Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Response<Body>, Self::Error>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<Body>) -> Self::Future {
            self.0 += 1;
            std::future::ready(Ok(Response::new(Body::from(self.0.to_string()))))
        }
    }

    let users = Users::with(&[("alice", "correct horse", &[])]);
    let auth = keycard::auth::AuthLayer::new(users).layer(NotClone(0));
    let mut app = keycard::SessionLayer::new(MemoryStore::new()).layer(auth);
    for expected in ["1", "2"] {
        let response = app
            .ready()
            .await
            .unwrap()
            .call(Request::new(Body::empty()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 64)
            .await
            .unwrap();
        assert_eq!(body, expected, "one instance served both requests");
    }
}
