//! Authentication on top of sessions: the Flask-Login experience for tower and
//! axum, with the holes Flask-Login leaves open closed.
//!
//! - [`AuthBackend`] and [`AuthUser`]: your user model.
//! - [`AuthLayer`] puts an [`Auth`] handle on each request: [`Auth::login`]
//!   (rotates the session ID, records the login for freshness and binding,
//!   rotates the CSRF secret), [`Auth::logout`] (deletes the record, clears
//!   both cookies, sends `Clear-Site-Data`), [`Auth::user`] (checks the
//!   user's auth hash on every request, so a password change ends every other
//!   session), remember-me, bearer tokens and the sessions list.
//! - Extractors (feature `axum`): [`CurrentUser`], [`MaybeUser`], [`FreshUser`],
//!   and the route layers [`RequireLoginLayer`] and [`RequirePermissionLayer`].
//! - [`LoginThrottle`]: per account and per address, shared through the store.
//! - [`hash_password`] / [`verify_password`]: argon2id.

#[cfg(feature = "axum")]
mod extract;
mod handle;
mod layer;
mod next;
mod password;
mod remember;
mod throttle;
mod token;

#[cfg(feature = "axum")]
pub use extract::{
    CurrentUser, FreshUser, LoginRejection, MaybeUser, RequireLoginLayer, RequirePermissionLayer,
};
pub use handle::{Auth, AuthError, LoginInfo, SessionEntry};
pub use layer::{AuthConfig, AuthLayer, AuthService};
pub use next::{encode_next, safe_next};
pub use password::{hash_password, verify_dummy, verify_password, PasswordError, PasswordWorkers};
pub use throttle::{LoginAttempt, LoginThrottle, Throttled};

use async_trait::async_trait;

/// A user of your application, as keycard needs to see it.
///
/// ```
/// use keycard::auth::AuthUser;
/// #[derive(Clone)]
/// struct User { id: i64, password_hash: String }
/// impl AuthUser for User {
///     fn id(&self) -> String { self.id.to_string() }
///     fn auth_hash(&self) -> Vec<u8> { self.password_hash.as_bytes().to_vec() }
/// }
/// ```
pub trait AuthUser: Clone + Send + Sync + 'static {
    /// A stable identifier (stores index sessions by it).
    fn id(&self) -> String;
    /// Bytes that change whenever the user's credentials change: typically
    /// the password hash. keycard keeps a SHA-256 of them in the session and
    /// compares on every request, so changing the password ends every session
    /// made with the old one.
    fn auth_hash(&self) -> Vec<u8>;
    /// The user's permissions or roles, for [`Auth::has_permission`].
    fn permissions(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Where users come from: verifies credentials and loads users by ID.
#[async_trait]
pub trait AuthBackend: Clone + Send + Sync + 'static {
    /// Your user type.
    type User: AuthUser;
    /// What a login form submits.
    type Credentials: Send + Sync;
    /// Your backend's error (a database failure, ...).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Checks credentials: `Ok(None)` for unknown user or wrong password alike.
    /// Spend the same time on both, off the async runtime:
    /// [`PasswordWorkers::verify`] with `None` for an unknown user does both
    /// ([`verify_dummy`] is its blocking form, for a blocking context).
    async fn authenticate(
        &self,
        credentials: Self::Credentials,
    ) -> Result<Option<Self::User>, Self::Error>;

    /// Loads a user by [`AuthUser::id`].
    async fn get_user(&self, user_id: &str) -> Result<Option<Self::User>, Self::Error>;
}

/// An integer kept in a record's data (0 when absent or not an integer), for
/// the counters keycard keeps in its own records.
pub(crate) fn data_number(record: &crate::Record, field: &str) -> i64 {
    record
        .data
        .get(field)
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0)
}
