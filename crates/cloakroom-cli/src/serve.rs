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
    /// `memcache://HOST:PORT`, `postgres://USER@HOST:PORT/DB`,
    /// `sqlite://PATH`; `rediss://…` in a build with the `tls` feature.
    #[arg(long)]
    pub store: Option<String>,
    /// Configuration file (TOML). `CLOAKROOM_*` variables override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Which app to serve: pycket's seed demo, or the browser showcase.
    #[arg(long, value_enum, default_value = "seed")]
    pub app: App,
    /// Also serve Prometheus metrics at `http://ADDR/metrics`, on this
    /// separate listener (never on the app's own port).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
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
/// configuration sets it, and a warning says so once the layer is built.
pub async fn build_layer(
    config: &Config,
    store_url: Option<&str>,
    listen: SocketAddr,
) -> Result<SessionLayer, Error> {
    let mut config = config.clone();
    let relaxed = config.plain_http_on(listen);
    if let Some(url) = store_url {
        config.storage.url = Some(url.to_owned());
    }
    let layer = config.build().await?;
    if relaxed {
        // Only now: a configuration that fails to build says that alone.
        tracing::warn!("{}", cloakroom_config::PLAIN_HTTP_WARNING);
    }
    Ok(layer)
}

/// Installs the Prometheus recorder and serves its text at `/metrics` on
/// `addr`. Store call durations become histograms with buckets from
/// 100 µs to 2.5 s.
async fn serve_metrics(addr: SocketAddr) -> Result<(), Error> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let buckets = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".to_owned()), &buckets)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| Error::Config(format!("metrics: {e}")))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {addr} for metrics: {e}")))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        // Histograms are drained into their buckets here.
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
            }
        }),
    );
    // The bound address: with port 0 the system picked it.
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!("metrics on http://{bound}/metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(())
}

/// The pycket bridge `[pycket]` asks for.
enum Bridge {
    Off,
    Migrate(cloakroom_pycket::MigrateLayer),
    Share(cloakroom_pycket::ShareLayer),
}

/// The pycket bridge `[pycket]` asks for, if any, on pycket's Redis at
/// `pycket.url`, or the store's: in migrate mode a layer that imports
/// pycket's sessions; in share mode one that serves them in place.
async fn pycket_bridge(
    config: &Config,
    store_url: Option<&str>,
    listen: SocketAddr,
) -> Result<Bridge, Error> {
    let pycket = &config.pycket;
    let mode = pycket.checked_mode()?;
    if mode == cloakroom_config::PycketMode::Off {
        return Ok(Bridge::Off);
    }
    let url = pycket
        .url
        .as_deref()
        .or(store_url)
        .or(config.storage.url.as_deref())
        .unwrap_or_default();
    let secret =
        cloakroom_pycket::TornadoSecret::new(pycket.cookie_secret.as_deref().unwrap_or_default());
    let delete = pycket.delete_after_import.unwrap_or(false);
    if url.starts_with("memcache://") || url.starts_with("memcached://") {
        if mode == cloakroom_config::PycketMode::Share {
            return Err(Error::Config(
                "pycket.mode = \"share\" works on pycket's Redis; on Memcached use \"migrate\""
                    .to_owned(),
            ));
        }
        let store = cloakroom_pycket::PycketMemcached::connect(url)
            .await
            .map_err(|e| Error::Config(format!("pycket.url: {e}")))?;
        tracing::info!("pycket bridge: importing Tornado users' sessions from Memcached");
        let migrate = cloakroom_pycket::MigrateLayer::new(store, secret);
        return Ok(Bridge::Migrate(migrate.delete_after_import(delete)));
    }
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(Error::Config(
            "[pycket] reads pycket's Redis (or Memcached, in migrate mode): set pycket.url, \
             or serve on a redis:// store"
                .to_owned(),
        ));
    }
    let (db_sessions, db_notifications) = crate::pycket::pycket_dbs(pycket, url);
    let store = cloakroom_pycket::PycketRedis::connect(url, db_sessions, db_notifications)
        .await
        .map_err(|e| Error::Config(format!("pycket.url: {e}")))?;
    if mode == cloakroom_config::PycketMode::Share {
        let mut cookies = config.clone();
        if cookies.plain_http_on(listen) {
            tracing::warn!("{}", cloakroom_config::PLAIN_HTTP_WARNING);
        }
        tracing::info!(
            db_sessions,
            db_notifications,
            "pycket bridge: serving the Tornado app's own sessions (share mode)"
        );
        return Ok(Bridge::Share(
            cloakroom_pycket::ShareLayer::new(store, secret)
                .secure(cookies.cookies.secure.unwrap_or(true))
                .expires_days(match pycket.expires_days {
                    None => Some(cloakroom_pycket::TORNADO_EXPIRES_DAYS),
                    Some(0) => None,
                    days => days,
                }),
        ));
    }
    tracing::info!(
        db_sessions,
        db_notifications,
        "pycket bridge: importing Tornado users' sessions as they arrive"
    );
    let migrate = cloakroom_pycket::MigrateLayer::new(store, secret);
    Ok(Bridge::Migrate(migrate.delete_after_import(delete)))
}

/// Runs the demo server until Ctrl-C.
pub async fn serve(args: ServeArgs) -> Result<(), Error> {
    if let Some(addr) = args.metrics_listen {
        // Port 0 twice is two ports the system picks, never the same.
        if addr == args.listen && addr.port() != 0 {
            return Err(Error::Config(
                "--metrics-listen must differ from --listen: metrics never share the app's port"
                    .to_owned(),
            ));
        }
        serve_metrics(addr).await?;
    }
    let config = Config::load(args.config.as_deref())?;
    let bridge = pycket_bridge(&config, args.store.as_deref(), args.listen).await?;
    let app = match (args.app, bridge) {
        // Share mode serves pycket's sessions only: no Cloakroom store.
        (App::Seed, Bridge::Share(share)) => crate::seed::app_sharing(share),
        (App::Seed, Bridge::Off) => {
            crate::seed::app(build_layer(&config, args.store.as_deref(), args.listen).await?)
        }
        (App::Seed, Bridge::Migrate(migrate)) => crate::seed::app_migrating(
            build_layer(&config, args.store.as_deref(), args.listen).await?,
            migrate,
        ),
        (App::Showcase, Bridge::Off) => {
            crate::showcase::app(build_layer(&config, args.store.as_deref(), args.listen).await?)
        }
        (App::Showcase, _) => {
            return Err(Error::Config(
                "[pycket] is served with the seed demo (--app seed)".to_owned(),
            ));
        }
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", args.listen)))?;
    // The bound address: with port 0 the system picked it.
    let bound = listener.local_addr().unwrap_or(args.listen);
    tracing::info!("listening on http://{bound}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| Error::Config(format!("server error: {e}")))
}
