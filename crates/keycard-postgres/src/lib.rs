//! The PostgreSQL session store for keycard.
//!
//! [`PostgresStore`] keeps records in one table, shared by every server that
//! connects to the database. A request's data changes are merged into the
//! `jsonb` column by one `UPDATE` (through the `keycard_apply_changes`
//! function the migration installs), so concurrent requests on one session
//! never lose each other's changes. Connections come from a deadpool pool
//! with short timeouts, and the pool reconnects by itself when the server
//! comes back.
//!
//! ```no_run
//! use keycard::SessionLayer;
//! use keycard_postgres::PostgresStore;
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), keycard::StoreError> {
//! let store = PostgresStore::connect("postgres://app@db.internal/app").await?;
//! // PostgreSQL does not expire rows by itself: delete expired ones in small batches.
//! let _sweeper = store.spawn_sweeper(Duration::from_secs(60), 1_000);
//! let layer = SessionLayer::new(store);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod escape;
mod options;
mod row;
mod schema;
mod store;

pub use options::PostgresOptions;
pub use store::PostgresStore;
