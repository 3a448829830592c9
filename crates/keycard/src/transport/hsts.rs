//! `Strict-Transport-Security` on every response of the HTTPS listener.

use super::BoxFuture;
use http::header::STRICT_TRANSPORT_SECURITY;
use http::{HeaderValue, Request, Response};
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// Adds `Strict-Transport-Security` (default `max-age=63072000;
/// includeSubDomains`: two years, as OWASP's HSTS Cheat Sheet recommends) to
/// every response. Install it on the HTTPS listener only: RFC 6797 §7.2 says
/// the header is ignored over plain HTTP, and sending it there is misleading.
///
/// ```
/// use keycard::transport::HstsLayer;
/// let layer = HstsLayer::default().preload();
/// assert_eq!(layer.value(), "max-age=63072000; includeSubDomains; preload");
/// ```
#[derive(Clone, Debug)]
pub struct HstsLayer {
    value: HeaderValue,
}

impl Default for HstsLayer {
    fn default() -> Self {
        HstsLayer {
            value: HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        }
    }
}

impl HstsLayer {
    /// Adds `preload` (only once the site is ready for the browsers' preload lists).
    #[must_use]
    pub fn preload(self) -> Self {
        let value = format!("{}; preload", self.value());
        HstsLayer {
            value: HeaderValue::from_str(&value).unwrap_or(self.value),
        }
    }

    /// The header value sent.
    pub fn value(&self) -> &str {
        self.value.to_str().unwrap_or_default()
    }
}

impl<S> Layer<S> for HstsLayer {
    type Service = Hsts<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Hsts {
            inner,
            value: self.value.clone(),
        }
    }
}

/// The service made by [`HstsLayer`].
#[derive(Clone, Debug)]
pub struct Hsts<S> {
    inner: S,
    value: HeaderValue,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Hsts<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let future = self.inner.call(request);
        let value = self.value.clone();
        Box::pin(async move {
            let mut response = future.await?;
            response
                .headers_mut()
                .insert(STRICT_TRANSPORT_SECURITY, value);
            Ok(response)
        })
    }
}
