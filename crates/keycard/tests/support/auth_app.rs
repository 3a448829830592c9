//! A small application with keycard's authentication, for the HTTP tests.
#![allow(dead_code)]

use async_trait::async_trait;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use keycard::auth::{
    hash_password, safe_next, verify_dummy, verify_password, Auth, AuthBackend, AuthConfig,
    AuthLayer, AuthUser, CurrentUser, FreshUser, LoginThrottle, MaybeUser, RequireLoginLayer,
};
use keycard::csrf::{CsrfConfig, CsrfLayer, CsrfToken};
use keycard::{Binding, SessionConfig, SessionLayer, SessionStore};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub hash: String,
    pub permissions: Vec<String>,
}

impl AuthUser for User {
    fn id(&self) -> String {
        self.name.clone()
    }
    fn auth_hash(&self) -> Vec<u8> {
        self.hash.as_bytes().to_vec()
    }
    fn permissions(&self) -> Vec<String> {
        self.permissions.clone()
    }
}

#[derive(Clone, Default)]
pub struct Users(pub Arc<Mutex<HashMap<String, User>>>);

impl Users {
    pub fn with(users: &[(&str, &str, &[&str])]) -> Self {
        let map = users
            .iter()
            .map(|(name, password, perms)| {
                let user = User {
                    name: (*name).into(),
                    hash: hash_password(password).unwrap(),
                    permissions: perms.iter().map(|p| (*p).into()).collect(),
                };
                ((*name).to_owned(), user)
            })
            .collect();
        Users(Arc::new(Mutex::new(map)))
    }

    pub fn set_password(&self, name: &str, password: &str) -> User {
        let mut users = self.0.lock().unwrap();
        let user = users.get_mut(name).unwrap();
        user.hash = hash_password(password).unwrap();
        user.clone()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

pub struct Credentials {
    pub name: String,
    pub password: String,
}

#[async_trait]
impl AuthBackend for Users {
    type User = User;
    type Credentials = Credentials;
    type Error = Never;

    async fn authenticate(&self, c: Credentials) -> Result<Option<User>, Never> {
        let user = self.0.lock().unwrap().get(&c.name).cloned();
        Ok(match user {
            Some(user) if verify_password(&c.password, &user.hash) => Some(user),
            Some(_) => None,
            None => {
                verify_dummy(&c.password);
                None
            }
        })
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>, Never> {
        Ok(self.0.lock().unwrap().get(id).cloned())
    }
}

type A = Auth<Users>;

#[derive(Clone)]
pub struct TestState {
    pub users: Users,
    pub throttle: LoginThrottle,
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    remember: Option<String>,
    next: Option<String>,
}

async fn login(State(state): State<TestState>, auth: A, Form(form): Form<LoginForm>) -> Response {
    let ip = auth.session().client().ip.clone();
    let attempt = match state
        .throttle
        .check(&form.username, ip.as_deref())
        .await
        .unwrap()
    {
        Ok(attempt) => attempt,
        Err(t) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", t.retry_after_secs().to_string())],
                "throttled",
            )
                .into_response()
        }
    };
    let credentials = Credentials {
        name: form.username.clone(),
        password: form.password,
    };
    match auth.authenticate(credentials).await.unwrap() {
        Some(user) => {
            state.throttle.success(&attempt).await.unwrap();
            if let Err(error) = auth
                .login(&user, form.remember.as_deref() == Some("on"))
                .await
            {
                return error.into_response();
            }
            let next = form.next.as_deref().and_then(safe_next).unwrap_or("/");
            (StatusCode::SEE_OTHER, [("location", next.to_owned())]).into_response()
        }
        None => (StatusCode::UNAUTHORIZED, "Invalid username or password.").into_response(),
    }
}

/// Credentials checked without throttling, to measure the check itself.
async fn check_credentials(auth: A, Form(form): Form<LoginForm>) -> Response {
    let credentials = Credentials {
        name: form.username,
        password: form.password,
    };
    match auth.authenticate(credentials).await.unwrap() {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => (StatusCode::UNAUTHORIZED, "Invalid username or password.").into_response(),
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    password: String,
}

async fn reauth(
    auth: A,
    CurrentUser(user): CurrentUser<Users>,
    Form(form): Form<PasswordForm>,
) -> Response {
    let checked = auth
        .authenticate(Credentials {
            name: user.name,
            password: form.password,
        })
        .await
        .unwrap();
    match checked {
        Some(user) => {
            auth.reauthenticate(&user).await.unwrap();
            StatusCode::NO_CONTENT.into_response()
        }
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

/// A re-authentication form that (wrongly) takes a user name.
async fn reauth_as(auth: A, Form(form): Form<LoginForm>) -> Response {
    let checked = auth
        .authenticate(Credentials {
            name: form.username,
            password: form.password,
        })
        .await
        .unwrap();
    match checked {
        Some(user) => match auth.reauthenticate(&user).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(error) => error.into_response(),
        },
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn change_password(
    State(state): State<TestState>,
    auth: A,
    FreshUser(user): FreshUser<Users>,
    Form(form): Form<PasswordForm>,
) -> Response {
    let updated = state.users.set_password(&user.name, &form.password);
    auth.password_changed(&updated).await.unwrap();
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Default)]
pub struct Options {
    pub config: SessionConfig,
    pub auth: AuthConfig,
    pub binding: Binding,
    pub resolver: keycard::ClientAddrResolver,
    /// Client-side sessions sealed by this codec (the store then keeps only revocations).
    pub cookie_codec: Option<keycard::codec::SealedCodec>,
}

pub fn app(store: Arc<dyn SessionStore>, users: Users, options: Options) -> Router {
    let state = TestState {
        users: users.clone(),
        throttle: LoginThrottle::new(store.clone()),
    };
    let admin = Router::new()
        .route("/admin", get(|| async { "admin area" }))
        .route_layer(RequireLoginLayer::<Users>::permission("admin"));
    let members = Router::new()
        .route("/members", get(|| async { "members area" }))
        .route_layer(RequireLoginLayer::<Users>::new());
    // Nested routers see their URI without the prefix (axum's `nest`).
    let nested_api = Router::new().route(
        "/me",
        get(|CurrentUser(user): CurrentUser<Users>| async move { user.name }),
    );
    let nested_members = Router::new()
        .route("/panel", get(|| async { "panel" }))
        .route(
            "/fresh",
            get(|FreshUser(user): FreshUser<Users>| async move { user.name }),
        )
        .route_layer(RequireLoginLayer::<Users>::new());
    Router::new()
        .nest("/api/nested", nested_api)
        .nest("/nested", nested_members)
        .route("/public", get(|MaybeUser(user): MaybeUser<Users>| async move { user.map(|u| u.name).unwrap_or_else(|| "anonymous".into()) }))
        .route("/private", get(|CurrentUser(user): CurrentUser<Users>| async move { format!("hello {}", user.name) }))
        .route("/api/private", get(|CurrentUser(user): CurrentUser<Users>| async move { Json(serde_json::json!({"user": user.name})) }))
        .route("/fresh", get(|FreshUser(user): FreshUser<Users>| async move { format!("fresh {}", user.name) }))
        .route("/csrf", get(|CsrfToken(token): CsrfToken| async move { token }))
        .route("/login", post(login))
        .route("/authenticate", post(check_credentials))
        .route("/logout", post(|auth: A| async move { auth.logout().await.unwrap(); StatusCode::SEE_OTHER }))
        .route("/reauth", post(reauth))
        .route("/reauth-as", post(reauth_as))
        .route("/password", post(change_password))
        .route("/write/{key}", post(|Path(key): Path<String>, auth: A| async move { auth.session().insert(&key, true).await.unwrap(); "written" }))
        .route("/sessions", get(|auth: A| async move { Json(auth.sessions().await.unwrap()) }))
        .route("/revoke/{handle}", post(|Path(handle): Path<String>, auth: A| async move { auth.revoke_session(&handle).await.unwrap().to_string() }))
        .route("/login-info", get(|auth: A| async move {
            let info = auth.login_info().await.unwrap();
            let record = auth.session().record().await.unwrap();
            Json(serde_json::json!({
                "login_at": info.as_ref().map(|i| i.login_at),
                "fresh": auth.is_fresh().await.unwrap(),
                "absolute_deadline": record.map(|r| r.absolute_deadline),
            }))
        }))
        .route("/revoke-others", post(|auth: A| async move { auth.revoke_other_sessions().await.unwrap().to_string() }))
        .route("/token", post(|auth: A| async move { auth.issue_token(std::time::Duration::from_secs(3600)).await }))
        .route("/token", axum::routing::delete(|auth: A| async move { auth.revoke_current_token().await.unwrap().to_string() }))
        .merge(admin)
        .merge(members)
        .with_state(state)
        .layer(CsrfLayer::new(CsrfConfig::default().allow_plain_http()))
        .layer(AuthLayer::new(users).with_config(options.auth))
        .layer(
            match options.cookie_codec {
                Some(codec) => SessionLayer::client_side(codec, store),
                None => SessionLayer::from_arc(store),
            }
            .with_config(options.config)
                .with_binding(options.binding)
                .with_client_resolver(options.resolver),
        )
}
