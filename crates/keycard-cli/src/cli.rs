//! The command line: every command, subcommand and flag, with the help text
//! `--help` prints (the doc comments).

use clap::{ArgGroup, Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// keycard: session keys, server-side sessions and session cookies from the shell.
///
/// Exit status: 0 on success, 1 when the command failed (a store, file or
/// cookie problem, named on stderr as `keycard: ...`), 2 on a usage error.
#[derive(Debug, Parser)]
#[command(name = "keycard", version, propagate_version = true)]
pub struct Cli {
    /// Print one JSON document on stdout instead of text (for scripts).
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a new key ring (one fresh key): print it, or write it to a file (mode 0600).
    Keygen(KeygenArgs),
    /// Rotate, list or remove the keys of a key ring file.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// List, show, revoke and sweep the sessions of a server-side store.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Inspect or make session cookies (keycard sealed or signed, or Flask).
    #[command(subcommand)]
    Cookie(CookieCommand),
}

/// `keycard keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Write the ring to FILE (created with mode 0600) instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Replace FILE if it exists (its keys are lost: every cookie they sealed stops opening).
    #[arg(long, requires = "out")]
    pub force: bool,
    /// Print the ring as a `KEYCARD_KEYS` environment value (`id:key,...`) instead of the file format.
    #[arg(long, conflicts_with = "out")]
    pub env: bool,
}

/// `keycard keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a fresh key as the newest (it seals from now on); the old keys still open.
    Rotate {
        /// The key ring file, rewritten atomically.
        file: PathBuf,
    },
    /// List the key IDs of a ring, oldest first (never the key bytes).
    List {
        /// The key ring file.
        file: PathBuf,
    },
    /// Remove an old key: cookies it sealed stop opening (the newest key cannot go).
    Remove {
        /// The key ring file, rewritten atomically.
        file: PathBuf,
        /// The ID of the key to remove (see `keycard keys list`).
        id: u16,
    },
}

/// Where the sessions are: shared by every `keycard sessions` subcommand.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The session store: sqlite:PATH, redis://HOST:PORT[/DB], redis+cluster://HOST:PORT,HOST:PORT, postgres://USER@HOST/DB.
    // Checked by `StoreUrl::parse` once parsed, not as a value parser: clap
    // would repeat the URL, and the password in it, in its error.
    #[arg(
        long,
        value_name = "URL",
        env = "KEYCARD_STORE",
        hide_env_values = true
    )]
    pub store: String,
    /// How long to wait for the store to answer when connecting (e.g. 3s, 500ms).
    #[arg(long, value_name = "DUR", default_value = "3s", value_parser = parse_positive_duration)]
    pub timeout: Duration,
    /// The key prefix of a Redis store, if the application set one.
    #[arg(long, value_name = "PREFIX", default_value = keycard_redis::DEFAULT_PREFIX)]
    pub redis_prefix: String,
}

/// `keycard sessions ...`.
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List live sessions (and remember-me series, bearer tokens, ...) as a table.
    List(ListArgs),
    /// Show one session's metadata and data keys.
    Show(ShowArgs),
    /// End one session (and every request that presents its ID).
    Revoke(RevokeArgs),
    /// End every session of a user, optionally but one.
    RevokeUser(RevokeUserArgs),
    /// Delete expired records, in batches, until none are left.
    Sweep(SweepArgs),
    /// Count live records by kind and by user, and expired ones not yet swept.
    Stats(StatsArgs),
}

impl SessionsCommand {
    /// The store options every subcommand has.
    pub fn store_args(&self) -> &StoreArgs {
        match self {
            SessionsCommand::List(args) => &args.store,
            SessionsCommand::Show(args) => &args.store,
            SessionsCommand::Revoke(args) => &args.store,
            SessionsCommand::RevokeUser(args) => &args.store,
            SessionsCommand::Sweep(args) => &args.store,
            SessionsCommand::Stats(args) => &args.store,
        }
    }
}

/// `keycard sessions list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only this user's records.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Show at most N records (0: all of them).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: usize,
    /// Start after this store key (the `next_after` of a previous page).
    #[arg(long, value_name = "KEY", value_parser = parse_full_key)]
    pub after: Option<keycard::SessionKey>,
}

/// `keycard sessions show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The session: its handle (32 hex digits, or a unique prefix of 8 or more) or its 64-hex store key.
    #[arg(value_name = "HANDLE_OR_KEY")]
    pub session: String,
    /// Also print the data values (keycard's CSRF secret stays hidden).
    #[arg(long)]
    pub values: bool,
}

/// `keycard sessions revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The session: its handle (32 hex digits, or a unique prefix of 8 or more) or its 64-hex store key.
    #[arg(value_name = "HANDLE_OR_KEY")]
    pub session: String,
}

/// `keycard sessions revoke-user`.
#[derive(Debug, Args)]
pub struct RevokeUserArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The user whose records end.
    #[arg(value_name = "USER")]
    pub user: String,
    /// Keep this session of the user (handle or key), e.g. the one in use.
    #[arg(long, value_name = "HANDLE_OR_KEY")]
    pub except: Option<String>,
}

/// `keycard sessions sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Delete at most N records per statement (short statements keep the store responsive).
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
}

/// `keycard sessions stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// How many of the users with the most records to show.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
}

/// `keycard cookie ...`.
#[derive(Debug, Subcommand)]
pub enum CookieCommand {
    /// Verify and decode a cookie value; print its data, or why it is rejected.
    Inspect(InspectArgs),
    /// Make a cookie value from a JSON object of data (for tests and migrations).
    Seal(SealArgs),
}

/// The key material of `keycard cookie`: a keycard key ring or a Flask secret.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("codec").required(true).args(["keys", "secret"])))]
pub struct CodecArgs {
    /// A keycard key ring file: the cookie is a keycard sealed (or, with --signed, signed) cookie.
    #[arg(long, value_name = "FILE")]
    pub keys: Option<PathBuf>,
    /// A Flask SECRET_KEY: the cookie is a Flask session cookie (prefer the environment variable).
    #[arg(
        long,
        value_name = "S",
        env = "KEYCARD_FLASK_SECRET",
        hide_env_values = true
    )]
    pub secret: Option<String>,
    /// A keycard signed cookie (readable by the client, not forgeable) instead of a sealed one.
    #[arg(long, conflicts_with = "secret")]
    pub signed: bool,
    /// The cookie name the value is bound to [default: __Host-keycard, or session for Flask].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The codec purpose the value was sealed for (keycard: session, remember, ...).
    #[arg(
        long,
        value_name = "PURPOSE",
        default_value = "session",
        conflicts_with = "secret"
    )]
    pub purpose: String,
}

/// `keycard cookie inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub codec: CodecArgs,
    /// A Flask SECRET_KEY_FALLBACKS entry: an older secret that still verifies (repeatable).
    #[arg(long, value_name = "S", conflicts_with = "keys")]
    pub fallback: Vec<String>,
    /// Flask's PERMANENT_SESSION_LIFETIME: reject older cookies (e.g. 31d; `none` skips the check).
    #[arg(long, value_name = "DUR", default_value = "31d", value_parser = parse_max_age, conflicts_with = "keys")]
    pub max_age: MaxAge,
    /// The cookie: its value, `name=value`, or a whole Cookie header as a browser shows it; `-` reads stdin.
    #[arg(value_name = "VALUE")]
    pub value: String,
}

/// `keycard cookie seal`.
#[derive(Debug, Args)]
pub struct SealArgs {
    #[command(flatten)]
    pub codec: CodecArgs,
    /// The logged-in user to record in a keycard session (the auth layer also wants `keycard.auth`).
    #[arg(long, value_name = "USER", conflicts_with = "secret")]
    pub user: Option<String>,
    /// Idle timeout of a keycard session.
    #[arg(long, value_name = "DUR", default_value = "30m", value_parser = parse_positive_duration, conflicts_with = "secret")]
    pub idle_timeout: Duration,
    /// Absolute timeout of a keycard session.
    #[arg(long, value_name = "DUR", default_value = "8h", value_parser = parse_positive_duration, conflicts_with = "secret")]
    pub absolute_timeout: Duration,
    /// The session data: a JSON object (Flask: tagged JSON, as `inspect` prints it); `-` reads stdin.
    #[arg(value_name = "JSON")]
    pub data: String,
}

/// A Flask maximum cookie age, or none.
#[derive(Clone, Copy, Debug)]
pub enum MaxAge {
    /// Reject cookies signed longer ago.
    Limit(Duration),
    /// No age check (for old cookies and fixed test vectors).
    Unlimited,
}

fn parse_max_age(text: &str) -> Result<MaxAge, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(MaxAge::Unlimited);
    }
    keycard::parse_duration(text).map(MaxAge::Limit)
}

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match keycard::parse_duration(text)? {
        d if d.is_zero() => Err("must be more than zero".into()),
        d => Ok(d),
    }
}

fn parse_full_key(text: &str) -> Result<keycard::SessionKey, String> {
    keycard::SessionKey::from_hex(&text.to_ascii_lowercase())
        .ok_or_else(|| "expected a store key: 64 hex digits".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn max_age_reads_durations_and_none() {
        assert!(matches!(parse_max_age("none"), Ok(MaxAge::Unlimited)));
        assert!(matches!(parse_max_age("2h"), Ok(MaxAge::Limit(d)) if d.as_secs() == 7200));
        assert!(parse_max_age("soon").is_err());
        assert!(parse_positive_duration("0s").is_err());
    }
}
