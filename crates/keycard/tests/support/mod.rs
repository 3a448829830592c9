//! Shared helpers for keycard's HTTP tests: a real listener on 127.0.0.1, a
//! store wrapper that counts calls and can be switched off, and cookie helpers.
#![allow(dead_code)]

pub mod auth_app;

use async_trait::async_trait;
use keycard::{
    ApplyOutcome, Change, CreateError, MemoryStore, Record, SessionKey, SessionStore,
    SessionSummary, StoreError, UnixMillis, Update,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Serves `app` on an ephemeral 127.0.0.1 port; returns the base URL.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    format!("http://{addr}")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value the response sets for cookie `name`: `Some("")` when it clears it.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    let all: Vec<&str> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.starts_with(&format!("{name}=")))
        .collect();
    assert!(
        all.len() <= 1,
        "more than one Set-Cookie for {name}: {all:?}"
    );
    all.first().map(|v| {
        v[name.len() + 1..]
            .split(';')
            .next()
            .unwrap_or("")
            .to_owned()
    })
}

pub fn set_cookie_header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// A store that counts calls and fails on demand.
#[derive(Default, Clone)]
pub struct ProbeStore {
    pub inner: Arc<MemoryStore>,
    pub loads: Arc<AtomicUsize>,
    pub writes: Arc<AtomicUsize>,
    pub down: Arc<AtomicBool>,
    pub hang: Arc<AtomicBool>,
    /// `apply_and_load` calls: one round trip that writes and reads.
    pub combined: Arc<AtomicUsize>,
    /// Milliseconds every call waits first (a slow network), so that
    /// concurrent requests interleave their store calls.
    pub latency_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl ProbeStore {
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
    pub fn combined(&self) -> usize {
        self.combined.load(Ordering::SeqCst)
    }
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
    pub fn set_latency(&self, millis: u64) {
        self.latency_ms.store(millis, Ordering::SeqCst);
    }
    async fn gate(&self) -> Result<(), StoreError> {
        let latency = self.latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
        }
        if self.hang.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("probe store is down".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for ProbeStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.gate().await?;
        self.inner.load(key).await
    }
    async fn create(&self, key: &SessionKey, record: &Record) -> Result<(), CreateError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.gate().await?;
        self.inner.create(key, record).await
    }
    async fn apply(&self, key: &SessionKey, update: &Update) -> Result<ApplyOutcome, StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.gate().await?;
        self.inner.apply(key, update).await
    }
    async fn apply_and_load(
        &self,
        key: &SessionKey,
        changes: &[Change],
        now: UnixMillis,
    ) -> Result<Option<Record>, StoreError> {
        self.combined.fetch_add(1, Ordering::SeqCst);
        self.gate().await?;
        self.inner.apply_and_load(key, changes, now).await
    }
    async fn cycle(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        update: &Update,
    ) -> Result<ApplyOutcome, CreateError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.gate().await?;
        self.inner.cycle(old, new, update).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.gate().await?;
        self.inner.delete(key).await
    }
    async fn list_for_user(&self, user_id: &str) -> Result<Vec<SessionSummary>, StoreError> {
        self.gate().await?;
        self.inner.list_for_user(user_id).await
    }
    async fn delete_for_user(
        &self,
        user_id: &str,
        except: Option<&SessionKey>,
    ) -> Result<u64, StoreError> {
        self.gate().await?;
        self.inner.delete_for_user(user_id, except).await
    }
    async fn sweep(&self, now: UnixMillis, limit: usize) -> Result<u64, StoreError> {
        self.inner.sweep(now, limit).await
    }
    async fn list_all(
        &self,
        after: Option<&SessionKey>,
        limit: usize,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        self.inner.list_all(after, limit).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.gate().await
    }
}

/// A minimal cookie jar: remembers what responses set, by name.
#[derive(Default, Clone, Debug)]
pub struct Jar {
    pub cookies: std::collections::BTreeMap<String, String>,
}

impl Jar {
    pub fn update(&mut self, response: &reqwest::Response) {
        for header in response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            let pair = header.split(';').next().unwrap_or("");
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if header.contains("Max-Age=0") || value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }
}
