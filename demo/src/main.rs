//! keycard-demo: the reference web app. See `keycard-demo --help`.
#![forbid(unsafe_code)]

mod app;
mod cli;
mod prefs;
mod render;
mod routes;
mod stores;
mod users;

use clap::Parser;
use keycard::auth::LoginThrottle;
use keycard::transport::tls::{serve, TlsIdentity};
use keycard::transport::HttpsRedirectLayer;
use keycard::{Binding, ClientAddrResolver, SessionConfig};
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the connection layer reads before refusing: above the app's own
/// 16 KiB limit, so the app answers 431 itself (with HSTS) up to here.
const MAX_HEADER_BYTES: usize = 64 * 1024;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYCARD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("keycard-demo: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: cli::Args) -> Result<(), String> {
    // The data directory holds the TLS key, the key ring and the databases:
    // made for its owner alone (an existing one keeps its permissions).
    let mut data_dir = std::fs::DirBuilder::new();
    data_dir.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut data_dir, 0o700);
    data_dir
        .create(&args.data_dir)
        .map_err(|e| format!("--data-dir {}: {e}", args.data_dir.display()))?;
    let keys_path = args
        .keys
        .clone()
        .unwrap_or_else(|| args.data_dir.join("keys"));
    let keys = stores::key_ring(&keys_path)?;
    let store_timeout = Duration::from_secs(1);
    let users_url = args
        .users
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", args.data_dir.join("users.db").display()));
    let users = users::Users::open(&users_url)
        .await
        .map_err(|e| format!("--users {}: {e}", stores::redact(&users_url)))?;
    let opened = stores::open(
        args.store.as_deref(),
        &args.data_dir,
        &keys,
        store_timeout,
        &users_url,
    )
    .await
    .map_err(|e| format!("--store: {e}"))?;

    let identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => TlsIdentity::from_pem_files(cert, key)
            .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?,
        _ => TlsIdentity::development(&args.data_dir.join("tls"))
            .map_err(|e| format!("--data-dir: cannot make the development certificate: {e}"))?,
    };
    let acceptor = identity
        .acceptor()
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;

    let mut resolver = ClientAddrResolver::default();
    for net in &args.trusted_proxy {
        resolver = resolver.trust(*net);
    }
    if args.idle_timeout > args.absolute_timeout {
        tracing::warn!(
            idle = ?args.idle_timeout,
            absolute = ?args.absolute_timeout,
            "--idle-timeout is longer than --absolute-timeout: sessions end at the absolute timeout"
        );
    }
    let config = SessionConfig::default()
        .with_idle_timeout(args.idle_timeout)
        .with_absolute_timeout(args.absolute_timeout)
        .with_store_timeout(store_timeout);
    let sessions = opened
        .layer
        .with_config(config)
        .with_binding(Binding {
            ip: args.bind_ip,
            ..Binding::default()
        })
        .with_client_resolver(resolver.clone());
    let state = app::AppState {
        users,
        templates: render::templates().map_err(|e| format!("templates: {e}"))?,
        throttle: LoginThrottle::new(opened.store.clone()),
        store: opened.store,
        store_timeout,
        idle_timeout: args.idle_timeout,
        client_side: opened.client_side,
    };
    let https = TcpListener::bind(args.https)
        .await
        .map_err(|e| format!("--https {}: {e}", args.https))?;
    let http = TcpListener::bind(args.http)
        .await
        .map_err(|e| format!("--http {}: {e}", args.http))?;
    // The addresses actually bound (port 0 picks a free one).
    let https_addr = https.local_addr().map_err(|e| format!("--https: {e}"))?;
    let http_addr = http.local_addr().map_err(|e| format!("--http: {e}"))?;
    let app = app::router(state, sessions);
    let redirect = axum::Router::new()
        .fallback(|| async { axum::http::StatusCode::NOT_FOUND })
        .layer(HttpsRedirectLayer::new(https_addr.port()).with_trusted_proxies(resolver))
        // First: a secret in the URL is refused, not copied into a Location.
        .layer(app::query_secrets());

    let (stop, stopped) = watch::channel(false);
    let wait = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let https_server = tokio::spawn(serve(
        https,
        Some(acceptor),
        app,
        MAX_HEADER_BYTES,
        wait(stopped.clone()),
    ));
    let http_server = tokio::spawn(serve(http, None, redirect, MAX_HEADER_BYTES, wait(stopped)));
    let shutdown = shutdown_signal();
    println!("keycard-demo listening on https://{https_addr}/ (and http://{http_addr}/ redirecting to it)");
    tracing::info!(https = %https_addr, http = %http_addr, "listening");

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop.send(true);
    let _ = https_server.await;
    let _ = http_server.await;
    Ok(())
}

/// Registers the SIGTERM and SIGINT handlers now and returns what resolves on
/// either. Called before the URL is printed: a signal sent as soon as the URL
/// appears must be a graceful stop (exit 0), not the default kill.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let handlers = signal(SignalKind::terminate())
            .and_then(|term| signal(SignalKind::interrupt()).map(|interrupt| (term, interrupt)));
        async move {
            match handlers {
                Ok((mut term, mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
