//! The tower layer that gives every request a [`Session`].

use crate::client::{Binding, ClientAddrResolver, RequestClient};
use crate::codec::CookieCodec;
use crate::cookie_header::{locate_cookie, CookieValue, Located};
use crate::session::{Backend, Committed, Context, CookieAction, Presented};
use crate::{Session, SessionConfig, SessionError, SessionStore};
use http::header::{HeaderValue, CACHE_CONTROL, SET_COOKIE, VARY};
use http::{Request, Response};
use pin_project_lite::pin_project;
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
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = SessionResponseFuture<S::Future, ResBody>;

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
        SessionResponseFuture {
            phase: Phase::Handler {
                respond: self.inner.call(request),
            },
            session,
            on_error: layer.on_error.clone(),
        }
    }
}

pin_project! {
    /// The response future of [`SessionService`]: the handler's response,
    /// then the session's commit.
    ///
    /// A commit that needs no store call (the session was not touched, only
    /// read, or its change was applied with the load) is done in place; only
    /// a commit that writes is boxed, so the common request allocates no
    /// future of its own.
    pub struct SessionResponseFuture<F, B> {
        #[pin]
        phase: Phase<F, B>,
        session: Session,
        on_error: ErrorResponder,
    }
}

type CommitFuture = Pin<Box<dyn Future<Output = Result<Committed, SessionError>> + Send>>;

pin_project! {
    #[project = PhaseProj]
    enum Phase<F, B> {
        Handler {
            #[pin]
            respond: F,
        },
        // The response waits here, not in the box: the box holds only the
        // store calls.
        Commit {
            commit: CommitFuture,
            response: Option<Response<B>>,
        },
        Done,
    }
}

impl<F, B, E> Future for SessionResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<String>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (mut phase, session, on_error) = (this.phase, &*this.session, &*this.on_error);
        loop {
            match phase.as_mut().project() {
                PhaseProj::Handler { respond } => {
                    let response = match respond.poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(error)) => {
                            phase.set(Phase::Done);
                            return Poll::Ready(Err(error));
                        }
                        Poll::Ready(Ok(response)) => response,
                    };
                    if let Some(committed) = session.commit_without_io() {
                        let response = finish(on_error, session, committed, response);
                        phase.set(Phase::Done);
                        return Poll::Ready(Ok(response));
                    }
                    let committing = session.clone();
                    phase.set(Phase::Commit {
                        commit: Box::pin(async move { committing.commit().await }),
                        response: Some(response),
                    });
                }
                PhaseProj::Commit { commit, response } => {
                    let committed = std::task::ready!(commit.as_mut().poll(cx));
                    let response = response
                        .take()
                        .map(|response| finish(on_error, session, committed, response));
                    phase.set(Phase::Done);
                    if let Some(response) = response {
                        return Poll::Ready(Ok(response));
                    }
                }
                // A caller bug, as for any future: `async fn`s panic alike.
                PhaseProj::Done => panic!("keycard::SessionResponseFuture polled after completion"),
            }
        }
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

fn finish<ResBody: From<String>>(
    on_error: &ErrorResponder,
    session: &Session,
    committed: Result<Committed, SessionError>,
    response: Response<ResBody>,
) -> Response<ResBody> {
    let committed = match committed {
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
    use crate::{now_millis, MemoryStore, Record, SessionId};
    use std::time::Duration;

    /// How a request used its session, for [`no_io_commit_answers_as_commit_would`].
    #[derive(Clone, Copy, Debug)]
    enum Use {
        Nothing,
        Read,
        Increment,
        Insert,
        Destroy,
        Cycle,
        Abandon,
    }

    /// Two sessions for the same request (its cookie or bearer `header`),
    /// used alike; the first answers `commit_without_io`, the second `commit`.
    async fn verdicts(
        ctx: &Arc<Context>,
        header: Option<(&str, String)>,
        used: Use,
    ) -> (Option<Committed>, Committed) {
        let session = || {
            let mut request = Request::builder();
            if let Some((name, value)) = &header {
                request = request.header(*name, value);
            }
            let (parts, ()) = request.body(()).unwrap().into_parts();
            Session::new(
                ctx.clone(),
                presented(&ctx.config, &parts.headers),
                RequestClient::from_request(&ClientAddrResolver::default(), &parts),
            )
        };
        let (fast, slow) = (session(), session());
        for session in [&fast, &slow] {
            match used {
                Use::Nothing => {}
                Use::Read => {
                    session.get::<i64>("n").await.unwrap();
                }
                Use::Increment => {
                    session.increment("n", 1).await.unwrap();
                }
                Use::Insert => session.insert("m", 1).await.unwrap(),
                Use::Destroy => session.destroy().await.unwrap(),
                Use::Cycle => session.cycle_id().await.unwrap(),
                Use::Abandon => {
                    session.get::<i64>("n").await.unwrap();
                    session.abandon().await;
                }
            }
        }
        let fast = fast.commit_without_io().map(Result::unwrap);
        (fast, slow.commit().await.unwrap())
    }

    /// The commit the layer finishes in place must answer exactly as the
    /// full commit does, and be taken for the common requests.
    #[tokio::test]
    async fn no_io_commit_answers_as_commit_would() {
        for max_age in [None, Some(Duration::from_secs(3600))] {
            let store = Arc::new(MemoryStore::new());
            let mut config = SessionConfig::default();
            config.cookie.max_age = max_age;
            config.accept_bearer = true;
            let ctx = Arc::new(Context {
                config,
                backend: Backend::Store(store.clone()),
                binding: Binding::default(),
            });
            let now = now_millis();
            let stored = |last_seen_ago: i64, idle_left: i64| {
                let id = SessionId::generate().unwrap();
                let mut record = Record::new(now, 3_600_000, 86_400_000);
                record.data.insert("n".into(), 1.into());
                record.last_seen = now - last_seen_ago;
                record.idle_deadline = now + idle_left;
                let store = store.clone();
                async move {
                    store.create(&id.key(), &record).await.unwrap();
                    id
                }
            };
            // A fresh record for every case: the full commits change the store.
            let live = || stored(0, 3_600_000);
            let cookie = |id: SessionId| Some(("cookie", format!("__Host-keycard={id}")));
            let cases = [
                (None, Use::Nothing, true),
                (None, Use::Read, true),
                (None, Use::Insert, false),
                (cookie(live().await), Use::Nothing, true),
                (cookie(live().await), Use::Read, true),
                (cookie(live().await), Use::Increment, true),
                (cookie(live().await), Use::Insert, false),
                (cookie(live().await), Use::Destroy, false),
                (cookie(live().await), Use::Cycle, false),
                (cookie(live().await), Use::Abandon, true),
                // A touch is due: written.
                (cookie(stored(3_000_000, 600_000).await), Use::Read, false),
                // Expired: the later `create`s above evicted it (the memory
                // store evicts expired records as it adds new ones), so
                // there is nothing to delete and the cookie is cleared. A
                // record still there would be marked for deletion by
                // `admit`: the full commit.
                (cookie(stored(0, -1).await), Use::Read, true),
                (cookie(SessionId::generate().unwrap()), Use::Read, true),
                (
                    Some(("cookie", "__Host-keycard=x; __Host-keycard=y".into())),
                    Use::Read,
                    true,
                ),
                (
                    Some(("authorization", format!("Bearer {}", live().await))),
                    Use::Read,
                    true,
                ),
            ];
            for (case, (header, used, in_place)) in cases.into_iter().enumerate() {
                let what = format!("case {case}: {header:?} {used:?} max_age {max_age:?}");
                let (fast, slow) = verdicts(&ctx, header, used).await;
                assert_eq!(fast.is_some(), in_place, "{what}");
                if let Some(fast) = fast {
                    assert_eq!(fast, slow, "{what}");
                }
            }
        }
    }

    /// The same for client-side sessions: sealing and resealing are the
    /// full commit's, a cookie that stands is answered in place.
    #[tokio::test]
    async fn no_io_commit_answers_as_commit_would_for_sealed_cookies() {
        use crate::codec::{KeyRing, SealedCodec};
        let mut ring = KeyRing::generate().unwrap();
        let older = SealedCodec::new(&ring, "session");
        ring.rotate().unwrap();
        let codec: Arc<dyn CookieCodec> = Arc::new(SealedCodec::new(&ring, "session"));
        let revocations: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        let ctx = |codec: Arc<dyn CookieCodec>, config: SessionConfig| {
            Arc::new(Context {
                config: SessionConfig {
                    accept_bearer: true,
                    ..config
                },
                backend: Backend::Cookie {
                    codec,
                    revocations: revocations.clone(),
                },
                binding: Binding::default(),
            })
        };
        let current = ctx(codec.clone(), SessionConfig::default());
        // Every read is a touch, so every read reseals.
        let touching = ctx(codec, SessionConfig::default().with_touch_fraction(0.0));
        // A cookie holding n = 1, sealed by `by`.
        let mint = |by: Arc<Context>| async move {
            let (parts, ()) = Request::builder().body(()).unwrap().into_parts();
            let session = Session::new(
                by.clone(),
                Presented::Nothing,
                RequestClient::from_request(&ClientAddrResolver::default(), &parts),
            );
            session.insert("n", 1).await.unwrap();
            let CookieAction::SetHeader(header) = session.commit().await.unwrap().cookie else {
                panic!("a new client-side session sets its cookie");
            };
            let pair = header.split(';').next().unwrap().to_owned();
            Some(("cookie", pair))
        };
        let fresh = || mint(current.clone());
        let stale_key = mint(ctx(Arc::new(older), SessionConfig::default())).await;
        let mut tampered = fresh().await.unwrap();
        let last = tampered.1.pop().unwrap();
        tampered.1.push(if last == 'A' { 'B' } else { 'A' });
        let unknown_token = format!("Bearer {}", SessionId::generate().unwrap());
        let cases = [
            (&current, None, Use::Nothing, true),
            (&current, None, Use::Read, true),
            (&current, None, Use::Insert, false),
            (&current, fresh().await, Use::Nothing, true),
            (&current, fresh().await, Use::Read, true),
            (&current, fresh().await, Use::Insert, false),
            (&current, fresh().await, Use::Destroy, false),
            (&current, fresh().await, Use::Cycle, false),
            (&current, fresh().await, Use::Abandon, true),
            (&current, stale_key, Use::Read, false),
            (&current, Some(tampered), Use::Read, true),
            (&touching, fresh().await, Use::Read, false),
            (
                &current,
                Some(("authorization", unknown_token)),
                Use::Read,
                true,
            ),
        ];
        for (case, (ctx, header, used, in_place)) in cases.into_iter().enumerate() {
            let what = format!("case {case}: {header:?} {used:?}");
            let (fast, slow) = verdicts(ctx, header, used).await;
            assert_eq!(fast.is_some(), in_place, "{what}");
            if let Some(fast) = fast {
                assert_eq!(fast, slow, "{what}");
            }
        }
    }

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
