//! The server-rendered pages.

use super::Result;
use crate::app::AppState;
use crate::prefs;
use crate::render::{self, notice, page, Page};
use crate::users::{User, Users};
use axum::extract::{Form, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use keycard::auth::{safe_next, Auth, CurrentUser, FreshUser, Throttled};
use keycard::csrf;
use serde::Serialize;
use serde_json::{Map, Value};

type A = Auth<Users>;

/// Submitted form fields, each name at most once (a form repeating one is
/// refused: which copy counts differs from one parser to the next). Read from
/// `application/x-www-form-urlencoded` (what an HTML form sends) or
/// `multipart/form-data` text fields (what `curl -F` and some clients send;
/// these forms take no files).
pub struct Fields(Vec<(String, String)>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Fields {
    type Rejection = Response;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> std::result::Result<Self, Response> {
        let fields = if is_multipart(request.headers()) {
            multipart_fields(request, state).await?
        } else {
            match Form::<Vec<(String, String)>>::from_request(request, state).await {
                Ok(Form(fields)) => fields,
                Err(rejection) => return Err(bad_form(
                    rejection.status(),
                    "Bad form: send application/x-www-form-urlencoded or multipart/form-data fields.",
                )),
            }
        };
        // A field sent twice is ambiguous (parameter pollution): refused.
        // A set, so a 64 KB body of tiny fields costs linear time.
        if !all_distinct(&fields) {
            return Err(
                (StatusCode::BAD_REQUEST, "Bad form: a field was sent twice.").into_response(),
            );
        }
        Ok(Fields(fields))
    }
}

/// A form that could not be read: too large (413, whatever the encoding), or
/// `problem`.
fn bad_form(status: StatusCode, problem: &'static str) -> Response {
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "Request body too large."
    } else {
        problem
    };
    (status, message).into_response()
}

fn is_multipart(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("multipart/form-data"))
}

/// The text fields of a multipart form, within the app's body limit.
async fn multipart_fields<S: Send + Sync>(
    request: axum::extract::Request,
    state: &S,
) -> std::result::Result<Vec<(String, String)>, Response> {
    use axum::extract::{FromRequest, Multipart};
    let bad = |status| bad_form(status, "Bad form: malformed multipart/form-data body.");
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|rejection| bad(rejection.status()))?;
    let mut fields = Vec::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|error| bad(error.status()))?
    {
        if field.file_name().is_some() {
            return Err((
                StatusCode::BAD_REQUEST,
                "Bad form: this form takes no files.",
            )
                .into_response());
        }
        let name = field.name().unwrap_or_default().to_owned();
        let value = field.text().await.map_err(|error| bad(error.status()))?;
        fields.push((name, value));
    }
    Ok(fields)
}

fn all_distinct(fields: &[(String, String)]) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(fields.len());
    fields.iter().all(|(name, _)| seen.insert(name.as_str()))
}

#[derive(Serialize, Default)]
struct NoExtra {}

/// Builds the common page context: the user's name, preferences, a CSRF
/// token when the page has forms (or a logout button), and a notice. `user`
/// is the signed-in user when the handler has it already; without it the
/// login is looked up, so every page's header (and its logout button) shows
/// who is signed in, the login and 404 pages included.
async fn context<T: Serialize>(
    auth: &A,
    user: Option<&User>,
    with_token: bool,
    message: Option<&'static str>,
    extra: T,
) -> Result<Page<T>> {
    let looked_up;
    let user = match user {
        Some(user) => Some(user),
        None => {
            looked_up = auth.user().await?;
            looked_up.as_ref()
        }
    };
    let prefs = prefs::load(auth.session()).await?;
    let csrf_token = if with_token || user.is_some() {
        Some(csrf::token(auth.session()).await?)
    } else {
        None
    };
    Ok(Page {
        user: user.map(|u| u.username.clone()),
        prefs,
        csrf_token,
        message,
        message_kind: "",
        extra,
    })
}

fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, location.to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response()
}

fn message(state: &AppState, status: StatusCode, page_ctx: Page<MessageExtra>) -> Response {
    page(&state.templates, status, "message.html", &page_ctx)
}

#[derive(Serialize)]
struct MessageExtra {
    heading: &'static str,
    text: String,
}

#[derive(serde::Deserialize)]
pub struct NoticeQuery {
    m: Option<String>,
    next: Option<String>,
}

pub async fn home(
    State(state): State<AppState>,
    auth: A,
    Query(q): Query<NoticeQuery>,
) -> Result<Response> {
    let user = auth.user().await?;
    let ctx = context(
        &auth,
        user.as_ref(),
        false,
        notice(q.m.as_deref()),
        NoExtra {},
    )
    .await?;
    Ok(page(&state.templates, StatusCode::OK, "home.html", &ctx))
}

pub async fn not_found(State(state): State<AppState>, auth: A) -> Result<Response> {
    let ctx = context(
        &auth,
        None,
        false,
        None,
        MessageExtra {
            heading: "Not found",
            text: "There is no page here.".into(),
        },
    )
    .await?;
    Ok(message(&state, StatusCode::NOT_FOUND, ctx))
}

#[derive(Serialize)]
struct FormExtra<'a> {
    error: Option<&'a str>,
    next: &'a str,
}

async fn login_page(
    state: &AppState,
    auth: &A,
    status: StatusCode,
    error: Option<&str>,
    next: &str,
    token: Option<String>,
) -> Result<Response> {
    let mut ctx = context(auth, None, token.is_none(), None, FormExtra { error, next }).await?;
    if token.is_some() {
        ctx.csrf_token = token;
    }
    let mut response = page(&state.templates, status, "login.html", &ctx);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        "no-store"
            .parse()
            .map_err(|_| super::AppError(StatusCode::INTERNAL_SERVER_ERROR.into_response()))?,
    );
    Ok(response)
}

pub async fn login_form(
    State(state): State<AppState>,
    auth: A,
    Query(q): Query<NoticeQuery>,
) -> Result<Response> {
    let next = q.next.as_deref().and_then(safe_next).unwrap_or("");
    login_page(&state, &auth, StatusCode::OK, None, next, None).await
}

fn too_many(throttled: Throttled) -> Response {
    let seconds = throttled.retry_after_secs();
    (
        StatusCode::TOO_MANY_REQUESTS,
        [
            (header::RETRY_AFTER, seconds.to_string()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        format!("Too many failed attempts. Try again in {seconds} seconds."),
    )
        .into_response()
}

const INVALID_LOGIN: &str = "Invalid username or password.";

pub async fn login(
    _: BrowserOnly,
    State(state): State<AppState>,
    auth: A,
    fields: Fields,
) -> Result<Response> {
    let username = fields.get("username").unwrap_or("").trim().to_owned();
    let password = fields.get("password").unwrap_or("").to_owned();
    let next = fields
        .get("next")
        .and_then(safe_next)
        .unwrap_or("")
        .to_owned();
    let remember = fields.get("remember") == Some("on");
    // The token that passed the CSRF check is echoed back, so a failed login's
    // page is byte-identical whether the user exists or not.
    let token = fields.get("csrf_token").map(str::to_owned);
    let ip = auth.session().client().ip.clone();
    let attempt = match state.throttle.check(&username, ip.as_deref()).await? {
        Ok(attempt) => attempt,
        Err(throttled) => {
            tracing::warn!(target: "keycard::security", event = "login_throttled", "login attempt while throttled");
            return Ok(too_many(throttled));
        }
    };
    // No account has a name that registration refuses (so a look-alike
    // such as `alİce`, which a database may fold to `alice`, finds none).
    let user = if !valid_username(&username) || password.is_empty() || password.len() > 1024 {
        if let Err(error) = state.users.check_nobody(&password).await {
            state.throttle.cancel(&attempt).await?;
            return Err(error.into());
        }
        None
    } else {
        match state.users.check(&username, &password).await {
            Ok(user) => user,
            Err(error) => {
                // Not judged (503): not counted against the account.
                state.throttle.cancel(&attempt).await?;
                return Err(error.into());
            }
        }
    };
    let Some(user) = user else {
        // The throttle counted the attempt in `check`.
        tracing::warn!(target: "keycard::security", event = "login_failed", "login failed");
        return login_page(
            &state,
            &auth,
            StatusCode::UNAUTHORIZED,
            Some(INVALID_LOGIN),
            &next,
            token,
        )
        .await;
    };
    state.throttle.success(&attempt).await?;
    auth.login(&user, remember).await?;
    Ok(see_other(if next.is_empty() { "/" } else { &next }))
}

pub async fn register_form(State(state): State<AppState>, auth: A) -> Result<Response> {
    let ctx = context(
        &auth,
        None,
        true,
        None,
        FormExtra {
            error: None,
            next: "",
        },
    )
    .await?;
    Ok(page(
        &state.templates,
        StatusCode::OK,
        "register.html",
        &ctx,
    ))
}

/// The longest username, in characters (all ASCII, so also in bytes).
pub const MAX_USERNAME: usize = 128;

/// Any name a person or a test might pick (`alice`, `user_<uuid>`,
/// `me+tag@example.com`, `Jane Doe`): 1 to 128 printable ASCII characters
/// after trimming. ASCII only, so that every store folds case alike (SQLite's
/// `NOCASE` folds ASCII alone) and no invisible or look-alike character can
/// make two names that read the same.
fn valid_username(name: &str) -> bool {
    (1..=MAX_USERNAME).contains(&name.len()) && name.bytes().all(|b| (b' '..=b'~').contains(&b))
}

pub async fn register(
    _: BrowserOnly,
    State(state): State<AppState>,
    auth: A,
    fields: Fields,
) -> Result<Response> {
    let username = fields.get("username").unwrap_or("").trim();
    let password = fields.get("password").unwrap_or("");
    let error = if !valid_username(username) {
        Some("Usernames are 1 to 128 letters, digits, spaces or ASCII punctuation.")
    } else if password.chars().count() < 8 || password.len() > 1024 {
        Some("Passwords need at least 8 characters.")
    } else {
        None
    };
    let user = match error {
        Some(_) => None,
        None => match state.users.create(username, password).await {
            Ok(user) => Some(user),
            Err(crate::users::UsersError::Taken) => None,
            Err(error) => return Err(error.into()),
        },
    };
    let Some(user) = user else {
        let error = error.unwrap_or("That username is taken.");
        let ctx = context(
            &auth,
            None,
            true,
            None,
            FormExtra {
                error: Some(error),
                next: "",
            },
        )
        .await?;
        return Ok(page(
            &state.templates,
            StatusCode::BAD_REQUEST,
            "register.html",
            &ctx,
        ));
    };
    auth.login(&user, false).await?;
    tracing::info!(target: "keycard::security", event = "registered", user = %user.id, "account created");
    Ok(see_other("/"))
}

/// Logs a browser out (an API token ends with `DELETE /api/tokens/current`:
/// this form's answer clears the browser's cookies and site data).
pub async fn logout(_: BrowserOnly, auth: A) -> Result<Response> {
    auth.logout().await?;
    Ok(see_other("/"))
}

#[derive(Serialize)]
struct AccountExtra {
    login_at: String,
    login_via: String,
    fresh: bool,
    idle: String,
    absolute_deadline: String,
}

pub async fn account(
    State(state): State<AppState>,
    auth: A,
    CurrentUser(user): CurrentUser<Users>,
    Query(q): Query<NoticeQuery>,
) -> Result<Response> {
    let info = auth.login_info().await?;
    let record = auth.session().record().await?;
    let extra = AccountExtra {
        login_at: info
            .as_ref()
            .map(|i| render::utc(i.login_at))
            .unwrap_or_default(),
        login_via: info.as_ref().map(|i| i.via.clone()).unwrap_or_default(),
        fresh: auth.is_fresh().await?,
        idle: format!("{} minutes", state.idle_timeout.as_secs() / 60),
        absolute_deadline: record
            .map(|r| render::utc(r.absolute_deadline))
            .unwrap_or_default(),
    };
    let ctx = context(&auth, Some(&user), true, notice(q.m.as_deref()), extra).await?;
    Ok(page(&state.templates, StatusCode::OK, "account.html", &ctx))
}

pub async fn preferences_form(
    State(state): State<AppState>,
    auth: A,
    Query(q): Query<NoticeQuery>,
) -> Result<Response> {
    let user = auth.user().await?;
    let ctx = context(
        &auth,
        user.as_ref(),
        true,
        notice(q.m.as_deref()),
        FormExtra {
            error: None,
            next: "",
        },
    )
    .await?;
    Ok(page(
        &state.templates,
        StatusCode::OK,
        "preferences.html",
        &ctx,
    ))
}

pub async fn preferences(
    State(state): State<AppState>,
    auth: A,
    fields: Fields,
) -> Result<Response> {
    let mut given = Map::new();
    for field in prefs::FIELDS {
        if let Some(value) = fields.get(field) {
            given.insert(field.to_owned(), Value::from(value));
        }
    }
    if let Err(error) = prefs::save(auth.session(), &given).await? {
        let user = auth.user().await?;
        let ctx = context(
            &auth,
            user.as_ref(),
            true,
            None,
            FormExtra {
                error: Some(&error),
                next: "",
            },
        )
        .await?;
        return Ok(page(
            &state.templates,
            StatusCode::BAD_REQUEST,
            "preferences.html",
            &ctx,
        ));
    }
    Ok(see_other("/preferences?m=saved"))
}

#[derive(Serialize)]
struct SessionRow {
    handle: String,
    user_agent: Option<String>,
    ip: Option<String>,
    created: String,
    last_seen: String,
    current: bool,
}

#[derive(Serialize)]
struct SessionsExtra {
    sessions: Vec<SessionRow>,
    client_side: bool,
}

pub async fn sessions(
    State(state): State<AppState>,
    auth: A,
    CurrentUser(user): CurrentUser<Users>,
    Query(q): Query<NoticeQuery>,
) -> Result<Response> {
    let sessions = auth
        .sessions()
        .await?
        .into_iter()
        .map(|s| SessionRow {
            handle: s.handle,
            user_agent: s.user_agent,
            ip: s.ip,
            created: render::utc(s.created_at),
            last_seen: render::utc(s.last_seen),
            current: s.current,
        })
        .collect();
    let ctx = context(
        &auth,
        Some(&user),
        true,
        notice(q.m.as_deref()),
        SessionsExtra {
            sessions,
            client_side: state.client_side,
        },
    )
    .await?;
    Ok(page(
        &state.templates,
        StatusCode::OK,
        "sessions.html",
        &ctx,
    ))
}

pub async fn revoke(
    _: BrowserOnly,
    State(state): State<AppState>,
    auth: A,
    CurrentUser(user): CurrentUser<Users>,
    fields: Fields,
) -> Result<Response> {
    let Some(handle) = fields.get("session") else {
        return Ok((
            StatusCode::BAD_REQUEST,
            "Bad form: the session field is missing.",
        )
            .into_response());
    };
    let current = auth.session().key().await?.map(|k| k.handle());
    if !auth.revoke_session(handle).await? {
        let ctx = context(
            &auth,
            Some(&user),
            false,
            None,
            MessageExtra {
                heading: "Session not found",
                text: "That session has already ended, or is not yours.".into(),
            },
        )
        .await?;
        return Ok(message(&state, StatusCode::NOT_FOUND, ctx));
    }
    if current.as_deref() == Some(handle) {
        return Ok(see_other("/?m=loggedout"));
    }
    Ok(see_other("/sessions?m=revoked"))
}

/// The login, registration, logout and account forms (revoking sessions,
/// re-authentication, the password) are for browser sessions: a request with
/// an API token skips the CSRF check, so it must not log anyone in (nor set
/// a remember-me cookie), and a stolen token must not end the user's browser
/// sessions or guess at their password. As the first extractor of those
/// handlers it refuses such a request (403) before any other check answers
/// (a token is never a fresh login: without this, a password change by token
/// would be sent to re-authenticate instead of refused).
pub struct BrowserOnly;

impl<S: Send + Sync> FromRequestParts<S> for BrowserOnly {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> std::result::Result<Self, Response> {
        let bearer = parts
            .extensions
            .get::<keycard::Session>()
            .is_some_and(keycard::Session::is_bearer);
        if !bearer {
            return Ok(BrowserOnly);
        }
        Err((
            StatusCode::FORBIDDEN,
            [(header::CACHE_CONTROL, "no-store")],
            "This form is for a signed-in browser, not an API token.",
        )
            .into_response())
    }
}

pub async fn revoke_others(
    _: BrowserOnly,
    auth: A,
    CurrentUser(_user): CurrentUser<Users>,
) -> Result<Response> {
    auth.revoke_other_sessions().await?;
    Ok(see_other("/sessions?m=others"))
}

pub async fn reauth_form(
    State(state): State<AppState>,
    auth: A,
    CurrentUser(user): CurrentUser<Users>,
    Query(q): Query<NoticeQuery>,
) -> Result<Response> {
    let next = q.next.as_deref().and_then(safe_next).unwrap_or("");
    let ctx = context(
        &auth,
        Some(&user),
        true,
        None,
        FormExtra { error: None, next },
    )
    .await?;
    Ok(page(&state.templates, StatusCode::OK, "reauth.html", &ctx))
}

/// What a signed-in user's own password (re-authentication, a password
/// change) turned out to be.
enum OwnPassword {
    Throttled(Throttled),
    Wrong,
    Right(User),
}

/// Checks the signed-in user's own password under the login throttle: it is a
/// guess like a login's, or a stolen fresh session could try without limit.
async fn check_own_password(
    state: &AppState,
    auth: &A,
    user: &User,
    password: &str,
) -> Result<OwnPassword> {
    let ip = auth.session().client().ip.clone();
    let attempt = match state.throttle.check(&user.username, ip.as_deref()).await? {
        Ok(attempt) => attempt,
        Err(throttled) => return Ok(OwnPassword::Throttled(throttled)),
    };
    let checked = match state.users.check(&user.username, password).await {
        Ok(checked) => checked,
        Err(error) => {
            // Not judged (503): not counted against the account.
            state.throttle.cancel(&attempt).await?;
            return Err(error.into());
        }
    };
    match checked {
        Some(fresh) if fresh.id == user.id => {
            state.throttle.success(&attempt).await?;
            Ok(OwnPassword::Right(fresh))
        }
        // The throttle counted the attempt in `check`.
        _ => Ok(OwnPassword::Wrong),
    }
}

pub async fn reauth(
    _: BrowserOnly,
    State(state): State<AppState>,
    auth: A,
    CurrentUser(user): CurrentUser<Users>,
    fields: Fields,
) -> Result<Response> {
    let password = fields.get("password").unwrap_or("");
    let next = fields
        .get("next")
        .and_then(safe_next)
        .unwrap_or("")
        .to_owned();
    match check_own_password(&state, &auth, &user, password).await? {
        OwnPassword::Throttled(throttled) => Ok(too_many(throttled)),
        OwnPassword::Right(fresh) => {
            auth.reauthenticate(&fresh).await?;
            Ok(see_other(if next.is_empty() {
                "/account?m=reauth"
            } else {
                &next
            }))
        }
        OwnPassword::Wrong => {
            tracing::warn!(target: "keycard::security", event = "reauth_failed", user = %user.id, "re-authentication failed");
            let ctx = context(
                &auth,
                Some(&user),
                true,
                None,
                FormExtra {
                    error: Some(INVALID_LOGIN),
                    next: &next,
                },
            )
            .await?;
            Ok(page(
                &state.templates,
                StatusCode::UNAUTHORIZED,
                "reauth.html",
                &ctx,
            ))
        }
    }
}

pub async fn change_password(
    _: BrowserOnly,
    State(state): State<AppState>,
    auth: A,
    FreshUser(user): FreshUser<Users>,
    fields: Fields,
) -> Result<Response> {
    let current = fields.get("current_password").unwrap_or("");
    let new = fields.get("new_password").unwrap_or("");
    let correct = match check_own_password(&state, &auth, &user, current).await? {
        OwnPassword::Throttled(throttled) => return Ok(too_many(throttled)),
        OwnPassword::Right(_) => true,
        OwnPassword::Wrong => {
            tracing::warn!(target: "keycard::security", event = "password_change_failed", user = %user.id, "wrong current password");
            false
        }
    };
    let problem = if !correct {
        Some("Your current password is not correct.")
    } else if new.chars().count() < 8 || new.len() > 1024 {
        Some("The new password needs at least 8 characters.")
    } else {
        None
    };
    if let Some(problem) = problem {
        let ctx = context(
            &auth,
            Some(&user),
            false,
            None,
            MessageExtra {
                heading: "Password not changed",
                text: problem.into(),
            },
        )
        .await?;
        return Ok(message(&state, StatusCode::BAD_REQUEST, ctx));
    }
    let updated = state.users.set_password(&user, new).await?;
    auth.password_changed(&updated).await?;
    Ok(see_other("/account?m=password"))
}
