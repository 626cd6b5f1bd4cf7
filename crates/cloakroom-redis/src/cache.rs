//! The read cache: session records kept in this process, consistent with
//! Redis through server-assisted client-side caching (`CLIENT TRACKING`).
//!
//! - Misses read on a dedicated RESP3 connection with tracking on, so
//!   Redis remembers which keys this process holds and pushes an
//!   `invalidate` message on that same connection when any client changes
//!   one (a write, a TTL change, a rename, a delete, expiry, eviction), or
//!   a null one on `FLUSHDB`/`FLUSHALL`. The tasks of multi-thread
//!   runtimes share one such connection; each thread of a current-thread
//!   runtime has its own, as with the data connections (see `conn::Pool`).
//! - Pushes are applied by the connection's reader as it parses them, in
//!   order with the replies. A reply is handed to the reading task after
//!   the reader has moved on, so a push for a later write can be applied
//!   before the reply is stored: each invalidation gets a sequence number,
//!   and a reply is stored only if no invalidation of its key (and no
//!   flush) arrived since its read was sent.
//! - A lost connection (an error, or its reader dropped with its
//!   runtime) flushes everything and stops storing through it until a
//!   new connection has tracking on: invalidations may have been missed.
//! - An entry is a hit only for threads whose own connection read it, so
//!   the reader that would drop it runs on the reading thread (see
//!   [`ReadCache::get_fresh`]).
//! - This process's own writes invalidate their key locally too, so a
//!   node reads its own writes without waiting for the push.
//!
//! The guarantee this gives, stated in ARCHITECTURE.md: an entry is dropped
//! as soon as this process reads Redis's invalidation for it; a read that
//! starts after another node's write returned can only be stale for the
//! time between Redis sending that invalidation and this process reading
//! it from its socket.

use crate::conn::{self, Sentinel};
use crate::read::record_from;
use cloakroom::store::RuntimeThread;
use cloakroom::{Error, Record, Result, Timestamp};
use lru::LruCache;
use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{PushInfo, PushKind, Value};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Invalidations remembered for replies in flight. A reply whose read was
/// sent before the oldest one remembered is not stored.
const RECENT: usize = 4096;
/// What one entry costs beyond its key, names and values: the map's and
/// the LRU's bookkeeping, the record's allocations, measured roughly.
const ENTRY_OVERHEAD: usize = 160;
/// What one name costs beyond its text.
const NAME_OVERHEAD: usize = 64;

type Open = Box<
    dyn Fn(
            Arc<dyn Fn(PushInfo) + Send + Sync>,
        )
            -> Pin<Box<dyn Future<Output = redis::RedisResult<MultiplexedConnection>> + Send>>
        + Send
        + Sync,
>;

/// The read cache's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheStats {
    /// Loads answered from the cache.
    pub hits: u64,
    /// Loads that read Redis.
    pub misses: u64,
    /// Invalidations Redis pushed (one per key, and one per flush), and
    /// lost connections.
    pub invalidations: u64,
    /// The estimated bytes the entries hold.
    pub bytes: usize,
    /// How many sessions are cached.
    pub entries: usize,
}

/// A cached session.
struct Entry {
    record: Record,
    /// The idle deadline its meta field recorded: never later than the
    /// key's real expiry, so an entry past it is treated as a miss.
    until: Timestamp,
    bytes: usize,
    /// The slots (of `State::tracking`) whose connection read it, one bit
    /// each, and so holds it tracked: a hit needs the caller's own slot
    /// (see [`ReadCache::get_fresh`]).
    readers: u64,
}

struct State {
    entries: LruCache<String, Entry>,
    bytes: usize,
    /// Invalidations so far.
    seq: u64,
    /// The last [`RECENT`] invalidations: their sequence number and key
    /// (`None`: everything).
    recent: VecDeque<(u64, Option<String>)>,
    /// The tracking connections, by slot: 0 for the tasks of multi-thread
    /// runtimes, `1 + index` for each thread of a current-thread runtime
    /// (as `conn::Pool` does, and for the same reason: a connection's
    /// reader is a task of the runtime that made it).
    tracking: Vec<Tracking>,
}

/// One slot's tracking connection.
#[derive(Default)]
struct Tracking {
    /// The connection in use and its generation; `None` before it is made
    /// and after it was lost.
    current: Option<(u64, MultiplexedConnection)>,
    /// The thread the slot is for (slots of current-thread runtimes).
    owner: Option<RuntimeThread>,
    /// Set once `current`'s reader is gone (see [`ReaderGone`]).
    dead: Option<Arc<AtomicBool>>,
}

/// Owned by a tracking connection's push callback, so dropped with the
/// connection's reader. redis-rs pushes `Disconnection` when the reader
/// meets an error, but not when its task is dropped with its runtime (a
/// worker thread that exits): the connection then stops reading
/// invalidations without a word. This marks it dead either way, and
/// tells the cache to look (see [`ReadCache::drop_dead`]).
struct ReaderGone {
    dead: Arc<AtomicBool>,
    any: Arc<AtomicBool>,
}

impl Drop for ReaderGone {
    fn drop(&mut self) {
        // No lock here: the last clone of a connection can be dropped
        // while the state lock is held.
        self.dead.store(true, Ordering::SeqCst);
        self.any.store(true, Ordering::SeqCst);
    }
}

impl State {
    fn drop_key(&mut self, key: &str) -> bool {
        match self.entries.pop(key) {
            Some(entry) => {
                self.bytes -= entry.bytes;
                metrics::gauge!("cloakroom_cache_bytes").set(self.bytes as f64);
                true
            }
            None => false,
        }
    }

    /// Forgets the connection of `generation`: it is lost, and what it
    /// cached may have missed invalidations.
    fn lose(&mut self, generation: u64) {
        let lost = self
            .tracking
            .iter_mut()
            .find(|t| t.current.as_ref().is_some_and(|(g, _)| *g == generation));
        if let Some(tracking) = lost {
            tracking.current = None;
            tracking.dead = None;
            self.flush();
        }
    }

    /// Whether the connection of `generation` is installed in a slot.
    fn installed(&self, generation: u64) -> bool {
        self.tracking
            .iter()
            .any(|t| t.current.as_ref().is_some_and(|(g, _)| *g == generation))
    }

    /// Whether the connection of `generation` is installed and reading.
    fn live(&self, generation: u64) -> bool {
        self.tracking.iter().any(|t| {
            t.current.as_ref().is_some_and(|(g, _)| *g == generation)
                && !t.dead.as_ref().is_some_and(|d| d.load(Ordering::SeqCst))
        })
    }

    /// Records an invalidation of `key`, or of everything.
    fn note(&mut self, key: Option<String>) {
        self.seq += 1;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((self.seq, key));
    }

    fn flush(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        self.note(None);
        metrics::gauge!("cloakroom_cache_bytes").set(0.0);
    }

    /// Whether no invalidation of `key` (nor a flush) came after `since`.
    fn unchanged_since(&self, since: u64, key: &str) -> bool {
        if since == self.seq {
            return true;
        }
        match self.recent.front() {
            // Some of those invalidations are forgotten already.
            Some((oldest, _)) if *oldest > since + 1 => false,
            _ => !self
                .recent
                .iter()
                .any(|(seq, k)| *seq > since && k.as_deref().is_none_or(|k| k == key)),
        }
    }
}

/// The cache and its tracking connections.
pub(crate) struct ReadCache {
    state: Arc<Mutex<State>>,
    max_bytes: usize,
    open: Open,
    /// One connection attempt at a time, per slot of `State::tracking`.
    connecting: Vec<tokio::sync::Mutex<()>>,
    generation: AtomicU64,
    timeout: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: Arc<AtomicU64>,
    /// Set when some tracking connection's reader is gone.
    reader_gone: Arc<AtomicBool>,
}

/// The tracking connection's settings: the store's timeout, and every
/// push handed to `push` as the reader parses it.
fn tracking_config(
    timeout: Duration,
    push: Arc<dyn Fn(PushInfo) + Send + Sync>,
) -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_push_sender(move |info: PushInfo| {
            push(info);
            Ok::<(), Infallible>(())
        })
}

/// Describes the cache's metrics to whatever recorder is installed, and
/// makes its series exist from the start, at zero, as the core's do. Once
/// per process: a second cache must not reset the first one's counts.
fn describe_metrics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        metrics::describe_counter!(
            "cloakroom_cache_hits_total",
            "Session reads served from the read cache."
        );
        metrics::describe_counter!(
            "cloakroom_cache_misses_total",
            "Session reads the read cache sent to Redis."
        );
        metrics::describe_counter!(
            "cloakroom_cache_invalidations_total",
            "Invalidations of cached sessions that Redis pushed."
        );
        metrics::describe_gauge!(
            "cloakroom_cache_bytes",
            metrics::Unit::Bytes,
            "Bytes the read cache holds."
        );
        for name in [
            "cloakroom_cache_hits_total",
            "cloakroom_cache_misses_total",
            "cloakroom_cache_invalidations_total",
        ] {
            metrics::counter!(name).absolute(0);
        }
        metrics::gauge!("cloakroom_cache_bytes").set(0.0);
    });
}

impl ReadCache {
    /// A cache of at most `max_bytes` over one server.
    pub(crate) fn single(client: redis::Client, max_bytes: usize, timeout: Duration) -> Self {
        let open: Open = Box::new(move |push| {
            let client = client.clone();
            Box::pin(async move {
                client
                    .get_multiplexed_async_connection_with_config(&tracking_config(timeout, push))
                    .await
            })
        });
        Self::new(open, max_bytes, timeout)
    }

    /// A cache of at most `max_bytes` over the master the sentinels name.
    pub(crate) fn sentinel(sentinel: Sentinel, max_bytes: usize, timeout: Duration) -> Self {
        let open: Open = Box::new(move |push| {
            let s = sentinel.clone();
            Box::pin(async move {
                let node = s.node.clone().set_protocol(redis::ProtocolVersion::RESP3);
                let mut client = SentinelClient::build(
                    s.sentinels.clone(),
                    s.master.clone(),
                    Some(SentinelNodeConnectionInfo::default().set_redis_connection_info(node)),
                    SentinelServerType::Master,
                )?;
                client
                    .get_async_connection_with_config(&tracking_config(timeout, push))
                    .await
            })
        });
        Self::new(open, max_bytes, timeout)
    }

    fn new(open: Open, max_bytes: usize, timeout: Duration) -> Self {
        describe_metrics();
        // One bit per slot in `Entry::readers`: past 63, threads share.
        let slots = 1 + RuntimeThread::slots().min(63);
        ReadCache {
            state: Arc::new(Mutex::new(State {
                entries: LruCache::unbounded(),
                bytes: 0,
                seq: 0,
                recent: VecDeque::with_capacity(RECENT),
                tracking: (0..slots).map(|_| Tracking::default()).collect(),
            })),
            max_bytes,
            open,
            connecting: (0..slots).map(|_| tokio::sync::Mutex::new(())).collect(),
            generation: AtomicU64::new(0),
            timeout,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidations: Arc::default(),
            reader_gone: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under this lock panics mid-change.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`get`](Self::get), after letting this process read what Redis has
    /// already sent: an invalidation that arrived together with (or
    /// before) the request that wants the session is applied first.
    ///
    /// Redis queues the push to every tracking client while it runs the
    /// write, before the writer's own reply, so by the time the writer
    /// (another node) has its answer the push is in this process's
    /// socket. The reactor poll that saw this request saw that socket
    /// ready too and woke the connection's reader; yielding once lets the
    /// reader run before the cache is consulted.
    ///
    /// That reader is the caller's own thread's (on a current-thread
    /// runtime, each thread reads through a connection of its own): so an
    /// entry is a hit only for the threads whose connection read it, and
    /// so is tracked there. Another worker's connection's reader may be
    /// queued on that busy worker; this thread's first read of a session
    /// is a miss instead, and then it too holds the key tracked.
    pub(crate) async fn get_fresh(&self, key: &str, now: Timestamp) -> Option<(Record, Timestamp)> {
        tokio::task::yield_now().await;
        if cloakroom::store::current_thread_runtime().is_some() {
            // There, after the reactor poll, the runtime polls the future
            // it blocks on (actix-web's `LocalSet`, and this task in it)
            // before its spawned tasks, the reader among them: a second
            // yield lets the reader run first. Measured: 4–5 of 2000
            // reads stale across two actix-web nodes with one yield under
            // load, 0 with two (`tests/cache.rs`).
            tokio::task::yield_now().await;
        }
        self.get(key, now)
    }

    /// The cached session under `key`, if it is cached for the calling
    /// thread and alive at `now` by both its deadlines, with the idle
    /// deadline its meta recorded.
    pub(crate) fn get(&self, key: &str, now: Timestamp) -> Option<(Record, Timestamp)> {
        let mut st = self.lock();
        if self.reader_gone.load(Ordering::SeqCst) {
            self.drop_dead(&mut st);
        }
        let slot = self.slot_in(&mut st);
        let entry = st.entries.get(key)?;
        if entry.readers & (1 << slot) == 0 {
            return None;
        }
        if now >= entry.until || now >= entry.record.deadline {
            return None;
        }
        let found = (entry.record.clone(), entry.until);
        drop(st);
        self.hits.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("cloakroom_cache_hits_total").increment(1);
        Some(found)
    }

    /// Reads `key` from Redis on the tracking connection and caches it
    /// unless an invalidation of it arrived meanwhile. Returns what
    /// `HGETALL` gave, parsed.
    pub(crate) async fn read(&self, key: &str) -> Result<Option<(Record, Timestamp)>> {
        self.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("cloakroom_cache_misses_total").increment(1);
        let (slot, generation, mut conn) = self.connection().await?;
        let since = self.lock().seq;
        let mut read = redis::cmd("HGETALL");
        read.arg(key);
        let reply = conn::within(self.timeout, read.query_async::<Value>(&mut conn)).await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => {
                // A timeout or a broken connection: invalidations may be
                // lost on it, so it is never used again.
                self.lock().lose(generation);
                return Err(e);
            }
        };
        let found = record_from(reply)?;
        if let Some((record, until)) = &found {
            self.store(key, since, (slot, generation), record, *until);
        }
        Ok(found)
    }

    /// Caches `record`, read on connection `generation` of `slot` when
    /// the invalidation count was `since`.
    fn store(
        &self,
        key: &str,
        since: u64,
        (slot, generation): (usize, u64),
        record: &Record,
        until: Timestamp,
    ) {
        let bytes = ENTRY_OVERHEAD
            + key.len()
            + record
                .values
                .iter()
                .map(|(k, v)| NAME_OVERHEAD + k.len() + v.len())
                .sum::<usize>();
        if bytes > self.max_bytes / 8 {
            // One huge session would push out many small ones.
            return;
        }
        let mut st = self.lock();
        if !st.live(generation) || !st.unchanged_since(since, key) {
            return;
        }
        // An entry still here was not invalidated since it was read, nor
        // was this reply: both are this version, and both connections
        // now hold the key tracked.
        let readers = st.entries.peek(key).map_or(0, |e| e.readers) | (1 << slot);
        st.drop_key(key);
        st.entries.put(
            key.to_owned(),
            Entry {
                record: record.clone(),
                until,
                bytes,
                readers,
            },
        );
        st.bytes += bytes;
        while st.bytes > self.max_bytes {
            match st.entries.pop_lru() {
                Some((_, old)) => st.bytes -= old.bytes,
                None => break,
            }
        }
        metrics::gauge!("cloakroom_cache_bytes").set(st.bytes as f64);
    }

    /// Drops `key` after this process changed it (or learned it is gone).
    pub(crate) fn invalidate(&self, key: &str) {
        let mut st = self.lock();
        st.drop_key(key);
        st.note(Some(key.to_owned()));
    }

    /// Drops everything, after a change this process cannot pin to keys.
    pub(crate) fn flush(&self) {
        self.lock().flush();
    }

    /// The counters.
    pub(crate) fn stats(&self) -> CacheStats {
        let st = self.lock();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            bytes: st.bytes,
            entries: st.entries.len(),
        }
    }

    /// Opens a tracking connection at start-up: a server that refuses it
    /// (too old, RESP2 only, an ACL without `CLIENT`) stops start-up with
    /// a clear error; one that cannot be reached yet is not fatal.
    pub(crate) async fn first_contact(&self) -> Result<()> {
        match self.connection().await {
            Ok(_) => Ok(()),
            Err(e @ Error::Config(_)) => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "the read cache's Redis is not reachable yet");
                Ok(())
            }
        }
    }

    /// Drops the tracking connections whose reader is gone, flushing the
    /// cache if one was in use: what was read through it gets no more
    /// invalidations.
    fn drop_dead(&self, st: &mut State) {
        self.reader_gone.store(false, Ordering::SeqCst);
        let mut lost = false;
        for tracking in &mut st.tracking {
            if tracking
                .dead
                .as_ref()
                .is_some_and(|d| d.load(Ordering::SeqCst))
            {
                tracking.current = None;
                tracking.dead = None;
                lost = true;
            }
        }
        if lost {
            count_invalidation(&self.invalidations);
            tracing::warn!("a read cache's Redis connection stopped reading: cache flushed");
            st.flush();
        }
    }

    /// The calling thread's slot of `State::tracking`. A thread that takes
    /// over the slot of one that exited finds that thread's connection
    /// dead with its runtime, and its invalidations with it: dropped, and
    /// the cache flushed.
    fn slot_in(&self, st: &mut State) -> usize {
        let Some(thread) = cloakroom::store::current_thread_runtime() else {
            return 0;
        };
        let slot = 1 + thread.index() % (self.connecting.len() - 1);
        let tracking = &mut st.tracking[slot];
        match tracking.owner {
            Some(owner) if owner.index() == thread.index() && owner.id() != thread.id() => {
                tracking.owner = Some(thread);
                tracking.dead = None;
                if tracking.current.take().is_some() {
                    st.flush();
                }
            }
            Some(_) => {}
            None => tracking.owner = Some(thread),
        }
        slot
    }

    /// The calling thread's tracking connection, made (with tracking
    /// turned on) if there is none.
    async fn connection(&self) -> Result<(usize, u64, MultiplexedConnection)> {
        let slot = self.slot_in(&mut self.lock());
        if let Some((g, conn)) = self.lock().tracking[slot].current.clone() {
            return Ok((slot, g, conn));
        }
        let _one = self.connecting[slot].lock().await;
        if let Some((g, conn)) = self.lock().tracking[slot].current.clone() {
            return Ok((slot, g, conn));
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let state = Arc::downgrade(&self.state);
        let invalidations = self.invalidations.clone();
        // Set before the push is applied: a connection lost before it is
        // installed is never installed.
        let dead = Arc::new(AtomicBool::new(false));
        let gone = ReaderGone {
            dead: Arc::clone(&dead),
            any: Arc::clone(&self.reader_gone),
        };
        let on_push: Arc<dyn Fn(PushInfo) + Send + Sync> = Arc::new(move |info: PushInfo| {
            if info.kind == PushKind::Disconnection {
                gone.dead.store(true, Ordering::SeqCst);
            }
            if let Some(state) = state.upgrade() {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                apply_push(&mut st, generation, info, &invalidations);
            }
        });
        let attempt = async {
            let mut conn = (self.open)(on_push).await?;
            redis::cmd("CLIENT")
                .arg("TRACKING")
                .arg("ON")
                .query_async::<()>(&mut conn)
                .await?;
            Ok::<_, redis::RedisError>(conn)
        };
        let conn = match conn::timed(self.timeout, attempt).await? {
            Ok(conn) => conn,
            Err(e) if !conn::unreachable(&e) => {
                return Err(Error::Config(format!(
                    "storage.cache_max_bytes: Redis refused the read cache's tracking \
                     connection (it needs Redis 6 or later, RESP3, and CLIENT allowed): {e}"
                )));
            }
            Err(e) => return Err(Error::unavailable(e)),
        };
        let mut st = self.lock();
        if dead.load(Ordering::SeqCst) {
            return Err(Error::unavailable(
                "the read cache's Redis connection was lost as it was made",
            ));
        }
        // No flush here: every way a connection leaves its slot (lost,
        // reader gone, a slot taken over) flushes, and only an installed
        // connection's replies are stored.
        st.tracking[slot].current = Some((generation, conn.clone()));
        st.tracking[slot].dead = Some(dead);
        Ok((slot, generation, conn))
    }
}

/// Applies one push from the tracking connection of `generation`.
fn apply_push(st: &mut State, generation: u64, info: PushInfo, invalidations: &AtomicU64) {
    match info.kind {
        PushKind::Disconnection => {
            // Installed, not live: the callback marked it dead already.
            if st.installed(generation) {
                count_invalidation(invalidations);
                tracing::warn!("the read cache's Redis connection was lost: cache flushed");
            }
            st.lose(generation);
        }
        PushKind::Invalidate => {
            for value in info.data {
                match value {
                    Value::Array(keys) | Value::Set(keys) => {
                        for key in keys {
                            let key = match key {
                                Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
                                Value::SimpleString(s) => Some(s),
                                _ => None,
                            };
                            match key {
                                Some(key) => {
                                    st.drop_key(&key);
                                    st.note(Some(key));
                                }
                                // A key this process never caches as text:
                                // play safe.
                                None => st.flush(),
                            }
                            count_invalidation(invalidations);
                        }
                    }
                    // FLUSHDB or FLUSHALL.
                    Value::Nil => {
                        st.flush();
                        count_invalidation(invalidations);
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache")
            .field("max_bytes", &self.max_bytes)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Counts one invalidation (a key, or a flush) from Redis.
fn count_invalidation(invalidations: &AtomicU64) {
    invalidations.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("cloakroom_cache_invalidations_total").increment(1);
}

/// Refuses a cache where it cannot be kept consistent.
pub(crate) fn refuse_on_cluster() -> Error {
    Error::Config(
        "storage.cache_max_bytes: the read cache is not available on Redis Cluster \
         (it needs one tracking connection per node); set it to 0"
            .to_owned(),
    )
}
