//! Running the built `keycard` binary, and finding the test servers.

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
    pub args: Vec<String>,
}

impl Run {
    /// Asserts exit status 0 and returns the run.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "keycard {:?} failed:\n{}",
            self.args, self.stderr
        );
        self
    }

    /// Asserts exit status 0 and parses stdout as one JSON document.
    #[track_caller]
    pub fn json(self) -> Value {
        let run = self.ok();
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
            panic!(
                "keycard {:?}: stdout is not JSON ({e}):\n{}",
                run.args, run.stdout
            )
        })
    }

    /// Asserts exit status 1 with one `keycard: ` line on stderr containing
    /// `needle`, and nothing on stdout.
    #[track_caller]
    pub fn fails_with(self, needle: &str) -> Self {
        assert_eq!(
            self.code, 1,
            "keycard {:?}: expected exit 1, stdout:\n{}\nstderr:\n{}",
            self.args, self.stdout, self.stderr
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.starts_with("keycard: warning:"))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "keycard {:?}: expected one line on stderr:\n{}",
            self.args,
            self.stderr
        );
        assert!(lines[0].starts_with("keycard: "), "{}", self.stderr);
        assert!(
            self.stderr.contains(needle),
            "keycard {:?}: stderr lacks {needle:?}:\n{}",
            self.args,
            self.stderr
        );
        assert!(
            self.stdout.is_empty(),
            "keycard {:?}: stdout not empty:\n{}",
            self.args,
            self.stdout
        );
        self
    }

    /// Asserts clap's usage error (exit status 2).
    #[track_caller]
    pub fn usage_error(self) -> Self {
        assert_eq!(
            self.code, 2,
            "keycard {:?}: expected exit 2:\n{}{}",
            self.args, self.stdout, self.stderr
        );
        self
    }
}

/// Runs `keycard ARGS` with nothing on stdin.
pub fn keycard<S: AsRef<str>>(args: &[S]) -> Run {
    keycard_with_stdin(args, None)
}

/// Runs `keycard ARGS`, writing `stdin` to it when given.
pub fn keycard_with_stdin<S: AsRef<str>>(args: &[S], stdin: Option<&str>) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keycard"))
        .args(&args)
        // The environment must not choose a store or a secret for a test.
        .env_remove("KEYCARD_STORE")
        .env_remove("KEYCARD_FLASK_SECRET")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the keycard binary runs");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
        took: started.elapsed(),
        args,
    }
}

/// Whether a missing service must fail the run rather than skip.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The URL in `var`, or `None` after a loud message (written to the real
/// stderr: the harness hides `eprintln!` of a passing test). Under
/// `CI=true` a missing service is a failure: a green run must mean the store
/// was tested.
pub fn service_url(test: &str, var: &str, example: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                !in_ci(),
                "{test}: {var} is not set but CI=true: this test must run in CI"
            );
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED {test}: {var} is not set (e.g. {example}), so it did not run ***\n"
            );
            None
        }
    }
}

/// A random lower-case hex string of `n` bytes, for names of a test's own.
pub fn unique(n: usize) -> String {
    let key = keycard::SessionId::generate().unwrap().key().to_hex();
    key[..n * 2].to_owned()
}
