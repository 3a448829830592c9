//! Runs the built keycard-demo binary and talks to it over real HTTPS.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Demo {
    child: Child,
    pub https: String,
    pub http: String,
    pub data_dir: std::path::PathBuf,
    owns_dir: bool,
}

pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let bytes: [u8; 8] = keycard::random_bytes().unwrap();
    let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("keycard-demo-{tag}-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Demo {
    pub fn start(args: &[&str]) -> Demo {
        let dir = temp_dir("test");
        let mut demo = Demo::start_in(&dir, args);
        demo.owns_dir = true;
        demo
    }

    /// Starts the demo with its data in `dir` on free ports.
    pub fn start_in(dir: &std::path::Path, args: &[&str]) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keycard-demo"))
            .args([
                "--https",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir)
            .args(args)
            .env("KEYCARD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the demo prints its URL");
        // "keycard-demo listening on https://A/ (and http://B/ redirecting to it)"
        let https = line
            .split_whitespace()
            .find(|w| w.starts_with("https://"))
            .unwrap()
            .trim_end_matches('/')
            .to_owned();
        let http = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap()
            .trim_end_matches('/')
            .to_owned();
        Demo {
            child,
            https,
            http,
            data_dir: dir.to_owned(),
            owns_dir: false,
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// A browser-like client with its own cookie jar (cookies handled by hand so
/// tests can look at every Set-Cookie).
#[derive(Clone)]
pub struct Browser {
    pub base: String,
    pub client: reqwest::Client,
    pub cookies: std::collections::BTreeMap<String, String>,
}

impl Browser {
    /// A client that speaks HTTP/1.1 (as most of the contract's clients do).
    pub fn new(base: &str) -> Self {
        Self::with_client(base, Self::builder().http1_only())
    }

    /// A client that speaks HTTP/2 (negotiated by ALPN), as browsers do.
    pub fn http2(base: &str) -> Self {
        Self::with_client(base, Self::builder())
    }

    fn builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("keycard-contract-test/1.0")
    }

    fn with_client(base: &str, builder: reqwest::ClientBuilder) -> Self {
        let client = builder.build().unwrap();
        Browser {
            base: base.to_owned(),
            client,
            cookies: Default::default(),
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn send(&mut self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let request = if self.cookies.is_empty() {
            request
        } else {
            request.header("cookie", self.cookie_header())
        };
        let response = request.send().await.unwrap();
        for header in response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            let pair = header.split(';').next().unwrap_or("");
            if let Some((name, value)) = pair.split_once('=') {
                if header.contains("Max-Age=0") || value.is_empty() {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        response
    }

    pub async fn get(&mut self, path: &str) -> reqwest::Response {
        let request = self.client.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    pub async fn text(&mut self, path: &str) -> String {
        self.get(path).await.text().await.unwrap()
    }

    pub async fn csrf(&mut self) -> String {
        let body: serde_json::Value = self.get("/api/csrf").await.json().await.unwrap();
        body["csrf_token"].as_str().unwrap().to_owned()
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let token = self.csrf().await;
        let mut form = fields.to_vec();
        form.push(("csrf_token", &token));
        let request = self.client.post(format!("{}{path}", self.base)).form(&form);
        self.send(request).await
    }

    pub async fn register(&mut self, user: &str, password: &str) -> reqwest::Response {
        self.post("/register", &[("username", user), ("password", password)])
            .await
    }

    pub async fn change_password(&mut self, current: &str, new: &str) -> reqwest::Response {
        self.post(
            "/password",
            &[("current_password", current), ("new_password", new)],
        )
        .await
    }

    pub async fn login(&mut self, user: &str, password: &str) -> reqwest::Response {
        self.post("/login", &[("username", user), ("password", password)])
            .await
    }

    /// Logs in with "remember me" ticked.
    pub async fn login_remembered(&mut self, user: &str, password: &str) -> reqwest::Response {
        let fields = [
            ("username", user),
            ("password", password),
            ("remember", "on"),
        ];
        self.post("/login", &fields).await
    }

    pub async fn signed_in_as(&mut self) -> Option<String> {
        let body = self.text("/").await;
        body.split("Signed in as ")
            .nth(1)
            .map(|rest| rest.split('<').next().unwrap_or("").trim().to_owned())
    }
}

pub fn unique(name: &str) -> String {
    let bytes: [u8; 4] = keycard::random_bytes().unwrap();
    format!(
        "{name}{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Loud skip (straight to stderr: the harness hides captured output), or a
/// failure under CI=true where every service must be there.
pub fn skip(what: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what} is required in CI"
    );
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {what} ***\n");
}

pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
