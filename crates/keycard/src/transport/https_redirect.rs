//! The plain-HTTP listener: send every request to HTTPS.

use super::{respond, BoxFuture};
use crate::client::ClientAddrResolver;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// For the plain-HTTP listener: every request gets `308 Permanent Redirect`
/// to the same path and query on HTTPS (308 keeps the method and body, so a
/// form posted to the `http://` URL is posted again over HTTPS). Django's
/// `SECURE_SSL_REDIRECT` and Rails' `force_ssl` also redirect every request
/// (with 301, or 307 for Rails' unsafe methods). A request that could carry
/// credentials (an API call, an unsafe method, an `Authorization` header) is
/// redirected too, and logged as a warning (`credentials_over_http`): they
/// have crossed the network in clear, and a client that follows redirects
/// would otherwise go on sending them unnoticed. A `Host` header that cannot
/// make a safe URL gets 400. Nothing here ever sets a cookie, and the
/// inner service sees only what a trusted proxy forwarded from HTTPS (below).
/// Install [`QuerySecretsLayer`](super::QuerySecretsLayer) outside it, so a
/// secret in the query is refused rather than copied into `Location`.
///
/// [`refuse_credentials`](Self::refuse_credentials) is the stricter policy
/// for sites whose clients should fail loudly: API calls, unsafe methods and
/// requests with an `Authorization` header get 403 instead, so a client that
/// sent secrets in clear is told so rather than silently carried on.
///
/// Behind a TLS-terminating proxy, requests from a trusted proxy with
/// `X-Forwarded-Proto: https` pass through to the inner service; the header
/// from anyone else is ignored.
///
/// ```
/// use keycard::transport::HttpsRedirectLayer;
/// let layer = HttpsRedirectLayer::new(8443);
/// assert_eq!(layer.location("127.0.0.1:8080", "/a?b=1"), Some("https://127.0.0.1:8443/a?b=1".to_string()));
/// assert_eq!(layer.location("evil.com/x", "/"), None);
/// // `OPTIONS *` names no page: the site's root.
/// assert_eq!(layer.location("127.0.0.1:8080", "*"), Some("https://127.0.0.1:8443/".to_string()));
/// ```
#[derive(Clone, Debug)]
pub struct HttpsRedirectLayer {
    https_port: u16,
    api_prefix: String,
    proxies: ClientAddrResolver,
    refuse_credentials: bool,
}

impl HttpsRedirectLayer {
    /// Redirects to HTTPS on `https_port` (443 gives URLs without a port).
    pub fn new(https_port: u16) -> Self {
        HttpsRedirectLayer {
            https_port,
            api_prefix: "/api/".into(),
            proxies: ClientAddrResolver::default(),
            refuse_credentials: false,
        }
    }

    /// Refuses (403) instead of redirecting what could carry credentials: a
    /// call under `/api/` (a JSON error), an unsafe method (POST, PUT, ...) or
    /// a request with an `Authorization` header. They have already crossed
    /// the network in clear; a redirect would have the client carry on (and
    /// send them in clear again next time) without anyone noticing. GET and
    /// HEAD page requests are still redirected.
    ///
    /// ```
    /// use keycard::transport::HttpsRedirectLayer;
    /// let layer = HttpsRedirectLayer::new(443).refuse_credentials();
    /// ```
    #[must_use]
    pub fn refuse_credentials(mut self) -> Self {
        self.refuse_credentials = true;
        self
    }

    /// Trusts `X-Forwarded-Proto` from these proxies.
    #[must_use]
    pub fn with_trusted_proxies(mut self, proxies: ClientAddrResolver) -> Self {
        self.proxies = proxies;
        self
    }

    /// The HTTPS URL for a request to `host` (the Host header) and
    /// `path_and_query` (anything but an absolute path, such as the `*` of
    /// `OPTIONS *`, goes to the root).
    pub fn location(&self, host: &str, path_and_query: &str) -> Option<String> {
        let path_and_query = if path_and_query.starts_with('/') {
            path_and_query
        } else {
            "/"
        };
        let hostname = match host.strip_prefix('[') {
            Some(rest) => format!("[{}]", rest.split(']').next()?),
            None => host.split(':').next()?.to_owned(),
        };
        let valid = !hostname.is_empty()
            && hostname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
        if !valid {
            return None;
        }
        let port = if self.https_port == 443 {
            String::new()
        } else {
            format!(":{}", self.https_port)
        };
        Some(format!("https://{hostname}{port}{path_and_query}"))
    }
}

impl<S> Layer<S> for HttpsRedirectLayer {
    type Service = HttpsRedirect<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpsRedirect {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`HttpsRedirectLayer`].
#[derive(Clone, Debug)]
pub struct HttpsRedirect<S> {
    inner: S,
    layer: HttpsRedirectLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpsRedirect<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let peer_trusted = ClientAddrResolver::peer(request.extensions())
            .is_some_and(|ip| self.layer.proxies.is_trusted(ip));
        let forwarded_https = request
            .headers()
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
        if peer_trusted && forwarded_https {
            return Box::pin(self.inner.call(request));
        }
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let layer = &self.layer;
        let is_api = request.uri().path().starts_with(&layer.api_prefix);
        let sends_credentials = is_api
            || request.headers().contains_key(header::AUTHORIZATION)
            || !matches!(*request.method(), Method::GET | Method::HEAD);
        let refusal = if !sends_credentials {
            None
        } else if !layer.refuse_credentials {
            tracing::warn!(target: "keycard::security", event = "credentials_over_http", method = %request.method(), "request that may carry credentials came over plain HTTP; redirected to HTTPS");
            None
        } else if is_api {
            Some(respond(
                StatusCode::FORBIDDEN,
                Some("https_required"),
                "This API only accepts requests over HTTPS.",
            ))
        } else {
            tracing::warn!(target: "keycard::security", event = "credentials_over_http", method = %request.method(), "request that may carry credentials came over plain HTTP; refused");
            Some(respond(StatusCode::FORBIDDEN, None, "This site only accepts forms over HTTPS. Anything you sent was not used; if it was a password, consider changing it."))
        };
        let response = refusal.unwrap_or_else(|| {
            let host = request
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            match layer
                .location(host, &path)
                .and_then(|l| HeaderValue::from_str(&l).ok())
            {
                Some(location) => {
                    let mut response =
                        respond(StatusCode::PERMANENT_REDIRECT, None, "Moved to HTTPS.");
                    response.headers_mut().insert(header::LOCATION, location);
                    response
                }
                None => respond(StatusCode::BAD_REQUEST, None, "Bad Host header."),
            }
        });
        Box::pin(async move { Ok(response) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::ServiceExt;

    async fn answer(layer: HttpsRedirectLayer, request: Request<String>) -> Response<String> {
        let inner = tower::service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new("inner".to_owned()))
        });
        let Ok(response) = layer.layer(inner).oneshot(request).await;
        response
    }

    fn request(method: &str, uri: &str, extra: Option<(&str, &str)>) -> Request<String> {
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "127.0.0.1:8080");
        if let Some((name, value)) = extra {
            builder = builder.header(name, value);
        }
        builder.body(String::new()).unwrap()
    }

    #[tokio::test]
    async fn every_request_is_redirected_by_default() {
        for (method, uri, extra) in [
            ("GET", "/account?tab=1", None),
            ("HEAD", "/", None),
            ("POST", "/login", None),
            ("DELETE", "/api/tokens/current", None),
            ("GET", "/api/me", Some(("authorization", "Bearer abc"))),
        ] {
            let response = answer(HttpsRedirectLayer::new(8443), request(method, uri, extra)).await;
            assert_eq!(response.status(), 308, "{method} {uri}");
            assert_eq!(
                response.headers()["location"],
                format!("https://127.0.0.1:8443{uri}")
            );
            assert!(response.headers().get("set-cookie").is_none());
        }
        let mut bad_host = request("GET", "/", None);
        bad_host
            .headers_mut()
            .insert("host", HeaderValue::from_static("evil.com/x"));
        let response = answer(HttpsRedirectLayer::new(8443), bad_host).await;
        assert_eq!(response.status(), 400);
        assert!(response.headers().get("location").is_none());
    }

    #[derive(Clone, Default)]
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_redirect_of_what_may_carry_credentials_is_logged() {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let inner = tower::service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
        let mut service = HttpsRedirectLayer::new(8443).layer(inner);
        // The decision is made (and logged) when the request is handed over.
        tracing::subscriber::with_default(subscriber, || {
            drop(service.call(request("GET", "/", None)));
            drop(service.call(request("GET", "/account?tab=1", None)));
            drop(service.call(request("POST", "/login", None)));
            drop(service.call(request("GET", "/api/me", None)));
            drop(service.call(request("GET", "/", Some(("authorization", "Bearer abc")))));
        });
        let logged = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            logged.matches("credentials_over_http").count(),
            3,
            "{logged}"
        );
        assert!(!logged.contains("abc"), "{logged}");
    }

    #[tokio::test]
    async fn refuse_credentials_refuses_what_could_carry_them() {
        let strict = || HttpsRedirectLayer::new(443).refuse_credentials();
        for (method, uri, extra) in [
            ("POST", "/login", None),
            ("PUT", "/x", None),
            ("GET", "/api/me", None),
            ("GET", "/account", Some(("authorization", "Bearer abc"))),
        ] {
            let response = answer(strict(), request(method, uri, extra)).await;
            assert_eq!(response.status(), 403, "{method} {uri}");
            assert!(response.headers().get("location").is_none());
        }
        let page = answer(strict(), request("GET", "/account", None)).await;
        assert_eq!(page.status(), 308);
        assert_eq!(page.headers()["location"], "https://127.0.0.1/account");
    }

    #[tokio::test]
    async fn only_a_trusted_proxy_can_say_https() {
        let proxy: std::net::IpAddr = [10, 0, 0, 1].into();
        let layer = HttpsRedirectLayer::new(8443)
            .with_trusted_proxies(ClientAddrResolver::default().trust(proxy.into()));
        for (peer, expected) in [(proxy, 200), ([10, 0, 0, 2].into(), 308)] {
            let mut forwarded = request("GET", "/", Some(("x-forwarded-proto", "https")));
            forwarded
                .extensions_mut()
                .insert(crate::PeerAddr(std::net::SocketAddr::new(peer, 40000)));
            let response = answer(layer.clone(), forwarded).await;
            assert_eq!(response.status(), expected, "{peer}");
        }
    }
}
