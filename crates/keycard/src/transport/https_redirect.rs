//! The plain-HTTP listener: send browsers to HTTPS, refuse everything else.

use super::{respond, BoxFuture};
use crate::client::ClientAddrResolver;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// For the plain-HTTP listener. A page request (GET or HEAD outside the API
/// prefix) gets `308 Permanent Redirect` to the same path on HTTPS; an API
/// call, or anything that could carry credentials (POST, PUT, ..., or an
/// `Authorization` header), gets an error instead: redirecting would have the
/// client resend its secrets, and they have already crossed the network in
/// clear. Nothing here ever sets a cookie.
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
/// ```
#[derive(Clone, Debug)]
pub struct HttpsRedirectLayer {
    https_port: u16,
    api_prefix: String,
    proxies: ClientAddrResolver,
}

impl HttpsRedirectLayer {
    /// Redirects to HTTPS on `https_port` (443 gives URLs without a port).
    pub fn new(https_port: u16) -> Self {
        HttpsRedirectLayer {
            https_port,
            api_prefix: "/api/".into(),
            proxies: ClientAddrResolver::default(),
        }
    }

    /// Trusts `X-Forwarded-Proto` from these proxies.
    #[must_use]
    pub fn with_trusted_proxies(mut self, proxies: ClientAddrResolver) -> Self {
        self.proxies = proxies;
        self
    }

    /// The HTTPS URL for a request to `host` (the Host header) and `path_and_query`.
    pub fn location(&self, host: &str, path_and_query: &str) -> Option<String> {
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
        let is_api = request.uri().path().starts_with(&self.layer.api_prefix);
        // A redirect would have the client send its credentials again.
        let sends_credentials = request.headers().contains_key(header::AUTHORIZATION);
        let response = if is_api {
            respond(StatusCode::FORBIDDEN, true, "https_required")
        } else if sends_credentials || !matches!(*request.method(), Method::GET | Method::HEAD) {
            tracing::warn!(target: "keycard::security", event = "credentials_over_http", method = %request.method(), "unsafe request over plain HTTP refused");
            respond(StatusCode::FORBIDDEN, false, "This site only accepts forms over HTTPS. Anything you sent was not used; if it was a password, consider changing it.")
        } else {
            let host = request
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            match self
                .layer
                .location(host, &path)
                .and_then(|l| HeaderValue::from_str(&l).ok())
            {
                Some(location) => {
                    let mut response =
                        respond(StatusCode::PERMANENT_REDIRECT, false, "Moved to HTTPS.");
                    response.headers_mut().insert(header::LOCATION, location);
                    response
                }
                None => respond(StatusCode::BAD_REQUEST, false, "Bad Host header."),
            }
        };
        Box::pin(async move { Ok(response) })
    }
}
