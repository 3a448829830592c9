//! The tower layer that gives every request a [`Session`].

use crate::client::{Binding, ClientAddrResolver, RequestClient};
use crate::codec::CookieCodec;
use crate::cookie_header::{locate_cookie, CookieValue, Located};
use crate::session::{Backend, Context, CookieAction, Presented};
use crate::{Session, SessionConfig, SessionError, SessionStore};
use http::header::{HeaderValue, CACHE_CONTROL, SET_COOKIE, VARY};
use http::{Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use tower_layer::Layer;
use tower_service::Service;

type ErrorResponder = Arc<dyn Fn(&SessionError) -> Response<String> + Send + Sync>;

/// Adds a [`Session`] to every request and saves it after the response.
///
/// ```
/// use keycard::{MemoryStore, SessionLayer, SessionConfig};
/// use std::time::Duration;
/// let layer = SessionLayer::new(MemoryStore::new())
///     .with_config(SessionConfig::default().with_idle_timeout(Duration::from_secs(600)));
/// let app: axum::Router = axum::Router::new().layer(layer);
/// ```
///
/// On the way in it only reads the cookie (nothing is loaded until a handler
/// asks). On the way out it applies the changes, sets or clears the cookie
/// (one `Set-Cookie` for the session name at most), adds `Cache-Control:
/// no-store` when it sets a cookie or a user is logged in, and `Vary: Cookie`
/// when the response depended on the session. A store failure anywhere turns
/// the response into a 503 (see [`with_error_response`](Self::with_error_response)),
/// with no cookie: never an anonymous or foreign session in its place.
#[derive(Clone)]
pub struct SessionLayer {
    ctx: Arc<Context>,
    // Behind an `Arc`: axum clones the service (and so the layer) for every
    // request, and the trusted-proxy list is a `Vec`.
    resolver: Arc<ClientAddrResolver>,
    on_error: ErrorResponder,
}

impl SessionLayer {
    /// Server-side sessions in `store`, with the default configuration.
    pub fn new(store: impl SessionStore) -> Self {
        Self::with_backend(Backend::Store(Arc::new(store)))
    }

    /// Server-side sessions in a shared store.
    pub fn from_arc(store: Arc<dyn SessionStore>) -> Self {
        Self::with_backend(Backend::Store(store))
    }

    /// Client-side sessions: the record is sealed into the cookie by `codec`;
    /// `revocations` keeps only the deny-list of ended sessions and per-user
    /// not-before times, so logout and "log out everywhere" hold.
    pub fn client_side(codec: impl CookieCodec, revocations: Arc<dyn SessionStore>) -> Self {
        Self::with_backend(Backend::Cookie {
            codec: Arc::new(codec),
            revocations,
        })
    }

    fn with_backend(backend: Backend) -> Self {
        SessionLayer {
            ctx: Arc::new(Context {
                config: SessionConfig::default(),
                backend,
                binding: Binding::default(),
            }),
            resolver: Arc::default(),
            on_error: Arc::new(default_error_response),
        }
    }

    fn ctx_mut(&mut self) -> &mut Context {
        Arc::make_mut(&mut self.ctx)
    }

    /// Sets the configuration.
    #[must_use]
    pub fn with_config(mut self, config: SessionConfig) -> Self {
        if let Some(reason) = config.cookie.browser_refusal() {
            tracing::error!(target: "keycard", cookie = %config.cookie.name, reason, "browsers will refuse the session cookie: every request will start a new session");
        }
        self.ctx_mut().config = config;
        self
    }

    /// Binds sessions to the client's address and/or user agent.
    #[must_use]
    pub fn with_binding(mut self, binding: Binding) -> Self {
        self.ctx_mut().binding = binding;
        self
    }

    /// Sets how the client address is found (trusted proxies).
    #[must_use]
    pub fn with_client_resolver(mut self, resolver: ClientAddrResolver) -> Self {
        self.resolver = Arc::new(resolver);
        self
    }

    /// Replaces the response sent when the session cannot be loaded or saved
    /// (by default 503 for a store failure, 500 otherwise, plain text).
    #[must_use]
    pub fn with_error_response(
        mut self,
        respond: impl Fn(&SessionError) -> Response<String> + Send + Sync + 'static,
    ) -> Self {
        self.on_error = Arc::new(respond);
        self
    }

    /// The configuration in force.
    pub fn config(&self) -> &SessionConfig {
        &self.ctx.config
    }
}

fn default_error_response(error: &SessionError) -> Response<String> {
    let mut response = Response::new(error.public_message().to_owned());
    *response.status_mut() = error.status();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if error.status() == http::StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`SessionLayer`].
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    layer: SessionLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let layer = &self.layer;
        let presented = presented(&layer.ctx.config, &parts.headers);
        let client = RequestClient::from_request(&layer.resolver, &parts);
        let session = Session::new(layer.ctx.clone(), presented, client);
        parts.extensions.insert(session.clone());
        let request = Request::from_parts(parts, body);
        // The inner service is called here, on the instance `poll_ready` made
        // ready, and only its future is kept: no clone of the service per
        // request.
        let respond = self.inner.call(request);
        let on_error = layer.on_error.clone();
        Box::pin(async move {
            let response = respond.await?;
            Ok(finish(&on_error, &session, response).await)
        })
    }
}

fn presented(config: &SessionConfig, headers: &http::HeaderMap) -> Presented {
    if config.accept_bearer {
        if let Some(token) = bearer_token(headers) {
            return Presented::Bearer(token);
        }
    }
    match locate_cookie(headers, &config.cookie.name) {
        Located::Absent => Presented::Nothing,
        Located::One(header, range) => Presented::Cookie(CookieValue::new(header, range)),
        Located::Ambiguous => Presented::Ambiguous,
    }
}

/// The token of an `Authorization: Bearer` header, if there is exactly one.
///
/// The scheme (up to the first space) is matched case-insensitively; the
/// token is the rest of the value with surrounding whitespace trimmed. Two
/// `Authorization` headers, a value that is not visible ASCII, or another
/// scheme give `None`. Never panics, whatever the headers.
///
/// ```
/// use http::HeaderMap;
/// let mut headers = HeaderMap::new();
/// headers.insert("authorization", "Bearer abc".parse().unwrap());
/// assert_eq!(keycard::bearer_token(&headers).as_deref(), Some("abc"));
/// headers.append("authorization", "Bearer def".parse().unwrap());
/// assert_eq!(keycard::bearer_token(&headers), None);
/// headers.insert("authorization", "Basic YTpi".parse().unwrap());
/// assert_eq!(keycard::bearer_token(&headers), None);
/// ```
pub fn bearer_token(headers: &http::HeaderMap) -> Option<String> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let text = value.to_str().ok()?;
    let (scheme, token) = text.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

async fn finish<ResBody: From<String>>(
    on_error: &ErrorResponder,
    session: &Session,
    response: Response<ResBody>,
) -> Response<ResBody> {
    let committed = match session.commit().await {
        Ok(committed) => committed,
        Err(error) => {
            let cause = error.cause();
            tracing::error!(target: "keycard", event = "session_commit_failed", %error, cause, "session could not be saved");
            return on_error(&error).map(ResBody::from);
        }
    };
    let mut response = response;
    let config = session.config();
    let headers = response.headers_mut();
    let cookie = match committed.cookie {
        CookieAction::Keep => None,
        CookieAction::Set(value) => Some(config.cookie.set_cookie(&value)),
        CookieAction::SetHeader(header) => Some(header),
        CookieAction::Clear => Some(config.cookie.clear_cookie()),
    };
    if let Some(cookie) = cookie {
        remove_set_cookie(headers, &config.cookie.name);
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(SET_COOKIE, value);
        }
    }
    if committed.authenticated || headers.contains_key(SET_COOKIE) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if committed.touched && !session.is_bearer() {
        append_vary_cookie(headers);
    }
    response
}

/// Removes any `Set-Cookie` for `name` the handler set, so the response
/// carries one at most (browsers apply duplicates in unspecified order).
pub(crate) fn remove_set_cookie(headers: &mut http::HeaderMap, name: &str) {
    let names = |v: &HeaderValue| {
        let bytes = v.as_bytes();
        bytes.starts_with(name.as_bytes()) && bytes.get(name.len()) == Some(&b'=')
    };
    // The usual case, nothing to remove, leaves the headers as they are.
    if !headers.get_all(SET_COOKIE).iter().any(names) {
        return;
    }
    let keep: Vec<HeaderValue> = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter(|v| !names(v))
        .cloned()
        .collect();
    headers.remove(SET_COOKIE);
    for value in keep {
        headers.append(SET_COOKIE, value);
    }
}

fn append_vary_cookie(headers: &mut http::HeaderMap) {
    // One lookup: most responses have no `Vary` yet.
    let mut entry = match headers.entry(VARY) {
        http::header::Entry::Vacant(vacant) => {
            vacant.insert(HeaderValue::from_static("Cookie"));
            return;
        }
        http::header::Entry::Occupied(occupied) => occupied,
    };
    let already = entry.iter().any(|v| {
        v.to_str()
            .map(|s| {
                s.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("cookie") || p.trim() == "*")
            })
            .unwrap_or(false)
    });
    if !already {
        entry.append(HeaderValue::from_static("Cookie"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vary_after(existing: &[&'static str]) -> Vec<String> {
        let mut headers = http::HeaderMap::new();
        for value in existing {
            headers.append(VARY, HeaderValue::from_static(value));
        }
        append_vary_cookie(&mut headers);
        headers
            .get_all(VARY)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn vary_cookie_is_added_once_beside_what_the_handler_set() {
        assert_eq!(vary_after(&[]), ["Cookie"]);
        assert_eq!(
            vary_after(&["Accept-Encoding"]),
            ["Accept-Encoding", "Cookie"]
        );
        assert_eq!(
            vary_after(&["accept-encoding, cookie"]),
            ["accept-encoding, cookie"]
        );
        assert_eq!(vary_after(&["Origin", " COOKIE "]), ["Origin", " COOKIE "]);
        assert_eq!(vary_after(&["*"]), ["*"]);
    }
}
