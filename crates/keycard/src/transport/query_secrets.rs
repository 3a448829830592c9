//! Refusing requests that carry secrets in the URL.

use super::{respond, BoxFuture};
use http::{Request, Response, StatusCode};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// Answers 400 before any handler runs when the query string has a parameter
/// named like a secret (default: `password`, `csrf_token`, `token`,
/// `session`; compared case-insensitively, after percent-decoding). URLs end
/// up in logs, browser history and `Referer` headers (OWASP ASVS 5.0 V14.2.1).
/// The value is never logged.
///
/// ```
/// use keycard::transport::QuerySecretsLayer;
/// let layer = QuerySecretsLayer::default().also("api_key");
/// assert!(layer.names().contains(&"api_key".to_string()));
/// ```
#[derive(Clone, Debug)]
pub struct QuerySecretsLayer {
    names: Arc<Vec<String>>,
}

impl Default for QuerySecretsLayer {
    fn default() -> Self {
        QuerySecretsLayer {
            names: Arc::new(
                ["password", "csrf_token", "token", "session"]
                    .map(String::from)
                    .to_vec(),
            ),
        }
    }
}

impl QuerySecretsLayer {
    /// Refuses exactly these names instead of the defaults.
    pub fn with_names(names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        QuerySecretsLayer {
            names: Arc::new(names.into_iter().map(|n| n.into().to_lowercase()).collect()),
        }
    }

    /// Refuses one more name.
    #[must_use]
    pub fn also(self, name: impl Into<String>) -> Self {
        let mut names = (*self.names).clone();
        names.push(name.into().to_lowercase());
        QuerySecretsLayer {
            names: Arc::new(names),
        }
    }

    /// The refused names.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

impl<S> Layer<S> for QuerySecretsLayer {
    type Service = QuerySecrets<S>;

    fn layer(&self, inner: S) -> Self::Service {
        QuerySecrets {
            inner,
            names: self.names.clone(),
        }
    }
}

/// The service made by [`QuerySecretsLayer`].
#[derive(Clone, Debug)]
pub struct QuerySecrets<S> {
    inner: S,
    names: Arc<Vec<String>>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for QuerySecrets<S>
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
        if let Some(query) = request.uri().query() {
            let found = form_urlencoded::parse(query.as_bytes())
                .map(|(name, _)| name.to_lowercase())
                .find(|name| self.names.contains(name));
            if let Some(name) = found {
                tracing::warn!(target: "keycard::security", event = "secret_in_url", parameter = %name, path = request.uri().path(), "request with a secret in the query string refused");
                let api = request.uri().path().starts_with(super::API_PREFIX);
                let response = respond(
                    StatusCode::BAD_REQUEST,
                    api.then_some("secret_in_url"),
                    "Secrets must not be sent in the URL: send them in the request body.",
                );
                return Box::pin(async move { Ok(response) });
            }
        }
        Box::pin(self.inner.call(request))
    }
}
