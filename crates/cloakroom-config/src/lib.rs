//! `cloakroom.toml` and `CLOAKROOM_*` environment variables, in pycket's
//! shape, to a ready session layer or middleware in one call.
//!
//! The file follows pycket's settings (`engine`, `[storage]`, `[cookies]`)
//! and adds Cloakroom's own (`[expiry]`, `[limits]`). Every key can be
//! overridden by `CLOAKROOM_` + its path in upper case (`CLOAKROOM_ENGINE`,
//! `CLOAKROOM_STORAGE_URL`, `CLOAKROOM_COOKIE_SECRET`). The store is picked
//! at run time by `engine` or by `storage.url`'s scheme.
//!
//! The result is whatever the adapter builds from a
//! [`SessionManager`]: a `cloakroom::SessionLayer` for axum and tower, a
//! `cloakroom_actix::SessionMiddleware` for actix-web, or the manager
//! itself.
//!
//! ```no_run
//! use cloakroom::SessionLayer;
//!
//! # async fn run() -> cloakroom::Result<()> {
//! // Reads ./cloakroom.toml and CLOAKROOM_*, connects the store.
//! let sessions: SessionLayer = cloakroom_config::load(Some("cloakroom.toml".as_ref())).await?;
//! # Ok(()) }
//! ```
//!
//! To adjust the result first (tests set a clock, say), take the builder:
//!
//! ```
//! use cloakroom::{ManualClock, SessionManager};
//! use cloakroom_config::Config;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cloakroom::Result<()> {
//! let config = Config::from_toml(r#"
//!     engine = "memory"
//!     cookie_secret = "a secret of at least thirty-two bytes"
//!     [expiry]
//!     idle_timeout_secs = 900
//! "#)?;
//! let manager: SessionManager = config
//!     .builder()
//!     .await?
//!     .clock(ManualClock::starting_now())
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! `Debug` on [`Config`] and [`StorageConfig`] never prints a secret or a
//! password.
#![warn(missing_docs)]

mod file;
mod store;

pub use file::{
    Config, CookiesConfig, Engine, ExpiryConfig, LimitsConfig, PycketConfig, PycketMode,
    StorageConfig,
};
pub use store::ConfiguredStore;

use cloakroom::{KeyRing, MemoryStore, Result, SessionManager, SessionManagerBuilder};
use std::path::Path;

/// Reads `path` (if given) and the `CLOAKROOM_*` variables, connects the
/// store they pick, and builds a `T`: a `SessionLayer`, a
/// `SessionMiddleware`, or a [`SessionManager`].
///
/// Errors name the setting at fault.
pub async fn load<T: From<SessionManager>>(path: Option<&Path>) -> Result<T> {
    Config::load(path)?.build().await
}

/// What to tell the operator when [`Config::plain_http_on`] turned the
/// cookie's `Secure` flag off.
pub const PLAIN_HTTP_WARNING: &str = "plain HTTP on a loopback address: the session cookie's \
     Secure flag is OFF; set cookies.secure = true behind TLS";

impl Config {
    /// Connects the store this configuration picks and builds a `T` from
    /// it, with every setting applied.
    pub async fn build<T: From<SessionManager>>(&self) -> Result<T> {
        self.builder().await?.build()
    }

    /// Like [`build`](Self::build), returning the builder for more
    /// settings first.
    ///
    /// With no `cookie_secret`, a random key is used and a warning is
    /// logged: sessions will not survive a restart.
    pub async fn builder<T: From<SessionManager>>(&self) -> Result<SessionManagerBuilder<T>> {
        let keys = match self.key_ring()? {
            Some(keys) => keys,
            None => {
                tracing::warn!(
                    "no cookie_secret configured: using a random one, so sessions will not \
                     survive a restart; set cookie_secret or CLOAKROOM_COOKIE_SECRET"
                );
                KeyRing::random()
            }
        };
        let store = self.store().await?;
        // Ready to serve: a store that is not reachable yet said so above,
        // and its calls answer 503 until it is.
        tracing::info!(engine = ?self.effective_engine()?, "session store configured");
        Ok(store
            .into_manager_builder(keys)
            .cookie(self.cookie_config()?)
            .expiry(self.expiry_policy())
            .max_session_expiry(self.max_session_expiry()?)
            .limits(self.limits())
            .output())
    }

    /// For a server speaking plain HTTP on `listen`: on a loopback address,
    /// where a browser would not send a `Secure` cookie back over plain
    /// HTTP, turns `Secure` off unless `cookies.secure` is set. Returns
    /// whether it did, so the caller can say so once the configuration
    /// has built ([`PLAIN_HTTP_WARNING`] is the demos' wording). Behind
    /// TLS it changes nothing that matters, since production listens
    /// elsewhere.
    ///
    /// ```
    /// use cloakroom_config::Config;
    /// let mut config = Config::default();
    /// assert!(config.plain_http_on(([127, 0, 0, 1], 8888).into()));
    /// assert_eq!(config.cookies.secure, Some(false));
    /// let mut public = Config::default();
    /// assert!(!public.plain_http_on(([0, 0, 0, 0], 8888).into()));
    /// ```
    pub fn plain_http_on(&mut self, listen: std::net::SocketAddr) -> bool {
        if self.cookies.secure.is_some() || !listen.ip().is_loopback() {
            return false;
        }
        self.cookies.secure = Some(false);
        true
    }

    /// The engine in force: `storage.url`'s scheme when a URL is set,
    /// `engine` otherwise.
    pub fn effective_engine(&self) -> Result<Engine> {
        match &self.storage.url {
            Some(url) => Engine::of_url(url),
            None => Ok(self.engine),
        }
    }

    /// Connects the store this configuration picks.
    pub async fn store(&self) -> Result<ConfiguredStore> {
        match self.effective_engine()? {
            Engine::Memory => {
                let mut store = MemoryStore::new();
                if let Some(max) = self.storage.max_sessions {
                    store = store.max_sessions(max);
                }
                Ok(ConfiguredStore::Memory(store))
            }
            #[cfg(feature = "redis")]
            Engine::Redis => {
                let redis = self.redis_config()?;
                tracing::info!(config = ?redis, "connecting to redis");
                Ok(ConfiguredStore::Redis(
                    cloakroom_redis::RedisStore::connect(redis).await?,
                ))
            }
            #[cfg(not(feature = "redis"))]
            Engine::Redis => Err(store::engine_not_built("redis", "redis")),
            #[cfg(feature = "memcached")]
            Engine::Memcached => {
                let memcached = self.memcached_config()?;
                tracing::info!(config = ?memcached, "connecting to memcached");
                let store = cloakroom_memcached::MemcachedStore::new(memcached);
                // Down at start is not fatal: session calls answer 503
                // until memcached is up, and the pool connects then.
                if let Err(e) = store.ping().await {
                    if !e.is_unavailable() {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, "memcached is not reachable yet: session calls answer 503 until it is");
                }
                Ok(ConfiguredStore::Memcached(store))
            }
            #[cfg(not(feature = "memcached"))]
            Engine::Memcached => Err(store::engine_not_built("memcached", "memcached")),
            #[cfg(feature = "postgres")]
            Engine::Postgres => {
                let postgres = self.postgres_config()?;
                tracing::info!(config = ?postgres, "connecting to postgres");
                let store = cloakroom_postgres::PostgresStore::new(postgres)?;
                // Down at start is not fatal: session calls answer 503 until
                // the database is up, and the schema is made ready then.
                if let Err(e) = store.ping().await {
                    if !e.is_unavailable() {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, "postgres is not reachable yet: session calls answer 503 until it is");
                }
                Ok(ConfiguredStore::Postgres(store))
            }
            #[cfg(not(feature = "postgres"))]
            Engine::Postgres => Err(store::engine_not_built("postgres", "postgres")),
            #[cfg(feature = "sqlite")]
            Engine::Sqlite => {
                let sqlite = self.sqlite_config()?;
                tracing::info!(config = ?sqlite, "opening the sqlite database");
                Ok(ConfiguredStore::Sqlite(
                    cloakroom_sqlite::SqliteStore::open(sqlite)?,
                ))
            }
            #[cfg(not(feature = "sqlite"))]
            Engine::Sqlite => Err(store::engine_not_built("sqlite", "sqlite")),
        }
    }

    /// The PostgreSQL settings of `[storage]`: `url`, or `host`, `port`,
    /// `username`, `password` and `database`; then `schema`,
    /// `tls_ca_file`, `max_connections`, `timeout_ms` and
    /// `cleanup_interval_secs`.
    #[cfg(feature = "postgres")]
    pub fn postgres_config(&self) -> Result<cloakroom_postgres::PostgresConfig> {
        let storage = &self.storage;
        let mut config = match &storage.url {
            Some(url) => cloakroom_postgres::PostgresConfig::from_url(url)?,
            None => {
                let mut pg = cloakroom_postgres::tokio_postgres::Config::new();
                pg.host(storage.host.as_deref().unwrap_or("127.0.0.1"))
                    .port(storage.port.unwrap_or(5432))
                    .user(storage.username.as_deref().unwrap_or("postgres"));
                if let Some(password) = &storage.password {
                    pg.password(password);
                }
                if let Some(database) = &storage.database {
                    pg.dbname(database);
                }
                cloakroom_postgres::PostgresConfig::new(pg)
            }
        };
        if let Some(schema) = &storage.schema {
            // The URL's `schema=` and `storage.schema` both name it: two
            // different names are a mistake, not an override.
            let from_url = config.schema_name();
            if config.schema_in_url() && from_url != schema {
                return Err(cloakroom::Error::Config(format!(
                    "storage.schema {schema:?} and the URL's schema={from_url:?} disagree: \
                     set one of them"
                )));
            }
            config = config.schema(schema)?;
        }
        if let Some(create) = storage.create_schema {
            config = config.create_schema(create);
        }
        if let Some(path) = &storage.tls_ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                cloakroom::Error::Config(format!("storage.tls_ca_file {}: {e}", path.display()))
            })?;
            config = config.tls_ca_pem(pem);
        }
        if let Some(timeout) = storage.timeout()? {
            config = config.timeout(timeout);
        }
        if let Some(n) = storage.connections()? {
            config = config.pool_size(n);
        }
        if let Some(secs) = storage.cleanup_interval_secs {
            config = config.cleanup_interval(Some(std::time::Duration::from_secs(secs)));
        }
        Ok(config)
    }

    /// The SQLite settings of `[storage]`: `url` (`sqlite://PATH`) or
    /// `path`; then `timeout_ms` (how long to wait for another process's
    /// write lock) and `cleanup_interval_secs`.
    #[cfg(feature = "sqlite")]
    pub fn sqlite_config(&self) -> Result<cloakroom_sqlite::SqliteConfig> {
        let storage = &self.storage;
        let mut config = match (&storage.url, &storage.path) {
            (Some(url), _) => cloakroom_sqlite::SqliteConfig::from_url(url)?,
            (None, Some(path)) => cloakroom_sqlite::SqliteConfig::new(path),
            (None, None) => cloakroom_sqlite::SqliteConfig::new("cloakroom-sessions.db"),
        };
        if storage.create_schema == Some(false) {
            return Err(cloakroom::Error::Config(
                "storage.create_schema = false is for PostgreSQL: SQLite creates its schema \
                 when it opens the file"
                    .to_owned(),
            ));
        }
        if let Some(timeout) = storage.timeout()? {
            config = config.busy_timeout(timeout);
        }
        if let Some(secs) = storage.cleanup_interval_secs {
            config = config.cleanup_interval(Some(std::time::Duration::from_secs(secs)));
        }
        Ok(config)
    }

    /// The Redis settings of `[storage]`: `url`, or `host` and `port`; then
    /// `db_sessions`, `db_notifications`, `username`, `password`,
    /// `max_connections`, `prefix`, `timeout_ms`, `tls_ca_file` and
    /// `cache_max_bytes`.
    #[cfg(feature = "redis")]
    pub fn redis_config(&self) -> Result<cloakroom_redis::RedisConfig> {
        let storage = &self.storage;
        let url = match &storage.url {
            Some(url) => url.clone(),
            None => format!(
                "redis://{}:{}",
                storage.host.as_deref().unwrap_or("127.0.0.1"),
                storage.port.unwrap_or(6379)
            ),
        };
        let mut config = cloakroom_redis::RedisConfig::from_url(&url)?;
        if let Some(db) = storage.db_sessions {
            config = config.db(i64::from(db));
        }
        if let Some(user) = &storage.username {
            config = config.username(user);
        }
        if let Some(password) = &storage.password {
            config = config.password(password);
        }
        config = config.db_notifications(storage.db_notifications.map(i64::from));
        if let Some(path) = &storage.tls_ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                cloakroom::Error::Config(format!("storage.tls_ca_file {}: {e}", path.display()))
            })?;
            config = config.tls_ca_pem(pem);
        }
        if let Some(prefix) = &storage.prefix {
            config = config.prefix(prefix);
        }
        if let Some(timeout) = storage.timeout()? {
            config = config.timeout(timeout);
        }
        if let Some(n) = storage.connections()? {
            config = config.max_connections(n);
        }
        if let Some(bytes) = storage.cache_max_bytes {
            config = config.cache_max_bytes(bytes);
        }
        Ok(config)
    }

    /// The Memcached settings of `[storage]`: `url`, or `host` and `port`;
    /// then `max_connections`, `prefix`, `timeout_ms` and `max_item_bytes`.
    #[cfg(feature = "memcached")]
    pub fn memcached_config(&self) -> Result<cloakroom_memcached::MemcachedConfig> {
        let storage = &self.storage;
        let url = match &storage.url {
            Some(url) => url.clone(),
            None => format!(
                "memcache://{}:{}",
                storage.host.as_deref().unwrap_or("127.0.0.1"),
                storage.port.unwrap_or(11211)
            ),
        };
        let mut config = cloakroom_memcached::MemcachedConfig::from_url(&url)?;
        if let Some(prefix) = &storage.prefix {
            config = config.prefix(prefix)?;
        }
        if let Some(timeout) = storage.timeout()? {
            config = config.timeout(timeout);
        }
        if let Some(n) = storage.connections()? {
            config = config.max_connections(n);
        }
        if let Some(n) = storage.item_limit()? {
            config = config.max_item_bytes(n);
        }
        Ok(config)
    }
}
