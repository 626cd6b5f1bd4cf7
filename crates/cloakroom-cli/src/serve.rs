//! `cloakroom serve`: configuration, store selection, and the listener.

use clap::Args;
use cloakroom::{Config, Engine, Error, KeyRing, MemoryStore, SessionLayer};
use cloakroom_memcached::{MemcachedConfig, MemcachedStore};
use cloakroom_redis::{RedisConfig, RedisStore};
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

/// Builds the session layer the configuration describes.
///
/// `listen` decides one default: on a loopback address, where the demo
/// speaks plain HTTP, the cookie's `Secure` flag is off unless the
/// configuration sets it.
pub async fn build_layer(
    config: &Config,
    store_url: Option<&str>,
    listen: SocketAddr,
) -> Result<SessionLayer, Error> {
    let mut cookie = config.cookie_config()?;
    if config.cookies.secure.is_none() && listen.ip().is_loopback() {
        cookie = cookie.secure(false);
        tracing::warn!(
            "plain HTTP on a loopback address: the session cookie's Secure flag is OFF; \
             set cookies.secure = true behind TLS"
        );
    }
    let keys = match config.key_ring()? {
        Some(keys) => keys,
        None => {
            tracing::warn!(
                "no cookie_secret configured: using a random one, so sessions will not \
                 survive a restart; set cookie_secret or CLOAKROOM_COOKIE_SECRET"
            );
            KeyRing::random()
        }
    };
    let url = store_url.or(config.storage.url.as_deref());
    let engine = match url {
        Some(url) => engine_of(url)?,
        None => config.engine,
    };
    let builder = match engine {
        Engine::Memory => {
            let mut store = MemoryStore::new();
            if let Some(max) = config.storage.max_sessions {
                store = store.max_sessions(max);
            }
            SessionLayer::builder(store, keys)
        }
        Engine::Redis => {
            let mut storage = config.storage.clone();
            if let Some(url) = url {
                storage.url = Some(url.to_owned());
            }
            let redis = RedisConfig::from_storage(&storage)?;
            tracing::info!(config = ?redis, "connecting to redis");
            SessionLayer::builder(RedisStore::connect(redis).await?, keys)
        }
        Engine::Memcached => {
            let mut storage = config.storage.clone();
            if let Some(url) = url {
                storage.url = Some(url.to_owned());
            }
            let memcached = MemcachedConfig::from_storage(&storage)?;
            tracing::info!(config = ?memcached, "connecting to memcached");
            let store = MemcachedStore::new(memcached);
            store.ping().await?;
            SessionLayer::builder(store, keys)
        }
    };
    tracing::info!(?engine, "session store ready");
    builder
        .cookie(cookie)
        .expiry(config.expiry_policy())
        .limits(config.limits())
        .build()
}

fn engine_of(url: &str) -> Result<Engine, Error> {
    let scheme = url.split_once("://").map_or(url, |(s, _)| s);
    match scheme {
        "memory" => Ok(Engine::Memory),
        "redis" | "rediss" | "redis+unix" | "redis+cluster" | "redis+sentinel" => Ok(Engine::Redis),
        "memcache" | "memcached" => Ok(Engine::Memcached),
        _ => Err(Error::Config(format!(
            "storage.url / --store: unknown scheme {scheme:?}; expected memory://, redis:// or memcache://"
        ))),
    }
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
