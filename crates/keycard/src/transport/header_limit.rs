//! A cap on the total size of a request's headers.

use super::{respond, BoxFuture};
use http::{Request, Response, StatusCode};
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// Answers 431 (Request Header Fields Too Large, RFC 6585) before any
/// handler runs when the request's header names and values add up to more
/// than the limit (default 16 KiB): oversized cookies and headers are refused
/// cleanly instead of reaching parsers.
///
/// ```
/// use keycard::transport::HeaderLimitLayer;
/// let layer = HeaderLimitLayer::new(8 * 1024);
/// assert_eq!(layer.limit(), 8192);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct HeaderLimitLayer {
    limit: usize,
}

impl Default for HeaderLimitLayer {
    fn default() -> Self {
        HeaderLimitLayer { limit: 16 * 1024 }
    }
}

impl HeaderLimitLayer {
    /// A layer with this limit in bytes.
    pub fn new(limit: usize) -> Self {
        HeaderLimitLayer { limit }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl<S> Layer<S> for HeaderLimitLayer {
    type Service = HeaderLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HeaderLimit {
            inner,
            limit: self.limit,
        }
    }
}

/// The service made by [`HeaderLimitLayer`].
#[derive(Clone, Debug)]
pub struct HeaderLimit<S> {
    inner: S,
    limit: usize,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HeaderLimit<S>
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
        let size: usize = request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if size > self.limit {
            tracing::warn!(target: "keycard::security", event = "headers_too_large", size, "request headers over the limit");
            let api = request.uri().path().starts_with(super::API_PREFIX);
            let response = respond(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                api.then_some("headers_too_large"),
                "Request headers too large.",
            );
            return Box::pin(async move { Ok(response) });
        }
        Box::pin(self.inner.call(request))
    }
}
