//! Security events are logged, and no secret ever is: a full login, CSRF
//! refusal, remember-me, token and logout run with every log line captured.

mod support;

use keycard::MemoryStore;
use std::io::Write;
use std::sync::{Arc, Mutex};
use support::auth_app::{app, Options, Users};
use support::{serve, Jar};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_carry_security_events_but_no_secret() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let password = "correct horse staple 7431";
    let store = Arc::new(MemoryStore::new());
    let users = Users::with(&[("alice", password, &[][..])]);
    let base = serve(app(store, users, Options::default())).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut jar = Jar::default();
    let mut secrets: Vec<String> = vec![password.to_owned(), "wrong battery 9981".to_owned()];

    macro_rules! send {
        ($request:expr) => {{
            let response = $request
                .header("cookie", jar.header())
                .send()
                .await
                .unwrap();
            jar.update(&response);
            secrets.extend(jar.cookies.values().cloned());
            response
        }};
    }

    let token = send!(client.get(format!("{base}/csrf")))
        .text()
        .await
        .unwrap();
    secrets.push(token.clone());
    send!(client.post(format!("{base}/login")).form(&[
        ("username", "alice"),
        ("password", "wrong battery 9981"),
        ("csrf_token", &token)
    ]));
    send!(client.post(format!("{base}/login")).form(&[
        ("username", "alice"),
        ("password", "wrong"),
        ("csrf_token", "forged-token-value-123")
    ]));
    send!(client.post(format!("{base}/login")).form(&[
        ("username", "alice"),
        ("password", password),
        ("csrf_token", &token),
        ("remember", "on")
    ]));
    let token = send!(client.get(format!("{base}/csrf")))
        .text()
        .await
        .unwrap();
    secrets.push(token.clone());
    let bearer = send!(client
        .post(format!("{base}/token"))
        .header("x-csrf-token", &token))
    .text()
    .await
    .unwrap();
    secrets.push(bearer.clone());
    client
        .get(format!("{base}/api/private"))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    send!(client
        .post(format!("{base}/logout"))
        .header("x-csrf-token", &token));
    // Replays of everything after logout: tampered and stale cookies get logged as events.
    send!(client.get(format!("{base}/public")));
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();

    for event in [
        "login_failed",
        "csrf_rejected",
        "login\"",
        "token_issued",
        "logout",
    ] {
        let event = event.trim_end_matches('"');
        assert!(
            logs.contains(&format!("event=\"{event}\""))
                || logs.contains(&format!("event={event}"))
                || logs.contains(event),
            "no {event} event in the logs:\n{logs}"
        );
    }
    secrets.retain(|s| s.len() >= 8);
    secrets.sort();
    secrets.dedup();
    assert!(
        secrets.len() >= 6,
        "the run produced the secrets it should have: {secrets:?}"
    );
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret leaked into the logs: {secret}"
        );
        // Remember-me values are selector:validator: neither half may appear.
        for half in secret.split(':').filter(|h| h.len() >= 16) {
            assert!(
                !logs.contains(half),
                "part of a secret leaked into the logs: {half}"
            );
        }
    }
}
