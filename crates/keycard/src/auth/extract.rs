//! axum extractors and route layers for authentication.

use super::handle::{Auth, AuthError};
use super::next::encode_next;
use super::AuthBackend;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{header, HeaderValue, Request, StatusCode};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

impl<S: Send + Sync, B: AuthBackend> FromRequestParts<S> for Auth<B> {
    type Rejection = LoginRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Auth<B>>()
            .cloned()
            .ok_or(LoginRejection::Misconfigured)
    }
}

/// Why a login-protected route refused a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoginRejection {
    /// A browser without a login: 303 to the login page with `next`.
    LoginRequired {
        /// The login page URL, with `next`.
        location: String,
    },
    /// A browser whose login is not fresh: 303 to re-authentication.
    ReauthRequired {
        /// The re-authentication URL, with `next`.
        location: String,
    },
    /// An API call without a login: 401 JSON.
    Unauthenticated,
    /// An API call whose login is not fresh: 401 JSON.
    ReauthenticationRequired,
    /// Logged in but lacking a permission: 403.
    Forbidden,
    /// The session or backend failed.
    Failed(AuthError),
    /// `AuthLayer` is not installed.
    Misconfigured,
}

impl From<AuthError> for LoginRejection {
    fn from(error: AuthError) -> Self {
        LoginRejection::Failed(error)
    }
}

impl IntoResponse for LoginRejection {
    fn into_response(self) -> Response {
        let no_store = [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
        match self {
            LoginRejection::LoginRequired { location }
            | LoginRejection::ReauthRequired { location } => (
                StatusCode::SEE_OTHER,
                no_store,
                [(header::LOCATION, location)],
            )
                .into_response(),
            LoginRejection::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                no_store,
                axum::Json(serde_json::json!({"error": "unauthenticated"})),
            )
                .into_response(),
            LoginRejection::ReauthenticationRequired => (
                StatusCode::UNAUTHORIZED,
                no_store,
                axum::Json(serde_json::json!({"error": "reauthentication_required"})),
            )
                .into_response(),
            LoginRejection::Forbidden => (
                StatusCode::FORBIDDEN,
                no_store,
                axum::Json(serde_json::json!({"error": "forbidden"})),
            )
                .into_response(),
            LoginRejection::Failed(error) => error.into_response(),
            LoginRejection::Misconfigured => {
                tracing::error!(target: "keycard", "Auth extractor used without AuthLayer");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error: auth layer missing.",
                )
                    .into_response()
            }
        }
    }
}

fn is_api(parts_uri: &http::Uri, headers: &http::HeaderMap, api_prefix: &str) -> bool {
    if parts_uri.path().starts_with(api_prefix) {
        return true;
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("application/json") && !accept.contains("text/html")
}

/// The URI the client asked for. Inside `Router::nest` axum strips the
/// prefix from the request's URI and keeps the whole one in `OriginalUri`:
/// the API test and the `next` of a login redirect need the whole one.
fn requested_uri<'a>(uri: &'a http::Uri, extensions: &'a http::Extensions) -> &'a http::Uri {
    extensions
        .get::<axum::extract::OriginalUri>()
        .map_or(uri, |original| &original.0)
}

/// The 403 a browser gets for a page it lacks the permission for (API
/// calls get `{"error":"forbidden"}`).
fn forbidden_page() -> Response {
    (
        StatusCode::FORBIDDEN,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        ],
        "Forbidden: your account does not have permission to see this page.",
    )
        .into_response()
}

fn this_path(uri: &http::Uri) -> String {
    uri.path_and_query()
        .map_or("/".to_owned(), |pq| pq.as_str().to_owned())
}

/// Where a browser comes back to after logging in or re-authenticating: this
/// page for a GET or HEAD; for a form post, which a redirect cannot replay,
/// the page that held the form (the Referer's path and query), else the home
/// page. Always a safe local path.
fn return_path(method: &http::Method, uri: &http::Uri, headers: &http::HeaderMap) -> String {
    let path = if matches!(*method, http::Method::GET | http::Method::HEAD) {
        this_path(uri)
    } else {
        headers
            .get(header::REFERER)
            .and_then(|v| v.to_str().ok())
            .and_then(|referer| referer.parse::<http::Uri>().ok())
            .map_or_else(|| "/".to_owned(), |referer| this_path(&referer))
    };
    super::safe_next(&path).unwrap_or("/").to_owned()
}

async fn require_user<B: AuthBackend>(
    auth: &Auth<B>,
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Result<B::User, LoginRejection> {
    match auth.user().await? {
        Some(user) => Ok(user),
        None if is_api(uri, headers, &auth.config().api_prefix) => {
            Err(LoginRejection::Unauthenticated)
        }
        None => Err(LoginRejection::LoginRequired {
            location: format!(
                "{}?next={}",
                auth.config().login_path,
                encode_next(&return_path(method, uri, headers))
            ),
        }),
    }
}

async fn require_fresh<B: AuthBackend>(
    auth: &Auth<B>,
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Result<B::User, LoginRejection> {
    let user = require_user(auth, method, uri, headers).await?;
    if auth.is_fresh().await? {
        return Ok(user);
    }
    if is_api(uri, headers, &auth.config().api_prefix) {
        return Err(LoginRejection::ReauthenticationRequired);
    }
    let back = return_path(method, uri, headers);
    Err(LoginRejection::ReauthRequired {
        location: format!("{}?next={}", auth.config().reauth_path, encode_next(&back)),
    })
}

/// The logged-in user; browsers without one are sent to the login page
/// (303, with a safe `next`), API calls get 401 JSON.
///
/// ```no_run
/// # use keycard::auth::{AuthBackend, AuthUser, CurrentUser};
/// async fn account<B: AuthBackend>(CurrentUser(user): CurrentUser<B>) -> String {
///     format!("Signed in as {}", user.id())
/// }
/// ```
pub struct CurrentUser<B: AuthBackend>(pub B::User);

impl<S: Send + Sync, B: AuthBackend> FromRequestParts<S> for CurrentUser<B> {
    type Rejection = LoginRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Auth::<B>::from_request_parts(parts, state).await?;
        require_user(
            &auth,
            &parts.method,
            requested_uri(&parts.uri, &parts.extensions),
            &parts.headers,
        )
        .await
        .map(CurrentUser)
    }
}

/// The logged-in user, if any.
pub struct MaybeUser<B: AuthBackend>(pub Option<B::User>);

impl<S: Send + Sync, B: AuthBackend> FromRequestParts<S> for MaybeUser<B> {
    type Rejection = LoginRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Auth::<B>::from_request_parts(parts, state).await?;
        Ok(MaybeUser(auth.user().await?))
    }
}

/// The logged-in user with a fresh login (password entered within
/// [`AuthConfig::fresh_for`](super::AuthConfig::fresh_for), not restored from
/// remember-me); otherwise browsers are sent to re-authenticate.
pub struct FreshUser<B: AuthBackend>(pub B::User);

impl<S: Send + Sync, B: AuthBackend> FromRequestParts<S> for FreshUser<B> {
    type Rejection = LoginRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Auth::<B>::from_request_parts(parts, state).await?;
        require_fresh(
            &auth,
            &parts.method,
            requested_uri(&parts.uri, &parts.extensions),
            &parts.headers,
        )
        .await
        .map(FreshUser)
    }
}

/// A route layer that lets only logged-in users through (optionally with a
/// permission); others get what [`CurrentUser`] would answer, or 403.
///
/// ```no_run
/// # fn routes<B: keycard::auth::AuthBackend>() {
/// use keycard::auth::RequireLoginLayer;
/// let admin: axum::Router = axum::Router::new()
///     .route("/admin", axum::routing::get(|| async { "secret" }))
///     .route_layer(RequireLoginLayer::<B>::new());
/// # }
/// ```
pub struct RequireLoginLayer<B> {
    permission: Option<String>,
    _backend: PhantomData<fn() -> B>,
}

impl<B> Clone for RequireLoginLayer<B> {
    fn clone(&self) -> Self {
        RequireLoginLayer {
            permission: self.permission.clone(),
            _backend: PhantomData,
        }
    }
}

impl<B: AuthBackend> RequireLoginLayer<B> {
    /// Login required.
    pub fn new() -> Self {
        RequireLoginLayer {
            permission: None,
            _backend: PhantomData,
        }
    }
}

impl<B: AuthBackend> Default for RequireLoginLayer<B> {
    fn default() -> Self {
        Self::new()
    }
}

/// A route layer that requires a login and a named permission or role (403
/// without it): build it with
/// [`RequirePermissionLayer::permission("admin")`](RequireLoginLayer::permission).
/// It is [`RequireLoginLayer`] under another name, so its `new()` requires a
/// login only.
pub type RequirePermissionLayer<B> = RequireLoginLayer<B>;

impl<B: AuthBackend> RequireLoginLayer<B> {
    /// Login and `permission` required.
    pub fn permission(permission: impl Into<String>) -> Self {
        RequireLoginLayer {
            permission: Some(permission.into()),
            _backend: PhantomData,
        }
    }
}

impl<S, B> Layer<S> for RequireLoginLayer<B> {
    type Service = RequireLogin<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireLogin {
            inner,
            permission: self.permission.clone(),
            _backend: PhantomData,
        }
    }
}

/// The service made by [`RequireLoginLayer`].
pub struct RequireLogin<S, B> {
    inner: S,
    permission: Option<String>,
    _backend: PhantomData<fn() -> B>,
}

impl<S: Clone, B> Clone for RequireLogin<S, B> {
    fn clone(&self) -> Self {
        RequireLogin {
            inner: self.inner.clone(),
            permission: self.permission.clone(),
            _backend: PhantomData,
        }
    }
}

impl<S, B, ReqBody> Service<Request<ReqBody>> for RequireLogin<S, B>
where
    S: Service<Request<ReqBody>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: AuthBackend,
    ReqBody: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let permission = self.permission.clone();
        Box::pin(async move {
            let Some(auth) = request.extensions().get::<Auth<B>>().cloned() else {
                return Ok(LoginRejection::Misconfigured.into_response());
            };
            if let Err(rejection) = require_user(
                &auth,
                request.method(),
                requested_uri(request.uri(), request.extensions()),
                request.headers(),
            )
            .await
            {
                return Ok(rejection.into_response());
            }
            if let Some(permission) = permission {
                match auth.has_permission(&permission).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(target: "keycard::security", event = "permission_denied", %permission, "permission denied");
                        let uri = requested_uri(request.uri(), request.extensions());
                        if is_api(uri, request.headers(), &auth.config().api_prefix) {
                            return Ok(LoginRejection::Forbidden.into_response());
                        }
                        return Ok(forbidden_page());
                    }
                    Err(error) => return Ok(error.into_response()),
                }
            }
            inner.call(request).await
        })
    }
}
