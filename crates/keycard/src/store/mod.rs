//! The contract between the session layer and a place that keeps records.
//!
//! Every store (memory, SQLite, Redis, PostgreSQL, ...) implements
//! [`SessionStore`]; the conformance kit (`keycard::testing`, feature
//! `testing`) is the executable definition of what each method must do.

use crate::{ApplyOutcome, Change, Record, SessionKey, SessionSummary, UnixMillis, Update};
use async_trait::async_trait;

mod memory;
pub use memory::MemoryStore;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A store failure. The session layer answers 503 on any of these: it never
/// falls back to an anonymous session, which would log a user out (or worse,
/// hand them someone else's state) because a server hiccuped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached, or refused the operation.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer within the configured time.
    #[error("session store timed out")]
    Timeout,
    /// A stored record could not be decoded. The layer treats the session as
    /// absent (and deletes it), since retrying cannot help.
    #[error("corrupt session record: {0}")]
    Corrupt(String),
}

/// Why [`SessionStore::create`] (or [`SessionStore::cycle`]) did not create a record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// A record already exists under that key. With 256-bit random IDs this
    /// means a broken random generator; the layer retries with a fresh ID.
    #[error("a session with this key already exists")]
    DuplicateKey,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An asynchronous place to keep session records.
///
/// Records are filed by [`SessionKey`] (the hash of the session ID); a store
/// never sees a live ID. A store may forget a record once it is past
/// [`Record::expires_at`]; the layer checks the deadlines on every load anyway.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Loads a record. `Ok(None)` when there is none; an expired record may be
    /// returned or not (the layer rejects it either way).
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>, StoreError>;

    /// Creates a record; fails with [`CreateError::DuplicateKey`] if the key exists.
    async fn create(&self, key: &SessionKey, record: &Record) -> Result<(), CreateError>;

    /// Applies an update atomically: every change in order, then the new
    /// deadlines. Returns [`ApplyOutcome::Gone`] without writing anything when
    /// the record does not exist: a deleted session is never brought back.
    async fn apply(&self, key: &SessionKey, update: &Update) -> Result<ApplyOutcome, StoreError>;

    /// Applies `changes` to the record if it is live at `now`, and returns
    /// the record as it is afterwards; `Ok(None)` (nothing written) when
    /// there is no live record. Deadlines and `last_seen` stay as they are:
    /// moving them is a touch, which the layer sends (throttled) on its own.
    ///
    /// The layer calls this when a request's first use of its session is a
    /// write whose result it needs ([`Session::increment`](crate::Session::increment)),
    /// so that write costs one round trip instead of a load and an apply.
    ///
    /// The default does exactly that load and [`apply`](Self::apply): two
    /// round trips; the returned record is the loaded one with the changes
    /// applied locally, so concurrent callers may see the same count; and the
    /// apply writes back the deadlines it loaded, so a touch committed in
    /// between is undone (the session then ends a little earlier, never
    /// later). Stores should answer in one atomic step; the conformance kit
    /// checks that concurrent increments each see a distinct count.
    ///
    /// ```
    /// # tokio_test_block_on(async {
    /// use keycard::{Change, MemoryStore, Record, SessionKey, SessionStore};
    /// let store = MemoryStore::new();
    /// let key = SessionKey::derive("doc", "apply_and_load");
    /// let now = keycard::now_millis();
    /// store.create(&key, &Record::new(now, 60_000, 3_600_000)).await?;
    /// let add = [Change::Increment { key: "n".into(), by: 2 }];
    /// let record = store.apply_and_load(&key, &add, now).await?.unwrap();
    /// assert_eq!(record.data["n"], 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    /// # }
    /// ```
    async fn apply_and_load(
        &self,
        key: &SessionKey,
        changes: &[Change],
        now: UnixMillis,
    ) -> Result<Option<Record>, StoreError> {
        let Some(mut record) = self.load(key).await? else {
            return Ok(None);
        };
        if record.is_expired(now) {
            return Ok(None);
        }
        let update = Update::keeping_deadlines(changes.to_vec(), &record);
        match self.apply(key, &update).await? {
            ApplyOutcome::Applied => {
                record.apply(&update);
                Ok(Some(record))
            }
            ApplyOutcome::Gone => Ok(None),
        }
    }

    /// [`load`](Self::load)'s answer without waiting, for a store that has
    /// it at hand (one that keeps records in this process). `None`, the
    /// default, means "call `load`". The layer asks this first, so such a
    /// store's load costs no boxed future and no timeout; the answer must be
    /// the one `load` would give. It runs while the request's session is
    /// locked and outside the store timeout, so it must never block: only a
    /// store with nothing to wait for implements it. A wrapper store that
    /// adds anything to a load (counting, delaying, failing calls) keeps the
    /// default, or the layer would go around it; one that adds nothing
    /// forwards it, or its inner store loses the fast path.
    ///
    /// ```
    /// use keycard::{MemoryStore, SessionKey, SessionStore};
    /// let store = MemoryStore::new();
    /// let key = SessionKey::derive("doc", "load_now");
    /// assert_eq!(store.load_now(&key), Some(Ok(None)));
    /// ```
    fn load_now(&self, key: &SessionKey) -> Option<Result<Option<Record>, StoreError>> {
        let _ = key;
        None
    }

    /// [`apply_and_load`](Self::apply_and_load) without waiting, as
    /// [`load_now`](Self::load_now) is to `load`: `None`, the default, means
    /// "call `apply_and_load`". The same rules hold: never block, and a
    /// wrapper that adds to the call keeps the default.
    fn apply_and_load_now(
        &self,
        key: &SessionKey,
        changes: &[Change],
        now: UnixMillis,
    ) -> Option<Result<Option<Record>, StoreError>> {
        let _ = (key, changes, now);
        None
    }

    /// Moves the record from `old` to `new` (ID rotation) and applies `update`,
    /// as one step where the store allows it. `Gone` when `old` does not exist.
    async fn cycle(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        update: &Update,
    ) -> Result<ApplyOutcome, CreateError>;

    /// Deletes a record; deleting a missing record is not an error.
    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError>;

    /// Every unexpired record of a user (sessions, remember-me series, tokens).
    async fn list_for_user(&self, user_id: &str) -> Result<Vec<SessionSummary>, StoreError>;

    /// Deletes every record of a user but `except`; returns how many went.
    async fn delete_for_user(
        &self,
        user_id: &str,
        except: Option<&SessionKey>,
    ) -> Result<u64, StoreError>;

    /// Deletes records expired at `now`, at most `limit` of them; returns how
    /// many went. Stores that expire natively may return 0.
    async fn sweep(&self, now: UnixMillis, limit: usize) -> Result<u64, StoreError>;

    /// Lists up to `limit` unexpired records with keys greater than `after`,
    /// in key order: for administration (the `keycard sessions` command).
    async fn list_all(
        &self,
        after: Option<&SessionKey>,
        limit: usize,
    ) -> Result<Vec<SessionSummary>, StoreError>;

    /// Checks that the store answers (for health checks).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// The future every [`SessionStore`] method returns (`async_trait`'s form).
type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A shared store is a store. The methods hand on the inner store's future
/// as it is, rather than boxing a second one around it (as an `async fn`
/// here would): the layer holds its store as `Arc<dyn SessionStore>`, and
/// this impl is what its calls resolve to, once or twice per request.
/// Every trait method is forwarded here, including those with a default (a
/// default would run the trait's generic code instead of the inner store's).
impl<S: SessionStore + ?Sized> SessionStore for Arc<S> {
    fn load<'a, 'b, 'f>(
        &'a self,
        key: &'b SessionKey,
    ) -> StoreFuture<'f, Result<Option<Record>, StoreError>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        (**self).load(key)
    }
    fn create<'a, 'b, 'c, 'f>(
        &'a self,
        key: &'b SessionKey,
        record: &'c Record,
    ) -> StoreFuture<'f, Result<(), CreateError>>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        Self: 'f,
    {
        (**self).create(key, record)
    }
    fn apply<'a, 'b, 'c, 'f>(
        &'a self,
        key: &'b SessionKey,
        update: &'c Update,
    ) -> StoreFuture<'f, Result<ApplyOutcome, StoreError>>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        Self: 'f,
    {
        (**self).apply(key, update)
    }
    fn apply_and_load<'a, 'b, 'c, 'f>(
        &'a self,
        key: &'b SessionKey,
        changes: &'c [Change],
        now: UnixMillis,
    ) -> StoreFuture<'f, Result<Option<Record>, StoreError>>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        Self: 'f,
    {
        (**self).apply_and_load(key, changes, now)
    }
    fn load_now(&self, key: &SessionKey) -> Option<Result<Option<Record>, StoreError>> {
        (**self).load_now(key)
    }
    fn apply_and_load_now(
        &self,
        key: &SessionKey,
        changes: &[Change],
        now: UnixMillis,
    ) -> Option<Result<Option<Record>, StoreError>> {
        (**self).apply_and_load_now(key, changes, now)
    }
    fn cycle<'a, 'b, 'c, 'd, 'f>(
        &'a self,
        old: &'b SessionKey,
        new: &'c SessionKey,
        update: &'d Update,
    ) -> StoreFuture<'f, Result<ApplyOutcome, CreateError>>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        'd: 'f,
        Self: 'f,
    {
        (**self).cycle(old, new, update)
    }
    fn delete<'a, 'b, 'f>(&'a self, key: &'b SessionKey) -> StoreFuture<'f, Result<(), StoreError>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        (**self).delete(key)
    }
    fn list_for_user<'a, 'b, 'f>(
        &'a self,
        user_id: &'b str,
    ) -> StoreFuture<'f, Result<Vec<SessionSummary>, StoreError>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        (**self).list_for_user(user_id)
    }
    fn delete_for_user<'a, 'b, 'c, 'f>(
        &'a self,
        user_id: &'b str,
        except: Option<&'c SessionKey>,
    ) -> StoreFuture<'f, Result<u64, StoreError>>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        Self: 'f,
    {
        (**self).delete_for_user(user_id, except)
    }
    fn sweep<'a, 'f>(
        &'a self,
        now: UnixMillis,
        limit: usize,
    ) -> StoreFuture<'f, Result<u64, StoreError>>
    where
        'a: 'f,
        Self: 'f,
    {
        (**self).sweep(now, limit)
    }
    fn list_all<'a, 'b, 'f>(
        &'a self,
        after: Option<&'b SessionKey>,
        limit: usize,
    ) -> StoreFuture<'f, Result<Vec<SessionSummary>, StoreError>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        (**self).list_all(after, limit)
    }
    fn ping<'a, 'f>(&'a self) -> StoreFuture<'f, Result<(), StoreError>>
    where
        'a: 'f,
        Self: 'f,
    {
        (**self).ping()
    }
}
