//! The tower layer that puts an [`Auth`] handle on each request.

use super::handle::Auth;
use super::AuthBackend;
use crate::cookie_header::{find_cookie, CookieLookup};
use crate::service::remove_set_cookie;
use crate::session::CookieAction;
use crate::{CookieConfig, Session};
use http::header::{HeaderValue, SET_COOKIE};
use http::{Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

/// Authentication settings.
///
/// ```
/// use keycard::auth::AuthConfig;
/// use std::time::Duration;
/// let config = AuthConfig::default().with_fresh_for(Duration::from_secs(300));
/// assert_eq!(config.login_path, "/login");
/// assert_eq!(config.remember_cookie.name, "__Host-keycard-remember");
/// ```
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// Where browsers are sent to log in. Default: `/login`.
    pub login_path: String,
    /// Where browsers are sent to re-enter their password. Default: `/reauth`.
    pub reauth_path: String,
    /// Requests under this path prefix are API calls: they get 401/403 JSON,
    /// never a redirect. Default: `/api/`. (So are requests that accept JSON
    /// but not HTML.)
    pub api_prefix: String,
    /// How long after entering the password a login counts as fresh (for
    /// [`FreshUser`](super::FreshUser)). Default: 15 minutes.
    pub fresh_for: Duration,
    /// The remember-me cookie. Default: `__Host-keycard-remember`, Secure,
    /// HttpOnly, SameSite=Lax, Path=/, Max-Age 30 days.
    pub remember_cookie: CookieConfig,
    /// How long a remember-me series lives after its last use. Default: 30 days.
    pub remember_lifetime: Duration,
    /// How long the previous remember-me value is still accepted after a
    /// rotation, so that a request of the same browser sent before the new
    /// cookie arrived is not taken for theft (requests that arrive together
    /// are handled without it: one rotates, the others log in). Default:
    /// zero: any replay of an old value revokes every session and remember
    /// token of the user. A grace period cannot tell such a request from a
    /// thief's replay made within it (both present the old value and no
    /// session), so it is a trade you opt into; a few seconds covers a burst
    /// of page loads.
    pub remember_grace: Duration,
    /// The `Clear-Site-Data` value a logout response carries, or `None` for
    /// no header. Default: `"cache", "cookies", "storage"` (OWASP: nothing of
    /// the session stays in the browser). `"cookies"` clears the cookies of
    /// the whole registrable domain (sibling subdomains' apps log out too)
    /// and `"storage"` the origin's local storage, IndexedDB and service
    /// workers: narrow it (for example to `"cache"`) when those must survive.
    /// A value that is not a valid header value sends no header.
    pub clear_site_data: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        let lifetime = Duration::from_secs(30 * 24 * 3600);
        AuthConfig {
            login_path: "/login".into(),
            reauth_path: "/reauth".into(),
            api_prefix: "/api/".into(),
            fresh_for: Duration::from_secs(15 * 60),
            remember_cookie: CookieConfig {
                max_age: Some(lifetime),
                ..CookieConfig::named("__Host-keycard-remember")
            },
            remember_lifetime: lifetime,
            remember_grace: Duration::ZERO,
            clear_site_data: Some("\"cache\", \"cookies\", \"storage\"".into()),
        }
    }
}

impl AuthConfig {
    /// Sets how long a login stays fresh.
    #[must_use]
    pub fn with_fresh_for(mut self, fresh_for: Duration) -> Self {
        self.fresh_for = fresh_for;
        self
    }

    /// Sets the login page path.
    #[must_use]
    pub fn with_login_path(mut self, path: impl Into<String>) -> Self {
        self.login_path = path.into();
        self
    }

    /// Sets the re-authentication page path.
    #[must_use]
    pub fn with_reauth_path(mut self, path: impl Into<String>) -> Self {
        self.reauth_path = path.into();
        self
    }

    /// Sets the path prefix of API calls (401/403 JSON, never a redirect).
    #[must_use]
    pub fn with_api_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.api_prefix = prefix.into();
        self
    }

    /// Sets the remember-me cookie.
    #[must_use]
    pub fn with_remember_cookie(mut self, cookie: CookieConfig) -> Self {
        self.remember_cookie = cookie;
        self
    }

    /// Sets how long a remember-me series lives after its last use.
    #[must_use]
    pub fn with_remember_lifetime(mut self, lifetime: Duration) -> Self {
        self.remember_lifetime = lifetime;
        self
    }

    /// Sets how long a rotated remember-me value is still accepted (see
    /// [`remember_grace`](Self::remember_grace) for the trade).
    #[must_use]
    pub fn with_remember_grace(mut self, grace: Duration) -> Self {
        self.remember_grace = grace;
        self
    }

    /// Sets the `Clear-Site-Data` value of logout responses.
    ///
    /// ```
    /// use keycard::auth::AuthConfig;
    /// let keep_storage = AuthConfig::default().with_clear_site_data("\"cache\"");
    /// assert_eq!(keep_storage.clear_site_data.as_deref(), Some("\"cache\""));
    /// ```
    #[must_use]
    pub fn with_clear_site_data(mut self, value: impl Into<String>) -> Self {
        self.clear_site_data = Some(value.into());
        self
    }

    /// Sends no `Clear-Site-Data` header on logout.
    #[must_use]
    pub fn without_clear_site_data(mut self) -> Self {
        self.clear_site_data = None;
        self
    }
}

/// Adds an [`Auth`] handle for backend `B` to each request. Install it
/// inside (after) the [`SessionLayer`](crate::SessionLayer).
///
/// ```no_run
/// # fn app<B: keycard::auth::AuthBackend>(backend: B) {
/// use keycard::{auth::AuthLayer, MemoryStore, SessionLayer};
/// let app: axum::Router = axum::Router::new()
///     .layer(AuthLayer::new(backend))
///     .layer(SessionLayer::new(MemoryStore::new()));
/// # }
/// ```
#[derive(Clone)]
pub struct AuthLayer<B> {
    backend: B,
    config: Arc<AuthConfig>,
}

impl<B: AuthBackend> AuthLayer<B> {
    /// A layer for `backend` with the default configuration.
    pub fn new(backend: B) -> Self {
        AuthLayer {
            backend,
            config: Arc::new(AuthConfig::default()),
        }
    }

    /// Sets the configuration.
    #[must_use]
    pub fn with_config(mut self, config: AuthConfig) -> Self {
        if let Some(reason) = config.remember_cookie.browser_refusal() {
            tracing::error!(target: "keycard", cookie = %config.remember_cookie.name, reason, "browsers will refuse the remember-me cookie");
        }
        if let Some(value) = &config.clear_site_data {
            if HeaderValue::from_str(value).is_err() {
                tracing::error!(target: "keycard", "AuthConfig::clear_site_data is not a valid header value: logout responses will carry none");
            }
        }
        self.config = Arc::new(config);
        self
    }
}

impl<S, B: AuthBackend> Layer<S> for AuthLayer<B> {
    type Service = AuthService<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S, B> {
    inner: S,
    layer: AuthLayer<B>,
}

impl<S, B, ReqBody, ResBody> Service<Request<ReqBody>> for AuthService<S, B>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    B: AuthBackend,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let Some(session) = request.extensions().get::<Session>().cloned() else {
            tracing::error!(target: "keycard", "AuthLayer needs SessionLayer outside it");
            let mut response = Response::new(ResBody::from(
                "Internal error: session layer missing.".to_owned(),
            ));
            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            return Box::pin(async move { Ok(response) });
        };
        let config = self.layer.config.clone();
        let remember = match find_cookie(request.headers(), &config.remember_cookie.name) {
            CookieLookup::One(value) => Some(value.to_owned()),
            _ => None,
        };
        let auth = Auth::new(
            session,
            self.layer.backend.clone(),
            config.clone(),
            remember,
        );
        request.extensions_mut().insert(auth.clone());
        // The instance `poll_ready` readied is called now and only its future
        // kept: no clone of the inner service per request.
        let respond = self.inner.call(request);
        Box::pin(async move {
            let mut response = respond.await?;
            let pending = auth.take_pending();
            let headers = response.headers_mut();
            let cookie = match pending.remember {
                Some(CookieAction::Set(value)) => Some(config.remember_cookie.set_cookie(&value)),
                Some(CookieAction::SetHeader(header)) => Some(header),
                Some(CookieAction::Clear) => Some(config.remember_cookie.clear_cookie()),
                Some(CookieAction::Keep) | None => None,
            };
            if let Some(cookie) = cookie {
                remove_set_cookie(headers, &config.remember_cookie.name);
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    headers.append(SET_COOKIE, value);
                }
            }
            let clear = config
                .clear_site_data
                .as_deref()
                .filter(|_| pending.clear_site_data);
            if let Some(Ok(value)) = clear.map(HeaderValue::from_str) {
                headers.insert("clear-site-data", value);
            }
            Ok(response)
        })
    }
}
