//! A Memcached store for [cloakroom](https://docs.rs/cloakroom) sessions.
//!
//! Each session is one item holding a JSON object (see the `item` module
//! docs in the source). Memcached has no scripts, so [`Store::apply`] is a
//! compare-and-swap loop: read the item with its CAS token, apply the patch,
//! write it back only if nobody wrote in between, and retry otherwise. Two
//! requests that change different names therefore both keep their change,
//! as with Redis.
//!
//! It speaks memcached's meta protocol (memcached 1.6 or later) through the
//! `async-memcached` client, with a small pool of connections; a broken or
//! timed-out connection is dropped and replaced on the next call, so the
//! store recovers by itself when memcached comes back.
//!
//! ```no_run
//! use cloakroom::{KeyRing, SessionLayer};
//! use cloakroom_memcached::{MemcachedConfig, MemcachedStore};
//!
//! # fn f() -> cloakroom::Result<()> {
//! let store = MemcachedStore::new(MemcachedConfig::from_url("memcache://127.0.0.1:11211")?);
//! let layer = SessionLayer::builder(store, KeyRing::random()).build()?;
//! # Ok(()) }
//! ```
//!
//! [`Store::apply`]: cloakroom::Store::apply
#![warn(missing_docs)]

mod inventory;
mod item;
mod pool;

use cloakroom::{Applied, Change, Error, Expiry, Patch, Record, Result, SessionId, Store};
use item::{Item, exptime};
use pool::{Conn, Pool};
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

/// Connection settings for [`MemcachedStore`].
///
/// ```
/// use cloakroom_memcached::MemcachedConfig;
/// let config = MemcachedConfig::from_url("memcache://127.0.0.1:11211")?.max_connections(8);
/// assert_eq!(config.address(), "127.0.0.1:11211");
/// # Ok::<(), cloakroom::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MemcachedConfig {
    addr: String,
    prefix: String,
    timeout: Duration,
    max_connections: usize,
    max_attempts: usize,
    max_item_bytes: usize,
}

/// Memcached's default largest item (`-I 1m`), less room for the key and
/// the item's own header.
const DEFAULT_MAX_ITEM_BYTES: usize = 1024 * 1024 - 512;

impl MemcachedConfig {
    /// Settings from `memcache://HOST:PORT` (or `memcached://`).
    pub fn from_url(url: &str) -> Result<Self> {
        let addr = url
            .strip_prefix("memcache://")
            .or_else(|| url.strip_prefix("memcached://"))
            .ok_or_else(|| {
                Error::Config(format!(
                    "storage.url: {url:?} is not a memcache://HOST:PORT URL"
                ))
            })?
            .trim_end_matches('/');
        Self::from_addr(addr)
    }

    fn from_addr(addr: &str) -> Result<Self> {
        let valid = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(Error::Config(format!(
                "storage: memcached address {addr:?} must be HOST:PORT"
            )));
        }
        Ok(MemcachedConfig {
            addr: addr.to_owned(),
            prefix: "cr".to_owned(),
            timeout: Duration::from_secs(2),
            // One per thread slot at least: on actix-web (a worker per
            // CPU) each worker reuses only connections it opened, and with
            // fewer than one per worker they would be closed and opened
            // again.
            max_connections: cloakroom::store::RuntimeThread::slots().max(8),
            max_attempts: 64,
            max_item_bytes: DEFAULT_MAX_ITEM_BYTES,
        })
    }

    /// The key prefix (default `cr`): printable ASCII, no spaces, at most
    /// 200 bytes, since memcached keys are limited to 250.
    pub fn prefix(mut self, prefix: &str) -> Result<Self> {
        if prefix.len() > 200 || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Config(format!(
                "storage.prefix {prefix:?} must be printable ASCII without spaces, at most 200 bytes"
            )));
        }
        self.prefix = prefix.to_owned();
        Ok(self)
    }

    /// The bound on every store call, retries included (default 2 s),
    /// except a sign-in's update of the user's index, whose
    /// compare-and-swap attempts are bounded one by one.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Most connections open at once (default: 8, or twice the CPUs if
    /// more). On a current-thread runtime (each actix-web worker runs
    /// one) a thread reuses only the connections it opened, since their
    /// readiness comes from its own runtime; keep at least one per such
    /// thread, or they are closed and opened again. At most
    /// [`MAX_CONNECTIONS`](cloakroom::store::MAX_CONNECTIONS).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.clamp(1, cloakroom::store::MAX_CONNECTIONS);
        self
    }

    /// Most compare-and-swap attempts per write before giving up with
    /// [`Error::Unavailable`] (default 64).
    pub fn max_attempts(mut self, n: usize) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The largest session item a write sends (default: memcached's 1 MiB
    /// item limit less 512 bytes for the key and header). Raise it with
    /// memcached's `-I`. A write that would make a session larger fails
    /// with [`Error::TooLarge`] (a `413`) and leaves the session as it
    /// was: memcached itself would delete the session on such a write.
    pub fn max_item_bytes(mut self, n: usize) -> Self {
        self.max_item_bytes = n.max(1);
        self
    }

    /// `HOST:PORT`.
    pub fn address(&self) -> &str {
        &self.addr
    }
}

/// Sessions in Memcached. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct MemcachedStore {
    pool: Arc<Pool>,
    prefix: Arc<str>,
    timeout: Duration,
    max_attempts: usize,
}

impl fmt::Debug for MemcachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemcachedStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Counts compare-and-swap attempts, pausing between them.
struct Attempts {
    made: usize,
    max: usize,
}

impl Attempts {
    /// Waits before the next attempt (not before the first; short and
    /// jittered after that), or fails once `max` have been spent.
    async fn next(&mut self) -> Result<()> {
        let n = self.made;
        self.made += 1;
        if n == 0 {
            return Ok(());
        }
        if n >= self.max {
            return Err(Error::unavailable(format!(
                "memcached: gave up after {n} compare-and-swap attempts on a busy session"
            )));
        }
        // A fresh RandomState is seeded differently each time: cheap jitter,
        // so writers that collided do not retry in lockstep.
        let jitter = RandomState::new().build_hasher().finish() % 3;
        tokio::time::sleep(Duration::from_millis(n.min(10) as u64 + jitter)).await;
        Ok(())
    }
}

/// What one compare-and-swap attempt found.
enum Attempt<T> {
    Done(T),
    Retry,
}

impl MemcachedStore {
    /// A store for `config`. Connections are opened on first use, so this
    /// does not fail when memcached is down; see [`ping`](Self::ping).
    pub fn new(config: MemcachedConfig) -> Self {
        MemcachedStore {
            pool: Arc::new(Pool::new(
                config.addr,
                config.max_connections,
                config.timeout,
                config.max_item_bytes,
            )),
            prefix: config.prefix.into(),
            timeout: config.timeout,
            max_attempts: config.max_attempts,
        }
    }

    /// Checks that memcached answers, within the timeout.
    pub async fn ping(&self) -> Result<()> {
        self.bounded(async {
            let mut conn = self.pool.get().await?;
            conn.version().await.map(|_| ())
        })
        .await
    }

    fn key(&self, id: &SessionId) -> String {
        format!("{}:{id}", self.prefix)
    }

    fn attempts(&self) -> Attempts {
        Attempts {
            made: 0,
            max: self.max_attempts,
        }
    }

    async fn bounded<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| Error::Timeout(self.timeout))?
    }

    /// One compare-and-swap attempt of `apply`.
    async fn apply_once(
        &self,
        conn: &mut Conn<'_>,
        key: &str,
        target: Option<&str>,
        patch: &Patch,
        expiry: &Expiry,
    ) -> Result<Attempt<Applied>> {
        let current = read_live(conn, key, expiry).await?;
        let (mut item, cas) = match (current, patch.creates()) {
            (Some(_), true) | (None, false) => return Ok(Attempt::Done(Applied::Gone)),
            (None, true) => (Item::new(expiry), None),
            (Some((item, cas)), false) => (item, Some(cas)),
        };
        item.apply(patch, expiry)?;
        if let Some(limits) = patch.size_limits()
            && patch.changes().any(|(_, c)| c != Change::Remove)
        {
            limits.check(item.values())?;
        }
        let bytes = item.encode()?;
        let ttl = exptime(expiry.now, item.expires_at());
        let Some(cas) = cas else {
            // A create: add only if the key is free. An ended item that
            // memcached has not evicted yet may still hold it; replace that.
            if conn.add(key, &bytes, ttl).await? {
                return Ok(Attempt::Done(Applied::Done));
            }
            return Ok(match conn.get_with_cas(key).await? {
                Some((old, cas)) if !Item::decode(&old)?.live(expiry.now) => {
                    if conn.replace_if(key, &bytes, cas, ttl).await? {
                        Attempt::Done(Applied::Done)
                    } else {
                        Attempt::Retry
                    }
                }
                _ => Attempt::Retry,
            });
        };
        if patch.ends_if_empty() && item.is_empty() {
            return Ok(match conn.delete_if(key, cas).await? {
                true => Attempt::Done(Applied::Ended),
                false => Attempt::Retry,
            });
        }
        let Some(target) = target else {
            return Ok(match conn.replace_if(key, &bytes, cas, ttl).await? {
                true => Attempt::Done(Applied::Done),
                false => Attempt::Retry,
            });
        };
        // Rename: retire the old id first (only if unchanged), so no two ids
        // ever hold the session. Measured before that delete: `add` would
        // refuse an item too large only once the old one is gone.
        conn.fits(&bytes)?;
        if !conn.delete_if(key, cas).await? {
            return Ok(Attempt::Retry);
        }
        Ok(Attempt::Done(match conn.add(target, &bytes, ttl).await? {
            true => Applied::Done,
            false => Applied::Gone,
        }))
    }

    /// One compare-and-swap attempt of `take_notification`.
    async fn take_once(
        &self,
        conn: &mut Conn<'_>,
        key: &str,
        name: &str,
        expiry: &Expiry,
    ) -> Result<Attempt<Option<String>>> {
        let Some((mut item, cas)) = read_live(conn, key, expiry).await? else {
            return Ok(Attempt::Done(None));
        };
        let Some(taken) = item.take(name) else {
            return Ok(Attempt::Done(None));
        };
        let ttl = exptime(expiry.now, item.expires_at());
        Ok(
            match conn.replace_if(key, &item.encode()?, cas, ttl).await? {
                true => Attempt::Done(Some(taken)),
                false => Attempt::Retry,
            },
        )
    }
}

/// `Some((item, cas))` for a live item, `None` if missing or ended.
async fn read_live(conn: &mut Conn<'_>, key: &str, expiry: &Expiry) -> Result<Option<(Item, u64)>> {
    Ok(match conn.get_with_cas(key).await? {
        Some((bytes, cas)) => {
            let item = Item::decode(&bytes)?;
            item.live(expiry.now).then_some((item, cas))
        }
        None => None,
    })
}

impl Store for MemcachedStore {
    fn name(&self) -> &'static str {
        "memcached"
    }

    async fn load(&self, id: &SessionId, expiry: &Expiry) -> Result<Option<Record>> {
        let key = self.key(id);
        self.bounded(async {
            let mut conn = self.pool.get().await?;
            let Some((mut item, cas)) = read_live(&mut conn, &key, expiry).await? else {
                return Ok(None);
            };
            let record = item.record();
            if expiry.refresh_due(item.expires_at(), item.deadline()) {
                // One extra round trip once per tenth of the idle window. A
                // concurrent write refreshed it anyway, so a lost race is fine.
                item.touch(expiry);
                let ttl = exptime(expiry.now, item.expires_at());
                if let Err(e) = conn.replace_if(&key, &item.encode()?, cas, ttl).await {
                    tracing::debug!(error = %e, "idle refresh skipped");
                }
            }
            Ok(Some(record))
        })
        .await
    }

    async fn apply(&self, id: &SessionId, patch: &Patch, expiry: &Expiry) -> Result<Applied> {
        let key = self.key(id);
        let target = patch.renames_to().map(|to| self.key(to));
        self.bounded(async {
            let mut conn = self.pool.get().await?;
            if let Some(target) = &target
                && read_live(&mut conn, target, expiry).await?.is_some()
            {
                return Ok(Applied::Gone);
            }
            let mut attempts = self.attempts();
            loop {
                attempts.next().await?;
                let attempt = self.apply_once(&mut conn, &key, target.as_deref(), patch, expiry);
                if let Attempt::Done(applied) = attempt.await? {
                    return Ok(applied);
                }
            }
        })
        .await
    }

    async fn take_notification(
        &self,
        id: &SessionId,
        name: &str,
        expiry: &Expiry,
    ) -> Result<Option<String>> {
        let key = self.key(id);
        self.bounded(async {
            let mut conn = self.pool.get().await?;
            let mut attempts = self.attempts();
            loop {
                attempts.next().await?;
                if let Attempt::Done(taken) = self.take_once(&mut conn, &key, name, expiry).await? {
                    return Ok(taken);
                }
            }
        })
        .await
    }

    async fn increment(
        &self,
        id: &SessionId,
        name: &str,
        by: i64,
        expiry: &Expiry,
    ) -> Result<Option<i64>> {
        let key = self.key(id);
        self.bounded(async {
            let mut conn = self.pool.get().await?;
            let mut attempts = self.attempts();
            loop {
                attempts.next().await?;
                let Some((mut item, cas)) = read_live(&mut conn, &key, expiry).await? else {
                    return Ok(None);
                };
                let value = item.increment(name, by)?;
                item.touch(expiry);
                let ttl = exptime(expiry.now, item.expires_at());
                if conn.replace_if(&key, &item.encode()?, cas, ttl).await? {
                    return Ok(Some(value));
                }
            }
        })
        .await
    }

    async fn delete(&self, id: &SessionId) -> Result<()> {
        let key = self.key(id);
        self.bounded(async {
            let mut conn = self.pool.get().await?;
            conn.delete(&key).await
        })
        .await
    }

    async fn admit(
        &self,
        user: &str,
        id: &SessionId,
        cap: Option<cloakroom::SessionCap>,
        expiry: &Expiry,
        check_only: bool,
    ) -> Result<cloakroom::Admission> {
        self.admit_to_index(user, id, cap, expiry, check_only).await
    }

    async fn sessions_of(
        &self,
        user: &str,
        expiry: &Expiry,
    ) -> Result<Vec<cloakroom::SessionInfo>> {
        self.index_sessions(user, expiry).await
    }

    async fn end_sessions_of(
        &self,
        user: &str,
        except: Option<&SessionId>,
        expiry: &Expiry,
    ) -> Result<usize> {
        self.end_index_sessions(user, except, expiry).await
    }
}
