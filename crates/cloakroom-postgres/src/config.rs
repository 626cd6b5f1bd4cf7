//! How to reach PostgreSQL, and where the sessions live in it.

use cloakroom::{Error, Result};
use std::fmt;
use std::time::Duration;

/// The settings of a [`PostgresStore`](crate::PostgresStore).
///
/// ```
/// use cloakroom_postgres::PostgresConfig;
/// use std::time::Duration;
/// let config = PostgresConfig::from_url("postgres://app:secret@db.internal/shop?schema=sessions")?
///     .pool_size(16)
///     .timeout(Duration::from_secs(2));
/// assert_eq!(config.schema_name(), "sessions");
/// // The password never reaches a log.
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), cloakroom::Error>(())
/// ```
#[derive(Clone)]
pub struct PostgresConfig {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) schema: String,
    pub(crate) pool_size: usize,
    pub(crate) timeout: Duration,
    pub(crate) cleanup_interval: Option<Duration>,
    pub(crate) cleanup_batch: u32,
    pub(crate) create_schema: bool,
    pub(crate) tls_ca: Option<Vec<u8>>,
    /// Whether `from_url` found `schema=` in the URL.
    schema_in_url: bool,
}

/// The schema the store uses unless told otherwise.
pub const DEFAULT_SCHEMA: &str = "cloakroom";

impl PostgresConfig {
    /// Parses a `postgres://` or `postgresql://` URL, or a libpq
    /// `key=value` string, as `tokio-postgres` reads them. One query
    /// parameter is Cloakroom's own: `schema=NAME`, the schema holding the
    /// session table (default `cloakroom`).
    pub fn from_url(url: &str) -> Result<PostgresConfig> {
        let (url, schema) = take_schema_param(url);
        let pg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::Config(format!("storage.url is not a PostgreSQL URL: {e}")))?;
        let mut config = PostgresConfig::new(pg);
        if let Some(schema) = schema {
            config = config.schema(&schema)?;
            config.schema_in_url = true;
        }
        Ok(config)
    }

    /// Whether the URL [`from_url`](Self::from_url) read named the schema
    /// (`schema=NAME`), so that another setting naming a different one can
    /// be refused rather than silently win.
    ///
    /// ```
    /// use cloakroom_postgres::PostgresConfig;
    /// assert!(PostgresConfig::from_url("postgres://db/app?schema=cloakroom")?.schema_in_url());
    /// assert!(!PostgresConfig::from_url("postgres://db/app")?.schema_in_url());
    /// # Ok::<(), cloakroom::Error>(())
    /// ```
    pub fn schema_in_url(&self) -> bool {
        self.schema_in_url
    }

    /// A configuration over `tokio-postgres` settings built by hand.
    pub fn new(pg: tokio_postgres::Config) -> PostgresConfig {
        PostgresConfig {
            pg,
            schema: DEFAULT_SCHEMA.to_owned(),
            pool_size: 16,
            timeout: Duration::from_secs(5),
            cleanup_interval: Some(Duration::from_secs(300)),
            cleanup_batch: 10_000,
            create_schema: true,
            tls_ca: None,
            schema_in_url: false,
        }
    }

    /// The schema holding the sessions table and the store's functions:
    /// lower-case ASCII letters, digits and `_`, not starting with a
    /// digit, at most 63 bytes. The store quotes it, so a keyword (`user`)
    /// works too.
    pub fn schema(mut self, name: &str) -> Result<PostgresConfig> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !valid {
            return Err(Error::Config(format!(
                "postgres schema {name:?}: use lower-case letters, digits and '_', \
                 not starting with a digit, at most 63 bytes"
            )));
        }
        self.schema = name.to_owned();
        Ok(self)
    }

    /// The schema the store uses.
    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    /// The most connections the store opens (default 16, at least 1) for
    /// the tasks of multi-thread runtimes, which share them.
    ///
    /// Each thread of a current-thread runtime (every actix-web worker
    /// runs one) has a pool of its own instead, of `size / CPUs`
    /// connections (at least 2), for up to `2 × CPUs` threads; threads
    /// past that share. A connection's task runs on the runtime that
    /// opened it, so a call on another worker's connection would wait
    /// for that worker to be free. On actix-web with its default of one
    /// worker per CPU, the System thread and the workers open at most
    /// `(CPUs + 1) × max(size / CPUs, 2)` connections. At most
    /// [`MAX_CONNECTIONS`](cloakroom::store::MAX_CONNECTIONS).
    pub fn pool_size(mut self, size: usize) -> PostgresConfig {
        self.pool_size = size.clamp(1, cloakroom::store::MAX_CONNECTIONS);
        self
    }

    /// How long one store call may take, waiting for a connection
    /// included, before it fails with [`Error::Timeout`] (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> PostgresConfig {
        self.timeout = timeout;
        self
    }

    /// How often the background task deletes expired rows (default five
    /// minutes); `None` turns it off, for a deployment that runs
    /// [`PostgresStore::delete_expired`](crate::PostgresStore::delete_expired)
    /// itself. Expired rows are never returned either way.
    pub fn cleanup_interval(mut self, every: Option<Duration>) -> PostgresConfig {
        self.cleanup_interval = every.filter(|d| !d.is_zero());
        self
    }

    /// The most rows one cleanup statement deletes (default 10 000), so
    /// one statement never runs long. Each statement scans the table (the
    /// expiry column has no index, which keeps writes cheap).
    pub fn cleanup_batch(mut self, rows: u32) -> PostgresConfig {
        self.cleanup_batch = rows.max(1);
        self
    }

    /// Whether the store creates and upgrades its schema itself (default
    /// `true`). With `false` it only checks that the schema is at the
    /// version it needs: for teams that apply `cloakroom sql schema` (or
    /// [`schema_sql`](crate::schema_sql)) with their own migrations.
    pub fn create_schema(mut self, create: bool) -> PostgresConfig {
        self.create_schema = create;
        self
    }
}

impl PostgresConfig {
    /// Trusts this CA (PEM) for the server's certificate, instead of the
    /// system's roots. Needs the `tls` feature; TLS itself is asked for
    /// in the URL (`sslmode=require`), as libpq does.
    pub fn tls_ca_pem(mut self, pem: Vec<u8>) -> PostgresConfig {
        self.tls_ca = Some(pem);
        self
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("hosts", &self.pg.get_hosts())
            .field("ports", &self.pg.get_ports())
            .field("user", &self.pg.get_user())
            .field("dbname", &self.pg.get_dbname())
            .field("password", &self.pg.get_password().map(|_| "<redacted>"))
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .field("cleanup_interval", &self.cleanup_interval)
            .field("cleanup_batch", &self.cleanup_batch)
            .field("create_schema", &self.create_schema)
            .field("tls_ca", &self.tls_ca.as_ref().map(|_| "<PEM>"))
            .finish()
    }
}

/// Splits Cloakroom's `schema=` query parameter off a URL, leaving the
/// rest for `tokio-postgres`, which refuses parameters it does not know.
fn take_schema_param(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    if !(base.starts_with("postgres://") || base.starts_with("postgresql://")) {
        return (url.to_owned(), None);
    }
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("schema=") {
            Some(name) => {
                schema = Some(name.to_owned());
                false
            }
            None => !pair.is_empty(),
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_parameter_is_taken_off_and_the_rest_kept() {
        let config =
            PostgresConfig::from_url("postgres://u@h:5433/db?connect_timeout=3&schema=s1").unwrap();
        assert_eq!(config.schema_name(), "s1");
        assert_eq!(config.pg.get_ports(), [5433]);
        assert_eq!(
            config.pg.get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        let plain = PostgresConfig::from_url("postgresql://u@h/db").unwrap();
        assert_eq!(plain.schema_name(), DEFAULT_SCHEMA);
    }

    #[test]
    fn bad_schema_names_and_urls_are_config_errors() {
        for url in [
            "postgres://h/db?schema=Bad",
            "postgres://h/db?schema=a;drop",
            "postgres://h/db?schema=",
            "postgres://h/db?schema=1a",
            "postgres://h/db?nonsense=1",
            "postgres://h:notaport/db",
        ] {
            assert!(
                matches!(PostgresConfig::from_url(url), Err(Error::Config(_))),
                "{url}"
            );
        }
    }
}
