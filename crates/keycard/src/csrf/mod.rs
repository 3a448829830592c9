//! Cross-site request forgery protection: an origin check and a synchronizer
//! token (OWASP CSRF Prevention Cheat Sheet: "Fetch Metadata", "Verifying
//! Origin with Standard Headers" and "Synchronizer Token Pattern", together).

#[cfg(feature = "axum")]
mod layer;
#[cfg(feature = "axum")]
mod multipart;
mod token;

#[cfg(feature = "axum")]
pub use layer::{Csrf, CsrfConfig, CsrfLayer};
pub use token::{rotate, token, token_matches, verify};

#[cfg(feature = "axum")]
mod extract {
    use crate::{Session, SessionError};
    use axum::extract::FromRequestParts;
    use http::request::Parts;

    /// A fresh masked CSRF token for this request's session, for templates
    /// (`<input type="hidden" name="csrf_token" value="...">`) and JSON.
    ///
    /// ```no_run
    /// use keycard::csrf::CsrfToken;
    /// async fn form(CsrfToken(token): CsrfToken) -> String {
    ///     format!(r#"<form method="post"><input type="hidden" name="csrf_token" value="{token}"></form>"#)
    /// }
    /// ```
    #[derive(Clone, Debug)]
    pub struct CsrfToken(pub String);

    impl<S: Send + Sync> FromRequestParts<S> for CsrfToken {
        type Rejection = axum::response::Response;

        async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
            use axum::response::IntoResponse;
            let session = Session::from_request_parts(parts, state)
                .await
                .map_err(IntoResponse::into_response)?;
            super::token(&session)
                .await
                .map(CsrfToken)
                .map_err(|e: SessionError| e.into_response())
        }
    }
}

#[cfg(feature = "axum")]
pub use extract::CsrfToken;
