//! Finding the test server, and databases of a test's own.

#![allow(dead_code)] // each test binary uses a different part

use keycard::testing::fresh_key;
use keycard_postgres::PostgresStore;
use std::io::Write;

const URL_VAR: &str = "KEYCARD_TEST_POSTGRES_URL";

/// Whether a missing service must fail the run rather than skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skips loudly, or fails under `CI=true`, where a missing service is a bug.
pub fn skip(test: &str, why: &str) {
    if in_ci() {
        panic!("{test}: {why}, and CI=true: this test must run in CI");
    }
    // Straight to the stderr handle, not `eprintln!`, which the test harness
    // captures and hides for a passing test: a skip must be seen.
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED {test}: {why} ***\n");
}

/// The test server's URL, or `None` (after a loud SKIP) when it is not set.
pub fn test_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip(
                test,
                &format!("{URL_VAR} is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"),
            );
            None
        }
    }
}

/// A store on the shared test database, for the conformance kit.
pub async fn shared_store() -> Option<PostgresStore> {
    let url = test_url("conformance")?;
    Some(PostgresStore::connect(&url).await.unwrap())
}

/// Replaces the database name at the end of a URL.
fn with_database(url: &str, database: &str) -> String {
    let (base, _) = url.split_once('?').unwrap_or((url, ""));
    let cut = base
        .rfind('/')
        .filter(|&i| i > "postgres://".len())
        .unwrap_or(base.len());
    format!("{}/{database}", &base[..cut])
}

/// A fresh database on the test server, for tests that count rows or watch
/// a migration run: the shared one has other tests' rows in it.
pub struct TempDatabase {
    admin: tokio_postgres::Client,
    pub name: String,
    pub url: String,
}

impl TempDatabase {
    pub async fn create(url: &str) -> Self {
        let (admin, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let name = format!("keycard_test_{}", &fresh_key().to_hex()[..12]);
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = with_database(url, &name);
        TempDatabase { admin, name, url }
    }

    pub async fn drop_now(self) {
        self.admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .unwrap();
    }
}
