//! The SQLite session store for keycard: the embedded default.
//!
//! [`SqliteStore`] keeps records in one SQLite file, in WAL mode, so a
//! single-server deployment needs no separate database and sessions survive
//! a restart. Every SQLite call runs on Tokio's blocking pool, never on the
//! async worker threads; one writer connection serializes writes while a few
//! reader connections serve loads and listings in parallel (WAL lets readers
//! run beside the writer).
//!
//! ```no_run
//! use keycard::SessionLayer;
//! use keycard_sqlite::SqliteStore;
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), keycard::StoreError> {
//! let store = SqliteStore::open("sessions.db").await?;
//! // SQLite does not expire rows by itself: delete expired ones in small batches.
//! let _sweeper = store.spawn_sweeper(Duration::from_secs(60), 500);
//! let layer = SessionLayer::new(store);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod connections;
mod schema;
mod store;

pub use store::{SqliteOptions, SqliteStore};
