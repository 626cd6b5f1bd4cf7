//! The connections the store runs on: one Redis server (multiplexed
//! connections), a Redis Cluster (slot-aware clients that follow MOVED and
//! ASK redirects and topology changes), or a master found through Sentinel
//! (re-resolved after a failover). On every topology, tasks of
//! multi-thread runtimes share connections and each thread of a
//! current-thread runtime has its own (see [`Pool`]); to one server over
//! plain TCP, those are [`Direct`] connections.

use crate::direct::Direct;
use cloakroom::store::RuntimeThread;
use cloakroom::{Error, Result};
use redis::aio::MultiplexedConnection;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Cmd, ConnectionInfo, Pipeline, RedisError, RedisFuture, Value};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One connection of either kind.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(SentinelConn),
    /// A thread's own connection to one server (see [`Direct`]).
    Direct(Direct),
    /// Made on first use (see [`Lazy`]).
    Lazy(Lazy),
}

impl Conn {
    /// The connection itself, made now if it is a [`Lazy`] one not yet
    /// made.
    pub(crate) async fn resolve(&self) -> redis::RedisResult<Conn> {
        match self {
            Conn::Lazy(lazy) => lazy.conn().await,
            other => Ok(other.clone()),
        }
    }
}

type Connect = Box<
    dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = redis::RedisResult<Conn>> + Send>>
        + Send
        + Sync,
>;

/// A connection made on first use, and tried again on each call until it
/// is made: the store starts while the server is down (containers boot in
/// any order), and connects by itself once the server is up. Once made,
/// the connection reconnects on its own, as before.
#[derive(Clone)]
pub(crate) struct Lazy {
    shared: Arc<LazyShared>,
}

struct LazyShared {
    connect: Connect,
    /// Set once the connection is made; a failed attempt leaves it empty,
    /// so the next call tries again. Reading a set cell is one atomic load.
    current: tokio::sync::OnceCell<Conn>,
    db: i64,
}

impl Lazy {
    pub(crate) fn new(db: i64, connect: Connect) -> Lazy {
        Lazy {
            shared: Arc::new(LazyShared {
                connect,
                current: tokio::sync::OnceCell::new(),
                db,
            }),
        }
    }

    async fn conn(&self) -> redis::RedisResult<Conn> {
        if let Some(conn) = self.shared.current.get() {
            return Ok(conn.clone());
        }
        self.shared
            .current
            .get_or_try_init(|| (self.shared.connect)())
            .await
            .cloned()
    }
}

impl ConnectionLike for Lazy {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move { self.conn().await?.req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.conn()
                .await?
                .req_packed_commands(pipeline, offset, count)
                .await
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.db
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c) => c.req_packed_command(cmd),
            Conn::Direct(c) => c.req_packed_command(cmd),
            Conn::Lazy(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Direct(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Lazy(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(c) => c.get_db(),
            Conn::Direct(c) => c.get_db(),
            Conn::Lazy(c) => c.get_db(),
        }
    }
}

/// The connections calls run on.
///
/// A multiplexed connection's I/O runs as a task on the runtime that made
/// it. On a multi-thread runtime (axum's usual), tasks move between
/// threads anyway, and calls share the `shared` connections round-robin:
/// one connection batches the most, and measured fastest.
///
/// A current-thread runtime (each actix-web worker runs one) polls that
/// task only when its own thread is free. A call from another worker
/// then waits for that thread, and pays two thread wake-ups per round
/// trip. So each thread of such a runtime gets a connection of its own
/// from `per_thread`, made by its first call, and its round trips never
/// leave the thread. A thread that takes over the slot of one that
/// exited gets a new connection: the old one's task died with that
/// thread's runtime. (A [`Direct`] connection has no task, and is
/// replaced all the same.)
#[derive(Clone)]
pub(crate) struct Pool {
    shared: Arc<[Conn]>,
    next: Arc<AtomicUsize>,
    /// Indexed by the calling thread's index; threads past its end share
    /// (modulo). Never empty.
    per_thread: Arc<[Mutex<Slot>]>,
    /// Makes a connection (not connected until first used).
    make: Arc<dyn Fn() -> Conn + Send + Sync>,
}

/// A per-thread connection and the thread it was made for.
struct Slot {
    owner: Option<RuntimeThread>,
    conn: Conn,
}

/// Waits for `call` at most `timeout`, leaving the client's own error to
/// the caller.
pub(crate) async fn timed<T>(
    timeout: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<redis::RedisResult<T>> {
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| Error::Timeout(timeout))
}

/// Waits for `call` at most `timeout`; a client error means Redis is
/// unavailable.
pub(crate) async fn within<T>(
    timeout: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T> {
    timed(timeout, call).await?.map_err(Error::unavailable)
}

impl Pool {
    /// `size` multiplexed connections to one server shared by
    /// multi-thread runtimes, and up to `max(size, 2 × CPUs)` more, one
    /// per current-thread runtime thread. Each is made on first use and
    /// then reconnects by itself. A refused reconnection fails the call
    /// at once (no retries with back-off): while the server is down,
    /// session calls answer 503 fast.
    pub(crate) fn single(client: redis::Client, size: usize, timeout: Duration) -> Pool {
        // No response timeout of redis-rs's own: every call already runs
        // under the store's (`timed`), and a second timer per command
        // cost measurable CPU on the hot path.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(None)
            .set_number_of_retries(0);
        let info = client.get_connection_info().clone();
        let db = info.redis_settings().db();
        let shared = move || {
            let (client, config) = (client.clone(), config.clone());
            Conn::Lazy(Lazy::new(
                db,
                Box::new(move || {
                    let (client, config) = (client.clone(), config.clone());
                    Box::pin(async move {
                        let conn = ConnectionManager::new_with_config(client, config).await?;
                        Ok(Conn::Single(conn))
                    })
                }),
            ))
        };
        match Direct::serves(&info) {
            Some((host, port)) => Pool::with(size, shared, move || {
                let settings = info.redis_settings().clone();
                Conn::Direct(Direct::new(host.clone(), port, settings, timeout))
            }),
            // TLS, a Unix socket: redis-rs's connections on every thread.
            None => {
                let shared = Arc::new(shared);
                let per_thread = Arc::clone(&shared);
                Pool::with(size, move || shared(), move || per_thread())
            }
        }
    }

    /// One slot-aware connection to a cluster (and one per current-thread
    /// runtime thread), found from `nodes` on first use (and again after
    /// a failed attempt). Each holds connections to every node it talks
    /// to.
    pub(crate) fn cluster(client: redis::cluster::ClusterClient) -> Pool {
        Pool::of(1, move || {
            let client = client.clone();
            Conn::Lazy(Lazy::new(
                0,
                Box::new(move || {
                    let client = client.clone();
                    Box::pin(async move { Ok(Conn::Cluster(client.get_async_connection().await?)) })
                }),
            ))
        })
    }

    /// A connection to the master that the sentinels name (and one per
    /// current-thread runtime thread), each looking the master up on its
    /// first call.
    pub(crate) fn sentinel(sentinel: Sentinel, timeout: Duration) -> Pool {
        // redis-rs's own response timeout must fire before the store's
        // (which starts first, and drops the call unseen): a master that
        // hangs without closing its connections is then seen to time out,
        // and the next call asks the sentinels again.
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout - timeout / 4));
        Pool::of(1, move || {
            Conn::Sentinel(SentinelConn {
                shared: Arc::new(SentinelShared {
                    sentinel: sentinel.clone(),
                    config: config.clone(),
                    current: tokio::sync::Mutex::new(None),
                }),
            })
        })
    }

    /// `size` shared connections, and `max(size, RuntimeThread::slots())`
    /// for threads of current-thread runtimes, all made by `make`.
    fn of(size: usize, make: impl Fn() -> Conn + Send + Sync + 'static) -> Pool {
        let make = Arc::new(make);
        let per_thread = Arc::clone(&make);
        Pool::with(size, move || make(), move || per_thread())
    }

    /// As [`Pool::of`], with the per-thread connections made by
    /// `per_thread`.
    fn with(
        size: usize,
        shared: impl Fn() -> Conn,
        per_thread: impl Fn() -> Conn + Send + Sync + 'static,
    ) -> Pool {
        let size = size.max(1);
        let slot = |_| {
            Mutex::new(Slot {
                owner: None,
                conn: per_thread(),
            })
        };
        Pool {
            shared: (0..size).map(|_| shared()).collect(),
            next: Arc::default(),
            per_thread: (0..size.max(RuntimeThread::slots())).map(slot).collect(),
            make: Arc::new(per_thread),
        }
    }

    pub(crate) fn get(&self) -> Conn {
        let Some(thread) = cloakroom::store::current_thread_runtime() else {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.shared.len();
            return made(&self.shared[i]);
        };
        let slot = &self.per_thread[thread.index() % self.per_thread.len()];
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        match slot.owner {
            // This index's previous thread exited, and its runtime with
            // it: the connection's task is gone, so a new connection.
            Some(owner) if owner.index() == thread.index() && owner.id() != thread.id() => {
                slot.conn = (self.make)();
                slot.owner = Some(thread);
            }
            Some(_) => {}
            None => slot.owner = Some(thread),
        }
        made(&slot.conn)
    }

    /// How many connections calls from multi-thread runtimes share.
    pub(crate) fn len(&self) -> usize {
        self.shared.len()
    }
}

/// `conn` itself once made: a call then does not go through the lazy
/// wrapper's own boxed future.
fn made(conn: &Conn) -> Conn {
    match conn {
        Conn::Lazy(lazy) => match lazy.shared.current.get() {
            Some(made) => made.clone(),
            None => Conn::Lazy(lazy.clone()),
        },
        other => other.clone(),
    }
}

/// Where the sentinels are and what they watch.
#[derive(Clone)]
pub(crate) struct Sentinel {
    /// The sentinels, with their own credentials.
    pub(crate) sentinels: Vec<ConnectionInfo>,
    /// The master's name in the sentinels' configuration.
    pub(crate) master: String,
    /// Database and credentials for the data nodes.
    pub(crate) node: redis::RedisConnectionInfo,
}

/// A connection to the current master. After an error that means the
/// connection or the master is gone (an I/O error, or `READONLY` from a
/// demoted master), it asks the sentinels again on the next call.
#[derive(Clone)]
pub(crate) struct SentinelConn {
    shared: Arc<SentinelShared>,
}

struct SentinelShared {
    sentinel: Sentinel,
    config: redis::AsyncConnectionConfig,
    current: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

/// Whether `e` means the master should be looked up again.
fn master_lost(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || e.is_timeout()
        || e.code() == Some("READONLY")
}

impl SentinelConn {
    async fn master(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut current = self.shared.current.lock().await;
        if let Some(conn) = &*current {
            return Ok(conn.clone());
        }
        let s = &self.shared.sentinel;
        // A new client each time, so the master is looked up afresh.
        let mut client = SentinelClient::build(
            s.sentinels.clone(),
            s.master.clone(),
            Some(SentinelNodeConnectionInfo::default().set_redis_connection_info(s.node.clone())),
            SentinelServerType::Master,
        )?;
        let conn = client
            .get_async_connection_with_config(&self.shared.config)
            .await?;
        *current = Some(conn.clone());
        Ok(conn)
    }

    async fn observe<T>(&self, result: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if let Err(e) = &result
            && master_lost(e)
        {
            *self.shared.current.lock().await = None;
        }
        result
    }
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = match self.master().await {
                Ok(mut conn) => conn.req_packed_command(cmd).await,
                Err(e) => Err(e),
            };
            self.observe(result).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = match self.master().await {
                Ok(mut conn) => conn.req_packed_commands(pipeline, offset, count).await,
                Err(e) => Err(e),
            };
            self.observe(result).await
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.sentinel.node.db()
    }
}

/// Tries the store's first connection once. Refused or unreachable: a
/// warning, and the store starts anyway. Refused for another reason
/// (credentials, a protocol error): that is a configuration error, and
/// start-up stops.
pub(crate) async fn first_contact(pool: &Pool, timeout: Duration) -> Result<()> {
    let attempt = async {
        let mut conn = pool.get().resolve().await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await
    };
    match timed(timeout, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if !unreachable(&e) => Err(Error::Config(format!("storage: {e}"))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Redis is not reachable yet: session calls answer 503 until it is");
            Ok(())
        }
        Err(timed_out) => {
            tracing::warn!(error = %timed_out, "Redis is not reachable yet: session calls answer 503 until it is");
            Ok(())
        }
    }
}

/// Whether `e` says the server could not be reached (as opposed to
/// refusing what was asked).
pub(crate) fn unreachable(e: &redis::RedisError) -> bool {
    // Settings that can never work: stop start-up and say so.
    let text = e.to_string().to_ascii_lowercase();
    let settings = matches!(
        e.kind(),
        redis::ErrorKind::AuthenticationFailed | redis::ErrorKind::InvalidClientConfig
    ) || e
        .code()
        .is_some_and(|c| matches!(c, "NOAUTH" | "WRONGPASS" | "NOPERM"))
        || text.contains("certificate")
        || text.contains("tls");
    if settings {
        return false;
    }
    match e.kind() {
        // A server that answers, but is not ready yet.
        redis::ErrorKind::Server(_) => e.code().is_some_and(|c| {
            matches!(
                c,
                "MASTERDOWN" | "LOADING" | "CLUSTERDOWN" | "TRYAGAIN" | "BUSY"
            )
        }),
        // Refused, timed out, dropped, not resolvable yet, no node found.
        _ => true,
    }
}
