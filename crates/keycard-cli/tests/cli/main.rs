//! The built `keycard` binary, run as an operator runs it: exit statuses,
//! stdout (JSON with `--json`), and the one-line errors on stderr.
//!
//! Store tests need their servers: SQLite always runs; Redis, Redis Cluster
//! and PostgreSQL run when `KEYCARD_TEST_REDIS_URL`,
//! `KEYCARD_TEST_REDIS_CLUSTER_URL` and `KEYCARD_TEST_POSTGRES_URL` are set,
//! and skip loudly otherwise (they fail under `CI=true`).

mod common;
mod cookies;
mod keys;
mod sessions;

use common::keycard;

#[test]
fn usage_errors_exit_2() {
    keycard::<&str>(&[]).usage_error();
    keycard(&["sessions", "list"]).usage_error();
    keycard(&[
        "sessions",
        "sweep",
        "--batch",
        "0",
        "--store",
        "sqlite:x.db",
    ])
    .usage_error();
    keycard(&[
        "sessions",
        "list",
        "--store",
        "sqlite:x.db",
        "--timeout",
        "soon",
    ])
    .usage_error();
    keycard(&[
        "sessions",
        "list",
        "--store",
        "sqlite:x.db",
        "--after",
        "abc",
    ])
    .usage_error();
    keycard(&["cookie", "inspect", "value"]).usage_error();
    keycard(&["cookie", "inspect", "--keys", "k", "--secret", "s", "value"]).usage_error();
    keycard(&["cookie", "inspect", "--signed", "--secret", "s", "value"]).usage_error();
    keycard(&[
        "cookie",
        "inspect",
        "--keys",
        "k",
        "--max-age",
        "1h",
        "value",
    ])
    .usage_error();
    keycard(&["cookie", "seal", "--secret", "s", "--user", "u", "{}"]).usage_error();
    keycard(&["keygen", "--force"]).usage_error();
    keycard(&["keys", "remove", "keys", "not-a-number"]).usage_error();
    keycard(&["nonsense"]).usage_error();
}

/// Every command and subcommand has help, and every flag a description.
#[test]
fn every_command_has_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["keygen"],
        &["keys"],
        &["keys", "rotate"],
        &["keys", "list"],
        &["keys", "remove"],
        &["sessions"],
        &["sessions", "list"],
        &["sessions", "show"],
        &["sessions", "revoke"],
        &["sessions", "revoke-user"],
        &["sessions", "sweep"],
        &["sessions", "stats"],
        &["cookie"],
        &["cookie", "inspect"],
        &["cookie", "seal"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let help = keycard(&args).ok().stdout;
        assert!(help.contains("Usage: keycard"), "{command:?}:\n{help}");
        // Each option, argument and subcommand line holds its name, then a
        // description (on the same line, or indented on the next one).
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let indent = line.len() - line.trim_start().len();
            if !(2..=6).contains(&indent) {
                continue;
            }
            let item = line.trim_start();
            let same_line = item
                .split("  ")
                .filter(|part| !part.trim().is_empty())
                .count()
                >= 2;
            let next_line = lines.get(i + 1).is_some_and(|next| {
                next.len() - next.trim_start().len() > indent + 2 && !next.trim().is_empty()
            });
            assert!(
                same_line || next_line,
                "{command:?}: undocumented `{item}` in:\n{help}"
            );
        }
    }
}
