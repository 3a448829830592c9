//! `keycard`: key rings, server-side sessions and session cookies from the shell.
//!
//! ```text
//! keycard keygen --out keys                      # a new key ring, mode 0600
//! keycard keys rotate keys                       # add a key; old cookies still open
//! keycard sessions list --store sqlite:data/sessions.db
//! keycard sessions revoke-user alice --store redis://127.0.0.1:6379
//! keycard cookie inspect --keys keys '__Host-keycard=AQAB...'
//! ```
//!
//! See `docs/cli.md` for every command. Exit status: 0 on success, 1 when
//! the command failed (one `keycard: ...` line on stderr), 2 on a usage error.
#![forbid(unsafe_code)]

mod cli;
mod cookie;
mod error;
mod keys;
mod output;
mod sessions;
mod store_url;
mod view;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use cli::{Cli, Command, CookieCommand};
use error::Failure;
use std::io::Write;
use std::process::ExitCode;
use store_url::StoreUrl;

fn main() -> ExitCode {
    // Usage errors exit here with status 2 (and --help, --version with 0).
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let _ = writeln!(std::io::stderr(), "keycard: {failure}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Keygen(args) => keys::keygen(args, cli.json),
        Command::Keys(command) => keys::keys(command, cli.json),
        Command::Cookie(CookieCommand::Inspect(args)) => cookie::inspect(args),
        Command::Cookie(CookieCommand::Seal(args)) => cookie::seal(args, cli.json),
        Command::Sessions(command) => {
            let url = StoreUrl::parse(&command.store_args().store).unwrap_or_else(|why| {
                // A usage error (status 2), but without the URL itself:
                // clap would print the password in it.
                Cli::command()
                    .error(
                        ErrorKind::ValueValidation,
                        format!("invalid value for --store: {why}"),
                    )
                    .exit()
            });
            // One thread is plenty for one operator's command; the SQLite
            // store's blocking calls still get tokio's blocking pool.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::new(format!("cannot start the async runtime: {e}")))?;
            runtime.block_on(sessions::run(command, &url, cli.json))
        }
    }
}
