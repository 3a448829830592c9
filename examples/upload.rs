//! An upload form behind CSRF protection: the token travels as the form's
//! first field, and the CSRF layer reads only that far into the body, so the
//! file streams on to the handler (up to the app's body limit, 100 MB here).
//!
//! Run: `cargo run -p keycard-examples --example upload`, then open
//! <http://localhost:3000> in Chrome or Firefox (they accept the `Secure`,
//! `__Host-` session cookie over plain HTTP from localhost; a client that
//! does not needs HTTPS).

use axum::extract::{DefaultBodyLimit, Multipart};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use keycard::csrf::{CsrfConfig, CsrfLayer, CsrfToken};
use keycard::{MemoryStore, Session, SessionError, SessionLayer};

async fn page(session: Session, CsrfToken(token): CsrfToken) -> Result<Html<String>, SessionError> {
    let uploaded: u64 = session.get("uploaded_bytes").await?.unwrap_or(0);
    // The hidden token comes first: browsers send fields in document order.
    Ok(Html(format!(
        r#"<!doctype html><title>keycard upload</title>
<p>This session has uploaded {uploaded} bytes.</p>
<form method="post" action="/upload" enctype="multipart/form-data">
<input type="hidden" name="csrf_token" value="{token}">
<input type="file" name="file"> <button>Upload</button>
</form>"#
    )))
}

async fn upload(session: Session, mut form: Multipart) -> Result<Response, SessionError> {
    let mut received: u64 = 0;
    let mut chosen = false;
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(error) => return Ok((error.status(), error.body_text()).into_response()),
        };
        if field.name() != Some("file") {
            continue;
        }
        // A browser sends the part with an empty file name when none was picked.
        chosen |= field.file_name().is_some_and(|name| !name.is_empty());
        // Counted chunk by chunk: the file is never held in memory whole.
        let mut field = field;
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => received += chunk.len() as u64,
                Ok(None) => break,
                Err(error) => return Ok((error.status(), error.body_text()).into_response()),
            }
        }
    }
    if !chosen {
        return Ok((StatusCode::BAD_REQUEST, "Choose a file first.").into_response());
    }
    session.increment("uploaded_bytes", received as i64).await?;
    Ok(Redirect::to("/").into_response())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = Router::new()
        .route("/", get(page))
        .route("/upload", axum::routing::post(upload))
        // Uploads up to 100 MB; the CSRF layer itself reads at most 64 KiB.
        .layer(DefaultBodyLimit::max(100 * 1024 * 1024))
        .route_layer(CsrfLayer::new(CsrfConfig::default().allow_plain_http()))
        .layer(SessionLayer::new(MemoryStore::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://localhost:3000");
    axum::serve(listener, app).await
}
