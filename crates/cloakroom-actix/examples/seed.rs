//! pycket's seed demo on actix-web, route for route:
//!
//! - `GET /?name=alice` stores `login` = alice;
//! - `GET /detail` answers `detail get ok! alice`;
//! - `GET /login?name=bob` gives the session a new id, stores bob, and
//!   binds the session to user bob;
//! - `GET /logout` deletes the session and clears the cookie;
//! - `GET /health` answers `ok` without touching the session.
//!
//! ```sh
//! cargo run --release -p cloakroom-actix --example seed -- \
//!     --listen 127.0.0.1:8889 --store redis://127.0.0.1:6379/0
//! ```
//!
//! `--store` takes the memory, Redis and Memcached URLs `cloakroom serve`
//! takes (`memory://`, `redis://`, `redis+cluster://`,
//! `redis+sentinel://`, `memcache://`; not `rediss://`, which needs the
//! `tls` feature this example is built without); `--config` reads a
//! `cloakroom.toml`, and the
//! `CLOAKROOM_*` variables (`CLOAKROOM_COOKIE_SECRET`, …) override it.

use actix_web::http::header::USER_AGENT;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use clap::Parser;
use cloakroom_actix::{ClientInfo, Session, SessionMiddleware};
use cloakroom_config::Config;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(about = "pycket's seed demo on actix-web, with cloakroom sessions")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8889")]
    listen: SocketAddr,
    /// Store URL, overriding the configuration (default: memory).
    #[arg(long)]
    store: Option<String>,
    /// Configuration file (TOML). `CLOAKROOM_*` variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Name {
    name: Option<String>,
}

impl Name {
    /// The name, where empty counts as missing.
    fn get(self) -> Option<String> {
        self.name.filter(|n| !n.is_empty())
    }
}

fn missing_name() -> HttpResponse {
    HttpResponse::BadRequest().body("missing query parameter: name (try /?name=alice)\n")
}

async fn index(session: Session, q: web::Query<Name>) -> cloakroom_actix::Result<HttpResponse> {
    let Some(name) = q.into_inner().get() else {
        return Ok(missing_name());
    };
    session.set("login", name).await?;
    Ok(HttpResponse::Ok().body("index get ok!"))
}

async fn detail(session: Session) -> cloakroom_actix::Result<String> {
    let login: Option<String> = session.get("login").await?;
    Ok(format!(
        "detail get ok! {}",
        login.as_deref().unwrap_or("None")
    ))
}

/// A new id first, then `login` = X, and the session bound to user X.
async fn login(
    session: Session,
    req: HttpRequest,
    q: web::Query<Name>,
) -> cloakroom_actix::Result<HttpResponse> {
    let Some(name) = q.into_inner().get() else {
        return Ok(missing_name());
    };
    session.cycle_id().await?;
    session.set("login", &name).await?;
    let mut client = ClientInfo::default();
    if let Some(agent) = req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok()) {
        client = client.user_agent(agent);
    }
    session.bind_user(&name, client).await?;
    Ok(HttpResponse::Ok().body("login ok!"))
}

async fn logout(session: Session) -> cloakroom_actix::Result<&'static str> {
    session.destroy().await?;
    Ok("logout ok!")
}

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("seed: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::load(args.config.as_deref())?;
    let relaxed = config.plain_http_on(args.listen);
    if let Some(url) = args.store {
        config.storage.url = Some(url);
    }
    let sessions: SessionMiddleware = config.build().await?;
    if relaxed {
        tracing::warn!("{}", cloakroom_config::PLAIN_HTTP_WARNING);
    }
    let server = HttpServer::new(move || {
        App::new()
            .wrap(sessions.clone())
            .route("/", web::get().to(index))
            .route("/detail", web::get().to(detail))
            .route("/login", web::get().to(login))
            .route("/logout", web::get().to(logout))
            .route("/health", web::get().to(|| async { "ok" }))
    })
    .bind(args.listen)?;
    // The bound address: with port 0 the system picked it.
    for addr in server.addrs() {
        tracing::info!("listening on http://{addr}");
    }
    server.run().await?;
    Ok(())
}
