//! `cloakroom.toml`, with `CLOAKROOM_*` environment overrides.
//!
//! The shape follows pycket's settings, so a Tornado app's configuration
//! carries over key for key:
//!
//! ```toml
//! engine = "redis"                    # memory | redis | memcached | postgres | sqlite
//! cookie_secrets = ["newest secret, 32 bytes or more", "older secret ..."]
//!
//! [storage]
//! host = "127.0.0.1"
//! port = 6379
//! db_sessions = 0
//! db_notifications = 1
//! password = "..."
//! max_connections = 10
//!
//! [cookies]
//! expires_days = 30
//! ```
//!
//! Unknown keys and invalid values are errors that name the key.

use cloakroom::store::MAX_CONNECTIONS;
use cloakroom::{
    CookieConfig, Error, ExpiryPolicy, KeyRing, Limits, Result, SameSite, SessionExpiry,
};
use serde::Deserialize;
use std::fmt;
use std::path::Path;
use std::time::Duration;

fn config_error(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

/// Which store holds the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// [`MemoryStore`](cloakroom::MemoryStore): in this process.
    #[default]
    Memory,
    /// Redis, through the `cloakroom-redis` crate.
    Redis,
    /// Memcached, through the `cloakroom-memcached` crate.
    Memcached,
    /// PostgreSQL, through the `cloakroom-postgres` crate.
    Postgres,
    /// SQLite, through the `cloakroom-sqlite` crate: durable sessions in
    /// one file.
    Sqlite,
}

impl Engine {
    /// The engine a store URL's scheme names: `memory://`, `redis://`
    /// (and `rediss://`, `redis+unix://`, `redis+cluster://`,
    /// `redis+sentinel://`), `memcache://`, `postgres://` (or
    /// `postgresql://`), `sqlite://`.
    ///
    /// ```
    /// use cloakroom_config::Engine;
    /// assert_eq!(Engine::of_url("redis+cluster://10.0.0.1:7000")?, Engine::Redis);
    /// assert_eq!(Engine::of_url("sqlite://sessions.db")?, Engine::Sqlite);
    /// assert!(Engine::of_url("mysql://db").is_err());
    /// assert!(Engine::of_url("redis:/127.0.0.1:6379").is_err());
    /// # Ok::<(), cloakroom::Error>(())
    /// ```
    pub fn of_url(url: &str) -> Result<Engine> {
        let Some((scheme, _)) = url.split_once("://") else {
            return Err(config_error(format!(
                "storage.url / --store: {url:?} is not a store URL (SCHEME://…, \
                 redis://HOST:PORT/DB, say)"
            )));
        };
        match scheme {
            "memory" => Ok(Engine::Memory),
            "redis" | "rediss" | "redis+unix" | "redis+cluster" | "redis+sentinel" => {
                Ok(Engine::Redis)
            }
            "memcache" | "memcached" => Ok(Engine::Memcached),
            "postgres" | "postgresql" => Ok(Engine::Postgres),
            "sqlite" => Ok(Engine::Sqlite),
            _ => Err(config_error(format!(
                "storage.url / --store: unknown scheme {scheme:?}; expected memory://, \
                 redis://, rediss://, redis+cluster://, redis+sentinel://, memcache://, \
                 postgres:// or sqlite://"
            ))),
        }
    }
}

/// The whole configuration file.
///
/// ```
/// use cloakroom_config::{Config, Engine};
/// let config = Config::from_toml(r#"
///     engine = "memory"
///     cookie_secret = "a secret of at least thirty-two bytes"
///     [cookies]
///     expires_days = 7
/// "#)?;
/// assert_eq!(config.engine, Engine::Memory);
/// assert!(Config::from_toml("engin = 'redis'").unwrap_err().to_string().contains("engin"));
/// # Ok::<(), cloakroom::Error>(())
/// ```
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The store: `memory` (default), `redis`, `memcached`, `postgres` or
    /// `sqlite`.
    pub engine: Engine,
    /// One signing secret (pycket's `cookie_secret`).
    pub cookie_secret: Option<String>,
    /// Several secrets, newest first, for rotation. Used with or instead of
    /// `cookie_secret`, which then comes first.
    pub cookie_secrets: Vec<String>,
    /// `[storage]`
    pub storage: StorageConfig,
    /// `[cookies]`
    pub cookies: CookiesConfig,
    /// `[expiry]`
    pub expiry: ExpiryConfig,
    /// `[limits]`
    pub limits: LimitsConfig,
    /// `[pycket]`: the bridge from a Tornado app's pycket sessions.
    pub pycket: PycketConfig,
}

/// `[pycket]`: a Tornado app's pycket sessions, carried over to Cloakroom.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PycketConfig {
    /// The Tornado app's `cookie_secret`, which signs `PYCKET_ID`.
    pub cookie_secret: Option<String>,
    /// `migrate` (import each pycket session once into a Cloakroom
    /// session) or `share` (read and write pycket's sessions in place,
    /// beside the Tornado app). Unset: no bridge.
    pub mode: Option<String>,
    /// pycket's Redis, or in migrate mode its Memcached (`memcache://`)
    /// (default: `storage.url`).
    pub url: Option<String>,
    /// pycket's `db_sessions` (default: the database in `url`, else 0).
    pub db_sessions: Option<u32>,
    /// pycket's `db_notifications` (default 1).
    pub db_notifications: Option<u32>,
    /// Delete pycket's session once imported (default false).
    pub delete_after_import: Option<bool>,
    /// pycket's `cookies.expires_days`: how long a `PYCKET_ID` that share
    /// mode makes lasts (default 30, Tornado's; `0`: until the browser
    /// closes).
    pub expires_days: Option<u32>,
}

impl fmt::Debug for PycketConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PycketConfig")
            .field(
                "cookie_secret",
                &self.cookie_secret.as_ref().map(|_| REDACTED),
            )
            .field("mode", &self.mode)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("db_sessions", &self.db_sessions)
            .field("db_notifications", &self.db_notifications)
            .field("expires_days", &self.expires_days)
            .field("delete_after_import", &self.delete_after_import)
            .finish()
    }
}

/// What `[pycket]` asks for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PycketMode {
    /// No bridge.
    Off,
    /// Import each pycket session once.
    Migrate,
    /// Read and write pycket's sessions in pycket's format.
    Share,
}

impl PycketConfig {
    /// The mode, checked: `migrate` and `share` need `cookie_secret`.
    pub fn checked_mode(&self) -> Result<PycketMode> {
        match self.mode.as_deref() {
            None => Ok(PycketMode::Off),
            Some("migrate") if self.cookie_secret.is_some() => Ok(PycketMode::Migrate),
            Some("migrate") => Err(config_error(
                "pycket.mode = \"migrate\" needs pycket.cookie_secret \
                 (or CLOAKROOM_PYCKET_COOKIE_SECRET): the Tornado app's cookie_secret",
            )),
            Some("share") if self.cookie_secret.is_some() => Ok(PycketMode::Share),
            Some("share") => Err(config_error(
                "pycket.mode = \"share\" needs pycket.cookie_secret \
                 (or CLOAKROOM_PYCKET_COOKIE_SECRET): the Tornado app's cookie_secret",
            )),
            Some(other) => Err(config_error(format!(
                "pycket.mode must be \"migrate\" or \"share\", not {other:?}"
            ))),
        }
    }
}

/// `[storage]`: where the store is. A `url` replaces `host` and `port`
/// (and on PostgreSQL `username`, `password` and `database`); on Redis,
/// `db_sessions`, `username` and `password`, when set, override the URL's.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// A store URL: `memory://`, `redis://…`, `memcache://…`,
    /// `postgres://…`, `sqlite://PATH`.
    pub url: Option<String>,
    /// Server host.
    pub host: Option<String>,
    /// Server port.
    pub port: Option<u16>,
    /// Redis database for session data.
    pub db_sessions: Option<u32>,
    /// Redis database for notifications.
    pub db_notifications: Option<u32>,
    /// ACL user name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Most connections the process opens to the store. How threads of
    /// current-thread runtimes (actix-web's workers) use them depends on
    /// the store: see its own setting, and the README.
    pub max_connections: Option<u32>,
    /// Prefix of every store key.
    pub prefix: Option<String>,
    /// Bound on every store call, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Most sessions the memory store holds.
    pub max_sessions: Option<usize>,
    /// Bytes of session records each process keeps in its read cache
    /// (Redis only; 0 or unset: off).
    pub cache_max_bytes: Option<usize>,
    /// The largest session item a write sends (Memcached only; default
    /// memcached's 1 MiB item limit less 512 bytes).
    pub max_item_bytes: Option<usize>,
    /// A CA certificate (PEM file) to trust for `rediss://`, or for
    /// PostgreSQL over TLS.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// PostgreSQL database name (default: the user's name), when no `url`
    /// is set.
    pub database: Option<String>,
    /// PostgreSQL schema holding the sessions (default `cloakroom`).
    pub schema: Option<String>,
    /// PostgreSQL: whether the store creates and upgrades its schema
    /// itself (default `true`); `false` for schemas applied from
    /// `cloakroom sql schema`, when the store only checks the version.
    pub create_schema: Option<bool>,
    /// SQLite database file, when no `url` is set (default
    /// `cloakroom-sessions.db`).
    pub path: Option<std::path::PathBuf>,
    /// Seconds between sweeps of expired rows (SQL stores; default 300,
    /// 0 for none).
    pub cleanup_interval_secs: Option<u64>,
}

/// `[cookies]`: the cookie's name and attributes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CookiesConfig {
    /// Cookie name (default `id`).
    pub name: Option<String>,
    /// Days a persistent cookie lasts; unset means a browser-session cookie.
    pub expires_days: Option<f64>,
    /// `Secure` (default true).
    pub secure: Option<bool>,
    /// `HttpOnly` (default true).
    pub http_only: Option<bool>,
    /// `lax` (default), `strict` or `none`.
    pub same_site: Option<String>,
    /// `Domain` (default none).
    pub domain: Option<String>,
    /// `Path` (default `/`).
    pub path: Option<String>,
}

/// `[expiry]`: server-side timeouts, in seconds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpiryConfig {
    /// Idle timeout (default 1800).
    pub idle_timeout_secs: Option<u64>,
    /// Absolute lifetime (default 43200).
    pub absolute_timeout_secs: Option<u64>,
    /// The longest idle timeout one session may ask for with
    /// `Session::set_expiry` (default: `idle_timeout_secs`).
    pub max_idle_timeout_secs: Option<u64>,
    /// The longest absolute lifetime one session may ask for (default:
    /// `absolute_timeout_secs`).
    pub max_absolute_timeout_secs: Option<u64>,
    /// The longest persistent cookie one session may ask for, in days
    /// (default: `cookies.expires_days`; unset: none).
    pub max_cookie_days: Option<f64>,
}

/// `[limits]`: size limits, in bytes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Longest session name (default 256).
    pub max_name_bytes: Option<usize>,
    /// Largest value, as JSON (default 65536).
    pub max_value_bytes: Option<usize>,
    /// Most names per session (default 256).
    pub max_names: Option<usize>,
    /// Most bytes of names and values per session (default 262144).
    pub max_session_bytes: Option<usize>,
    /// Longest `Cookie` header read (default 8192).
    pub max_cookie_header_bytes: Option<usize>,
    /// Most live sessions per user (default: no cap).
    pub max_sessions_per_user: Option<usize>,
    /// At the cap: `evict_oldest` (default) or `refuse`.
    pub on_max_sessions: Option<cloakroom::OnMaxSessions>,
}

/// Shown in place of a secret by `Debug`.
const REDACTED: &str = "<redacted>";

/// Prints every setting but the secrets: a configuration is often logged.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("engine", &self.engine)
            .field(
                "cookie_secret",
                &self.cookie_secret.as_ref().map(|_| REDACTED),
            )
            .field(
                "cookie_secrets",
                &format_args!("[{} redacted]", self.cookie_secrets.len()),
            )
            .field("storage", &self.storage)
            .field("cookies", &self.cookies)
            .field("expiry", &self.expiry)
            .field("limits", &self.limits)
            .field("pycket", &self.pycket)
            .finish()
    }
}

/// Prints every setting but the password, and the URL without its
/// credentials.
impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db_sessions", &self.db_sessions)
            .field("db_notifications", &self.db_notifications)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("max_connections", &self.max_connections)
            .field("prefix", &self.prefix)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_sessions", &self.max_sessions)
            .field("cache_max_bytes", &self.cache_max_bytes)
            .field("max_item_bytes", &self.max_item_bytes)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("database", &self.database)
            .field("schema", &self.schema)
            .field("create_schema", &self.create_schema)
            .field("path", &self.path)
            .field("cleanup_interval_secs", &self.cleanup_interval_secs)
            .finish()
    }
}

/// A store URL with any `user:password@`, and any `password=` query
/// parameter, replaced.
fn redact_url(url: &str) -> String {
    let url = redact_userinfo(url);
    match url.split_once('?') {
        Some((base, query)) if query.split('&').any(|p| p.starts_with("password=")) => {
            let query: Vec<String> = query
                .split('&')
                .map(|p| match p.strip_prefix("password=") {
                    Some(_) => format!("password={REDACTED}"),
                    None => p.to_owned(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        _ => url,
    }
}

fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // Credentials end at the last '@' before the path.
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{REDACTED}@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

impl StorageConfig {
    /// `timeout_ms` as a duration; 0 is an error that names the key.
    pub fn timeout(&self) -> Result<Option<Duration>> {
        match self.timeout_ms {
            Some(0) => Err(config_error("storage.timeout_ms must be greater than 0")),
            ms => Ok(ms.map(Duration::from_millis)),
        }
    }

    /// `max_connections`; 0, or more than
    /// [`MAX_CONNECTIONS`](cloakroom::store::MAX_CONNECTIONS), is an error
    /// that names the key.
    pub fn connections(&self) -> Result<Option<usize>> {
        match self.max_connections {
            Some(0) => Err(config_error("storage.max_connections must be at least 1")),
            Some(n) if n as usize > MAX_CONNECTIONS => Err(config_error(format!(
                "storage.max_connections must be at most {MAX_CONNECTIONS}, not {n}"
            ))),
            n => Ok(n.map(|n| n as usize)),
        }
    }

    /// `max_item_bytes`; 0 is an error that names the key.
    pub fn item_limit(&self) -> Result<Option<usize>> {
        match self.max_item_bytes {
            Some(0) => Err(config_error("storage.max_item_bytes must be at least 1")),
            n => Ok(n),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Float,
    Bool,
    List,
}

/// Every key an environment variable may set: `CLOAKROOM_` + the key path
/// in upper case, joined by `_`.
const ENV_KEYS: &[(&str, &str, Kind)] = &[
    ("", "engine", Kind::Str),
    ("", "cookie_secret", Kind::Str),
    ("", "cookie_secrets", Kind::List),
    ("storage", "url", Kind::Str),
    ("storage", "host", Kind::Str),
    ("storage", "port", Kind::Int),
    ("storage", "db_sessions", Kind::Int),
    ("storage", "db_notifications", Kind::Int),
    ("storage", "username", Kind::Str),
    ("storage", "password", Kind::Str),
    ("storage", "max_connections", Kind::Int),
    ("storage", "prefix", Kind::Str),
    ("storage", "timeout_ms", Kind::Int),
    ("storage", "max_sessions", Kind::Int),
    ("storage", "cache_max_bytes", Kind::Int),
    ("storage", "max_item_bytes", Kind::Int),
    ("storage", "tls_ca_file", Kind::Str),
    ("storage", "database", Kind::Str),
    ("storage", "schema", Kind::Str),
    ("storage", "create_schema", Kind::Bool),
    ("storage", "path", Kind::Str),
    ("storage", "cleanup_interval_secs", Kind::Int),
    ("cookies", "name", Kind::Str),
    ("cookies", "expires_days", Kind::Float),
    ("cookies", "secure", Kind::Bool),
    ("cookies", "http_only", Kind::Bool),
    ("cookies", "same_site", Kind::Str),
    ("cookies", "domain", Kind::Str),
    ("cookies", "path", Kind::Str),
    ("expiry", "idle_timeout_secs", Kind::Int),
    ("expiry", "absolute_timeout_secs", Kind::Int),
    ("expiry", "max_idle_timeout_secs", Kind::Int),
    ("expiry", "max_absolute_timeout_secs", Kind::Int),
    ("expiry", "max_cookie_days", Kind::Float),
    ("limits", "max_name_bytes", Kind::Int),
    ("limits", "max_value_bytes", Kind::Int),
    ("limits", "max_names", Kind::Int),
    ("limits", "max_session_bytes", Kind::Int),
    ("limits", "max_cookie_header_bytes", Kind::Int),
    ("limits", "max_sessions_per_user", Kind::Int),
    ("limits", "on_max_sessions", Kind::Str),
    ("pycket", "cookie_secret", Kind::Str),
    ("pycket", "mode", Kind::Str),
    ("pycket", "url", Kind::Str),
    ("pycket", "db_sessions", Kind::Int),
    ("pycket", "db_notifications", Kind::Int),
    ("pycket", "delete_after_import", Kind::Bool),
    ("pycket", "expires_days", Kind::Int),
];

const ENV_PREFIX: &str = "CLOAKROOM_";

impl Config {
    /// Parses a configuration file's text.
    pub fn from_toml(text: &str) -> Result<Self> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| config_error(toml_message(&e, text)))?;
        Self::from_table(table)
    }

    /// Reads `path` (if given), applies `CLOAKROOM_*` variables from the
    /// process environment, and checks the result.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        Self::load_with_env(
            path,
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// As [`load`](Self::load), with the environment given explicitly.
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| config_error(format!("cannot read {}: {e}", path.display())))?;
                toml::from_str(&text).map_err(|e| {
                    config_error(format!("{}: {}", path.display(), toml_message(&e, &text)))
                })?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            if let Some(key) = name.strip_prefix(ENV_PREFIX) {
                set_from_env(&mut table, &name, key, &value)?;
            }
        }
        Self::from_table(table)
    }

    fn from_table(table: toml::Table) -> Result<Self> {
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let message = inner.message().trim();
                if path == "." {
                    config_error(message.to_owned())
                } else {
                    config_error(format!("{path}: {message}"))
                }
            })?;
        config.cookie_config()?;
        config.expiry_policy().validate()?;
        config.storage.timeout()?;
        config.storage.connections()?;
        if config.limits.max_sessions_per_user == Some(0) {
            return Err(config_error(
                "limits.max_sessions_per_user must be at least 1 (leave it unset for no cap)",
            ));
        }
        Ok(config)
    }

    /// The signing keys, or `None` when no secret is configured.
    pub fn key_ring(&self) -> Result<Option<KeyRing>> {
        let secrets: Vec<&str> = self
            .cookie_secret
            .iter()
            .chain(&self.cookie_secrets)
            .map(String::as_str)
            .collect();
        if secrets.is_empty() {
            return Ok(None);
        }
        KeyRing::new(secrets).map(Some).map_err(|e| match e {
            Error::Config(msg) => Error::Config(format!("cookie_secret(s): {msg}")),
            other => other,
        })
    }

    /// The cookie settings: defaults overridden by `[cookies]`.
    pub fn cookie_config(&self) -> Result<CookieConfig> {
        let c = &self.cookies;
        let mut cookie = CookieConfig::default();
        if let Some(name) = &c.name {
            cookie = cookie.name(name);
        }
        if let Some(days) = c.expires_days {
            if !(days.is_finite() && days > 0.0) {
                return Err(config_error(format!(
                    "cookies.expires_days must be a positive number of days, not {days}"
                )));
            }
            cookie = cookie.expires_days(Some(days));
        }
        if let Some(secure) = c.secure {
            cookie = cookie.secure(secure);
        }
        if let Some(http_only) = c.http_only {
            cookie = cookie.http_only(http_only);
        }
        if let Some(same_site) = &c.same_site {
            let parsed = SameSite::parse(same_site).ok_or_else(|| {
                config_error(format!(
                    "cookies.same_site must be \"lax\", \"strict\" or \"none\", not {same_site:?}"
                ))
            })?;
            cookie = cookie.same_site(parsed);
        }
        if let Some(domain) = &c.domain {
            cookie = cookie.domain(Some(domain.as_str()));
        }
        if let Some(path) = &c.path {
            cookie = cookie.path(path);
        }
        cookie.validate()?;
        Ok(cookie)
    }

    /// The timeouts: defaults overridden by `[expiry]`.
    pub fn expiry_policy(&self) -> ExpiryPolicy {
        let mut policy = ExpiryPolicy::default();
        if let Some(secs) = self.expiry.idle_timeout_secs {
            policy = policy.idle(Duration::from_secs(secs));
        }
        if let Some(secs) = self.expiry.absolute_timeout_secs {
            policy = policy.absolute(Duration::from_secs(secs));
        }
        policy
    }

    /// The most one session may ask for with `Session::set_expiry`
    /// ("remember me"): `[expiry]`'s `max_*` keys, each defaulting to its
    /// default-session counterpart.
    pub fn max_session_expiry(&self) -> Result<SessionExpiry> {
        let policy = self.expiry_policy();
        let secs = |key: Option<u64>, default: Duration| key.map_or(default, Duration::from_secs);
        let idle = secs(self.expiry.max_idle_timeout_secs, policy.idle_timeout());
        let absolute = secs(
            self.expiry.max_absolute_timeout_secs,
            policy.absolute_lifetime(),
        );
        let max = SessionExpiry::new(idle, absolute);
        let (key, days) = match self.expiry.max_cookie_days {
            Some(days) => ("expiry.max_cookie_days", Some(days)),
            None => ("cookies.expires_days", self.cookies.expires_days),
        };
        if let Some(days) = days
            && !(days.is_finite() && days > 0.0)
        {
            return Err(config_error(format!(
                "{key} must be a positive number of days, not {days}"
            )));
        }
        Ok(match days {
            Some(days) => max.persistent(Duration::from_secs_f64(days.min(400.0) * 86_400.0)),
            None => max,
        })
    }

    /// The size limits: defaults overridden by `[limits]`.
    pub fn limits(&self) -> Limits {
        let mut limits = Limits::default();
        if let Some(n) = self.limits.max_name_bytes {
            limits = limits.max_name_bytes(n);
        }
        if let Some(n) = self.limits.max_value_bytes {
            limits = limits.max_value_bytes(n);
        }
        if let Some(n) = self.limits.max_names {
            limits = limits.max_names(n);
        }
        if let Some(n) = self.limits.max_session_bytes {
            limits = limits.max_session_bytes(n);
        }
        if let Some(n) = self.limits.max_cookie_header_bytes {
            limits = limits.max_cookie_header_bytes(n);
        }
        if let Some(n) = self.limits.max_sessions_per_user {
            limits = limits.max_sessions_per_user(Some(n));
        }
        if let Some(on_max) = self.limits.on_max_sessions {
            limits = limits.on_max_sessions(on_max);
        }
        limits
    }
}

/// A toml syntax error's message and line, without the source excerpt,
/// which may hold a secret from the file.
fn toml_message(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim();
    match e.span() {
        Some(span) => {
            let line = text.as_bytes()[..span.start.min(text.len())]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            format!("line {line}: {message}")
        }
        None => message.to_owned(),
    }
}

fn set_from_env(table: &mut toml::Table, var: &str, key: &str, raw: &str) -> Result<()> {
    let found = ENV_KEYS.iter().find(|(section, name, _)| {
        let expected = if section.is_empty() {
            name.to_ascii_uppercase()
        } else {
            format!("{section}_{name}").to_ascii_uppercase()
        };
        expected == key
    });
    let Some((section, name, kind)) = found else {
        return Err(config_error(format!(
            "unknown environment variable {var}: no such setting"
        )));
    };
    let bad = |what: &str| config_error(format!("{var} must be {what}, not {raw:?}"));
    let value = match kind {
        Kind::Str => toml::Value::String(raw.to_owned()),
        Kind::Int => toml::Value::Integer(raw.trim().parse().map_err(|_| bad("an integer"))?),
        Kind::Float => toml::Value::Float(raw.trim().parse().map_err(|_| bad("a number"))?),
        Kind::Bool => toml::Value::Boolean(match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(bad("true or false")),
        }),
        Kind::List => toml::Value::Array(
            raw.split(',')
                .map(|s| toml::Value::String(s.trim().to_owned()))
                .collect(),
        ),
    };
    let target = if section.is_empty() {
        table
    } else {
        match table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(t) => t,
            _ => {
                return Err(config_error(format!(
                    "{section} must be a table to apply {var}"
                )));
            }
        }
    };
    target.insert(name.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a secret of at least thirty-two bytes";

    #[test]
    fn pycket_shaped_file_parses() {
        let config = Config::from_toml(&format!(
            r#"
            engine = "redis"
            cookie_secret = "{SECRET}"
            [storage]
            host = "10.0.0.2"
            port = 6380
            db_sessions = 2
            db_notifications = 3
            password = "pw"
            max_connections = 20
            [cookies]
            expires_days = 30
            same_site = "Strict"
            "#
        ))
        .unwrap();
        assert_eq!(config.engine, Engine::Redis);
        assert_eq!(config.storage.port, Some(6380));
        assert_eq!(config.storage.db_notifications, Some(3));
        assert!(config.key_ring().unwrap().is_some());
        let cookie = format!("{:?}", config.cookie_config().unwrap());
        assert!(cookie.contains("Strict"), "{cookie}");
        assert!(
            cookie.contains("2592000") || cookie.contains("30"),
            "{cookie}"
        );
    }

    #[test]
    fn connections_are_bounded_both_ways() {
        let connections = |n: u32| {
            Config::from_toml(&format!("[storage]\nmax_connections = {n}\n"))
                .and_then(|c| c.storage.connections())
        };
        assert_eq!(connections(1).unwrap(), Some(1));
        assert_eq!(connections(10_000).unwrap(), Some(MAX_CONNECTIONS));
        for n in [0, 10_001, u32::MAX] {
            let e = connections(n).unwrap_err().to_string();
            assert!(e.contains("storage.max_connections must be at"), "{e}");
        }
    }

    #[test]
    fn the_session_cap_from_the_file_and_the_environment() {
        let config =
            Config::from_toml("[limits]\nmax_sessions_per_user = 3\non_max_sessions = 'refuse'\n")
                .unwrap();
        let cap = config.limits().session_cap().unwrap();
        assert_eq!((cap.max, cap.on_max), (3, cloakroom::OnMaxSessions::Refuse));
        let env = [
            ("CLOAKROOM_LIMITS_MAX_SESSIONS_PER_USER", "2"),
            ("CLOAKROOM_LIMITS_ON_MAX_SESSIONS", "evict_oldest"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let cap = Config::load_with_env(None, env)
            .unwrap()
            .limits()
            .session_cap()
            .unwrap();
        assert_eq!(
            (cap.max, cap.on_max),
            (2, cloakroom::OnMaxSessions::EvictOldest)
        );
        assert!(
            Config::default().limits().session_cap().is_none(),
            "no cap by default"
        );
        for bad in ["on_max_sessions = 'sometimes'", "max_sessions_per_user = 0"] {
            let err = Config::from_toml(&format!("[limits]\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("on_max_sessions") || err.contains("max_sessions_per_user"),
                "{err}"
            );
        }
    }

    #[test]
    fn debug_never_prints_a_secret() {
        let config = Config::from_toml(&format!(
            r#"
            cookie_secret = "{SECRET}"
            cookie_secrets = ["{SECRET} older"]
            [storage]
            url = "redis://app:url-password@10.0.0.2:6379/0"
            password = "storage-password"
            "#
        ))
        .unwrap();
        let printed = format!("{config:?} {:?}", config.storage);
        for secret in [SECRET, "url-password", "storage-password"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("10.0.0.2:6379/0"), "{printed}");
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn a_postgres_password_in_the_query_is_never_printed() {
        let pg = Config::from_toml(
            "[storage]\nurl = 'postgres://db.internal/app?password=query-password&schema=s'",
        )
        .unwrap();
        let printed = format!("{pg:?} {:?}", pg.postgres_config().unwrap());
        assert!(!printed.contains("query-password"), "{printed}");
        assert!(printed.contains("schema=s"), "{printed}");
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_schema_settings_apply_and_conflicts_are_refused() {
        let off = Config::from_toml("engine = 'postgres'\n[storage]\ncreate_schema = false")
            .unwrap()
            .postgres_config()
            .unwrap();
        assert!(
            format!("{off:?}").contains("create_schema: false"),
            "{off:?}"
        );
        let named =
            Config::from_toml("[storage]\nurl = 'postgres://db/app?schema=a'\nschema = 'a'")
                .unwrap();
        assert_eq!(named.postgres_config().unwrap().schema_name(), "a");
        let two = Config::from_toml("[storage]\nurl = 'postgres://db/app?schema=a'\nschema = 'b'")
            .unwrap();
        let err = two.postgres_config().unwrap_err().to_string();
        assert!(err.contains("disagree"), "{err}");
        let default_named = Config::from_toml(
            "[storage]\nurl = 'postgres://db/app?schema=cloakroom'\nschema = 'b'",
        )
        .unwrap();
        let err = default_named.postgres_config().unwrap_err().to_string();
        assert!(err.contains("disagree"), "{err}");
        let config_only =
            Config::from_toml("[storage]\nurl = 'postgres://db/app'\nschema = 'b'").unwrap();
        assert_eq!(config_only.postgres_config().unwrap().schema_name(), "b");
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_refuses_to_leave_its_schema_alone() {
        let config =
            Config::from_toml("engine = 'sqlite'\n[storage]\ncreate_schema = false").unwrap();
        let err = config.sqlite_config().unwrap_err().to_string();
        assert!(err.contains("storage.create_schema"), "{err}");
    }

    #[test]
    fn session_expiry_maximums_default_to_the_defaults() {
        let plain = Config::from_toml("[expiry]\nidle_timeout_secs = 600").unwrap();
        let max = plain.max_session_expiry().unwrap();
        assert_eq!(max.idle_timeout(), Duration::from_secs(600));
        assert_eq!(max.absolute_lifetime(), Duration::from_secs(43_200));
        assert_eq!(max.cookie_max_age(), None);
        let remember = Config::from_toml(
            "[expiry]\nmax_idle_timeout_secs = 604800\n\
             max_absolute_timeout_secs = 2592000\nmax_cookie_days = 30",
        )
        .unwrap();
        let max = remember.max_session_expiry().unwrap();
        assert_eq!(max.idle_timeout(), Duration::from_secs(604_800));
        assert_eq!(max.cookie_max_age(), Some(Duration::from_secs(30 * 86_400)));
        let bad = Config::from_toml("[expiry]\nmax_cookie_days = -1").unwrap();
        let err = bad.max_session_expiry().unwrap_err().to_string();
        assert!(err.contains("expiry.max_cookie_days"), "{err}");
        // The loader refuses it in a file; a Config built in code may hold it.
        let mut bad = Config::default();
        bad.cookies.expires_days = Some(-1.0);
        let err = bad.max_session_expiry().unwrap_err().to_string();
        assert!(err.contains("cookies.expires_days"), "{err}");
    }

    #[test]
    fn pycket_modes_are_checked() {
        let off = Config::from_toml("").unwrap();
        assert_eq!(off.pycket.checked_mode().unwrap(), PycketMode::Off);
        let migrate =
            Config::from_toml("[pycket]\nmode = 'migrate'\ncookie_secret = 'tornado secret'")
                .unwrap();
        assert_eq!(migrate.pycket.checked_mode().unwrap(), PycketMode::Migrate);
        assert!(!format!("{migrate:?}").contains("tornado secret"));
        let share = Config::from_toml("[pycket]\nmode = 'share'\ncookie_secret = 's'").unwrap();
        assert_eq!(share.pycket.checked_mode().unwrap(), PycketMode::Share);
        for (toml, says) in [
            ("[pycket]\nmode = 'migrate'", "pycket.cookie_secret"),
            ("[pycket]\nmode = 'share'", "pycket.cookie_secret"),
            ("[pycket]\nmode = 'sync'", "sync"),
        ] {
            let err = Config::from_toml(toml)
                .unwrap()
                .pycket
                .checked_mode()
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::from_toml("[storage]\nhots = 'x'")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hots"), "{err}");
        let err = Config::from_toml("[cookie]\nname = 'x'")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cookie"), "{err}");
    }

    #[test]
    fn invalid_values_are_named() {
        let err = Config::from_toml("engine = 'mysql'")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mysql"), "{err}");
        let err = Config::from_toml("[cookies]\nsame_site = 'sometimes'")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cookies.same_site"), "{err}");
        let err = Config::from_toml("[cookies]\nname = '__Host-id'\nsecure = false")
            .unwrap_err()
            .to_string();
        assert!(err.contains("__Host-"), "{err}");
        let err = Config::from_toml("cookie_secret = 'short'")
            .unwrap()
            .key_ring()
            .unwrap_err()
            .to_string();
        assert!(err.contains("cookie_secret"), "{err}");
        let err = Config::from_toml("[expiry]\nidle_timeout_secs = 0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("idle_timeout_secs"), "{err}");
        let err = Config::from_toml("[storage]\nport = 'x'")
            .unwrap_err()
            .to_string();
        assert!(err.contains("port") || err.contains("u16"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("cloakroom-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cloakroom.toml");
        std::fs::write(&path, "engine = 'memory'\n[storage]\nport = 1\n").unwrap();
        let env = [
            ("CLOAKROOM_ENGINE", "redis"),
            ("CLOAKROOM_STORAGE_PORT", "6390"),
            ("CLOAKROOM_COOKIES_SECURE", "false"),
            ("CLOAKROOM_COOKIE_SECRETS", &format!("{SECRET}1,{SECRET}2")),
            ("UNRELATED", "x"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let config = Config::load_with_env(Some(&path), env).unwrap();
        assert_eq!(config.engine, Engine::Redis);
        assert_eq!(config.storage.port, Some(6390));
        assert_eq!(config.cookies.secure, Some(false));
        assert_eq!(config.key_ring().unwrap().unwrap().len(), 2);

        let bad = [("CLOAKROOM_STORAGE_PORT".to_owned(), "many".to_owned())];
        let err = Config::load_with_env(None, bad).unwrap_err().to_string();
        assert!(err.contains("CLOAKROOM_STORAGE_PORT"), "{err}");
        let unknown = [("CLOAKROOM_STORAGE_HOTS".to_owned(), "x".to_owned())];
        let err = Config::load_with_env(None, unknown)
            .unwrap_err()
            .to_string();
        assert!(err.contains("CLOAKROOM_STORAGE_HOTS"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
