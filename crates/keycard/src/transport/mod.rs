//! Transport security: HSTS, the plain-HTTP redirect, refusing secrets in
//! URLs, and a cap on header size. Every layer here is built alike: a
//! `FooLayer` holding its settings and the `Foo<S>` service it makes.

mod header_limit;
mod hsts;
mod https_redirect;
mod query_secrets;
#[cfg(feature = "tls")]
pub mod tls;

pub use header_limit::{HeaderLimit, HeaderLimitLayer};
pub use hsts::{Hsts, HstsLayer};
pub use https_redirect::{HttpsRedirect, HttpsRedirectLayer};
pub use query_secrets::{QuerySecrets, QuerySecretsLayer};

use http::{HeaderValue, Response, StatusCode};

/// Where the JSON API lives: refusals there are JSON.
const API_PREFIX: &str = "/api/";

/// A small response: `message` as plain text or, for an API client (`api`
/// is the error's code), `{"error": code, "message": message}`.
pub(crate) fn respond<B: From<String>>(
    status: StatusCode,
    api: Option<&str>,
    message: &str,
) -> Response<B> {
    let (body, content_type) = match api {
        Some(code) => (
            serde_json::json!({ "error": code, "message": message }).to_string(),
            "application/json",
        ),
        None => (message.to_owned(), "text/plain; charset=utf-8"),
    };
    let mut response = Response::new(B::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    response
}

/// A boxed response future, as every service here returns.
pub(crate) type BoxFuture<T, E> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;
