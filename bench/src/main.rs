//! One server binary for every system the benchmark compares. Each serves
//! the seed's handlers the same way:
//!
//! - `GET /?name=NAME` stores `login` = NAME and answers `index get ok!`;
//! - `GET /detail` answers `detail get ok! NAME` (or `None`);
//! - `GET /health` answers `ok` without touching the session (the
//!   session layer is still installed).

use clap::{Parser, ValueEnum};
use std::collections::HashMap;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum System {
    /// Cloakroom's demo, on its Redis store.
    Cloakroom,
    /// The same, with the read cache on (64 MiB).
    CloakroomCached,
    /// Cloakroom's demo with a Prometheus recorder installed, as
    /// `cloakroom serve --metrics-listen` runs it: the cost of metrics.
    CloakroomMetrics,
    /// tower-sessions 0.14 with tower-sessions-redis-store 0.16.
    TowerSessions,
    /// actix-session 0.11 with its RedisSessionStore.
    ActixSession,
    /// Cloakroom on actix-web (cloakroom-actix), on its Redis store, with
    /// the same handlers and workers as actix-session.
    CloakroomActix,
    /// The same, with the read cache on (64 MiB).
    CloakroomActixCached,
    /// axum with no sessions: the ceiling.
    Axum,
    /// axum doing one raw Redis GET (or SET) per request: the floor.
    RawRedis,
    /// Cloakroom's demo on its PostgreSQL store (`--store postgres://…`).
    CloakroomPostgres,
    /// Cloakroom's demo on its SQLite store (`--store sqlite://…`).
    CloakroomSqlite,
    /// tower-sessions 0.14 with tower-sessions-sqlx-store 0.15's
    /// PostgresStore.
    TowerSessionsPostgres,
    /// axum doing one raw PostgreSQL SELECT (or upsert) per request by
    /// primary key: the floor on PostgreSQL.
    RawPostgres,
    /// Cloakroom's demo in pycket share mode: pycket's own pickled
    /// sessions, as `cloakroom serve` with `[pycket] mode = "share"`.
    CloakroomShare,
}

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, value_enum)]
    system: System,
    #[arg(long, default_value = "127.0.0.1:8899")]
    listen: SocketAddr,
    /// The store's URL: Redis for most systems, PostgreSQL or SQLite for
    /// theirs.
    #[arg(long, alias = "redis", default_value = "redis://127.0.0.1:6379")]
    store: String,
}

const SECRET: &str = "benchmark secret, at least thirty-two bytes long";

fn main() {
    let args = Args::parse();
    match args.system {
        System::ActixSession => actix::run(args).expect("actix server"),
        System::CloakroomActix => cloakroom_actix_app::run(args, "").expect("actix server"),
        System::CloakroomActixCached => {
            cloakroom_actix_app::run(args, "[storage]\ncache_max_bytes = 67108864\n")
                .expect("actix server")
        }
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(run_axum(args)),
    }
}

async fn run_axum(args: Args) {
    let app = match args.system {
        System::Cloakroom => cloakroom_app(&args, "").await,
        System::CloakroomMetrics => {
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("install the Prometheus recorder");
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    handle.run_upkeep();
                }
            });
            cloakroom_app(&args, "").await
        }
        System::CloakroomCached => {
            cloakroom_app(&args, "[storage]\ncache_max_bytes = 67108864\n").await
        }
        System::TowerSessions => tower::app(&args.store).await,
        System::Axum => plain::app(),
        System::RawRedis => raw::app(&args.store).await,
        System::CloakroomPostgres | System::CloakroomSqlite => cloakroom_app(&args, "").await,
        System::TowerSessionsPostgres => tower_postgres::app(&args.store).await,
        System::RawPostgres => raw_postgres::app(&args.store).await,
        System::CloakroomShare => {
            // The same secret as the seed's Tornado app that bench/run
            // --pycket starts.
            let pycket = cloakroom_pycket::PycketRedis::connect(&args.store, 0, 1)
                .await
                .expect("connect to redis");
            let share =
                cloakroom_pycket::ShareLayer::new(pycket, cloakroom_pycket::TornadoSecret::new(SECRET))
                    .secure(false);
            cloakroom_cli::seed::app_sharing(share)
        }
        System::ActixSession | System::CloakroomActix | System::CloakroomActixCached => {
            unreachable!("served by actix")
        }
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .expect("bind");
    eprintln!("{:?} listening on {}", args.system, args.listen);
    axum::serve(listener, app).await.expect("serve");
}

async fn cloakroom_app(args: &Args, extra: &str) -> axum::Router {
    // The store's defaults, as a user would get them.
    let config =
        cloakroom_config::Config::from_toml(&format!("cookie_secret = {SECRET:?}\n{extra}"))
            .expect("config");
    let layer = cloakroom_cli::build_layer(&config, Some(&args.store), args.listen)
        .await
        .expect("cloakroom layer");
    cloakroom_cli::seed::app(layer)
}

fn name_of(q: &HashMap<String, String>) -> Option<String> {
    q.get("name").filter(|n| !n.is_empty()).cloned()
}

mod tower {
    use super::name_of;
    use axum::extract::Query;
    use axum::http::StatusCode;
    use axum::routing::get;
    use std::collections::HashMap;
    use tower_sessions::{Expiry, Session, SessionManagerLayer};
    use tower_sessions_redis_store::RedisStore;
    use tower_sessions_redis_store::fred::prelude::*;

    pub async fn index(
        session: Session,
        Query(q): Query<HashMap<String, String>>,
    ) -> (StatusCode, &'static str) {
        let Some(name) = name_of(&q) else {
            return (StatusCode::BAD_REQUEST, "missing query parameter: name\n");
        };
        match session.insert("login", name).await {
            Ok(()) => (StatusCode::OK, "index get ok!"),
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "session store unavailable\n"),
        }
    }

    pub async fn detail(session: Session) -> Result<String, StatusCode> {
        let login: Option<String> = session
            .get("login")
            .await
            .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
        Ok(format!(
            "detail get ok! {}",
            login.as_deref().unwrap_or("None")
        ))
    }

    pub async fn app(url: &str) -> axum::Router {
        let pool = Pool::new(Config::from_url(url).expect("redis url"), None, None, None, 4)
            .expect("fred pool");
        let _ = pool.connect();
        pool.wait_for_connect().await.expect("connect to redis");
        let layer = SessionManagerLayer::new(RedisStore::new(pool))
            .with_secure(false)
            .with_expiry(Expiry::OnInactivity(time::Duration::minutes(30)));
        axum::Router::new()
            .route("/", get(index))
            .route("/detail", get(detail))
            .route("/health", get(|| async { "ok" }))
            .layer(layer)
    }
}

mod actix {
    use super::{Args, SECRET, name_of};
    use actix_session::storage::RedisSessionStore;
    use actix_session::{Session, SessionMiddleware};
    use actix_web::cookie::Key;
    use actix_web::{App, HttpResponse, HttpServer, web};
    use std::collections::HashMap;

    async fn index(session: Session, q: web::Query<HashMap<String, String>>) -> HttpResponse {
        let Some(name) = name_of(&q) else {
            return HttpResponse::BadRequest().body("missing query parameter: name\n");
        };
        match session.insert("login", name) {
            Ok(()) => HttpResponse::Ok().body("index get ok!"),
            Err(_) => HttpResponse::ServiceUnavailable().body("session error\n"),
        }
    }

    async fn detail(session: Session) -> HttpResponse {
        match session.get::<String>("login") {
            Ok(login) => HttpResponse::Ok().body(format!(
                "detail get ok! {}",
                login.as_deref().unwrap_or("None")
            )),
            Err(_) => HttpResponse::ServiceUnavailable().body("session error\n"),
        }
    }

    pub fn run(args: Args) -> std::io::Result<()> {
        actix_web::rt::System::new().block_on(async move {
            let store = RedisSessionStore::new(args.store.clone())
                .await
                .expect("connect to redis");
            let key = Key::derive_from(SECRET.repeat(2).as_bytes());
            eprintln!("ActixSession listening on {}", args.listen);
            HttpServer::new(move || {
                App::new()
                    .wrap(
                        SessionMiddleware::builder(store.clone(), key.clone())
                            .cookie_secure(false)
                            .build(),
                    )
                    .route("/", web::get().to(index))
                    .route("/detail", web::get().to(detail))
                    .route("/health", web::get().to(|| async { "ok" }))
            })
            .workers(2)
            .bind(args.listen)?
            .run()
            .await
        })
    }
}

mod cloakroom_actix_app {
    use super::{Args, SECRET, name_of};
    use actix_web::{App, HttpResponse, HttpServer, web};
    use cloakroom_actix::{Session, SessionMiddleware};
    use std::collections::HashMap;

    async fn index(session: Session, q: web::Query<HashMap<String, String>>) -> HttpResponse {
        let Some(name) = name_of(&q) else {
            return HttpResponse::BadRequest().body("missing query parameter: name\n");
        };
        match session.set("login", name).await {
            Ok(()) => HttpResponse::Ok().body("index get ok!"),
            Err(_) => HttpResponse::ServiceUnavailable().body("session error\n"),
        }
    }

    /// A sign-in: a new id, the name stored, the session bound to the user.
    async fn login(session: Session, q: web::Query<HashMap<String, String>>) -> HttpResponse {
        let Some(name) = name_of(&q) else {
            return HttpResponse::BadRequest().body("missing query parameter: name\n");
        };
        let signed_in = async {
            session.cycle_id().await?;
            session.set("login", &name).await?;
            session
                .bind_user(&name, cloakroom_actix::ClientInfo::default())
                .await
        };
        match signed_in.await {
            Ok(()) => HttpResponse::Ok().body("login ok!"),
            Err(_) => HttpResponse::ServiceUnavailable().body("session error\n"),
        }
    }

    async fn detail(session: Session) -> HttpResponse {
        match session.get::<String>("login").await {
            Ok(login) => HttpResponse::Ok().body(format!(
                "detail get ok! {}",
                login.as_deref().unwrap_or("None")
            )),
            Err(_) => HttpResponse::ServiceUnavailable().body("session error\n"),
        }
    }

    /// Serves the seed's routes; `extra` is more of `cloakroom.toml`.
    pub fn run(args: Args, extra: &str) -> std::io::Result<()> {
        actix_web::rt::System::new().block_on(async move {
            // The store's defaults, as a user would get them.
            let mut config = cloakroom_config::Config::from_toml(&format!(
                "cookie_secret = {SECRET:?}\n{extra}"
            ))
            .expect("config");
            config.plain_http_on(args.listen);
            config.storage.url = Some(args.store.clone());
            let sessions: SessionMiddleware = config.build().await.expect("cloakroom middleware");
            eprintln!("CloakroomActix listening on {}", args.listen);
            HttpServer::new(move || {
                App::new()
                    .wrap(sessions.clone())
                    .route("/", web::get().to(index))
                    .route("/login", web::get().to(login))
                    .route("/detail", web::get().to(detail))
                    .route("/health", web::get().to(|| async { "ok" }))
            })
            .workers(2)
            .bind(args.listen)?
            .run()
            .await
        })
    }
}

mod plain {
    use super::name_of;
    use axum::extract::Query;
    use axum::http::StatusCode;
    use axum::routing::get;
    use std::collections::HashMap;

    pub fn app() -> axum::Router {
        axum::Router::new()
            .route(
                "/",
                get(|Query(q): Query<HashMap<String, String>>| async move {
                    match name_of(&q) {
                        Some(_) => (StatusCode::OK, "index get ok!"),
                        None => (StatusCode::BAD_REQUEST, "missing query parameter: name\n"),
                    }
                }),
            )
            .route("/detail", get(|| async { "detail get ok! None" }))
            .route("/health", get(|| async { "ok" }))
    }
}

mod raw {
    use super::name_of;
    use axum::extract::{Query, State};
    use axum::http::StatusCode;
    use axum::routing::get;
    use redis::aio::ConnectionManager;
    use std::collections::HashMap;

    const KEY: &str = "bench:floor";

    async fn index(
        State(mut conn): State<ConnectionManager>,
        Query(q): Query<HashMap<String, String>>,
    ) -> (StatusCode, &'static str) {
        let Some(name) = name_of(&q) else {
            return (StatusCode::BAD_REQUEST, "missing query parameter: name\n");
        };
        match redis::cmd("SET")
            .arg(KEY)
            .arg(name)
            .query_async::<()>(&mut conn)
            .await
        {
            Ok(()) => (StatusCode::OK, "index get ok!"),
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "redis error\n"),
        }
    }

    async fn detail(State(mut conn): State<ConnectionManager>) -> (StatusCode, String) {
        match redis::cmd("GET")
            .arg(KEY)
            .query_async::<Option<String>>(&mut conn)
            .await
        {
            Ok(login) => (
                StatusCode::OK,
                format!("detail get ok! {}", login.as_deref().unwrap_or("None")),
            ),
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "redis error\n".to_owned()),
        }
    }

    pub async fn app(url: &str) -> axum::Router {
        let client = redis::Client::open(url).expect("redis url");
        let conn = ConnectionManager::new(client)
            .await
            .expect("connect to redis");
        axum::Router::new()
            .route("/", get(index))
            .route("/detail", get(detail))
            .route("/health", get(|| async { "ok" }))
            .with_state(conn)
    }
}

/// The PostgreSQL pool size of every PostgreSQL system, so they compare
/// like for like (Cloakroom's default).
const PG_POOL: usize = 16;

mod tower_postgres {
    use super::PG_POOL;
    use axum::routing::get;
    use sqlx::postgres::PgPoolOptions;
    use tower_sessions::{Expiry, SessionManagerLayer};
    use tower_sessions_sqlx_store::PostgresStore;

    pub async fn app(url: &str) -> axum::Router {
        let pool = PgPoolOptions::new()
            .max_connections(PG_POOL as u32)
            .connect(url)
            .await
            .expect("connect to postgres");
        let store = PostgresStore::new(pool);
        store.migrate().await.expect("tower-sessions schema");
        let layer = SessionManagerLayer::new(store)
            .with_secure(false)
            .with_expiry(Expiry::OnInactivity(time::Duration::minutes(30)));
        axum::Router::new()
            .route("/", get(super::tower::index))
            .route("/detail", get(super::tower::detail))
            .route("/health", get(|| async { "ok" }))
            .layer(layer)
    }
}

mod raw_postgres {
    use super::{PG_POOL, name_of};
    use axum::extract::{Query, State};
    use axum::http::StatusCode;
    use axum::routing::get;
    use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
    use std::collections::HashMap;

    async fn index(
        State(pool): State<Pool>,
        Query(q): Query<HashMap<String, String>>,
    ) -> (StatusCode, &'static str) {
        let Some(name) = name_of(&q) else {
            return (StatusCode::BAD_REQUEST, "missing query parameter: name\n");
        };
        let done = async {
            let conn = pool.get().await.ok()?;
            let stmt = conn
                .prepare_cached(
                    "INSERT INTO bench_floor (k, v) VALUES ('floor', $1) \
                     ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                )
                .await
                .ok()?;
            conn.execute(&stmt, &[&name]).await.ok()
        };
        match done.await {
            Some(_) => (StatusCode::OK, "index get ok!"),
            None => (StatusCode::SERVICE_UNAVAILABLE, "postgres error\n"),
        }
    }

    async fn detail(State(pool): State<Pool>) -> (StatusCode, String) {
        let login = async {
            let conn = pool.get().await.ok()?;
            let stmt = conn
                .prepare_cached("SELECT v FROM bench_floor WHERE k = 'floor'")
                .await
                .ok()?;
            let rows = conn.query(&stmt, &[]).await.ok()?;
            Some(rows.first().map(|r| r.get::<_, String>(0)))
        };
        match login.await {
            Some(login) => (
                StatusCode::OK,
                format!("detail get ok! {}", login.as_deref().unwrap_or("None")),
            ),
            None => (StatusCode::SERVICE_UNAVAILABLE, "postgres error\n".to_owned()),
        }
    }

    pub async fn app(url: &str) -> axum::Router {
        let config: tokio_postgres::Config = url.parse().expect("postgres url");
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(PG_POOL)
            .runtime(Runtime::Tokio1)
            .build()
            .expect("pool");
        pool.get()
            .await
            .expect("connect to postgres")
            .batch_execute("CREATE TABLE IF NOT EXISTS bench_floor (k text PRIMARY KEY, v text)")
            .await
            .expect("create the floor's table");
        axum::Router::new()
            .route("/", get(index))
            .route("/detail", get(detail))
            .route("/health", get(|| async { "ok" }))
            .with_state(pool)
    }
}
