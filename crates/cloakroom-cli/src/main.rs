use clap::Parser;
use cloakroom_cli::Cli;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.command {
        cloakroom_cli::Command::Serve(_) => "info",
        // The import names each session it could not read, and warns when
        // it found none.
        cloakroom_cli::Command::Pycket(_) => "warn",
        // Admin commands print their result on stdout and one line on
        // failure; the library's log lines would only repeat it
        // (RUST_LOG still turns them on).
        _ => "off",
    };
    cloakroom_cli::init_tracing(level);
    match cloakroom_cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cloakroom: {err}");
            ExitCode::FAILURE
        }
    }
}
