//! The CSRF layer: origin checks, then the synchronizer token.

use crate::Session;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, Method, Request, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// CSRF settings.
///
/// ```
/// use keycard::csrf::CsrfConfig;
/// let config = CsrfConfig::default().trust_origin("https://app.example.com");
/// assert_eq!(config.form_field, "csrf_token");
/// ```
#[derive(Clone, Debug)]
pub struct CsrfConfig {
    /// Origins besides the request's own (`https://` + `Host`) allowed to
    /// post. Default: none.
    pub trusted_origins: Vec<String>,
    /// Accept `Sec-Fetch-Site: same-site` (sibling subdomains). Default: no.
    pub allow_same_site: bool,
    /// Accept the request's own origin over plain `http://` too (for local
    /// development without TLS). Default: no.
    pub allow_plain_http: bool,
    /// The form field holding the token. Default: `csrf_token`.
    pub form_field: String,
    /// The header holding the token. Default: `X-CSRF-Token`.
    pub header: String,
    /// The most body read to find the token: a larger urlencoded form, or a
    /// multipart form whose token field does not come within it, gets 413.
    /// Default: 64 KiB.
    pub max_body: usize,
}

impl Default for CsrfConfig {
    fn default() -> Self {
        CsrfConfig {
            trusted_origins: Vec::new(),
            allow_same_site: false,
            allow_plain_http: false,
            form_field: "csrf_token".into(),
            header: "x-csrf-token".into(),
            max_body: 64 * 1024,
        }
    }
}

impl CsrfConfig {
    /// Allows another origin (exact scheme, host and port; a trailing `/` and
    /// letter case do not matter).
    #[must_use]
    pub fn trust_origin(mut self, origin: impl Into<String>) -> Self {
        self.trusted_origins.push(origin.into());
        self
    }

    /// Accepts plain-HTTP origins (development only).
    #[must_use]
    pub fn allow_plain_http(mut self) -> Self {
        self.allow_plain_http = true;
        self
    }

    /// Accepts `Sec-Fetch-Site: same-site` (requests from sibling
    /// subdomains, which still need the token).
    #[must_use]
    pub fn allow_same_site(mut self) -> Self {
        self.allow_same_site = true;
        self
    }

    /// Sets the form field that carries the token.
    #[must_use]
    pub fn with_form_field(mut self, name: impl Into<String>) -> Self {
        self.form_field = name.into();
        self
    }

    /// Sets the header that carries the token.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>) -> Self {
        self.header = name.into();
        self
    }

    /// Sets the largest form body read to find the token (larger: 413).
    #[must_use]
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
}

/// Refuses unsafe requests (POST, PUT, PATCH, DELETE, ...) that another site
/// could have forged: first by `Sec-Fetch-Site` (`cross-site` is refused),
/// else by `Origin` (exactly the request's own origin or a trusted one;
/// `null` refused), else by `Referer`; then it requires the session's masked
/// synchronizer token in the `X-CSRF-Token` header or the `csrf_token` form
/// field (never the query string). Form fields are read from
/// `application/x-www-form-urlencoded` bodies (whole, up to
/// [`max_body`](CsrfConfig::max_body)) and from `multipart/form-data` upload
/// forms, whose body is read only up to the end of the token field (which
/// must come within the first `max_body` bytes: put it first) and then
/// handed on unchanged (trailers aside), the upload streaming through.
/// Requests authenticated by a bearer token carry no ambient credentials and
/// are exempt.
///
/// A refusal is a 403 before the handler runs (plain text, or
/// `{"error": "csrf_failed", "reason": ...}` for a client that sent or accepts
/// JSON); the session is left exactly as it was and no cookie is set. Install
/// it inside the [`SessionLayer`](crate::SessionLayer). With
/// `Router::route_layer` (after the routes) an unsafe request for a path with
/// no route is a 404, not a CSRF refusal, but the layer then covers only the
/// routes added before the call: not the fallback, nor routes merged or added
/// later, so a fallback must not change state. `Router::layer` covers the
/// fallback too.
///
/// ```no_run
/// use axum::routing::post;
/// use keycard::{csrf::CsrfLayer, MemoryStore, SessionLayer};
/// let app: axum::Router = axum::Router::new()
///     .route("/logout", post(|| async { "bye" }))
///     .route_layer(CsrfLayer::default())
///     .layer(SessionLayer::new(MemoryStore::new()));
/// ```
#[derive(Clone, Default)]
pub struct CsrfLayer {
    config: Arc<CsrfConfig>,
}

impl CsrfLayer {
    /// A layer with this configuration.
    pub fn new(config: CsrfConfig) -> Self {
        CsrfLayer {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for CsrfLayer {
    type Service = Csrf<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Csrf {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by [`CsrfLayer`].
#[derive(Clone)]
pub struct Csrf<S> {
    inner: S,
    config: Arc<CsrfConfig>,
}

/// Why a request was refused: logged, and named by a short code in the JSON
/// answer (`"reason": "token missing"`); the text answer does not say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    CrossSite,
    SameSite,
    ForeignOrigin,
    NullOrigin,
    ForeignReferer,
    MissingToken,
    BadToken,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::CrossSite => "sec-fetch-site cross-site",
            Refusal::SameSite => "sec-fetch-site same-site",
            Refusal::ForeignOrigin => "origin not allowed",
            Refusal::NullOrigin => "origin null",
            Refusal::ForeignReferer => "referer not allowed",
            Refusal::MissingToken => "token missing",
            Refusal::BadToken => "token invalid",
        }
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The host the request was sent to: the `Host` header, or over HTTP/2 (which
/// has no `Host` header, only the `:authority` pseudo-header) the URI's
/// authority, which is where hyper puts `:authority`.
fn request_host<'a>(headers: &'a HeaderMap, uri: &'a http::Uri) -> Option<&'a str> {
    match headers.get(header::HOST) {
        Some(host) => host.to_str().ok(),
        None => uri.authority().map(http::uri::Authority::as_str),
    }
}

/// Checks where the request comes from. `Ok` when nothing says another site.
fn check_origin(
    config: &CsrfConfig,
    headers: &HeaderMap,
    host: Option<&str>,
) -> Result<(), Refusal> {
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some("same-origin") | Some("none") => return Ok(()),
        Some("same-site") if config.allow_same_site => return Ok(()),
        Some("same-site") => return Err(Refusal::SameSite),
        Some("cross-site") => return Err(Refusal::CrossSite),
        _ => {}
    }
    // Host names are case-insensitive; browsers send the Origin in lower case.
    let same_host = |rest: Option<&str>| {
        rest.zip(host)
            .is_some_and(|(rest, host)| rest.eq_ignore_ascii_case(host))
    };
    let allowed = |origin: &str| {
        // As configured, give or take a trailing `/` and letter case (an
        // Origin header never has either).
        config
            .trusted_origins
            .iter()
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
            || same_host(origin.strip_prefix("https://"))
            || (config.allow_plain_http && same_host(origin.strip_prefix("http://")))
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        if origin == "null" {
            return Err(Refusal::NullOrigin);
        }
        return if allowed(origin) {
            Ok(())
        } else {
            Err(Refusal::ForeignOrigin)
        };
    }
    if let Some(referer) = headers.get(header::REFERER) {
        let referer = referer.to_str().unwrap_or("");
        let origin = referer_origin(referer).ok_or(Refusal::ForeignReferer)?;
        return if allowed(origin) {
            Ok(())
        } else {
            Err(Refusal::ForeignReferer)
        };
    }
    Ok(())
}

/// The `scheme://host[:port]` part of a URL.
fn referer_origin(url: &str) -> Option<&str> {
    let scheme_end = url.find("://")?;
    let rest = &url[scheme_end + 3..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&url[..scheme_end + 3 + end])
}

/// How a request body may carry the token field.
enum FormBody {
    /// `application/x-www-form-urlencoded`: read whole (up to `max_body`).
    Urlencoded,
    /// `multipart/form-data` with its boundary: read only up to the token.
    Multipart(String),
    /// Anything else: the token can only come in the header.
    Other,
}

fn form_body(headers: &HeaderMap) -> FormBody {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return FormBody::Other;
    };
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        FormBody::Urlencoded
    } else if essence.eq_ignore_ascii_case("multipart/form-data") {
        match multer::parse_boundary(content_type) {
            Ok(boundary) => FormBody::Multipart(boundary),
            Err(_) => FormBody::Other,
        }
    } else {
        FormBody::Other
    }
}

/// Whether the client speaks JSON (it sent JSON, or accepts it): it gets its
/// refusal as `{"error": "csrf_failed", "reason": ...}`.
fn wants_json(headers: &HeaderMap) -> bool {
    let mentions_json = |name| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("json"))
    };
    mentions_json(header::CONTENT_TYPE) || mentions_json(header::ACCEPT)
}

fn refuse(reason: Refusal, request_headers: &HeaderMap) -> Response {
    tracing::warn!(target: "keycard::security", event = "csrf_rejected", reason = reason.as_str(), "request refused by CSRF protection");
    let headers = [(header::CACHE_CONTROL, "no-store")];
    if wants_json(request_headers) {
        let body = serde_json::json!({ "error": "csrf_failed", "reason": reason.as_str() });
        return (StatusCode::FORBIDDEN, headers, axum::Json(body)).into_response();
    }
    (
        StatusCode::FORBIDDEN,
        headers,
        "Forbidden: this request did not come from this site's own page (CSRF check failed). Reload the page and try again.",
    )
        .into_response()
}

impl<S> Service<Request<Body>> for Csrf<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let session = request.extensions().get::<Session>();
        if is_safe(request.method()) || session.is_some_and(Session::is_bearer) {
            // Nothing to check first: the instance `poll_ready` readied is
            // called now, and no clone of the inner service is made.
            return Box::pin(self.inner.call(request));
        }
        let Some(session) = session.cloned() else {
            tracing::error!(target: "keycard", "CsrfLayer needs SessionLayer outside it");
            let response = (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error: session layer missing.",
            )
                .into_response();
            return Box::pin(async move { Ok(response) });
        };
        // The check awaits (the session, the body) before the inner service
        // is called: it gets the ready instance, and a clone stays here.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        Box::pin(async move {
            let host = request_host(request.headers(), request.uri());
            if let Err(reason) = check_origin(&config, request.headers(), host) {
                session.abandon().await;
                return Ok(refuse(reason, request.headers()));
            }
            let (parts, body) = request.into_parts();
            let header_token = parts
                .headers
                .get(config.header.as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let (token, body) = match (header_token, form_body(&parts.headers)) {
                (Some(token), _) => (Some(token), body),
                (None, FormBody::Urlencoded) => {
                    let bytes = match axum::body::to_bytes(body, config.max_body).await {
                        Ok(bytes) => bytes,
                        Err(_) => {
                            session.abandon().await;
                            return Ok((StatusCode::PAYLOAD_TOO_LARGE, "Request body too large.")
                                .into_response());
                        }
                    };
                    let token = form_urlencoded::parse(&bytes)
                        .find(|(name, _)| name == config.form_field.as_str())
                        .map(|(_, value)| value.into_owned());
                    (token, Body::from(bytes))
                }
                (None, FormBody::Multipart(boundary)) => {
                    match super::multipart::find_token(body, boundary, &config).await {
                        Ok(found) => found,
                        Err(refusal) => {
                            session.abandon().await;
                            return Ok(refusal.into_response());
                        }
                    }
                }
                (None, FormBody::Other) => (None, body),
            };
            let Some(token) = token else {
                session.abandon().await;
                return Ok(refuse(Refusal::MissingToken, &parts.headers));
            };
            match super::verify(&session, &token).await {
                Ok(true) => inner.call(Request::from_parts(parts, body)).await,
                Ok(false) => {
                    session.abandon().await;
                    Ok(refuse(Refusal::BadToken, &parts.headers))
                }
                Err(error) => Ok(error.into_response()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt;

    /// An inner service that counts how often it is cloned.
    struct Counted(Arc<AtomicUsize>);

    impl Clone for Counted {
        fn clone(&self) -> Self {
            self.0.fetch_add(1, Ordering::SeqCst);
            Counted(self.0.clone())
        }
    }

    impl Service<Request<Body>> for Counted {
        type Response = Response;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<Body>) -> Self::Future {
            std::future::ready(Ok(StatusCode::NO_CONTENT.into_response()))
        }
    }

    #[tokio::test]
    async fn the_inner_service_is_cloned_only_for_a_request_it_must_check_first() {
        let clones = Arc::new(AtomicUsize::new(0));
        let csrf = CsrfLayer::default().layer(Counted(clones.clone()));
        let mut app = crate::SessionLayer::new(crate::MemoryStore::new()).layer(csrf);
        let request = |method: Method| {
            Request::builder()
                .method(method)
                .body(Body::empty())
                .unwrap()
        };
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            let response = app
                .ready()
                .await
                .unwrap()
                .call(request(method))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::NO_CONTENT);
        }
        assert_eq!(
            clones.load(Ordering::SeqCst),
            0,
            "safe methods go straight through"
        );
        let response = app
            .ready()
            .await
            .unwrap()
            .call(request(Method::POST))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(clones.load(Ordering::SeqCst), 1);
    }

    fn check(config: &CsrfConfig, headers: &HeaderMap) -> Result<(), Refusal> {
        check_origin(
            config,
            headers,
            request_host(headers, &http::Uri::default()),
        )
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(header::HOST, "app.example:8443".parse().unwrap());
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn origin_rules() {
        let config = CsrfConfig::default();
        assert_eq!(
            check(&config, &headers(&[("sec-fetch-site", "cross-site")])),
            Err(Refusal::CrossSite)
        );
        assert_eq!(
            check(&config, &headers(&[("sec-fetch-site", "same-site")])),
            Err(Refusal::SameSite)
        );
        assert_eq!(
            check(
                &config,
                &headers(&[
                    ("sec-fetch-site", "same-origin"),
                    ("origin", "https://evil")
                ])
            ),
            Ok(())
        );
        assert_eq!(
            check(&config, &headers(&[("origin", "https://app.example:8443")])),
            Ok(())
        );
        assert_eq!(
            check(&config, &headers(&[("origin", "null")])),
            Err(Refusal::NullOrigin)
        );
        for evil in [
            "https://app.example:8443.evil.com",
            "https://evil.app.example:8443",
            "http://app.example:8443",
            "https://app.example",
        ] {
            assert_eq!(
                check(&config, &headers(&[("origin", evil)])),
                Err(Refusal::ForeignOrigin),
                "{evil}"
            );
        }
        assert_eq!(
            check(
                &config,
                &headers(&[("referer", "https://app.example:8443/form?x")])
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &config,
                &headers(&[("referer", "https://app.example:8443.evil/")])
            ),
            Err(Refusal::ForeignReferer)
        );
        assert_eq!(
            check(&config, &headers(&[("referer", "garbage")])),
            Err(Refusal::ForeignReferer)
        );
        assert_eq!(check(&config, &headers(&[])), Ok(()));
    }

    #[test]
    fn trusted_origins_match_whatever_their_case_or_trailing_slash() {
        let config = CsrfConfig::default().trust_origin("https://Admin.Example/");
        assert_eq!(
            check(&config, &headers(&[("origin", "https://admin.example")])),
            Ok(())
        );
        for other in ["https://admin.example.evil", "http://admin.example"] {
            assert_eq!(
                check(&config, &headers(&[("origin", other)])),
                Err(Refusal::ForeignOrigin),
                "{other}"
            );
        }
    }

    #[test]
    fn over_http2_the_authority_stands_for_the_host_header() {
        let config = CsrfConfig::default();
        let uri: http::Uri = "https://app.example:8443/form".parse().unwrap();
        let with_origin = |origin: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ORIGIN, origin.parse().unwrap());
            headers
        };
        let same = with_origin("https://app.example:8443");
        assert_eq!(request_host(&same, &uri), Some("app.example:8443"));
        assert_eq!(
            check_origin(&config, &same, request_host(&same, &uri)),
            Ok(())
        );
        let evil = with_origin("https://evil.example");
        assert_eq!(
            check_origin(&config, &evil, request_host(&evil, &uri)),
            Err(Refusal::ForeignOrigin)
        );
        // Neither a Host header nor an authority: no Origin can match.
        assert_eq!(check(&config, &same), Err(Refusal::ForeignOrigin));
    }

    #[test]
    fn host_names_compare_without_case() {
        let config = CsrfConfig::default();
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "App.Example:8443".parse().unwrap());
        headers.insert(header::ORIGIN, "https://app.example:8443".parse().unwrap());
        assert_eq!(check(&config, &headers), Ok(()));
    }
}
