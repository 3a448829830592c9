//! A visit counter and a background-colour preference, kept in a server-side
//! session (the in-memory store).
//!
//! Run: `cargo run -p keycard-examples --example counter`, then open
//! <http://localhost:3000> in Chrome or Firefox (they accept the `Secure`,
//! `__Host-` session cookie over plain HTTP from localhost; a client that
//! does not needs HTTPS).

use axum::extract::Form;
use axum::response::{Html, Redirect};
use axum::routing::get;
use axum::Router;
use keycard::{MemoryStore, Session, SessionError, SessionLayer};
use serde::Deserialize;

const COLOURS: [&str; 4] = ["#ffffff", "#fdf6e3", "#e8f4ff", "#eafbea"];

async fn home(session: Session) -> Result<Html<String>, SessionError> {
    let visits = session.increment("visits", 1).await?;
    let colour: String = session
        .get("background")
        .await?
        .unwrap_or_else(|| COLOURS[0].to_owned());
    let options: String = COLOURS
        .iter()
        .map(|c| {
            format!(
                r#"<option value="{c}"{}>{c}</option>"#,
                if *c == colour { " selected" } else { "" }
            )
        })
        .collect();
    Ok(Html(format!(
        r#"<!doctype html><title>keycard counter</title>
<body style="background:{colour};font-family:sans-serif">
<h1>You have visited this page {visits} time{s}.</h1>
<form method="post" action="/background"><select name="colour">{options}</select> <button>Set background</button></form>
<form method="post" action="/forget"><button>Forget me</button></form>"#,
        s = if visits == 1 { "" } else { "s" },
    )))
}

#[derive(Deserialize)]
struct Background {
    colour: String,
}

async fn set_background(
    session: Session,
    Form(form): Form<Background>,
) -> Result<Redirect, SessionError> {
    // Only known values are stored: the colour is echoed into a style attribute.
    if COLOURS.contains(&form.colour.as_str()) {
        session.insert("background", form.colour).await?;
    }
    Ok(Redirect::to("/"))
}

async fn forget(session: Session) -> Result<Redirect, SessionError> {
    session.destroy().await?;
    Ok(Redirect::to("/"))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = Router::new()
        .route("/", get(home))
        .route("/background", axum::routing::post(set_background))
        .route("/forget", axum::routing::post(forget))
        .layer(SessionLayer::new(MemoryStore::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://localhost:3000");
    axum::serve(listener, app).await
}
