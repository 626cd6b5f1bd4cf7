//! The `cloakroom` command: the seed demo server, and admin commands later.
//!
//! The library half exists so tests can build the same app the binary
//! serves.

pub mod seed;
mod serve;
pub mod showcase;

pub use serve::{App, ServeArgs, build_layer, serve};

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
    Serve(ServeArgs),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), cloakroom::Error> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
