//! Soak run: mixed traffic (register, log in, read, write, log out) against a
//! keycard-demo it starts itself on loopback, for a bounded time; samples the
//! demo's RSS and reports errors and lost writes.
//!
//! ```sh
//! cargo run --release -p keycard-soak -- --seconds 600 --store sqlite
//! cargo run --release -p keycard-soak -- --seconds 600 --store redis://127.0.0.1:6379
//! ```
//! Only 127.0.0.1 is contacted. Every loop is bounded by the deadline.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    writes: AtomicU64,
    lost_writes: AtomicU64,
    logins: AtomicU64,
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

struct Client {
    http: reqwest::Client,
    base: String,
    cookies: std::collections::BTreeMap<String, String>,
}

impl Client {
    async fn send(
        &mut self,
        request: reqwest::RequestBuilder,
        c: &Counters,
    ) -> Option<(u16, String)> {
        c.requests.fetch_add(1, Ordering::Relaxed);
        let header = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = if header.is_empty() {
            request
        } else {
            request.header("cookie", header)
        };
        let response = match request.timeout(Duration::from_secs(10)).send().await {
            Ok(response) => response,
            Err(_) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        for value in response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            if let Some((name, rest)) = value.split(';').next().and_then(|p| p.split_once('=')) {
                if value.contains("Max-Age=0") || rest.is_empty() {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), rest.to_owned());
                }
            }
        }
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        if status >= 500 {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        Some((status, body))
    }

    async fn csrf(&mut self, c: &Counters) -> Option<String> {
        let (_, body) = self
            .send(self.http.get(format!("{}/api/csrf", self.base)), c)
            .await?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json["csrf_token"].as_str().map(str::to_owned)
    }

    async fn form(&mut self, path: &str, fields: &[(&str, &str)], c: &Counters) -> Option<u16> {
        let token = self.csrf(c).await?;
        let mut form = fields.to_vec();
        form.push(("csrf_token", &token));
        let request = self.http.post(format!("{}{path}", self.base)).form(&form);
        self.send(request, c).await.map(|(status, _)| status)
    }
}

async fn worker(id: usize, base: String, deadline: Instant, c: Arc<Counters>) {
    // HTTP/1.1, as docs/soak.md describes (the workspace's reqwest can also speak h2).
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .http1_only()
        .build()
        .expect("a client");
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        let mut client = Client {
            http: http.clone(),
            base: base.clone(),
            cookies: Default::default(),
        };
        let name = format!("soak{id}x{round}x{}", keycard::now_millis() % 1_000_000);
        if client
            .form(
                "/register",
                &[("username", &name), ("password", "soak password 123")],
                &c,
            )
            .await
            != Some(303)
        {
            continue;
        }
        client.form("/logout", &[], &c).await;
        if client
            .form(
                "/login",
                &[("username", &name), ("password", "soak password 123")],
                &c,
            )
            .await
            == Some(303)
        {
            c.logins.fetch_add(1, Ordering::Relaxed);
        }
        for i in 0..20u32 {
            if Instant::now() >= deadline {
                break;
            }
            let _ = client
                .send(client.http.get(format!("{}/", client.base)), &c)
                .await;
            let colour = format!(
                "#{:06x}",
                (id as u32 * 7919 + i * 104_729 + round as u32) & 0xff_ffff
            );
            let Some(token) = client.csrf(&c).await else {
                continue;
            };
            let patch = client
                .http
                .patch(format!("{}/api/preferences", client.base))
                .header("x-csrf-token", token)
                .json(&serde_json::json!({ "background_color": colour }));
            if let Some((200, _)) = client.send(patch, &c).await {
                c.writes.fetch_add(1, Ordering::Relaxed);
                let read = client
                    .send(
                        client.http.get(format!("{}/api/preferences", client.base)),
                        &c,
                    )
                    .await;
                let kept = read
                    .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
                    .is_some_and(|v| v["background_color"] == colour.as_str());
                if !kept {
                    c.lost_writes.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        client.form("/logout", &[], &c).await;
    }
}

#[tokio::main]
async fn main() {
    let seconds: u64 = arg("--seconds", "600").parse().unwrap_or(600).min(3600);
    let workers: usize = arg("--workers", "8").parse().unwrap_or(8).min(64);
    let store = arg("--store", "sqlite");
    let demo = arg("--demo", "target/release/keycard-demo");
    let dir = std::env::temp_dir().join(format!("keycard-soak-{}", keycard::now_millis()));
    let mut command = Command::new(&demo);
    command
        .args([
            "--https",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&dir);
    if store != "sqlite" {
        command.args(["--store", &store]);
    }
    let mut child = command
        .env("KEYCARD_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the demo binary (build it with cargo build --release -p keycard-demo)");
    let stdout = child.stdout.take().expect("stdout");
    let line = BufReader::new(stdout)
        .lines()
        .next()
        .and_then(Result::ok)
        .unwrap_or_default();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("https://127.0.0.1:"))
        .unwrap_or("")
        .trim_end_matches('/')
        .to_owned();
    assert!(!base.is_empty(), "the demo did not start: {line}");
    let pid = child.id();
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..workers)
        .map(|id| tokio::spawn(worker(id, base.clone(), deadline, counters.clone())))
        .collect();
    println!("| t (s) | RSS (MiB) | requests | errors | writes | lost writes |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    let every = Duration::from_secs((seconds / 10).max(1));
    while Instant::now() < deadline {
        tokio::time::sleep(
            every
                .min(deadline.saturating_duration_since(Instant::now()))
                .max(Duration::from_millis(100)),
        )
        .await;
        println!(
            "| {} | {:.1} | {} | {} | {} | {} |",
            started.elapsed().as_secs(),
            rss_kib(pid) as f64 / 1024.0,
            counters.requests.load(Ordering::Relaxed),
            counters.errors.load(Ordering::Relaxed),
            counters.writes.load(Ordering::Relaxed),
            counters.lost_writes.load(Ordering::Relaxed),
        );
    }
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\nstore {store}: {} requests in {}s ({} logins), {} errors, {} writes, {} lost",
        counters.requests.load(Ordering::Relaxed),
        started.elapsed().as_secs(),
        counters.logins.load(Ordering::Relaxed),
        counters.errors.load(Ordering::Relaxed),
        counters.writes.load(Ordering::Relaxed),
        counters.lost_writes.load(Ordering::Relaxed)
    );
}
