//! The `cloakroom` command: the seed demo server, and the admin commands
//! (`sessions`, `sql schema`, `pycket import`).
//!
//! The library half exists so tests can build the same app the binary
//! serves.

mod pycket;
pub mod seed;
mod serve;
mod sessions;
pub mod showcase;
mod sql;

pub use pycket::{PycketArgs, pycket};
pub use serve::{App, ServeArgs, build_layer, serve};
pub use sessions::{SessionsArgs, sessions};
pub use sql::{SqlArgs, sql};

use clap::{Parser, Subcommand};

/// Server-side HTTP sessions: the demo server.
#[derive(Debug, Parser)]
#[command(name = "cloakroom", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the seed demo: `/?name=NAME` stores it, `/detail` shows it.
    ///
    /// With `[pycket] mode` (`CLOAKROOM_PYCKET_MODE=share|migrate`), beside
    /// a Tornado app on pycket: sharing its sessions, or importing them.
    Serve(ServeArgs),
    /// List and end users' sessions in the store.
    Sessions(SessionsArgs),
    /// The SQL stores' schema.
    Sql(SqlArgs),
    /// The bridge from pycket: import its sessions in bulk.
    Pycket(PycketArgs),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => Ok(serve(args).await?),
        Command::Sessions(args) => sessions(args).await,
        Command::Sql(args) => Ok(sql(args)?),
        Command::Pycket(args) => Ok(pycket(args).await?),
    }
}

/// What a `cloakroom` command fails with.
#[derive(Debug)]
pub enum CliError {
    /// The store or the configuration failed.
    Session(cloakroom::Error),
    /// There was nothing to list or end: one line on stderr, a non-zero
    /// exit, as `grep` does when it finds nothing.
    NotFound(String),
}

impl From<cloakroom::Error> for CliError {
    fn from(e: cloakroom::Error) -> Self {
        CliError::Session(e)
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Session(e) => e.fmt(f),
            CliError::NotFound(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for CliError {}

/// Logs to stderr, filtered by `RUST_LOG` (default `default`: `info` for
/// the server, `off` for the admin commands, whose output is on stdout).
pub fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
