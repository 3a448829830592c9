//! Client-side sessions: the whole session sealed (AES-256-GCM) into the
//! cookie, keys from a key ring file, logout made final by a small deny-list.
//!
//! Run: `cargo run -p keycard-examples --example client_side`, then open
//! <http://localhost:3000>. Switching from a server-side store is this one
//! `SessionLayer` line; handlers do not change. What does change: each
//! browser's cookie is its only copy, so concurrent requests of one browser
//! can overwrite each other's changes (an increment is not atomic here, as it
//! is in a server-side store); see docs/stores.md.

use axum::response::Redirect;
use axum::routing::{get, post};
use axum::Router;
use keycard::codec::{KeyRing, SealedCodec};
use keycard::{MemoryStore, Session, SessionError, SessionLayer};
use std::sync::Arc;

async fn home(session: Session) -> Result<String, SessionError> {
    let visits = session.increment("visits", 1).await?;
    Ok(format!(
        "{visits} visits, counted in a sealed cookie. POST /forget to end the session."
    ))
}

async fn forget(session: Session) -> Result<Redirect, SessionError> {
    session.destroy().await?; // the old cookie goes on the deny-list until it would have expired
    Ok(Redirect::to("/"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Made on first start (mode 0600), reused after; `keycard keys rotate` adds a key.
    let keys = KeyRing::load_or_generate("keycard-example-keys")?;
    let revocations = Arc::new(MemoryStore::new()); // a SqliteStore or RedisStore when several processes share
    let app = Router::new()
        .route("/", get(home))
        .route("/forget", post(forget))
        .layer(SessionLayer::client_side(
            SealedCodec::new(&keys, "session"),
            revocations,
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://localhost:3000");
    axum::serve(listener, app).await?;
    Ok(())
}
