//! `cloakroom serve`: configuration, store selection, and the listener.

use clap::Args;
use cloakroom::{Error, SessionLayer};
use cloakroom_config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Options of `cloakroom serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8888")]
    pub listen: SocketAddr,
    /// Store URL, overriding the configuration: `memory://`,
    /// `redis://HOST:PORT/DB`, `redis+cluster://HOST:PORT,HOST:PORT`,
    /// `redis+sentinel://HOST:PORT,HOST:PORT/MASTERNAME`,
    /// `memcache://HOST:PORT`.
    #[arg(long)]
    pub store: Option<String>,
    /// Configuration file (TOML). `CLOAKROOM_*` variables override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Which app to serve: pycket's seed demo, or the browser showcase.
    #[arg(long, value_enum, default_value = "seed")]
    pub app: App,
}

/// The apps `cloakroom serve` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum App {
    /// `/?name=NAME`, `/detail`, `/login`, `/logout`.
    Seed,
    /// Sign-in form, visit counter, one-time welcome, sign-out.
    Showcase,
}

/// Builds the session layer the configuration describes, with `--store`
/// overriding `storage.url`.
///
/// `listen` decides one default: on a loopback address, where the demo
/// speaks plain HTTP, the cookie's `Secure` flag is off unless the
/// configuration sets it.
pub async fn build_layer(
    config: &Config,
    store_url: Option<&str>,
    listen: SocketAddr,
) -> Result<SessionLayer, Error> {
    let mut config = config.clone();
    config.plain_http_on(listen);
    if let Some(url) = store_url {
        config.storage.url = Some(url.to_owned());
    }
    config.build().await
}

/// Runs the demo server until Ctrl-C.
pub async fn serve(args: ServeArgs) -> Result<(), Error> {
    let config = Config::load(args.config.as_deref())?;
    let layer = build_layer(&config, args.store.as_deref(), args.listen).await?;
    let app = match args.app {
        App::Seed => crate::seed::app(layer),
        App::Showcase => crate::showcase::app(layer),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", args.listen)))?;
    tracing::info!("listening on http://{}", args.listen);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| Error::Config(format!("server error: {e}")))
}
