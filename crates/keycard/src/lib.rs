//! keycard: session management and authentication for tower and axum.
//!
//! - [`SessionLayer`] gives each request a [`Session`]: typed values, lazy
//!   loading, per-key changes applied atomically, idle and absolute timeouts,
//!   ID rotation, binding, and a 503 (never an anonymous session) when the
//!   store fails.
//! - [`SessionStore`] is the store contract; [`MemoryStore`] is built in, and
//!   `keycard-sqlite`, `keycard-redis` and `keycard-postgres` are crates of their own.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use keycard::{MemoryStore, Session, SessionLayer};
//!
//! async fn counter(session: Session) -> Result<String, keycard::SessionError> {
//!     let n = session.increment("visits", 1).await?;
//!     Ok(format!("{n} visits"))
//! }
//!
//! # async fn run() {
//! let app = Router::new().route("/", get(counter)).layer(SessionLayer::new(MemoryStore::new()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod client;
pub mod codec;
mod config;
pub mod cookie_header;
pub mod cookie_payload;
pub mod csrf;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod id;
mod record;
pub mod reserved;
mod service;
mod session;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transport;

pub use client::{BindIp, BindMode, Binding, ClientAddrResolver, PeerAddr};
pub use codec::{CodecError, CookieCodec, Opened};
pub use codec::{
    FlaskCodec, FlaskSession, FlaskValue, KeyRing, KeyRingError, SealedCodec, SignedCodec,
};
pub use config::{parse_duration, CookieConfig, SameSite, SessionConfig};
pub use error::SessionError;
#[cfg(feature = "axum")]
pub use extract::MissingSessionLayer;
pub use id::{random_bytes, RandomError, SessionId, SessionKey};
pub use record::{
    now_millis, ApplyOutcome, Change, ClientDetails, Record, SessionSummary, UnixMillis, Update,
    RECORD_FORMAT_VERSION,
};
pub use service::{bearer_token, SessionLayer, SessionResponseFuture, SessionService};
pub use session::Session;
pub use store::{CreateError, MemoryStore, SessionStore, StoreError};
