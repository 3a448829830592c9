//! The session handle a handler uses.

use crate::client::{Binding, RequestClient};
use crate::codec::CookieCodec;
use crate::cookie_header::CookieValue;
use crate::{
    now_millis, reserved, ApplyOutcome, Change, ClientDetails, CreateError, Record, SessionConfig,
    SessionError, SessionId, SessionKey, SessionStore, StoreError, UnixMillis, Update,
};
use futures_util::lock::{Mutex, MutexGuard};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use std::future::Future;
use std::sync::Arc;

/// Where records live.
#[derive(Clone)]
pub(crate) enum Backend {
    /// Server-side: the cookie holds the ID, the store holds the record.
    Store(Arc<dyn SessionStore>),
    /// Client-side: the cookie holds the sealed record; the store keeps only
    /// revocations (a deny-list of ended sessions, a per-user not-before time).
    Cookie {
        codec: Arc<dyn CookieCodec>,
        revocations: Arc<dyn SessionStore>,
    },
}

/// Everything a request's session needs from the layer.
#[derive(Clone)]
pub(crate) struct Context {
    pub config: SessionConfig,
    pub backend: Backend,
    pub binding: Binding,
}

/// What the request presented.
#[derive(Clone, Debug)]
pub(crate) enum Presented {
    /// Nothing (or nothing usable): an anonymous visitor.
    Nothing,
    /// The session cookie's value.
    Cookie(CookieValue),
    /// More than one session cookie, or an oversized one: fail closed.
    Ambiguous,
    /// An `Authorization: Bearer` token.
    Bearer(String),
}

impl Presented {
    /// The cookie's value or the token, as presented.
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Presented::Cookie(value) => Some(value.as_bytes()),
            Presented::Bearer(token) => Some(token.as_bytes()),
            Presented::Nothing | Presented::Ambiguous => None,
        }
    }
}

/// A server that binds sessions to addresses but passes none is misconfigured:
/// said once per process, not on every request.
static BINDING_WITHOUT_ADDRESS_LOGGED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The handle to the current request's session.
///
/// Cheap to clone (an `Arc`); every clone sees the same state. Nothing is read
/// from the store until a method needs it, so a request that never touches its
/// session costs no store round trip. Writes are recorded as per-key changes
/// and applied to the store, atomically, after the handler returns; a write
/// after that (from a clone kept in a spawned task) is refused with
/// [`SessionError::AlreadyCommitted`] rather than lost without a word.
///
/// ```no_run
/// use keycard::Session;
/// async fn visit(session: Session) -> Result<String, keycard::SessionError> {
///     let visits = session.increment("visits", 1).await?;
///     session.insert("theme", "dark").await?;
///     let theme: Option<String> = session.get("theme").await?;
///     Ok(format!("visit {visits}, theme {theme:?}"))
/// }
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Arc<Context>,
    presented: Presented,
    client: RequestClient,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    loaded: bool,
    failure: Option<StoreError>,
    /// The ID of the live record this request started from.
    id: Option<SessionId>,
    /// The record as this request sees it (loaded, with local changes applied).
    record: Option<Record>,
    changes: Vec<Change>,
    user_change: Option<Option<String>>,
    client_change: Option<ClientDetails>,
    restart_clocks: bool,
    cycle: bool,
    /// An ID whose record must be deleted (destroy, or rejected on load).
    delete: Option<SessionId>,
    /// The request presented a cookie that did not open a live session.
    stale_cookie: bool,
    /// Cookie mode: the cookie was sealed with an older key.
    reseal: bool,
    /// The request was refused (CSRF): write nothing, set no cookie.
    abandoned: bool,
    /// The response went out with the session saved: a later change would be
    /// lost, so it is refused.
    committed: bool,
    /// A change was applied together with the load (`apply_first`): the
    /// store already holds it.
    applied_early: bool,
    /// The presented session was ended by a hard binding mismatch.
    binding_refused: bool,
}

impl State {
    /// The request changed the session (its data, login, client or clocks,
    /// or asked for a new ID): the record must be written.
    fn is_dirty(&self) -> bool {
        !self.changes.is_empty()
            || self.user_change.is_some()
            || self.client_change.is_some()
            || self.restart_clocks
            || self.cycle
    }
}

/// What the layer must do with the cookie after the handler.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CookieAction {
    Keep,
    /// Set the cookie to this value.
    Set(String),
    /// Set the cookie: this is the whole `Set-Cookie` value, already built
    /// (a sealed cookie's, built once to check its size).
    SetHeader(String),
    Clear,
}

/// The result of committing a session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Committed {
    pub cookie: CookieAction,
    /// The response depends on the session (it was read).
    pub touched: bool,
    /// A user is logged in.
    pub authenticated: bool,
}

impl Session {
    pub(crate) fn new(ctx: Arc<Context>, presented: Presented, client: RequestClient) -> Self {
        Session {
            inner: Arc::new(Inner {
                ctx,
                presented,
                client,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Reads a value, deserialized to `T`. `Ok(None)` when the key is absent.
    ///
    /// A stored value of another shape (say, written before the application
    /// changed the type) is [`SessionError::Deserialize`], a 500 if the
    /// handler returns it: read such values with
    /// [`get_value`](Self::get_value), or a type that accepts both shapes.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let state = self.loaded().await?;
        // Deserialized from the stored value in place: no copy of a string
        // or object just to read it.
        match state.record.as_ref().and_then(|r| r.data.get(key)) {
            Some(value) => T::deserialize(value)
                .map(Some)
                .map_err(SessionError::Deserialize),
            None => Ok(None),
        }
    }

    /// Reads a value as JSON.
    pub async fn get_value(&self, key: &str) -> Result<Option<Value>, SessionError> {
        let state = self.loaded().await?;
        Ok(state.record.as_ref().and_then(|r| r.data.get(key).cloned()))
    }

    /// Writes a value. Writing the value already stored changes nothing.
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        check_key(key)?;
        let value = serde_json::to_value(value).map_err(SessionError::Serialize)?;
        self.change(Change::Set {
            key: key.to_owned(),
            value,
        })
        .await
    }

    /// Removes a value, returning it.
    pub async fn remove(&self, key: &str) -> Result<Option<Value>, SessionError> {
        check_key(key)?;
        let old = self.get_value(key).await?;
        if old.is_some() {
            self.change(Change::Remove {
                key: key.to_owned(),
            })
            .await?;
        }
        Ok(old)
    }

    /// Removes every application value (keycard's own, such as the login and
    /// the CSRF secret, stay: use [`destroy`](Self::destroy) to end the session).
    pub async fn clear(&self) -> Result<(), SessionError> {
        let keys: Vec<String> = {
            let state = self.loaded().await?;
            let Some(record) = &state.record else {
                return Ok(());
            };
            record
                .data
                .keys()
                .filter(|k| !reserved::is_reserved(k))
                .cloned()
                .collect()
        };
        for key in keys {
            self.change(Change::Remove { key }).await?;
        }
        Ok(())
    }

    /// Adds `by` to the integer at `key` and returns the value this request
    /// sees. The store applies the increment atomically, so concurrent
    /// requests never lose one (unlike a get followed by an insert).
    ///
    /// When the increment is the request's first use of a server-side
    /// session, the store applies it and returns the session in one step
    /// ([`SessionStore::apply_and_load`]): one round trip, not a load and a
    /// write.
    pub async fn increment(&self, key: &str, by: i64) -> Result<i64, SessionError> {
        check_key(key)?;
        let change = Change::Increment {
            key: key.to_owned(),
            by,
        };
        if let Some(value) = self.apply_first(&change, key).await? {
            return Ok(value);
        }
        self.change(change).await?;
        let value = self.get_value(key).await?;
        Ok(value.and_then(|v| v.as_i64()).unwrap_or(by))
    }

    /// Whether the session holds no value at all.
    pub async fn is_empty(&self) -> Result<bool, SessionError> {
        let state = self.loaded().await?;
        Ok(state
            .record
            .as_ref()
            .is_none_or(|r| r.data.is_empty() && r.user_id.is_none()))
    }

    /// Gives the session a new ID and keeps its data (call it whenever the
    /// privilege level changes; [`login`](crate::auth) does it for you).
    pub async fn cycle_id(&self) -> Result<(), SessionError> {
        let mut state = self.changeable().await?;
        if state.record.is_some() {
            state.cycle = true;
        }
        Ok(())
    }

    /// Ends the session: the record is deleted from the store, the cookie is
    /// cleared, and a concurrent request cannot bring it back. Values written
    /// after this start a new session with a new ID.
    ///
    /// It does not end a remember-me login (the next request would restore
    /// it): to log a user out, use [`Auth::logout`](crate::auth::Auth::logout),
    /// which also forgets the remember-me series.
    pub async fn destroy(&self) -> Result<(), SessionError> {
        let mut state = self.changeable().await?;
        if let Some(id) = state.id.take() {
            state.delete = Some(id);
        }
        state.record = None;
        state.changes.clear();
        state.user_change = None;
        state.client_change = None;
        state.cycle = false;
        state.restart_clocks = false;
        Ok(())
    }

    /// The logged-in user's ID, if any.
    pub async fn user_id(&self) -> Result<Option<String>, SessionError> {
        let state = self.loaded().await?;
        Ok(state.record.as_ref().and_then(|r| r.user_id.clone()))
    }

    /// The store key of the live session, if any (not a secret).
    pub async fn key(&self) -> Result<Option<SessionKey>, SessionError> {
        let state = self.loaded().await?;
        Ok(state.id.as_ref().map(SessionId::key))
    }

    /// A copy of the record as this request sees it.
    pub async fn record(&self) -> Result<Option<Record>, SessionError> {
        Ok(self.loaded().await?.record.clone())
    }

    /// Whether the request authenticated with an `Authorization: Bearer` token
    /// rather than the cookie (such requests are exempt from CSRF checks).
    pub fn is_bearer(&self) -> bool {
        matches!(self.inner.presented, Presented::Bearer(_))
    }

    /// The client details of this request (resolved address, User-Agent).
    pub fn client(&self) -> &ClientDetails {
        self.inner.client.details()
    }

    /// The session configuration in force.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.ctx.config
    }

    /// The server-side store (for cookie sessions, the revocation store).
    pub fn store(&self) -> Arc<dyn SessionStore> {
        match &self.inner.ctx.backend {
            Backend::Store(store) => store.clone(),
            Backend::Cookie { revocations, .. } => revocations.clone(),
        }
    }

    /// Whether sessions live in the cookie (client-side) rather than a store.
    pub fn is_client_side(&self) -> bool {
        matches!(self.inner.ctx.backend, Backend::Cookie { .. })
    }

    /// Runs a store call under the configured timeout.
    pub async fn with_timeout<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, SessionError> {
        timed(&self.inner.ctx.config, call)
            .await
            .map_err(SessionError::from)
    }

    /// Logs a user in on this session: sets the user, records the client for
    /// binding and listing, restarts both timeouts and rotates the ID (so an
    /// ID planted before login is useless after it: session fixation).
    pub(crate) async fn set_login(
        &self,
        user_id: Option<String>,
        auth: Option<Value>,
    ) -> Result<(), SessionError> {
        let mut state = self.changeable().await?;
        let state = &mut *state;
        if state.record.is_none() {
            state.record = Some(self.new_record());
        }
        let change = match auth {
            Some(value) => Change::Set {
                key: reserved::AUTH.into(),
                value,
            },
            None => Change::Remove {
                key: reserved::AUTH.into(),
            },
        };
        push_change(state, change);
        let client = self.client();
        if let Some(record) = &mut state.record {
            record.user_id.clone_from(&user_id);
            record.ip.clone_from(&client.ip);
            record.user_agent.clone_from(&client.user_agent);
        }
        state.user_change = Some(user_id);
        state.client_change = Some(client.clone());
        state.restart_clocks = true;
        state.cycle = state.id.is_some();
        Ok(())
    }

    /// Whether this request's session was ended because it came from another
    /// client than the one it is bound to (hard binding).
    pub(crate) async fn binding_refused(&self) -> Result<bool, SessionError> {
        Ok(self.loaded().await?.binding_refused)
    }

    /// Whether the session went out with its response (no change is taken
    /// any more).
    pub(crate) async fn is_committed(&self) -> bool {
        self.inner.state.lock().await.committed
    }

    /// Drops every change this request made: nothing is written and no cookie
    /// is set or cleared (a refused request must change nothing).
    #[cfg(feature = "axum")]
    pub(crate) async fn abandon(&self) {
        self.inner.state.lock().await.abandoned = true;
    }

    /// Sets a reserved value (for keycard's own modules).
    pub(crate) async fn set_reserved(&self, key: &str, value: Value) -> Result<(), SessionError> {
        self.change(Change::Set {
            key: key.to_owned(),
            value,
        })
        .await
    }

    async fn change(&self, change: Change) -> Result<(), SessionError> {
        let mut state = self.changeable().await?;
        let state = &mut *state;
        if let Change::Set { key, value } = &change {
            if state.record.as_ref().and_then(|r| r.data.get(key)) == Some(value) {
                return Ok(());
            }
        }
        if state.record.is_none() {
            state.record = Some(self.new_record());
        }
        push_change(state, change);
        Ok(())
    }

    /// An empty record for a session this request starts.
    ///
    /// An anonymous session records the client's address and User-Agent only
    /// when the binding compares them: nothing else reads them before a login
    /// (which records both, for binding and for the sessions list), and what
    /// is not needed is not kept (less to store, send and parse per request).
    fn new_record(&self) -> Record {
        let ctx = &self.inner.ctx;
        let config = &ctx.config;
        let mut record = Record::new(now_millis(), config.idle_ms(), config.absolute_ms());
        if ctx.binding.ip != crate::BindIp::Off {
            record.ip.clone_from(&self.client().ip);
        }
        if ctx.binding.user_agent {
            record.user_agent.clone_from(&self.client().user_agent);
        }
        record
    }

    /// Applies `change` and loads the session in one store call, if this is
    /// the request's first use of a server-side session. `Ok(None)` when the
    /// ordinary path must run: the session was used already, or the store had
    /// no live session for the cookie (the state then records what loading
    /// would have: no session, stale cookie).
    async fn apply_first(&self, change: &Change, key: &str) -> Result<Option<i64>, SessionError> {
        let ctx = &self.inner.ctx;
        let (Presented::Cookie(value), Backend::Store(store)) =
            (&self.inner.presented, &ctx.backend)
        else {
            return Ok(None);
        };
        let mut state = self.inner.state.lock().await;
        if state.loaded {
            return Ok(None);
        }
        refuse_after_commit(&state)?;
        let Some(id) = SessionId::parse_bytes(value.as_bytes()) else {
            return Ok(None); // the ordinary load logs and handles it
        };
        state.loaded = true;
        let now = now_millis();
        let store_key = id.key();
        let changes = std::slice::from_ref(change);
        let found =
            apply_and_load_from(&ctx.config, store.as_ref(), &store_key, changes, now).await;
        let stored = matches!(found, Ok(Some(_)));
        if let Err(error) = self.adopt_stored(&mut state, id, found) {
            state.failure = Some(error.clone());
            return Err(SessionError::Store(error));
        }
        // Written with the load, unless the record was then refused (an API
        // token sent as the cookie keeps the change in its own record, which
        // its holder could make as a token anyway).
        state.applied_early = stored && state.record.is_some();
        // Not admitted (expired, or bound to another client): the change is
        // made on a new session by the ordinary path.
        Ok(state
            .record
            .as_ref()
            .map(|r| r.data.get(key).and_then(Value::as_i64).unwrap_or(0)))
    }

    /// [`loaded`](Self::loaded), for a change: refused once the session went
    /// out with its response.
    async fn changeable(&self) -> Result<MutexGuard<'_, State>, SessionError> {
        let state = self.loaded().await?;
        refuse_after_commit(&state)?;
        Ok(state)
    }

    /// Locks the state, loading the session first if this is the first use.
    async fn loaded(&self) -> Result<MutexGuard<'_, State>, SessionError> {
        let mut state = self.inner.state.lock().await;
        if !state.loaded {
            state.loaded = true;
            if let Err(error) = self.load(&mut state).await {
                state.failure = Some(error);
            }
        }
        match &state.failure {
            Some(error) => Err(SessionError::Store(error.clone())),
            None => Ok(state),
        }
    }

    async fn load(&self, state: &mut State) -> Result<(), StoreError> {
        let ctx = &self.inner.ctx;
        let (id, record) = match (&self.inner.presented, &ctx.backend) {
            (Presented::Nothing, _) => return Ok(()),
            (Presented::Ambiguous, _) => {
                tracing::warn!(target: "keycard::security", event = "ambiguous_cookie", "duplicate or oversized session cookie; request treated as anonymous");
                state.stale_cookie = true;
                return Ok(());
            }
            // API tokens live server-side whatever the backend: in cookie mode,
            // in the revocation store.
            (Presented::Cookie(_) | Presented::Bearer(_), Backend::Store(store))
            | (
                Presented::Bearer(_),
                Backend::Cookie {
                    revocations: store, ..
                },
            ) => {
                let Some(id) = self
                    .inner
                    .presented
                    .bytes()
                    .and_then(SessionId::parse_bytes)
                else {
                    tracing::info!(target: "keycard::security", event = "malformed_session_id", "session ID in the wrong format; request treated as anonymous");
                    state.stale_cookie = true;
                    return Ok(());
                };
                let found = load_from(&ctx.config, store.as_ref(), &id.key()).await;
                return self.adopt_stored(state, id, found);
            }
            (Presented::Cookie(value), Backend::Cookie { codec, revocations }) => {
                // `None` cannot happen (the layer checked the bytes); it
                // would be refused like any unreadable cookie.
                let opened = match value
                    .as_str()
                    .ok_or(crate::CodecError::Malformed("cookie is not text"))
                    .and_then(|value| codec.open(&ctx.config.cookie.name, value))
                {
                    Ok(opened) => opened,
                    Err(reason) => {
                        tracing::warn!(target: "keycard::security", event = "tampered_cookie", %reason, "session cookie rejected");
                        state.stale_cookie = true;
                        return Ok(());
                    }
                };
                let Some((id, record)) = crate::cookie_payload::decode(&opened.payload).ok() else {
                    tracing::warn!(target: "keycard::security", event = "tampered_cookie", reason = "bad payload", "session cookie rejected");
                    state.stale_cookie = true;
                    return Ok(());
                };
                if is_revoked(&ctx.config, revocations.as_ref(), &id, &record).await? {
                    tracing::info!(target: "keycard::security", event = "revoked_cookie", key = ?id.key(), "revoked session cookie replayed");
                    state.stale_cookie = true;
                    return Ok(());
                }
                state.reseal = opened.stale_key;
                (id, record)
            }
        };
        self.admit(state, id, record);
        Ok(())
    }

    /// Takes what a server-side store answered for `id` (a load, or an
    /// `apply_and_load`): a record is checked and adopted, a missing one
    /// leaves the request anonymous, a corrupt one is also deleted; any other
    /// failure is the request's store error.
    fn adopt_stored(
        &self,
        state: &mut State,
        id: SessionId,
        found: Result<Option<Record>, StoreError>,
    ) -> Result<(), StoreError> {
        match found {
            Ok(Some(record)) if !self.opens_as_presented(&record) => {
                // Left in place: it is the other credential's, and valid.
                tracing::warn!(target: "keycard::security", event = "credential_kind_mismatch", key = ?id.key(), bearer = self.is_bearer(), "an API token sent as the session cookie, or a session ID as an API token; request treated as anonymous");
                state.stale_cookie = true;
            }
            Ok(Some(record)) => self.admit(state, id, record),
            Ok(None) => state.stale_cookie = true,
            Err(StoreError::Corrupt(reason)) => {
                tracing::warn!(target: "keycard::security", event = "corrupt_record", key = ?id.key(), %reason, "stored session could not be decoded; deleted");
                state.stale_cookie = true;
                state.delete = Some(id);
            }
            Err(error) => return Err(error),
        }
        Ok(())
    }

    /// Whether `record` is the kind of credential the request presented: an
    /// API token's record opens only as `Authorization: Bearer`, a session's
    /// only as the cookie (a token sent as the cookie would skip every check
    /// made of bearer requests, such as refusing to mint more tokens).
    fn opens_as_presented(&self, record: &Record) -> bool {
        let kind = record.data.get(reserved::KIND).and_then(Value::as_str);
        if self.is_bearer() {
            kind == Some("bearer")
        } else {
            matches!(kind, None | Some("session"))
        }
    }

    /// Checks a record the request's cookie (or token) opened: deadlines and
    /// client binding. Adopts it as the request's session, or marks the
    /// cookie stale (and the record for deletion) if it must not be used.
    fn admit(&self, state: &mut State, id: SessionId, record: Record) {
        let ctx = &self.inner.ctx;
        let now = now_millis();
        if record.is_expired(now) {
            let reason = if now >= record.absolute_deadline {
                "absolute"
            } else {
                "idle"
            };
            tracing::info!(target: "keycard::security", event = "session_expired", key = ?id.key(), timeout = reason, "session expired");
            state.stale_cookie = true;
            state.delete = Some(id);
            return;
        }
        let mut record = record;
        // With binding off nothing is compared, so the client is not even
        // turned into text.
        if ctx.binding.ip != crate::BindIp::Off
            && !self.is_bearer()
            && self.client().ip.is_none()
            && !BINDING_WITHOUT_ADDRESS_LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::error!(target: "keycard", event = "binding_without_address", "IP binding is on but the request carries no peer address (serve with into_make_service_with_connect_info, or insert PeerAddr); bound sessions are refused");
        }
        let allowed = ctx.binding.is_off() || {
            // Lent out of the record for the check, not cloned.
            let recorded = ClientDetails {
                ip: record.ip.take(),
                user_agent: record.user_agent.take(),
            };
            let allowed = ctx.binding.allows(&recorded, self.client());
            (record.ip, record.user_agent) = (recorded.ip, recorded.user_agent);
            allowed
        };
        if !allowed && !self.is_bearer() {
            match ctx.binding.mode {
                crate::BindMode::Hard => {
                    tracing::warn!(target: "keycard::security", event = "binding_mismatch", key = ?id.key(), mode = "hard", "session used from another client; ended");
                    state.binding_refused = true;
                    state.stale_cookie = true;
                    state.delete = Some(id);
                    return;
                }
                crate::BindMode::Soft => {
                    tracing::warn!(target: "keycard::security", event = "binding_mismatch", key = ?id.key(), mode = "soft", "session used from another client; login no longer fresh");
                    if let Some(Value::Object(auth)) = record.data.get(reserved::AUTH) {
                        if auth.get("fresh") != Some(&Value::Bool(false)) {
                            let mut auth = auth.clone();
                            auth.insert("fresh".into(), Value::Bool(false));
                            let change = Change::Set {
                                key: reserved::AUTH.into(),
                                value: Value::Object(auth),
                            };
                            change.apply_to(&mut record.data);
                            state.changes.push(change);
                        }
                    }
                }
            }
        }
        state.id = Some(id);
        state.record = Some(record);
    }

    /// Writes the request's changes to the store and says what to do with the
    /// cookie. Called by the layer once the handler has answered.
    pub(crate) async fn commit(&self) -> Result<Committed, SessionError> {
        let mut state = self.inner.state.lock().await;
        state.committed = true;
        let touched = state.loaded;
        if state.abandoned {
            return Ok(Committed {
                cookie: CookieAction::Keep,
                touched,
                authenticated: false,
            });
        }
        if let Some(error) = &state.failure {
            return Err(SessionError::Store(error.clone()));
        }
        let ctx = self.inner.ctx.clone();
        let result = match (&self.inner.presented, &ctx.backend) {
            (_, Backend::Store(store))
            | (
                Presented::Bearer(_),
                Backend::Cookie {
                    revocations: store, ..
                },
            ) => self.commit_to_store(&mut state, store.as_ref()).await,
            (_, Backend::Cookie { codec, revocations }) => {
                self.commit_to_cookie(&mut state, codec.as_ref(), revocations.as_ref())
                    .await
            }
        };
        let cookie = match result {
            Ok(cookie) => cookie,
            Err(error) => {
                if let SessionError::Store(store_error) = &error {
                    state.failure = Some(store_error.clone());
                }
                return Err(error);
            }
        };
        Ok(self.committed(&state, cookie, touched))
    }

    /// What [`commit`](Self::commit) would answer, when that needs no store
    /// call and no sealing: a request that did not touch its session, only
    /// read it, or had its one change applied with the load
    /// (`apply_and_load`), with no touch due. `None` means run `commit`.
    ///
    /// Synchronous, so the layer can finish such a response without boxing a
    /// future for the commit: the common case costs no allocation.
    pub(crate) fn commit_without_io(&self) -> Option<Result<Committed, SessionError>> {
        let mut state = self.inner.state.try_lock()?;
        // Whether done here or by `commit` next, the response is going out.
        state.committed = true;
        let touched = state.loaded;
        if state.abandoned {
            return Some(Ok(Committed {
                cookie: CookieAction::Keep,
                touched,
                authenticated: false,
            }));
        }
        if let Some(error) = &state.failure {
            return Some(Err(SessionError::Store(error.clone())));
        }
        if state.delete.is_some() || state.cycle || state.reseal {
            return None;
        }
        let cookie = match (&state.record, &state.id) {
            (None, _) => CookieAction::Keep,
            (Some(record), id) => {
                let empty = record.data.is_empty() && record.user_id.is_none();
                match id {
                    // Nothing to keep, and no session to end.
                    None if empty => CookieAction::Keep,
                    // A new session to create or seal, or an emptied one to end.
                    None => return None,
                    Some(_) if empty => return None,
                    Some(id) => {
                        // Dirty first: it needs no clock reading.
                        if state.is_dirty()
                            || self.pending_update(&state, record, now_millis()).is_some()
                        {
                            return None;
                        }
                        renewal(&self.inner.ctx.config, &state, id, CookieAction::Keep)
                    }
                }
            }
        };
        Some(Ok(self.committed(&state, cookie, touched)))
    }

    /// The commit's answer, once the store's part is done.
    fn committed(&self, state: &State, cookie: CookieAction, touched: bool) -> Committed {
        let cookie = match (&self.inner.presented, cookie) {
            // A bearer token is never turned into a cookie, nor cleared by one.
            (Presented::Bearer(_), _) => CookieAction::Keep,
            (_, CookieAction::Keep) if state.stale_cookie => CookieAction::Clear,
            (_, action) => action,
        };
        let authenticated = state.record.as_ref().is_some_and(|r| r.user_id.is_some());
        Committed {
            cookie,
            touched,
            authenticated,
        }
    }

    fn pending_update(&self, state: &State, record: &Record, now: UnixMillis) -> Option<Update> {
        let config = &self.inner.ctx.config;
        let absolute_deadline = if state.restart_clocks {
            now.saturating_add(config.absolute_ms())
        } else {
            record.absolute_deadline
        };
        let touch_due = now.saturating_sub(record.last_seen) >= config.touch_ms();
        if !state.is_dirty() && !touch_due {
            return None;
        }
        // API tokens have a lifetime of their own, not the browser idle timeout.
        let idle_deadline = if self.is_bearer() {
            record.idle_deadline
        } else {
            now.saturating_add(config.idle_ms()).min(absolute_deadline)
        };
        // The changes are the caller's to add: a sealed cookie's record has
        // them applied already.
        Some(Update {
            changes: Vec::new(),
            user_id: state.user_change.clone(),
            client: state.client_change.clone(),
            last_seen: now,
            idle_deadline,
            absolute_deadline,
        })
    }

    async fn commit_to_store(
        &self,
        state: &mut State,
        store: &dyn SessionStore,
    ) -> Result<CookieAction, SessionError> {
        let config = &self.inner.ctx.config;
        let mut action = CookieAction::Keep;
        if let Some(old) = state.delete.take() {
            timed(config, store.delete(&old.key())).await?;
            action = CookieAction::Clear;
        }
        // Lent out (not cloned) while it is written, and put back after.
        let Some(mut record) = state.record.take() else {
            return Ok(action);
        };
        let result = self.write_record(state, store, &mut record, action).await;
        state.record = Some(record);
        result
    }

    async fn write_record(
        &self,
        state: &mut State,
        store: &dyn SessionStore,
        record: &mut Record,
        action: CookieAction,
    ) -> Result<CookieAction, SessionError> {
        let config = &self.inner.ctx.config;
        let now = now_millis();
        let empty = record.data.is_empty() && record.user_id.is_none();
        match state.id.clone() {
            None if empty => Ok(action),
            None => {
                if state.restart_clocks {
                    let fresh = Record::new(now, config.idle_ms(), config.absolute_ms());
                    record.created_at = fresh.created_at;
                    record.last_seen = fresh.last_seen;
                    record.idle_deadline = fresh.idle_deadline;
                    record.absolute_deadline = fresh.absolute_deadline;
                }
                let record = &*record;
                for _ in 0..3 {
                    let id = SessionId::generate()?;
                    match timed(config, store.create(&id.key(), record)).await {
                        Ok(()) => {
                            state.id = Some(id.clone());
                            return Ok(CookieAction::Set(id.to_string()));
                        }
                        Err(CreateError::DuplicateKey) => continue,
                        Err(CreateError::Store(error)) => return Err(error.into()),
                    }
                }
                Err(StoreError::Unavailable("could not allocate a unique session ID".into()).into())
            }
            Some(id) if empty && !state.cycle => {
                // Everything was removed: an empty session is not kept.
                timed(config, store.delete(&id.key())).await?;
                state.id = None;
                Ok(CookieAction::Clear)
            }
            Some(id) => {
                let Some(mut update) = self.pending_update(state, record, now) else {
                    return Ok(renewal(config, state, &id, action));
                };
                update.changes = state.changes.clone();
                if state.cycle {
                    for _ in 0..3 {
                        let new_id = SessionId::generate()?;
                        match timed(config, store.cycle(&id.key(), &new_id.key(), &update)).await {
                            Ok(ApplyOutcome::Applied) => {
                                state.id = Some(new_id.clone());
                                return Ok(CookieAction::Set(new_id.to_string()));
                            }
                            Ok(ApplyOutcome::Gone) => return Ok(CookieAction::Clear),
                            Err(CreateError::DuplicateKey) => continue,
                            Err(CreateError::Store(error)) => return Err(error.into()),
                        }
                    }
                    return Err(StoreError::Unavailable(
                        "could not allocate a unique session ID".into(),
                    )
                    .into());
                }
                match timed(config, store.apply(&id.key(), &update)).await? {
                    ApplyOutcome::Applied => Ok(match config.cookie.max_age {
                        Some(_) => CookieAction::Set(id.to_string()),
                        None => action,
                    }),
                    // Destroyed by a concurrent request (logout elsewhere): it stays dead.
                    ApplyOutcome::Gone => Ok(CookieAction::Clear),
                }
            }
        }
    }

    async fn commit_to_cookie(
        &self,
        state: &mut State,
        codec: &dyn CookieCodec,
        revocations: &dyn SessionStore,
    ) -> Result<CookieAction, SessionError> {
        let config = &self.inner.ctx.config;
        let mut action = CookieAction::Keep;
        if let Some(old) = state.delete.take() {
            revoke_cookie_session(config, revocations, &old, state.record.as_ref()).await?;
            action = CookieAction::Clear;
        }
        let now = now_millis();
        let Some(current) = state.record.as_ref() else {
            return Ok(action);
        };
        if current.data.is_empty() && current.user_id.is_none() {
            if let Some(id) = state.id.take() {
                revoke_cookie_session(config, revocations, &id, state.record.as_ref()).await?;
                return Ok(CookieAction::Clear);
            }
            return Ok(action);
        }
        let update = self.pending_update(state, current, now);
        let keeps_id = state.id.is_some() && !state.cycle;
        if keeps_id && update.is_none() && !state.reseal {
            // Nothing changed and no touch is due: the cookie stands.
            return Ok(action);
        }
        let id = match &state.id {
            Some(id) if keeps_id => id.clone(),
            old => {
                if let (Some(old), true) = (old, state.cycle) {
                    // The pre-rotation cookie must not be replayable.
                    revoke_cookie_session(config, revocations, old, state.record.as_ref()).await?;
                }
                SessionId::generate()?
            }
        };
        // Lent out (not cloned) while it is sealed, and put back after.
        let Some(mut record) = state.record.take() else {
            return Ok(action);
        };
        if let Some(update) = update {
            record.apply(&update);
        }
        if state.id.is_none() && state.restart_clocks {
            record.created_at = now;
        }
        let sealed = seal_cookie(config, codec, &id, &record);
        state.record = Some(record);
        let header = sealed?;
        state.id = Some(id);
        Ok(CookieAction::SetHeader(header))
    }
}

/// The cookie for a session whose record needs no write now: a persistent
/// cookie is renewed whenever the record was written, here by the change
/// applied with the load (`apply_and_load`); otherwise `action` stands.
fn renewal(
    config: &SessionConfig,
    state: &State,
    id: &SessionId,
    action: CookieAction,
) -> CookieAction {
    match config.cookie.max_age {
        Some(_) if state.applied_early => CookieAction::Set(id.to_string()),
        _ => action,
    }
}

/// The cookie path seals `state.record`, which already holds this request's
/// changes (see `push_change`): applying them again would count an
/// `Increment` twice. Only the deadlines and login details remain to apply.
/// The `Set-Cookie` value carrying `record` sealed under `id`; refused if
/// browsers would drop it (over 4096 bytes with its attributes).
fn seal_cookie(
    config: &SessionConfig,
    codec: &dyn CookieCodec,
    id: &SessionId,
    record: &Record,
) -> Result<String, SessionError> {
    let payload = crate::cookie_payload::encode(id, record);
    let value = codec
        .seal(&config.cookie.name, &payload)
        .map_err(|e| match e {
            crate::CodecError::TooLarge(size) => SessionError::CookieTooLarge { size },
            other => SessionError::Seal(other),
        })?;
    let header = config.cookie.set_cookie(&value);
    if header.len() > 4096 {
        let size = header.len();
        tracing::error!(target: "keycard", event = "cookie_too_large", size, "sealed session cookie over 4096 bytes; not sent");
        return Err(SessionError::CookieTooLarge { size });
    }
    Ok(header)
}

fn check_key(key: &str) -> Result<(), SessionError> {
    if reserved::is_reserved(key) {
        return Err(SessionError::ReservedKey(key.to_owned()));
    }
    Ok(())
}

fn push_change(state: &mut State, change: Change) {
    if let Some(record) = &mut state.record {
        change.apply_to(&mut record.data);
    }
    state.changes.push(change);
}

/// Runs a store call under the configured store timeout; for plain store
/// calls and for creations alike (`E` is `StoreError` or `CreateError`).
///
/// The call is polled once before the timer is armed: an in-process store
/// (memory, or a cookie session's in-memory deny-list) answers at once and
/// never pays for a timer.
pub(crate) async fn timed<T, E: From<StoreError>>(
    config: &SessionConfig,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let mut call = std::pin::pin!(call);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(result) = first {
        return result;
    }
    match tokio::time::timeout(config.store_timeout, call).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(target: "keycard", event = "store_timeout", "session store call timed out");
            Err(StoreError::Timeout.into())
        }
    }
}

/// The deny-list entry that marks a client-side session as ended.
pub(crate) fn revocation_key(id: &SessionId) -> SessionKey {
    // The name is the key's hex text, as it has always been (stored
    // revocations must still be found), without building a `String` for it.
    SessionKey::derive_bytes("revoked", &id.key().hex_bytes())
}

/// The record holding a user's "not before" time: client-side sessions whose
/// login is older are void (log out everywhere, password change).
pub(crate) fn not_before_key(user_id: &str) -> SessionKey {
    SessionKey::derive("not-before", user_id)
}

/// A change to a session whose response already went out would be lost:
/// an error (logged), not silence.
fn refuse_after_commit(state: &State) -> Result<(), SessionError> {
    if !state.committed {
        return Ok(());
    }
    tracing::warn!(target: "keycard", event = "change_after_commit", "session changed after its response was sent (a Session kept past its request, in a spawned task or a WebSocket?); the change is refused");
    Err(SessionError::AlreadyCommitted)
}

/// A store's load: answered at once by a store that can
/// ([`SessionStore::load_now`]), else its future under the store timeout.
async fn load_from(
    config: &SessionConfig,
    store: &dyn SessionStore,
    key: &SessionKey,
) -> Result<Option<Record>, StoreError> {
    match store.load_now(key) {
        Some(found) => found,
        None => timed(config, store.load(key)).await,
    }
}

/// A store's `apply_and_load`, as [`load_from`] is its load.
async fn apply_and_load_from(
    config: &SessionConfig,
    store: &dyn SessionStore,
    key: &SessionKey,
    changes: &[Change],
    now: UnixMillis,
) -> Result<Option<Record>, StoreError> {
    match store.apply_and_load_now(key, changes, now) {
        Some(found) => found,
        None => timed(config, store.apply_and_load(key, changes, now)).await,
    }
}

async fn is_revoked(
    config: &SessionConfig,
    revocations: &dyn SessionStore,
    id: &SessionId,
    record: &Record,
) -> Result<bool, StoreError> {
    if load_from(config, revocations, &revocation_key(id))
        .await?
        .is_some_and(|r| !r.is_expired(now_millis()))
    {
        return Ok(true);
    }
    let Some(user) = &record.user_id else {
        return Ok(false);
    };
    let Some(marker) = load_from(config, revocations, &not_before_key(user)).await? else {
        return Ok(false);
    };
    let not_before = marker
        .data
        .get("not_before")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let login_at = record
        .data
        .get(reserved::AUTH)
        .and_then(|a| a.get("login_at"))
        .and_then(Value::as_i64)
        .unwrap_or(record.created_at);
    let reissued_at = record
        .data
        .get(reserved::REISSUED_AT)
        .and_then(Value::as_i64)
        .unwrap_or(i64::MIN);
    Ok(login_at.max(reissued_at) < not_before)
}

async fn revoke_cookie_session(
    config: &SessionConfig,
    revocations: &dyn SessionStore,
    id: &SessionId,
    record: Option<&Record>,
) -> Result<(), StoreError> {
    let now = now_millis();
    // Kept until the cookie could no longer be accepted anyway.
    let until = record.map_or(now.saturating_add(config.absolute_ms()), |r| {
        r.absolute_deadline
    });
    let mut entry = Record::new(now, until - now, until - now);
    entry
        .data
        .insert(reserved::KIND.into(), Value::from("revoked"));
    match timed(config, revocations.create(&revocation_key(id), &entry)).await {
        Ok(()) | Err(CreateError::DuplicateKey) => Ok(()),
        Err(CreateError::Store(error)) => Err(error),
    }
}

/// Records a per-user "not before" time in the revocation store: every
/// client-side session of the user logged in earlier is void from now on.
pub(crate) async fn set_not_before(
    config: &SessionConfig,
    revocations: &dyn SessionStore,
    user_id: &str,
    at: UnixMillis,
) -> Result<(), StoreError> {
    let key = not_before_key(user_id);
    let lifetime = config.absolute_ms().max(30 * 24 * 3600 * 1000);
    let mut marker = Record::new(at, lifetime, lifetime);
    marker.data = Map::from_iter([
        (reserved::KIND.to_owned(), Value::from("not-before")),
        ("not_before".to_owned(), Value::from(at)),
    ]);
    match timed(config, revocations.create(&key, &marker)).await {
        Ok(()) => Ok(()),
        Err(CreateError::DuplicateKey) => {
            let update = Update::lasting(
                vec![Change::Set {
                    key: "not_before".into(),
                    value: Value::from(at),
                }],
                at,
                lifetime,
            );
            timed(config, revocations.apply(&key, &update))
                .await
                .map(|_| ())
        }
        Err(CreateError::Store(error)) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_keys_are_named_as_stored() {
        // Revocations already in a store were filed under the derived key of
        // the session key's hex text: the same ID must find them.
        let id = SessionId::generate().unwrap();
        assert_eq!(
            revocation_key(&id),
            SessionKey::derive("revoked", &id.key().to_hex())
        );
        // A fixed ID and its revocation key (SHA-256 of the ID, then of the
        // domain, purpose and that hash's hex; computed apart), so a change
        // of the derivation itself shows too.
        let id = SessionId::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").unwrap();
        assert_eq!(
            revocation_key(&id).to_hex(),
            "3d7d61ef90a1cd78f82035e9e81ec756cecba6e467e7b3e47285a205f8d8e62d"
        );
    }
}
