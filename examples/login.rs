//! Login, logout, a protected page, CSRF-protected forms and login
//! throttling: the Flask-Login experience with axum and keycard.
//!
//! Run: `cargo run -p keycard-examples --example login`, open
//! <http://localhost:3000> and log in as `alice` / `wonderland`.

use async_trait::async_trait;
use axum::http::{header::RETRY_AFTER, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Form, Router};
use keycard::auth::{
    safe_next, Auth, AuthBackend, AuthLayer, AuthUser, CurrentUser, LoginThrottle, MaybeUser,
    PasswordError, PasswordWorkers,
};
use keycard::csrf::{CsrfConfig, CsrfLayer, CsrfToken};
use keycard::{MemoryStore, SessionLayer, SessionStore};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone)]
struct User {
    name: String,
    password_hash: String,
}

impl AuthUser for User {
    fn id(&self) -> String {
        self.name.clone()
    }
    fn auth_hash(&self) -> Vec<u8> {
        self.password_hash.clone().into_bytes()
    }
}

/// Users in memory; a real application asks its database.
#[derive(Clone)]
struct Users {
    by_name: Arc<HashMap<String, User>>,
    passwords: PasswordWorkers,
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

#[async_trait]
impl AuthBackend for Users {
    type User = User;
    type Credentials = LoginForm;
    type Error = PasswordError;

    async fn authenticate(&self, form: LoginForm) -> Result<Option<User>, PasswordError> {
        let user = self.by_name.get(&form.username).cloned();
        // Same work for unknown users and wrong passwords.
        let matches = self
            .passwords
            .verify(
                &form.password,
                user.as_ref().map(|u| u.password_hash.clone()),
            )
            .await?; // overloaded: an error (503), not a wrong password
        Ok(user.filter(|_| matches))
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>, PasswordError> {
        Ok(self.by_name.get(id).cloned())
    }
}

async fn home(MaybeUser(user): MaybeUser<Users>, CsrfToken(token): CsrfToken) -> Html<String> {
    Html(match user {
        Some(user) => format!(
            r#"<p>Signed in as {}. <a href="/private">Private page</a></p>
<form method="post" action="/logout"><input type="hidden" name="csrf_token" value="{token}"><button>Log out</button></form>"#,
            user.name
        ),
        None => r#"<p>Not signed in. <a href="/login">Log in</a></p>"#.to_owned(),
    })
}

async fn login_page(CsrfToken(token): CsrfToken) -> Html<String> {
    Html(format!(
        r#"<form method="post"><input type="hidden" name="csrf_token" value="{token}">
<input name="username" placeholder="alice"> <input name="password" type="password" placeholder="wonderland">
<input type="hidden" name="next" value="/private"><button>Log in</button></form>"#
    ))
}

async fn login(
    auth: Auth<Users>,
    Extension(throttle): Extension<LoginThrottle>,
    Form(form): Form<LoginForm>,
) -> Result<Response, keycard::auth::AuthError> {
    let next = form
        .next
        .as_deref()
        .and_then(safe_next)
        .unwrap_or("/")
        .to_owned();
    let username = form.username.clone();
    let ip = auth.session().client().ip.clone();
    // Before the password is checked (it counts the attempt): while locked,
    // even the right one waits.
    let attempt = match throttle.check(&username, ip.as_deref()).await? {
        Ok(attempt) => attempt,
        Err(locked) => {
            let wait = locked.retry_after_secs().to_string();
            let body = "Too many failed attempts; try again later.";
            return Ok((StatusCode::TOO_MANY_REQUESTS, [(RETRY_AFTER, wait)], body).into_response());
        }
    };
    // A check that could not run (the password pool overloaded) is no
    // failure of the user's: give the attempt back, answer the error.
    let checked = match auth.authenticate(form).await {
        Ok(checked) => checked,
        Err(error) => {
            throttle.cancel(&attempt).await?;
            return Err(error);
        }
    };
    match checked {
        Some(user) => {
            // Check counted the attempt; a good one is taken back.
            throttle.success(&attempt).await?;
            auth.login(&user, false).await?; // rotates the session ID
            Ok(Redirect::to(&next).into_response())
        }
        None => Ok((StatusCode::UNAUTHORIZED, "Invalid username or password.").into_response()),
    }
}

async fn logout(auth: Auth<Users>) -> Result<Redirect, keycard::auth::AuthError> {
    auth.logout().await?;
    Ok(Redirect::to("/"))
}

async fn private(CurrentUser(user): CurrentUser<Users>) -> String {
    // Anonymous visitors never get here: they are sent to /login?next=%2Fprivate.
    format!("Hello {}, this page needs a login.", user.name)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let passwords = PasswordWorkers::per_core();
    let alice = User {
        name: "alice".into(),
        password_hash: passwords
            .hash("wonderland")
            .await
            .map_err(std::io::Error::other)?,
    };
    let users = Users {
        by_name: Arc::new(HashMap::from([("alice".to_owned(), alice)])),
        passwords,
    };
    // Sessions and the throttle's counters share one store.
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let app = Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/private", get(private))
        // Inner to outer: CSRF checks need the session, auth needs the session.
        .layer(Extension(LoginThrottle::new(store.clone())))
        // On routed paths only: an unknown path is a 404, not a CSRF 403.
        .route_layer(CsrfLayer::new(CsrfConfig::default().allow_plain_http()))
        .layer(AuthLayer::new(users))
        .layer(SessionLayer::from_arc(store));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://localhost:3000");
    // The peer address feeds the per-address throttle (and binding, if on).
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await
}
