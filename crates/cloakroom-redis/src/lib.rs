//! A Redis store for [cloakroom](https://docs.rs/cloakroom) sessions.
//!
//! Each session is one Redis hash, with one field per name and JSON values,
//! so `redis-cli HGETALL` shows readable data. A read is one `HGETALL`;
//! creating a session is one `RESTORE`; changing its names is plain
//! commands in one `MULTI`; clearing, renaming and notifications are one
//! atomic Lua script (EVALSHA, falling back to loading the script). A
//! request costs:
//!
//! | request | round trips |
//! | --- | --- |
//! | does not touch the session | 0 |
//! | reads the session | 1 |
//! | writes the session, including creating it | 1 |
//! | reads, then writes | 2 |
//! | signs in (binds the session to a user) | one more (two with `on_max_sessions = "refuse"`: a check first) |
//!
//! The idle deadline is the key's TTL, and the hash records the last value
//! given to it. A read pushes it only once a tenth of the idle window has
//! passed, with one more round trip: about ten times per window, not on
//! every read.
//!
//! ```no_run
//! use cloakroom::{KeyRing, SessionLayer};
//! use cloakroom_redis::{RedisConfig, RedisStore};
//!
//! # async fn f() -> cloakroom::Result<()> {
//! let store = RedisStore::connect(RedisConfig::from_url("redis://127.0.0.1:6379/0")?).await?;
//! let layer = SessionLayer::builder(store, KeyRing::random()).build()?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

// The modules, by concern: `read` (parsing a session hash), `write`
// (create, change, the apply script), `cluster` (renames across slots,
// transactions during a slot migration), `inventory` (the user index),
// `conn` (single server, cluster, Sentinel; made on first use), `keys`
// (key and field names, the meta field), `dump` (the `RESTORE` payload),
// `cache` (the read cache kept by CLIENT TRACKING).
mod cache;
mod cluster;
mod config;
mod conn;
mod direct;
mod dump;
mod inventory;
mod keys;
mod read;
mod resp;
#[cfg(test)]
mod test_proxy;
mod write;

pub use cache::CacheStats;
pub use config::RedisConfig;

use cloakroom::{Applied, Error, Expiry, Patch, Record, Result, SessionId, Timestamp};
use conn::Pool;
use keys::{SessionKeys, field, session_keys};
use read::{record_from, text};
use redis::{Script, Value};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::Duration;
use write::{applied_from, apply_call, change_pipeline};

struct Scripts {
    admit: Script,
    apply: Script,
    refresh: Script,
    rollback: Script,
    take: Script,
    notes: Script,
    increment: Script,
    export: Script,
    import: Script,
    end_empty: Script,
}

/// Sessions in Redis. Cheap to clone: clones share the connections.
#[derive(Clone)]
pub struct RedisStore {
    data: Pool,
    /// Connections to `db_notifications`, when it differs from the data's.
    notes: Option<Pool>,
    scripts: Arc<Scripts>,
    prefix: Arc<str>,
    timeout: Duration,
    /// A Redis Cluster: a rename crosses slots, so it cannot be one script.
    cluster: bool,
    /// How creates are made (`write::RESTORE_*`): `RESTORE` of a listpack,
    /// of a plain hash once a server does not read listpacks (Redis 6),
    /// and the `MULTI` once it refuses `RESTORE` itself (an ACL without
    /// `@dangerous`, a server without the command).
    restore: Arc<AtomicU8>,
    /// Session records kept in this process, when the cache is on.
    cache: Option<Arc<cache::ReadCache>>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("connections", &self.data.len())
            .field("cluster", &self.cluster)
            .field("separate_notifications_db", &self.notes.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RedisStore {
    /// Connects to Redis. Settings are checked now (a bad URL, a bad
    /// option, wrong credentials fail here). A server that cannot be
    /// reached yet is not fatal: the store starts, session calls fail with
    /// [`Error::Unavailable`] (a `503`) until it is up, and it connects by
    /// itself then. Lost connections are re-established on their own.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let timeout = config.timeout_value();
        let (data, notes, cluster) = match config.clients()? {
            config::Clients::Cluster(client) => (Pool::cluster(client), None, true),
            config::Clients::Sentinel(sentinel) => (Pool::sentinel(sentinel, timeout), None, false),
            config::Clients::Single { data, notes } => {
                let size = config.connections();
                match notes {
                    Some(notes) => {
                        // One connection of the shared budget serves the
                        // notifications db (threads of current-thread
                        // runtimes open one of their own to each db).
                        let data_size = size.saturating_sub(1).max(1);
                        let notes_size = (size - data_size).max(1);
                        (
                            Pool::single(data, data_size, timeout),
                            Some(Pool::single(notes, notes_size, timeout)),
                            false,
                        )
                    }
                    None => (Pool::single(data, size, timeout), None, false),
                }
            }
        };
        let cache = config.read_cache()?.map(Arc::new);
        for pool in std::iter::once(&data).chain(&notes) {
            conn::first_contact(pool, timeout).await?;
        }
        if let Some(cache) = &cache {
            cache.first_contact().await?;
        }
        Ok(RedisStore {
            data,
            notes,
            scripts: Arc::new(Scripts {
                admit: Script::new(include_str!("lua/admit.lua")),
                apply: Script::new(include_str!("lua/apply.lua")),
                refresh: Script::new(include_str!("lua/refresh.lua")),
                rollback: Script::new(include_str!("lua/rollback.lua")),
                take: Script::new(include_str!("lua/take.lua")),
                notes: Script::new(include_str!("lua/notes.lua")),
                increment: Script::new(include_str!("lua/increment.lua")),
                end_empty: Script::new(include_str!("lua/end_empty.lua")),
                export: Script::new(include_str!("lua/export.lua")),
                import: Script::new(include_str!("lua/import.lua")),
            }),
            prefix: config.key_prefix().into(),
            timeout,
            cluster,
            restore: Arc::new(AtomicU8::new(write::RESTORE_LISTPACK)),
            cache,
        })
    }

    /// The read cache's counters, or `None` when it is off.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|c| c.stats())
    }

    /// Drops `id`'s cached record after this process changed it, so the
    /// next read here sees the change without waiting for Redis's push.
    fn forget_cached(&self, id: &SessionId) {
        if let Some(cache) = &self.cache {
            cache.invalidate(&self.keys(id).data);
        }
    }

    fn keys(&self, id: &SessionId) -> SessionKeys {
        session_keys(&self.prefix, id)
    }

    /// Pushes a session's idle deadline (its TTL, and the meta field that
    /// records it) to `until`; false when the session is gone. Boxed by its
    /// caller: reads are the hot path, and this runs about ten times per
    /// idle window.
    async fn refresh(
        &self,
        id: &SessionId,
        keys: &SessionKeys,
        now: Timestamp,
        until: u64,
    ) -> Result<bool> {
        let mut refresh = self.scripts.refresh.prepare_invoke();
        refresh
            .key(&keys.data)
            .key(keys.notes())
            .arg(now.0)
            .arg(until);
        let mut conn = self.data.get();
        let alive: i64 = self.bounded(refresh.invoke_async(&mut conn)).await?;
        // Gone, or its meta field rewritten: the cached copy is old.
        self.forget_cached(id);
        Ok(alive != 0)
    }

    /// Runs a `MULTI` under the timeout; `None` when Redis discarded it
    /// before anything ran (`EXECABORT`: most often a slot moving between
    /// cluster nodes, `MOVED` or `ASK` for a queued command, which redis-rs
    /// does not follow for transactions) or refused it for the cluster's
    /// state (`TRYAGAIN`, `CLUSTERDOWN`).
    async fn transaction<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        conn: &mut conn::Conn,
    ) -> Result<Option<T>> {
        match conn::timed(self.timeout, pipe.query_async(conn)).await? {
            Ok(v) => Ok(Some(v)),
            Err(e) if self.cluster && discarded_by_redirect(&e) => Ok(None),
            Err(e) => Err(Error::unavailable(e)),
        }
    }

    /// Runs a store call under the timeout, mapping client errors.
    async fn bounded<T>(&self, call: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        conn::within(self.timeout, call).await
    }

    /// Deletes `keys`, in one call.
    async fn del(&self, conn: &mut conn::Conn, keys: &[&str]) -> Result<()> {
        let mut del = redis::cmd("DEL");
        for key in keys {
            del.arg(*key);
        }
        self.bounded(del.query_async::<i64>(conn)).await.map(drop)
    }
}

/// Whether `e` is a transaction that Redis discarded whole (`EXECABORT`)
/// or refused outright because its slot lives elsewhere: nothing ran.
pub(crate) fn discarded_by_redirect(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    e.is_cluster_error() || e.kind() == ErrorKind::Server(ServerErrorKind::ExecAbort)
}

/// Entry points for the micro-benchmarks; not a public API.
#[doc(hidden)]
pub mod internals {
    use super::*;

    /// The bytes a change of `patch`'s names on session `id` sends: one
    /// `MULTI` (see `RedisStore::change`).
    pub fn encode_change(id: &SessionId, patch: &Patch, expiry: &Expiry) -> Vec<u8> {
        let keys = session_keys("cr", id);
        let until = expiry.now.0.saturating_add(millis(expiry.idle));
        change_pipeline(&keys, patch, patch.size_limits().is_some(), until, false)
            .get_packed_pipeline()
    }

    /// Decodes an `HGETALL` reply into a record.
    pub fn decode_load(reply: Value) -> Result<Option<Record>> {
        Ok(record_from(reply)?.map(|(record, _)| record))
    }
}

/// `d` in milliseconds, at most 2^52 (about 142,000 years): the scripts
/// compute deadlines in Lua's numbers, which are doubles, exact only
/// below 2^53, and write them back with `%d`, which a larger one
/// overflows. A lifetime of `Duration::MAX` ("no limit") becomes the
/// longest one they count exactly.
pub(crate) fn millis(d: Duration) -> u64 {
    const MOST: u64 = 1 << 52;
    u64::try_from(d.as_millis()).map_or(MOST, |ms| ms.min(MOST))
}

impl cloakroom::Store for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn load(&self, id: &SessionId, expiry: &Expiry) -> Result<Option<Record>> {
        // One plain command: reads are the hot path, and every extra
        // command or reply value costs the client and Redis CPU.
        let keys = self.keys(id);
        let found = match &self.cache {
            Some(cache) => match cache.get_fresh(&keys.data, expiry.now).await {
                Some(hit) => Some(hit),
                // Boxed: a miss is the rare path here (see `apply_patch`).
                None => Box::pin(cache.read(&keys.data)).await?,
            },
            None => {
                let mut read = redis::Cmd::with_capacity(2, "HGETALL".len() + keys.data.len());
                read.arg("HGETALL").arg(&keys.data);
                let mut conn = self.data.get();
                let reply: Value = self.bounded(read.query_async(&mut conn)).await?;
                record_from(reply)?
            }
        };
        let Some((record, until)) = found else {
            return Ok(None);
        };
        // Checked here whatever the TTL says.
        if expiry.now >= record.deadline {
            return Ok(None);
        }
        // The idle deadline moves in steps of a tenth of the window: a
        // second round trip about ten times per window, not on every read.
        let idle = millis(expiry.idle);
        let wanted = expiry.now.0.saturating_add(idle);
        if wanted.saturating_sub(until.0) >= (idle / 10).max(1)
            && !Box::pin(self.refresh(id, &keys, expiry.now, wanted)).await?
        {
            return Ok(None);
        }
        Ok(Some(record))
    }

    async fn apply(&self, id: &SessionId, patch: &Patch, expiry: &Expiry) -> Result<Applied> {
        let applied = self.apply_patch(id, patch, expiry).await;
        // A create answered either way wrote under an unused id, or wrote
        // nothing: no copy of it can be old, and none is dropped. After
        // anything else (an error included), this process's copy may be.
        let fresh_create = patch.creates() && patch.renames_to().is_none() && applied.is_ok();
        if !fresh_create {
            self.forget_cached(id);
        }
        if let Some(to) = patch.renames_to() {
            self.forget_cached(to);
        }
        applied
    }

    async fn take_notification(
        &self,
        id: &SessionId,
        name: &str,
        expiry: &Expiry,
    ) -> Result<Option<String>> {
        let taken = self.take_note(id, name, expiry).await;
        self.forget_cached(id);
        taken
    }

    async fn increment(
        &self,
        id: &SessionId,
        name: &str,
        by: i64,
        expiry: &Expiry,
    ) -> Result<Option<i64>> {
        let counted = self.increment_name(id, name, by, expiry).await;
        self.forget_cached(id);
        counted
    }

    async fn delete(&self, id: &SessionId) -> Result<()> {
        let deleted = self.delete_session(id).await;
        self.forget_cached(id);
        deleted
    }

    async fn admit(
        &self,
        user: &str,
        id: &SessionId,
        cap: Option<cloakroom::SessionCap>,
        expiry: &Expiry,
        check_only: bool,
    ) -> Result<cloakroom::Admission> {
        let admitted = self.admit_to_index(user, id, cap, expiry, check_only).await;
        if let Ok(cloakroom::Admission::Admitted { ended }) = &admitted {
            for id in ended {
                self.forget_cached(id);
            }
        }
        admitted
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
        let ended = self.end_index_sessions(user, except, expiry).await;
        // Which ids ended is the script's business: drop them all here.
        if let Some(cache) = &self.cache {
            cache.flush();
        }
        ended
    }

    async fn end_all(&self, expiry: &Expiry) -> Result<usize> {
        let ended = self.end_every_session(expiry.now).await;
        if let Some(cache) = &self.cache {
            cache.flush();
        }
        ended
    }

    async fn count(&self, expiry: &Expiry) -> Result<usize> {
        self.count_sessions(expiry.now).await
    }
}

/// The writes behind the [`Store`](cloakroom::Store) methods, before the
/// read cache is told.
impl RedisStore {
    async fn apply_patch(&self, id: &SessionId, patch: &Patch, expiry: &Expiry) -> Result<Applied> {
        let keys = self.keys(id);
        let renamed = patch.renames_to().map(|to| self.keys(to));
        // Rare paths are boxed: an async fn is as large as its largest
        // await, and every store call's future is allocated whole.
        if self.cluster
            && let Some(to) = &renamed
        {
            return Box::pin(self.apply_moving(&keys, to, patch, expiry)).await;
        }
        if renamed.is_none() && patch.notifications().len() == 0 {
            let fast = if patch.creates() {
                self.create(&keys, patch, expiry).await?
            } else if !patch.clears() && !patch.ends_if_empty() && !patch.restarts_lifetime() {
                self.change(&keys, patch, expiry).await?
            } else {
                None
            };
            // `None`: a moving cluster slot aborted the `MULTI` before any
            // of it ran; the script below is one command, which the
            // cluster client follows to the slot's new node.
            if let Some(applied) = fast {
                return Ok(applied);
            }
        }
        Box::pin(self.apply_script(&keys, renamed.as_ref(), patch, expiry)).await
    }

    /// A patch through the apply script: a create or change the plain
    /// commands cannot make (a rename, notifications, a clear, an ending
    /// or a restarted lifetime), or one a moving cluster slot aborted.
    async fn apply_script(
        &self,
        keys: &SessionKeys,
        renamed: Option<&SessionKeys>,
        patch: &Patch,
        expiry: &Expiry,
    ) -> Result<Applied> {
        let target = renamed.unwrap_or(keys);
        // With a separate notifications db they are written there instead.
        let inline_notes = self.notes.is_none();
        let call = apply_call(
            &self.scripts.apply,
            keys,
            renamed,
            patch,
            expiry,
            inline_notes,
        );
        let mut conn = self.data.get();
        let reply: Vec<i64> = self.bounded(call.invoke_async(&mut conn)).await?;
        if reply == [4] {
            return Ok(Applied::Ended);
        }
        if let ([5, _], Some(notes)) = (reply.as_slice(), &self.notes)
            && patch.notifications().len() == 0
        {
            // No names left; the session ends unless it has notifications
            // (in their own database) or a name was set since. A
            // notification set in the instant between the two checks is
            // lost with the session.
            let mut notes_conn = notes.get();
            let unread: bool = self
                .bounded(
                    redis::cmd("EXISTS")
                        .arg(keys.notes())
                        .query_async(&mut notes_conn),
                )
                .await?;
            if !unread {
                let mut call = self.scripts.end_empty.prepare_invoke();
                call.key(&keys.data);
                let ended: i64 = self.bounded(call.invoke_async(&mut conn)).await?;
                if ended == 1 {
                    return Ok(Applied::Ended);
                }
            }
            return Ok(Applied::Done);
        }
        let Some(ttl) = applied_from(&reply, patch)? else {
            return Ok(Applied::Gone);
        };
        if let Some(notes) = &self.notes
            && (patch.notifications().len() > 0 || renamed.is_some())
        {
            let mut call = self.scripts.notes.prepare_invoke();
            call.key(keys.notes())
                .key(target.notes())
                .arg(ttl)
                .arg(if renamed.is_some() { "1" } else { "0" });
            for (name, json) in patch.notifications() {
                call.arg(name).arg(json);
            }
            let mut conn = notes.get();
            let _: i64 = self.bounded(call.invoke_async(&mut conn)).await?;
        }
        Ok(Applied::Done)
    }

    async fn take_note(
        &self,
        id: &SessionId,
        name: &str,
        expiry: &Expiry,
    ) -> Result<Option<String>> {
        let keys = self.keys(id);
        let mut call = self.scripts.take.prepare_invoke();
        // With a separate db the session's liveness cannot be checked in the
        // same script; the notifications' TTL never exceeds the session's.
        let (mut conn, check) = match &self.notes {
            Some(notes) => (notes.get(), "0"),
            None => (self.data.get(), "1"),
        };
        call.key(&keys.data)
            .key(keys.notes())
            .arg(name)
            .arg(expiry.now.0)
            .arg(check);
        let reply: Value = self.bounded(call.invoke_async(&mut conn)).await?;
        match reply {
            Value::Nil => Ok(None),
            other => text(other, "a notification").map(Some),
        }
    }

    async fn increment_name(
        &self,
        id: &SessionId,
        name: &str,
        by: i64,
        expiry: &Expiry,
    ) -> Result<Option<i64>> {
        let keys = self.keys(id);
        let mut call = self.scripts.increment.prepare_invoke();
        call.key(&keys.data)
            .key(keys.notes())
            .arg(field(name).as_ref())
            .arg(by)
            .arg(expiry.now.0)
            .arg(millis(expiry.idle));
        let mut conn = self.data.get();
        let reply: Vec<i64> = self.bounded(call.invoke_async(&mut conn)).await?;
        match reply.as_slice() {
            [1, value] => Ok(Some(*value)),
            [0] => Ok(None),
            [2] => Err(Error::Corrupt(format!(
                "session value {name:?} is not an integer"
            ))),
            other => Err(Error::Corrupt(format!(
                "increment script answered {other:?}"
            ))),
        }
    }

    async fn delete_session(&self, id: &SessionId) -> Result<()> {
        let keys = self.keys(id);
        let notes_key = keys.notes();
        self.del(&mut self.data.get(), &[&keys.data, &notes_key])
            .await?;
        if let Some(notes) = &self.notes {
            self.del(&mut notes.get(), &[&notes_key]).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloakroom::Store as _;

    /// Every store call's future is allocated whole, per request: the hot
    /// ones stay under the size where glibc's allocator slows down (about
    /// 1 KiB). Boxing the rare paths took a write from 6.5 KiB down.
    #[test]
    fn hot_store_futures_stay_small() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Nothing listens there: the store connects on first use.
        let config = RedisConfig::from_url("redis://127.0.0.1:1").unwrap();
        let store = rt.block_on(RedisStore::connect(config)).unwrap();
        let id = SessionId::from([7; 16]);
        let patch = Patch::default();
        let expiry = cloakroom::ExpiryPolicy::default().at(Timestamp(0));
        let apply = std::mem::size_of_val(&store.apply(&id, &patch, &expiry));
        let load = std::mem::size_of_val(&store.load(&id, &expiry));
        assert!(apply < 1000, "apply's future is {apply} bytes");
        assert!(load < 1000, "load's future is {load} bytes");
    }

    /// Replies that never come (a frozen host, a connection dropped on
    /// the way) fail a call on a multi-thread runtime after the store's
    /// timeout, with [`Error::Timeout`]. redis-rs's own response timeout
    /// is off there (`conn::Pool::single`): this is the store's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_without_a_reply_times_out() {
        let server = cloakroom_testkit::RedisServer::start();
        let proxy = crate::test_proxy::Proxy::start(server.addr()).await;
        let url = format!("redis://127.0.0.1:{}", proxy.port);
        let timeout = std::time::Duration::from_millis(300);
        let config = RedisConfig::from_url(&url).unwrap().timeout(timeout);
        let store = RedisStore::connect(config).await.unwrap();
        let id = SessionId::from([7; 16]);
        let expiry = cloakroom::ExpiryPolicy::default().at(Timestamp(1_000));
        assert!(store.load(&id, &expiry).await.unwrap().is_none());
        proxy.black_hole();
        let started = std::time::Instant::now();
        let waited = tokio::time::timeout(timeout * 10, store.load(&id, &expiry)).await;
        let err = waited
            .expect("the store's timeout ends the call")
            .unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "{err}");
        assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    }
}
