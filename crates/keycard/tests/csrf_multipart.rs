//! The CSRF layer and upload forms (`multipart/form-data`), over real HTTP:
//! the token is read from its form field without buffering the upload, and
//! the handler gets the body byte for byte.

mod support;

use axum::body::Bytes;
use axum::routing::{get, post};
use keycard::csrf::{CsrfConfig, CsrfLayer, CsrfToken};
use keycard::{MemoryStore, Session, SessionLayer};
use sha2::{Digest, Sha256};

const BOUNDARY: &str = "----keycardTestBoundary7MA4YWxkTrZu0gW";

async fn start() -> String {
    let app = axum::Router::new()
        .route(
            "/csrf",
            get(|CsrfToken(token): CsrfToken| async move { token }),
        )
        // Answers what it received, so the test can compare it with what was sent.
        .route(
            "/upload",
            post(|session: Session, body: Bytes| async move {
                session.insert("uploaded", body.len()).await.unwrap();
                format!("{} {}", body.len(), hex(&Sha256::digest(&body)))
            }),
        )
        .route(
            "/uploaded",
            get(|session: Session| async move {
                format!("{:?}", session.get::<usize>("uploaded").await.unwrap())
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(CsrfLayer::new(CsrfConfig::default().allow_plain_http()))
        .layer(SessionLayer::new(MemoryStore::new()));
    support::serve(app).await
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn part(name: &str, file: Option<&str>, value: &[u8]) -> Vec<u8> {
    let file = file
        .map(|f| format!("; filename=\"{f}\"\r\nContent-Type: application/octet-stream"))
        .unwrap_or_default();
    let mut out =
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n")
            .into_bytes();
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    out
}

fn form(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = parts.concat();
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

/// A session cookie and a CSRF token for it.
async fn session(base: &str, client: &reqwest::Client) -> (String, String) {
    let response = client.get(format!("{base}/csrf")).send().await.unwrap();
    let cookie = support::set_cookie(&response, "__Host-keycard").expect("a session cookie");
    let token = response.text().await.unwrap();
    (format!("__Host-keycard={cookie}"), token)
}

async fn upload(
    base: &str,
    client: &reqwest::Client,
    cookie: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    client
        .post(format!("{base}/upload"))
        .header("cookie", cookie)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn uploaded(base: &str, client: &reqwest::Client, cookie: &str) -> String {
    let response = client
        .get(format!("{base}/uploaded"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    response.text().await.unwrap()
}

#[tokio::test]
async fn an_upload_form_with_its_token_first_passes_and_arrives_whole() {
    let base = start().await;
    let client = support::client();
    let (cookie, token) = session(&base, &client).await;
    // A 1 MiB file, far above the 64 KiB the layer reads at most to find the token.
    let file: Vec<u8> = (0..1_048_576u32).map(|i| (i * 31 % 251) as u8).collect();
    let body = form(&[
        part("csrf_token", None, token.as_bytes()),
        part("title", None, "holiday".as_bytes()),
        part("photo", Some("a.jpg"), &file),
    ]);
    let expected = format!("{} {}", body.len(), hex(&Sha256::digest(&body)));
    let response = upload(&base, &client, &cookie, body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), expected);
}

#[tokio::test]
async fn an_upload_form_without_a_good_token_is_403_and_changes_nothing() {
    let base = start().await;
    let client = support::client();
    let (cookie, token) = session(&base, &client).await;
    let bad = format!("{}x", &token[..token.len() - 1]);
    for body in [
        form(&[part("title", None, b"no token")]),
        form(&[part("csrf_token", None, bad.as_bytes())]),
        // A file part is never taken for the token field.
        form(&[part("csrf_token", Some("t.txt"), token.as_bytes())]),
    ] {
        let response = upload(&base, &client, &cookie, body).await;
        assert_eq!(response.status(), 403);
        assert!(response.headers().get("set-cookie").is_none());
    }
    assert_eq!(uploaded(&base, &client, &cookie).await, "None");
}

#[tokio::test]
async fn a_token_after_a_large_file_is_413_and_garbage_is_400() {
    let base = start().await;
    let client = support::client();
    let (cookie, token) = session(&base, &client).await;
    let body = form(&[
        part("photo", Some("a.jpg"), &vec![7u8; 200_000]),
        part("csrf_token", None, token.as_bytes()),
    ]);
    let response = upload(&base, &client, &cookie, body).await;
    assert_eq!(response.status(), 413);
    assert!(response.text().await.unwrap().contains("csrf_token"));
    let response = upload(&base, &client, &cookie, b"--nope\r\n\r\n".to_vec()).await;
    assert_eq!(response.status(), 400);
    let response = client
        .post(format!("{base}/upload"))
        .header("cookie", &cookie)
        .header("content-type", "multipart/form-data")
        .body(form(&[part("csrf_token", None, token.as_bytes())]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        403,
        "no boundary: no form to read the token from"
    );
    assert_eq!(uploaded(&base, &client, &cookie).await, "None");
    // The same token, first in a well-formed form, still works.
    let ok = upload(
        &base,
        &client,
        &cookie,
        form(&[part("csrf_token", None, token.as_bytes())]),
    )
    .await;
    assert_eq!(ok.status(), 200);
    assert_ne!(uploaded(&base, &client, &cookie).await, "None");
}
