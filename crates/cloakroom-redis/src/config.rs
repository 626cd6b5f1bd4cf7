//! How to reach Redis: a URL, then settings on top.

use cloakroom::{Error, Result};
use redis::IntoConnectionInfo;
use std::fmt;
use std::time::Duration;

/// Connection settings for [`RedisStore`](crate::RedisStore).
///
/// ```
/// use cloakroom_redis::RedisConfig;
/// use std::time::Duration;
/// let config = RedisConfig::from_url("redis://:secret@127.0.0.1:6379/2")?
///     .prefix("myapp")
///     .timeout(Duration::from_millis(500))
///     .max_connections(8);
/// assert_eq!(config.key_prefix(), "myapp");
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), cloakroom::Error>(())
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    /// The server, or the first cluster node.
    info: redis::ConnectionInfo,
    /// Every cluster node given, when this is a Redis Cluster.
    cluster: Option<Vec<redis::ConnectionInfo>>,
    /// The sentinels and the master's name, when found through Sentinel.
    sentinel: Option<(Vec<redis::ConnectionInfo>, String)>,
    /// A CA certificate (PEM) to trust for `rediss://`, instead of the
    /// system's roots.
    tls_ca: Option<Vec<u8>>,
    db_notifications: Option<i64>,
    prefix: String,
    timeout: Duration,
    max_connections: usize,
    cache_max_bytes: usize,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("addr", &self.info.addr().to_string())
            .field("cluster_nodes", &self.cluster.as_ref().map(Vec::len))
            .field(
                "sentinel",
                &self.sentinel.as_ref().map(|(s, m)| (s.len(), m)),
            )
            .field("db", &self.info.redis_settings().db())
            .field("db_notifications", &self.db_notifications)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("max_connections", &self.max_connections)
            .field("cache_max_bytes", &self.cache_max_bytes)
            .finish()
    }
}

impl RedisConfig {
    /// Settings from a URL: `redis://[USER][:PASSWORD@]HOST[:PORT][/DB]`,
    /// `rediss://…` (TLS, with the `tls` feature),
    /// `redis+unix:///path/to/socket`, or a Redis Cluster as
    /// `redis+cluster://[USER][:PASSWORD@]HOST:PORT,HOST:PORT,...` (any
    /// reachable nodes; the rest of the cluster is discovered), or a master
    /// found through Sentinel as
    /// `redis+sentinel://[USER][:PASSWORD@]HOST:PORT,HOST:PORT/MASTERNAME[/DB]`
    /// (the credentials in the URL are the sentinels'; the data nodes' come
    /// from [`node_credentials`](Self::node_credentials)).
    pub fn from_url(url: &str) -> Result<Self> {
        let parse = |url: &str| url.into_connection_info().map_err(|e| url_error(url, &e));
        // `[AUTH@]HOST:PORT,HOST:PORT` as one connection info per host.
        let hosts = |scheme: &str, list: &str| -> Result<Vec<redis::ConnectionInfo>> {
            let (auth, hosts) = match list.rsplit_once('@') {
                Some((auth, hosts)) => (format!("{auth}@"), hosts),
                None => (String::new(), list),
            };
            let nodes = hosts
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| parse(&format!("redis://{auth}{h}")))
                .collect::<Result<Vec<_>>>()?;
            if nodes.is_empty() {
                return Err(Error::Config(format!(
                    "storage.url: {scheme} needs at least one HOST:PORT"
                )));
            }
            Ok(nodes)
        };
        let mut cluster = None;
        let mut sentinel = None;
        let mut db = 0;
        let info = if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let nodes = hosts("redis+cluster://", rest.trim_end_matches('/'))?;
            let first = nodes[0].clone();
            cluster = Some(nodes);
            first
        } else if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let mut parts = rest.splitn(3, '/');
            let list = parts.next().unwrap_or_default();
            let master = parts.next().filter(|m| !m.is_empty()).ok_or_else(|| {
                Error::Config(
                    "storage.url: redis+sentinel:// needs a master name: \
                     redis+sentinel://HOST:PORT,HOST:PORT/MASTERNAME"
                        .to_owned(),
                )
            })?;
            if let Some(d) = parts.next().filter(|d| !d.is_empty()) {
                db = d.parse().map_err(|_| {
                    Error::Config(format!("storage.url: database {d:?} is not a number"))
                })?;
            }
            let nodes = hosts("redis+sentinel://", list)?;
            let first = nodes[0].clone();
            sentinel = Some((nodes, master.to_owned()));
            // The data nodes' settings start empty: the URL's credentials
            // are the sentinels'.
            first.set_redis_settings(redis::RedisConnectionInfo::default().set_db(db))
        } else {
            parse(url)?
        };
        Ok(RedisConfig {
            info,
            cluster,
            sentinel,
            tls_ca: None,
            db_notifications: None,
            prefix: "cr".to_owned(),
            timeout: Duration::from_secs(2),
            max_connections: 1,
            cache_max_bytes: 0,
        })
    }

    /// The database for session data (the URL's `/DB`; default 0).
    pub fn db(mut self, db: i64) -> Self {
        let settings = self.info.redis_settings().clone().set_db(db);
        self.info = self.info.set_redis_settings(settings);
        self
    }

    /// The ACL user for the data nodes.
    pub fn username(mut self, username: &str) -> Self {
        let settings = self.info.redis_settings().clone().set_username(username);
        self.info = self.info.set_redis_settings(settings);
        self
    }

    /// The password for the data nodes.
    pub fn password(mut self, password: &str) -> Self {
        let settings = self.info.redis_settings().clone().set_password(password);
        self.info = self.info.set_redis_settings(settings);
        self
    }

    /// Trusts this CA certificate (PEM) for `rediss://` instead of the
    /// system's root certificates. Needs the `tls` feature to connect.
    pub fn tls_ca_pem(mut self, pem: Vec<u8>) -> Self {
        self.tls_ca = Some(pem);
        self
    }

    /// Credentials for the data nodes found through Sentinel (the URL's
    /// are the sentinels'); the same as [`username`](Self::username) and
    /// [`password`](Self::password).
    pub fn node_credentials(mut self, username: Option<&str>, password: &str) -> Self {
        let mut settings = self.info.redis_settings().clone().set_password(password);
        if let Some(user) = username {
            settings = settings.set_username(user);
        }
        self.info = self.info.set_redis_settings(settings);
        self
    }

    /// The key prefix (default `cr`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The bound on each round trip to Redis, connecting included
    /// (default 2 s). An operation of several round trips (a read that
    /// pushes the idle deadline, a rename on a cluster) can take a
    /// multiple of it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many connections tasks on a multi-thread runtime share (default
    /// 1). Each is multiplexed: one connection pipelines every concurrent
    /// request, and measured fastest on a 2-core machine (fewer, fuller
    /// reads and writes on both sides). Raise it on machines with many
    /// cores.
    ///
    /// Each thread of a current-thread runtime (every actix-web worker
    /// runs one) uses a connection of its own instead, made by its first
    /// call, so that its round trips do not wait for another thread: at
    /// most `max(n, 2 × CPUs)` of them, shared by threads past that. With
    /// [`db_notifications`](Self::db_notifications) set, such a thread
    /// opens one to each database. On Cluster and through Sentinel, one
    /// connection is shared likewise and each such thread has its own (a
    /// cluster connection holds one to every node it talks to). The read
    /// cache's tracking connections follow the same rule: one shared, and
    /// one for each thread of a current-thread runtime. At most
    /// [`MAX_CONNECTIONS`](cloakroom::store::MAX_CONNECTIONS).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.clamp(1, cloakroom::store::MAX_CONNECTIONS);
        self
    }

    /// Keeps up to this many bytes of session records in this process, so
    /// a read needs no round trip while the session is unchanged; `0`
    /// (the default) turns the cache off. Redis keeps every process's
    /// cache consistent with `CLIENT TRACKING` (Redis 6 or later): more
    /// connections, in RESP3, carry the misses and the invalidations (one
    /// shared, and one per thread of a current-thread runtime, as
    /// [`max_connections`](Self::max_connections) says). Not available on
    /// Redis Cluster (start-up fails with a clear error). The
    /// repository's README ("The read cache (Redis)") and ARCHITECTURE.md
    /// say what it guarantees.
    pub fn cache_max_bytes(mut self, bytes: usize) -> Self {
        self.cache_max_bytes = bytes;
        self
    }

    /// Keeps notifications in another database, as pycket did (its default
    /// was db 1). Costs one more round trip when a request writes
    /// notifications, cycles or destroys its session, and up to two when
    /// a write leaves the session with no names. `None`, the default,
    /// keeps them in the session's database under their own key.
    pub fn db_notifications(mut self, db: Option<i64>) -> Self {
        self.db_notifications = db;
        self
    }

    /// The key prefix in force.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn timeout_value(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn connections(&self) -> usize {
        self.max_connections
    }

    /// The read cache over these settings, if it is on.
    pub(crate) fn read_cache(&self) -> Result<Option<crate::cache::ReadCache>> {
        let max = self.cache_max_bytes;
        if max == 0 {
            return Ok(None);
        }
        if self.cluster.is_some() {
            return Err(crate::cache::refuse_on_cluster());
        }
        if let Some((sentinels, master)) = &self.sentinel {
            let sentinel = crate::conn::Sentinel {
                sentinels: sentinels.clone(),
                master: master.clone(),
                node: self.info.redis_settings().clone(),
            };
            return Ok(Some(crate::cache::ReadCache::sentinel(
                sentinel,
                max,
                self.timeout,
            )));
        }
        let settings = self
            .info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let client = self
            .open(self.info.clone().set_redis_settings(settings))
            .map_err(|e| Error::Config(format!("storage: {e}")))?;
        Ok(Some(crate::cache::ReadCache::single(
            client,
            max,
            self.timeout,
        )))
    }

    /// The clients to connect with.
    pub(crate) fn clients(&self) -> Result<Clients> {
        let config_error = |e: redis::RedisError| Error::Config(format!("storage: {e}"));
        if let Some((sentinels, master)) = &self.sentinel {
            if self.db_notifications.is_some() {
                return Err(Error::Config(
                    "storage.db_notifications is not supported through Sentinel".to_owned(),
                ));
            }
            return Ok(Clients::Sentinel(crate::conn::Sentinel {
                sentinels: sentinels.clone(),
                master: master.clone(),
                node: self.info.redis_settings().clone(),
            }));
        }
        if let Some(nodes) = &self.cluster {
            if self.db_notifications.is_some() {
                return Err(Error::Config(
                    "storage.db_notifications: a Redis Cluster has only database 0".to_owned(),
                ));
            }
            // Credentials given by the config rather than the URL apply to
            // every node.
            let settings = self.info.redis_settings();
            let nodes: Vec<redis::ConnectionInfo> = nodes
                .iter()
                .map(|n| n.clone().set_redis_settings(settings.clone()))
                .collect();
            let client = redis::cluster::ClusterClientBuilder::new(nodes)
                .connection_timeout(self.timeout)
                .response_timeout(self.timeout)
                // Redirects and dropped connections are retried at once.
                // `TRYAGAIN` (a slot half-way through a migration),
                // `CLUSTERDOWN` and `LOADING` wait first: redis-rs's
                // default is 1.28 s a wait, more than a page can spare, and
                // a migrating key moves in milliseconds. Here five
                // retries, each waiting from 10 ms up to 20, 40, 80, 160
                // and 160 ms (jittered): under half a second in all.
                .retries(5)
                .min_retry_wait(10)
                .max_retry_wait(160)
                .retry_wait_formula(10, 2)
                .build()
                .map_err(config_error)?;
            return Ok(Clients::Cluster(client));
        }
        let open = |info: redis::ConnectionInfo| self.open(info).map_err(config_error);
        let data = open(self.info.clone())?;
        let notes = match self.db_notifications {
            Some(db) if db != self.info.redis_settings().db() => {
                let settings = self.info.redis_settings().clone().set_db(db);
                Some(open(self.info.clone().set_redis_settings(settings))?)
            }
            _ => None,
        };
        Ok(Clients::Single { data, notes })
    }
}

impl RedisConfig {
    #[cfg(feature = "tls")]
    fn open(&self, info: redis::ConnectionInfo) -> redis::RedisResult<redis::Client> {
        match &self.tls_ca {
            Some(pem) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => redis::Client::open(info),
        }
    }

    #[cfg(not(feature = "tls"))]
    fn open(&self, info: redis::ConnectionInfo) -> redis::RedisResult<redis::Client> {
        if self.tls_ca.is_some() {
            return Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "a TLS CA was given, but cloakroom-redis was built without its `tls` feature",
            )));
        }
        redis::Client::open(info)
    }
}

/// What [`RedisConfig::clients`] gives.
pub(crate) enum Clients {
    /// One server: the data database and, when it differs, the
    /// notifications database.
    Single {
        data: redis::Client,
        notes: Option<redis::Client>,
    },
    /// A Redis Cluster.
    Cluster(redis::cluster::ClusterClient),
    /// A master found through Sentinel.
    Sentinel(crate::conn::Sentinel),
}

/// A URL redis-rs refused, said without its internal error kind, and with
/// what to do when the URL needs TLS this build leaves out.
fn url_error(url: &str, e: &redis::RedisError) -> Error {
    if !cfg!(feature = "tls") && url.starts_with("rediss://") {
        return Error::Config(
            "storage.url: rediss:// needs TLS, which this build leaves out: enable \
             cloakroom-redis's `tls` feature (for the cloakroom binary, build it with \
             --features tls)"
                .to_owned(),
        );
    }
    let text = e.to_string();
    let kind = format!(" - {:?}", e.kind());
    Error::Config(format!("storage.url: {}", text.replacen(&kind, "", 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_errors_say_what_is_wrong_without_the_clients_internals() {
        let Err(Error::Config(bad_db)) = RedisConfig::from_url("redis://127.0.0.1:6379/abc") else {
            panic!("a database that is not a number is an error")
        };
        assert!(bad_db.contains("database"), "{bad_db}");
        assert!(!bad_db.contains("InvalidClientConfig"), "{bad_db}");
        let tls = RedisConfig::from_url("rediss://127.0.0.1:6379");
        if cfg!(feature = "tls") {
            assert!(tls.is_ok());
        } else {
            let Err(Error::Config(tls)) = tls else {
                panic!("rediss:// without the tls feature is an error")
            };
            assert!(tls.contains("--features tls"), "{tls}");
        }
    }
}
