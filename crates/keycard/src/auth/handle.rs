//! The per-request authentication handle.

use super::layer::AuthConfig;
use super::remember::{self, Restored};
use super::{AuthBackend, AuthUser};
use crate::session::{set_not_before, timed, CookieAction};
use crate::{now_millis, reserved, Session, SessionError, SessionKey, SessionStore, UnixMillis};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

/// Why an authentication step failed (not "wrong password": that is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The session could not be loaded or saved.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The user backend failed.
    #[error("user backend failed: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    /// The operation needs a logged-in user.
    #[error("not logged in")]
    NotLoggedIn,
    /// Re-authentication was asked for another user than the logged-in one
    /// (a re-authentication form must not switch accounts).
    #[error("re-authentication as another user than the logged-in one")]
    OtherUser,
    /// A request presenting an API token (`Authorization: Bearer`) tried to
    /// log in or re-authenticate. Such requests skip the CSRF check (they
    /// carry no ambient credentials) and never hold a login of their own, so
    /// a login from one is refused rather than half done.
    #[error("a request with an API token cannot log in or re-authenticate")]
    BearerRequest,
}

impl From<crate::StoreError> for AuthError {
    fn from(error: crate::StoreError) -> Self {
        AuthError::Session(SessionError::Store(error))
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for AuthError {
    fn into_response(self) -> axum::response::Response {
        match self {
            AuthError::Session(error) => error.into_response(),
            AuthError::NotLoggedIn => {
                (http::StatusCode::UNAUTHORIZED, "Not logged in.").into_response()
            }
            AuthError::OtherUser => {
                tracing::warn!(target: "keycard::security", event = "reauth_other_user", "re-authentication as another user refused");
                (
                    http::StatusCode::FORBIDDEN,
                    "Re-authenticate as the logged-in user.",
                )
                    .into_response()
            }
            AuthError::BearerRequest => {
                tracing::warn!(target: "keycard::security", event = "bearer_login_refused", "login or re-authentication with an API token refused");
                (
                    http::StatusCode::FORBIDDEN,
                    "Log in from a browser form, not with an API token.",
                )
                    .into_response()
            }
            AuthError::Backend(error) => {
                tracing::error!(target: "keycard", %error, "user backend failed");
                (
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    [(http::header::CACHE_CONTROL, "no-store")],
                    "Service temporarily unavailable.",
                )
                    .into_response()
            }
        }
    }
}

/// What keycard records about a login, under the reserved `keycard.auth` key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginInfo {
    /// SHA-256 (base64url) of the user's [`AuthUser::auth_hash`] at login.
    pub hash: String,
    /// When the password was last entered (freshness).
    pub login_at: UnixMillis,
    /// `false` once the login was restored from remember-me or failed a soft
    /// binding check: sensitive actions then ask for the password again.
    pub fresh: bool,
    /// How the login happened: `password`, `remember` or `token`.
    pub via: String,
}

/// One entry of the user's "your sessions" page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionEntry {
    /// A public handle naming the session to its owner (not the session ID).
    pub handle: String,
    /// Creation time.
    pub created_at: UnixMillis,
    /// Last activity that moved the idle deadline.
    pub last_seen: UnixMillis,
    /// The address at login.
    pub ip: Option<String>,
    /// The User-Agent at login, verbatim.
    pub user_agent: Option<String>,
    /// Whether this is the session of the current request.
    pub current: bool,
}

#[derive(Default)]
pub(crate) struct Pending {
    pub remember: Option<CookieAction>,
    pub clear_site_data: bool,
}

/// The authentication handle of one request (an axum extractor with the
/// `axum` feature; otherwise take it from the request extensions).
///
/// ```no_run
/// # use keycard::auth::{Auth, AuthBackend};
/// async fn login<B: AuthBackend>(auth: Auth<B>, credentials: B::Credentials) -> Result<bool, keycard::auth::AuthError> {
///     match auth.authenticate(credentials).await? {
///         Some(user) => { auth.login(&user, false).await?; Ok(true) }
///         None => Ok(false),
///     }
/// }
/// ```
pub struct Auth<B: AuthBackend> {
    inner: Arc<Inner<B>>,
}

impl<B: AuthBackend> Clone for Auth<B> {
    fn clone(&self) -> Self {
        Auth {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<B: AuthBackend> {
    session: Session,
    backend: B,
    config: Arc<AuthConfig>,
    remember_cookie: Option<String>,
    user: futures_util::lock::Mutex<Option<Option<B::User>>>,
    pending: Mutex<Pending>,
}

pub(crate) fn hash_of<U: AuthUser>(user: &U) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(user.auth_hash()))
}

impl<B: AuthBackend> Auth<B> {
    pub(crate) fn new(
        session: Session,
        backend: B,
        config: Arc<AuthConfig>,
        remember_cookie: Option<String>,
    ) -> Self {
        Auth {
            inner: Arc::new(Inner {
                session,
                backend,
                config,
                remember_cookie,
                user: futures_util::lock::Mutex::new(None),
                pending: Mutex::new(Pending::default()),
            }),
        }
    }

    pub(crate) fn take_pending(&self) -> Pending {
        std::mem::take(&mut *self.inner.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn set_pending(&self, f: impl FnOnce(&mut Pending)) {
        f(&mut self.inner.pending.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The request's session.
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    /// The user backend.
    pub fn backend(&self) -> &B {
        &self.inner.backend
    }

    /// The configuration.
    pub fn config(&self) -> &AuthConfig {
        &self.inner.config
    }

    fn store(&self) -> Arc<dyn SessionStore> {
        self.inner.session.store()
    }

    /// Checks credentials with the backend (no session change).
    pub async fn authenticate(
        &self,
        credentials: B::Credentials,
    ) -> Result<Option<B::User>, AuthError> {
        let user = self
            .inner
            .backend
            .authenticate(credentials)
            .await
            .map_err(|e| AuthError::Backend(Box::new(e)))?;
        if user.is_none() {
            // Neither the name tried nor the password: one may be the other, mistyped.
            tracing::warn!(target: "keycard::security", event = "login_failed", ip = ?self.inner.session.client().ip, "login failed");
        }
        Ok(user)
    }

    /// Logs `user` in: a new session ID (the pre-login one dies: fixation),
    /// the user, a fresh login time, the client for binding, both timeouts
    /// restarted, a new CSRF secret; with `remember`, a remember-me cookie.
    ///
    /// A request presenting an API token gets [`AuthError::BearerRequest`]
    /// and nothing changes.
    pub async fn login(&self, user: &B::User, remember: bool) -> Result<(), AuthError> {
        if self.inner.session.is_bearer() {
            return Err(AuthError::BearerRequest);
        }
        self.login_as(user, true, "password").await?;
        if remember {
            let value = remember::issue(
                self.inner.session.config(),
                self.store().as_ref(),
                &user.id(),
                self.inner.config.remember_lifetime,
                self.inner.session.client(),
            )
            .await?;
            self.set_pending(|p| p.remember = Some(CookieAction::Set(value)));
        }
        tracing::info!(target: "keycard::security", event = "login", user = %user.id(), remember, "login succeeded");
        Ok(())
    }

    async fn login_as(&self, user: &B::User, fresh: bool, via: &str) -> Result<(), AuthError> {
        let info = LoginInfo {
            hash: hash_of(user),
            login_at: now_millis(),
            fresh,
            via: via.into(),
        };
        let value = serde_json::to_value(&info).map_err(SessionError::Serialize)?;
        self.inner
            .session
            .set_login(Some(user.id()), Some(value))
            .await?;
        crate::csrf::rotate(&self.inner.session).await?;
        *self.inner.user.lock().await = Some(Some(user.clone()));
        Ok(())
    }

    /// Makes the login fresh again after the password was re-entered: the
    /// session ID rotates and both timeouts start again.
    ///
    /// `user` must be the logged-in user ([`AuthError::NotLoggedIn`] when
    /// nobody is, [`AuthError::OtherUser`] for someone else: to change
    /// accounts, [`login`](Self::login)); a request presenting an API token
    /// gets [`AuthError::BearerRequest`] (a token is never made fresh).
    pub async fn reauthenticate(&self, user: &B::User) -> Result<(), AuthError> {
        if self.inner.session.is_bearer() {
            return Err(AuthError::BearerRequest);
        }
        if self.current_user_id().await? != user.id() {
            return Err(AuthError::OtherUser);
        }
        self.login_as(user, true, "password").await?;
        tracing::info!(target: "keycard::security", event = "reauthenticated", user = %user.id(), "login made fresh");
        Ok(())
    }

    /// Logs out: the session record is deleted server-side, the remember-me
    /// series is deleted, both cookies are cleared, and the response carries
    /// `Clear-Site-Data`. The old cookie, replayed, gets nothing.
    pub async fn logout(&self) -> Result<(), AuthError> {
        let user = self.inner.session.user_id().await?;
        self.inner.session.destroy().await?;
        if let Some(cookie) = &self.inner.remember_cookie {
            remember::forget(self.inner.session.config(), self.store().as_ref(), cookie).await?;
        }
        self.set_pending(|p| {
            p.remember = Some(CookieAction::Clear);
            p.clear_site_data = true;
        });
        *self.inner.user.lock().await = Some(None);
        if let Some(user) = user {
            tracing::info!(target: "keycard::security", event = "logout", user = %user, "logout");
        }
        Ok(())
    }

    /// The logged-in user, loaded from the backend once per request.
    ///
    /// A session whose recorded auth hash no longer matches the user's (the
    /// password changed) is ended. Without a session login, a valid
    /// remember-me cookie logs the user in again (not fresh) and rotates.
    pub async fn user(&self) -> Result<Option<B::User>, AuthError> {
        if let Some(user) = &*self.inner.user.lock().await {
            return Ok(user.clone());
        }
        // Not holding the cache lock while resolving: a remember-me restore
        // logs the user in, which fills the cache itself.
        let user = self.resolve_user().await?;
        *self.inner.user.lock().await = Some(user.clone());
        Ok(user)
    }

    async fn resolve_user(&self) -> Result<Option<B::User>, AuthError> {
        let session = &self.inner.session;
        if let Some(user_id) = session.user_id().await? {
            let user = self
                .inner
                .backend
                .get_user(&user_id)
                .await
                .map_err(|e| AuthError::Backend(Box::new(e)))?;
            let info = self.login_info().await?;
            match (user, info) {
                (Some(user), Some(info))
                    if bool::from(hash_of(&user).as_bytes().ct_eq(info.hash.as_bytes())) =>
                {
                    return Ok(Some(user));
                }
                _ => {
                    tracing::warn!(target: "keycard::security", event = "credentials_changed", user = %user_id, "session of a changed or deleted account ended");
                    session.destroy().await?;
                    return Ok(None);
                }
            }
        }
        // A token is no browser; and once the response went out, a restore
        // would rotate the series for a cookie no one will receive (the
        // browser's next request would then look like theft).
        if session.is_bearer() || session.is_committed().await {
            return Ok(None);
        }
        let Some(cookie) = &self.inner.remember_cookie else {
            return Ok(None);
        };
        let store = self.store();
        if session.binding_refused().await? {
            // The session cookie came from another client than its own: so
            // may the remember-me cookie beside it. Like Flask-Login's strong
            // protection, the series ends too instead of logging in again.
            remember::forget(session.config(), store.as_ref(), cookie).await?;
            self.set_pending(|p| p.remember = Some(CookieAction::Clear));
            return Ok(None);
        }
        match remember::restore(
            session.config(),
            store.as_ref(),
            cookie,
            self.inner.config.remember_lifetime,
            self.inner.config.remember_grace,
        )
        .await?
        {
            Restored::Invalid => {
                self.set_pending(|p| p.remember = Some(CookieAction::Clear));
                Ok(None)
            }
            Restored::Theft { user_id } => {
                tracing::warn!(target: "keycard::security", event = "remember_token_theft", user = %user_id, "stale remember-me token replayed; every session, remember-me series and API token of the user revoked");
                // API tokens too: whoever restored the login first may have
                // minted one with it, which would outlive everything else.
                self.end_logins(&user_id, None, &["session", "remember", "bearer"])
                    .await?;
                self.set_pending(|p| p.remember = Some(CookieAction::Clear));
                Ok(None)
            }
            Restored::User {
                user_id,
                new_cookie,
            } => {
                let user = self
                    .inner
                    .backend
                    .get_user(&user_id)
                    .await
                    .map_err(|e| AuthError::Backend(Box::new(e)))?;
                let Some(user) = user else {
                    self.set_pending(|p| p.remember = Some(CookieAction::Clear));
                    return Ok(None);
                };
                self.login_as(&user, false, "remember").await?;
                if let Some(value) = new_cookie {
                    self.set_pending(|p| p.remember = Some(CookieAction::Set(value)));
                }
                tracing::info!(target: "keycard::security", event = "login_restored", user = %user_id, "login restored from remember-me");
                Ok(Some(user))
            }
        }
    }

    /// What keycard recorded about the current login.
    pub async fn login_info(&self) -> Result<Option<LoginInfo>, AuthError> {
        let value = self.inner.session.get_value(reserved::AUTH).await?;
        Ok(value.and_then(|v| serde_json::from_value(v).ok()))
    }

    /// Whether the password was entered recently enough
    /// ([`AuthConfig::fresh_for`]) and the login was not restored from remember-me.
    pub async fn is_fresh(&self) -> Result<bool, AuthError> {
        if self.user().await?.is_none() {
            return Ok(false);
        }
        let fresh_ms = i64::try_from(self.inner.config.fresh_for.as_millis()).unwrap_or(i64::MAX);
        Ok(self.login_info().await?.is_some_and(|info| {
            info.fresh && now_millis().saturating_sub(info.login_at) <= fresh_ms
        }))
    }

    /// Whether the user has `permission` (see [`AuthUser::permissions`]).
    pub async fn has_permission(&self, permission: &str) -> Result<bool, AuthError> {
        Ok(self
            .user()
            .await?
            .is_some_and(|u| u.permissions().iter().any(|p| p == permission)))
    }

    async fn current_user_id(&self) -> Result<String, AuthError> {
        self.user()
            .await?
            .map(|u| u.id())
            .ok_or(AuthError::NotLoggedIn)
    }

    /// The current user's active sessions, the current one first, then by
    /// latest activity. With client-side sessions only the current one can be
    /// listed (the others live in other browsers' cookies).
    pub async fn sessions(&self) -> Result<Vec<SessionEntry>, AuthError> {
        let user_id = self.current_user_id().await?;
        let current = self.inner.session.key().await?;
        let mut list: Vec<SessionEntry> = self
            .listed(&user_id, current)
            .await?
            .into_iter()
            .filter(|s| s.kind == "session")
            .map(|s| SessionEntry {
                handle: s.key.handle(),
                created_at: s.created_at,
                last_seen: s.last_seen,
                ip: s.ip,
                user_agent: s.user_agent,
                current: Some(s.key) == current,
            })
            .collect();
        list.sort_by(|a, b| {
            b.current
                .cmp(&a.current)
                .then(b.last_seen.cmp(&a.last_seen))
        });
        Ok(list)
    }

    /// Ends one of the current user's sessions by its handle. Returns whether
    /// one was found; a handle of someone else's session is never found.
    pub async fn revoke_session(&self, handle: &str) -> Result<bool, AuthError> {
        let user_id = self.current_user_id().await?;
        let store = self.store();
        let config = self.inner.session.config();
        let current = self.inner.session.key().await?;
        let found = self.listed(&user_id, current).await?.into_iter().find(|s| {
            s.kind == "session" && bool::from(s.key.handle().as_bytes().ct_eq(handle.as_bytes()))
        });
        let Some(found) = found else { return Ok(false) };
        if Some(found.key) == current {
            self.logout().await?;
        } else {
            timed(config, store.delete(&found.key)).await?;
        }
        tracing::info!(target: "keycard::security", event = "session_revoked", user = %user_id, "session revoked by its owner");
        Ok(true)
    }

    /// What the store lists for the user, plus, with client-side sessions
    /// (which live in their cookies, not in the store), the current one: the
    /// only one that can be named (never an API token).
    async fn listed(
        &self,
        user_id: &str,
        current: Option<SessionKey>,
    ) -> Result<Vec<crate::SessionSummary>, AuthError> {
        let session = &self.inner.session;
        let mut listed = timed(session.config(), self.store().list_for_user(user_id)).await?;
        let unlisted = current.filter(|key| {
            session.is_client_side()
                && !session.is_bearer()
                && !listed.iter().any(|s| s.key == *key)
        });
        if let Some(key) = unlisted {
            if let Some(record) = session.record().await? {
                listed.push(record.summary(key));
            }
        }
        Ok(listed)
    }

    /// "Log out everywhere else": ends every other session, remember-me series
    /// and API token of the user (a token is a login elsewhere too, and one
    /// minted by an intruder must not outlive the clean-up). This browser
    /// stays logged in with its login time, freshness and deadlines as they
    /// were, but under a new session ID and a new remember-me series: copies
    /// of its old cookies (the usual reason to press the button) end too.
    ///
    /// Returns how many stored records of other logins ended. Client-side
    /// sessions live in other browsers' cookies and cannot be listed or
    /// counted: they are all voided at once by the user's not-before time,
    /// and this session's cookie is re-issued to outlive it.
    pub async fn revoke_other_sessions(&self) -> Result<u64, AuthError> {
        let user_id = self.current_user_id().await?;
        let session = &self.inner.session;
        let keep = self.own_logins().await?;
        let (count, cut_off) = self
            .end_logins(&user_id, Some(&keep), &["session", "remember", "bearer"])
            .await?;
        if !session.is_bearer() {
            // A token's ID is the API client's credential: it is not rotated.
            session.cycle_id().await?;
            if session.is_client_side() {
                // Every cookie issued before the cut-off is void: this one is
                // re-issued after it, keeping its login time (so neither its
                // freshness nor its absolute timeout starts again).
                session
                    .set_reserved(reserved::REISSUED_AT, cut_off.into())
                    .await?;
            }
            self.replace_own_remember(&user_id).await?;
        }
        tracing::info!(target: "keycard::security", event = "sessions_revoked", user = %user_id, count, "other sessions revoked");
        Ok(count)
    }

    /// The store keys of this browser's own logins: its session and its
    /// remember-me series (kept when ending the user's other logins).
    async fn own_logins(&self) -> Result<Vec<SessionKey>, AuthError> {
        let current = self.inner.session.key().await?;
        let own_remember = self
            .inner
            .remember_cookie
            .as_deref()
            .and_then(remember::key_of);
        Ok(current.into_iter().chain(own_remember).collect())
    }

    /// Ends this browser's remember-me series, if it has a live one of
    /// `user_id`, and hands it a new one.
    async fn replace_own_remember(&self, user_id: &str) -> Result<(), AuthError> {
        let Some(cookie) = self.inner.remember_cookie.as_deref() else {
            return Ok(());
        };
        let Some(key) = remember::key_of(cookie) else {
            return Ok(());
        };
        let store = self.store();
        let config = self.inner.session.config();
        let live = timed(config, store.load(&key))
            .await?
            .is_some_and(|r| r.user_id.as_deref() == Some(user_id) && !r.is_expired(now_millis()));
        if !live {
            return Ok(());
        }
        remember::forget(config, store.as_ref(), cookie).await?;
        let value = remember::issue(
            config,
            store.as_ref(),
            user_id,
            self.inner.config.remember_lifetime,
            self.inner.session.client(),
        )
        .await?;
        self.set_pending(|p| p.remember = Some(CookieAction::Set(value)));
        Ok(())
    }

    /// After the user's password changed: ends every other session, remember-me
    /// series and API token of the user, and records the new credentials in
    /// this session (a new ID, still fresh). This browser's own remember-me
    /// series, if it has one, is replaced by a new one (as
    /// [`revoke_other_sessions`](Self::revoke_other_sessions) does): copies of
    /// the old value stop working, the user stays remembered here.
    pub async fn password_changed(&self, user: &B::User) -> Result<(), AuthError> {
        let keep = self.own_logins().await?;
        self.end_logins(&user.id(), Some(&keep), &["session", "remember", "bearer"])
            .await?;
        self.login_as(user, true, "password").await?;
        self.replace_own_remember(&user.id()).await?;
        tracing::info!(target: "keycard::security", event = "password_changed", user = %user.id(), "password changed; other sessions ended");
        Ok(())
    }

    /// Ends the user's records of these kinds except `keep`; with
    /// client-side sessions, which cannot be listed, also voids every cookie
    /// issued to the user before now (the caller re-issues its own). Returns
    /// how many records ended and the cut-off time it used.
    async fn end_logins(
        &self,
        user_id: &str,
        keep: Option<&[SessionKey]>,
        kinds: &[&str],
    ) -> Result<(u64, crate::UnixMillis), AuthError> {
        let store = self.store();
        let config = self.inner.session.config();
        let mut count = 0;
        for entry in timed(config, store.list_for_user(user_id)).await? {
            if kinds.contains(&entry.kind.as_str()) && !keep.is_some_and(|k| k.contains(&entry.key))
            {
                timed(config, store.delete(&entry.key)).await?;
                count += 1;
            }
        }
        let cut_off = now_millis();
        if self.inner.session.is_client_side() {
            set_not_before(config, store.as_ref(), user_id, cut_off).await?;
        }
        Ok((count, cut_off))
    }

    /// Ends every session, remember-me series and token of `user_id` (for an
    /// administrator, or when an account is disabled).
    pub async fn revoke_all_for(&self, user_id: &str) -> Result<u64, AuthError> {
        let store = self.store();
        let config = self.inner.session.config();
        let count = timed(config, store.delete_for_user(user_id, None)).await?;
        if self.inner.session.is_client_side() {
            set_not_before(config, store.as_ref(), user_id, now_millis()).await?;
        }
        tracing::info!(target: "keycard::security", event = "user_revoked", user = %user_id, count, "every session of the user revoked");
        Ok(count)
    }

    /// Issues an opaque bearer token for API clients of the current user,
    /// valid for `lifetime`. Only its hash is stored; present it as
    /// `Authorization: Bearer <token>`.
    ///
    /// A request presenting an API token gets [`AuthError::BearerRequest`]:
    /// a stolen token must not mint others that outlive its revocation.
    pub async fn issue_token(&self, lifetime: std::time::Duration) -> Result<String, AuthError> {
        if self.inner.session.is_bearer() {
            return Err(AuthError::BearerRequest);
        }
        let user = self.user().await?.ok_or(AuthError::NotLoggedIn)?;
        let token = super::token::issue(
            self.inner.session.config(),
            self.store().as_ref(),
            &user,
            lifetime,
            self.inner.session.client(),
        )
        .await?;
        tracing::info!(target: "keycard::security", event = "token_issued", user = %user.id(), "API token issued");
        Ok(token)
    }

    /// Revokes the bearer token this request authenticated with. `false` if
    /// the request did not use a (valid) token.
    pub async fn revoke_current_token(&self) -> Result<bool, AuthError> {
        let session = &self.inner.session;
        if !session.is_bearer() || session.key().await?.is_none() {
            return Ok(false);
        }
        session.destroy().await?;
        tracing::info!(target: "keycard::security", event = "token_revoked", "API token revoked");
        Ok(true)
    }
}
