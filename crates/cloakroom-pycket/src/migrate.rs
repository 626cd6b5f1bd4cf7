//! Migrate mode: a request that carries a valid `PYCKET_ID` and no live
//! Cloakroom session has its pycket session (values and notifications)
//! imported once into a new Cloakroom session, and goes on.

use crate::{TornadoSecret, unpickle};
use cloakroom::Session;
use http::{Request, Response};
use redis::aio::ConnectionManager;
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// pycket's cookie name.
pub const PYCKET_COOKIE: &str = "PYCKET_ID";
/// Where an import is recorded, in pycket's sessions database, followed
/// by the pycket session id.
pub const IMPORTED_PREFIX: &str = "cloakroom:imported:";

/// A pycket session as it was stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PycketSession {
    /// Its values, as JSON (see [`unpickle`] for the mapping).
    pub values: Map<String, Value>,
    /// Its unread notifications, as JSON.
    pub notifications: Map<String, Value>,
}

/// pycket's Redis: sessions under their raw id in `db_sessions` (pycket's
/// default 0), notifications in `db_notifications` (default 1), each a
/// pickled dict.
#[derive(Clone)]
pub struct PycketRedis {
    sessions: ConnectionManager,
    notifications: ConnectionManager,
}

impl std::fmt::Debug for PycketRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PycketRedis").finish_non_exhaustive()
    }
}

/// Why pycket's store could not be read.
pub type RedisError = redis::RedisError;

impl PycketRedis {
    /// Connects to the Redis at `url` (`redis://HOST:PORT`), with pycket's
    /// two databases.
    pub async fn connect(
        url: &str,
        db_sessions: i64,
        db_notifications: i64,
    ) -> Result<Self, RedisError> {
        let open = |db: i64| {
            let info = redis::IntoConnectionInfo::into_connection_info(url).map(|info| {
                let settings = info.redis_settings().clone().set_db(db);
                info.set_redis_settings(settings)
            });
            async move { ConnectionManager::new(redis::Client::open(info?)?).await }
        };
        Ok(PycketRedis {
            sessions: open(db_sessions).await?,
            notifications: open(db_notifications).await?,
        })
    }

    /// Claims the import of session `id`, once: `SET PREFIX:imported:ID 1
    /// NX EX 31d` in the sessions database. Only the first caller, ever
    /// (within Tornado's 31 days of cookie validity), gets `true`; so a
    /// user who logs out of the Rust service, or is signed out by an
    /// admin, is not signed back in from the same `PYCKET_ID`, and two
    /// concurrent first requests import once.
    pub async fn claim(&self, id: &[u8]) -> Result<bool, RedisError> {
        let mut key = IMPORTED_PREFIX.as_bytes().to_vec();
        key.extend_from_slice(id);
        let mut sessions = self.sessions.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(crate::DEFAULT_MAX_AGE_DAYS * 86_400)
            .query_async(&mut sessions)
            .await?;
        Ok(set.is_some())
    }

    /// Reads the session `id` and its notifications. `None` when pycket
    /// has nothing for it. A pickle that is not plain data is an error.
    pub async fn read(&self, id: &[u8]) -> Result<Option<PycketSession>, MigrateError> {
        let mut sessions = self.sessions.clone();
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(id)
            .query_async(&mut sessions)
            .await
            .map_err(MigrateError::Redis)?;
        let values = match raw {
            Some(raw) => dict(&raw)?,
            None => Map::new(),
        };
        let mut notes = self.notifications.clone();
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(id)
            .query_async(&mut notes)
            .await
            .map_err(MigrateError::Redis)?;
        let notifications = match raw {
            Some(raw) => dict(&raw)?,
            None => Map::new(),
        };
        if values.is_empty() && notifications.is_empty() {
            return Ok(None);
        }
        Ok(Some(PycketSession {
            values,
            notifications,
        }))
    }

    /// Deletes the notifications of session `id`, once they were imported:
    /// they are read once, by whichever app shows them.
    pub async fn delete_notifications(&self, id: &[u8]) -> Result<(), RedisError> {
        let mut notes = self.notifications.clone();
        redis::cmd("DEL").arg(id).query_async(&mut notes).await
    }

    /// Whether the import of session `id` was claimed already.
    pub async fn is_claimed(&self, id: &[u8]) -> Result<bool, RedisError> {
        let mut key = IMPORTED_PREFIX.as_bytes().to_vec();
        key.extend_from_slice(id);
        let mut sessions = self.sessions.clone();
        redis::cmd("EXISTS")
            .arg(key)
            .query_async::<bool>(&mut sessions)
            .await
    }

    /// How long pycket keeps session `id` still (its key's TTL), if it
    /// has one.
    pub async fn ttl(&self, id: &[u8]) -> Result<Option<Duration>, RedisError> {
        let mut sessions = self.sessions.clone();
        let ms: i64 = redis::cmd("PTTL")
            .arg(id)
            .query_async(&mut sessions)
            .await?;
        Ok(u64::try_from(ms)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis))
    }

    /// One step of a `SCAN` over the sessions database: the next cursor
    /// (0 when done) and up to about `count` keys.
    pub async fn scan(&self, cursor: u64, count: usize) -> Result<(u64, Vec<Vec<u8>>), RedisError> {
        let mut sessions = self.sessions.clone();
        redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut sessions)
            .await
    }

    /// How many keys the sessions database holds (pycket's sessions and
    /// the import records): the size of a bulk import, for its progress.
    pub async fn keys_in_sessions_db(&self) -> Result<u64, RedisError> {
        let mut sessions = self.sessions.clone();
        redis::cmd("DBSIZE").query_async(&mut sessions).await
    }

    /// The raw value under `id` in the sessions database, or with
    /// `notifications` in the notifications one.
    pub(crate) async fn get_raw(
        &self,
        notifications: bool,
        id: &[u8],
    ) -> Result<Option<Vec<u8>>, RedisError> {
        let mut conn = self.db(notifications);
        redis::cmd("GET").arg(id).query_async(&mut conn).await
    }

    /// Writes `new` under `id` with pycket's `ttl`, only if the value
    /// there is still `expected` (`None`: nothing there), atomically.
    pub(crate) async fn compare_and_set(
        &self,
        notifications: bool,
        id: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Duration,
    ) -> Result<bool, RedisError> {
        static CAS: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                r"
                local cur = redis.call('GET', KEYS[1])
                if ARGV[1] == '1' then
                  if cur then return 0 end
                elseif cur ~= ARGV[2] then
                  return 0
                end
                redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
                return 1
                ",
            )
        });
        let mut conn = self.db(notifications);
        let absent = if expected.is_none() { "1" } else { "0" };
        CAS.key(id)
            .arg(absent)
            .arg(expected.unwrap_or_default())
            .arg(new)
            .arg(ttl.as_secs().max(1))
            .invoke_async(&mut conn)
            .await
    }

    fn db(&self, notifications: bool) -> ConnectionManager {
        if notifications {
            self.notifications.clone()
        } else {
            self.sessions.clone()
        }
    }

    /// Deletes pycket's session `id` (after it was imported).
    pub async fn delete(&self, id: &[u8]) -> Result<(), RedisError> {
        let mut sessions = self.sessions.clone();
        redis::cmd("DEL").arg(id).query_async(&mut sessions).await
    }
}

pub(crate) fn dict(raw: &[u8]) -> Result<Map<String, Value>, MigrateError> {
    match unpickle(raw).map_err(MigrateError::Pickle)? {
        Value::Object(map) => Ok(map),
        _ => Err(MigrateError::Pickle(crate::PickleError::not_a_dict())),
    }
}

/// Why one import failed. The request goes on without it.
#[derive(Debug)]
pub enum MigrateError {
    /// pycket's Redis failed.
    Redis(RedisError),
    /// The stored session is not a pickle of plain data.
    Pickle(crate::PickleError),
    /// Cloakroom refused a value (a limit, a reserved name).
    Session(cloakroom::Error),
    /// pycket's Memcached failed.
    Memcached(String),
}

impl std::fmt::Display for MigrateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MigrateError::Redis(e) => write!(f, "pycket's Redis: {e}"),
            MigrateError::Pickle(e) => write!(f, "{e}"),
            MigrateError::Session(e) => write!(f, "{e}"),
            MigrateError::Memcached(e) => write!(f, "pycket's Memcached: {e}"),
        }
    }
}

impl std::error::Error for MigrateError {}

/// Where pycket keeps its sessions: either of its two engines.
#[derive(Clone)]
pub enum PycketStore {
    /// pycket's Redis engine.
    Redis(PycketRedis),
    /// pycket's Memcached engine.
    #[cfg(feature = "memcached")]
    Memcached(Arc<crate::PycketMemcached>),
}

impl From<PycketRedis> for PycketStore {
    fn from(redis: PycketRedis) -> Self {
        PycketStore::Redis(redis)
    }
}

#[cfg(feature = "memcached")]
impl From<crate::PycketMemcached> for PycketStore {
    fn from(memcached: crate::PycketMemcached) -> Self {
        PycketStore::Memcached(Arc::new(memcached))
    }
}

impl PycketStore {
    async fn claim(&self, id: &[u8]) -> Result<bool, MigrateError> {
        match self {
            PycketStore::Redis(r) => r.claim(id).await.map_err(MigrateError::Redis),
            #[cfg(feature = "memcached")]
            PycketStore::Memcached(m) => m.claim(id).await,
        }
    }

    async fn read(&self, id: &[u8]) -> Result<Option<PycketSession>, MigrateError> {
        match self {
            PycketStore::Redis(r) => r.read(id).await,
            #[cfg(feature = "memcached")]
            PycketStore::Memcached(m) => m.read(id).await,
        }
    }

    async fn delete_notifications(&self, id: &[u8]) -> Result<(), MigrateError> {
        match self {
            PycketStore::Redis(r) => r
                .delete_notifications(id)
                .await
                .map_err(MigrateError::Redis),
            // Memcached has none of their own (see `PycketMemcached`).
            #[cfg(feature = "memcached")]
            PycketStore::Memcached(_) => Ok(()),
        }
    }

    async fn delete(&self, id: &[u8]) -> Result<(), MigrateError> {
        match self {
            PycketStore::Redis(r) => r.delete(id).await.map_err(MigrateError::Redis),
            #[cfg(feature = "memcached")]
            PycketStore::Memcached(m) => m.delete(id).await,
        }
    }
}

struct Settings {
    store: PycketStore,
    secret: TornadoSecret,
    delete: bool,
    /// pycket ids this process found imported already, with nothing left
    /// to take over: later requests with them cost no round trip. An
    /// import is once per pycket session, ever, so an entry never goes
    /// stale; the bound only forgets the oldest.
    done: std::sync::Mutex<lru::LruCache<Vec<u8>, ()>>,
}

/// How many imported pycket ids [`Settings::done`] remembers (36 bytes
/// each, a few MiB at most).
const DONE_IDS: usize = 65_536;

fn done_ids() -> std::sync::Mutex<lru::LruCache<Vec<u8>, ()>> {
    let cap = std::num::NonZeroUsize::new(DONE_IDS).unwrap_or(std::num::NonZeroUsize::MIN);
    std::sync::Mutex::new(lru::LruCache::new(cap))
}

impl Settings {
    fn is_done(&self, id: &[u8]) -> bool {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        done.get(id).is_some()
    }

    fn mark_done(&self, id: &[u8]) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        done.put(id.to_vec(), ());
    }
}

/// The tower layer of migrate mode. Install it *inside* Cloakroom's
/// [`SessionLayer`](cloakroom::SessionLayer) (with axum, call
/// `.layer(migrate)` before `.layer(sessions)`), so that it finds the
/// request's [`Session`].
///
/// For a request with a valid `PYCKET_ID` (checked as Tornado's
/// `get_secure_cookie` does, 31 days) and no live Cloakroom session, it
/// claims the import (once per pycket session, ever, recorded under
/// [`IMPORTED_PREFIX`] in pycket's Redis), reads pycket's session and
/// notifications, and sets them on the Cloakroom session before the
/// handler runs; the response then carries a Cloakroom cookie, and the
/// next request is Cloakroom's alone. After a logout the same
/// `PYCKET_ID` imports nothing. A forged, tampered or too old `PYCKET_ID`
/// costs no store call. An unreadable pycket session (a class, a
/// callable) is logged and skipped, as is one over Cloakroom's limits
/// (that request answers `413`; the user starts afresh after it).
///
/// pycket's session is kept by default, for a migration in progress,
/// while Tornado still serves some routes; its notifications are deleted
/// once imported, so they are shown once.
#[derive(Clone)]
pub struct MigrateLayer {
    settings: Arc<Settings>,
}

impl std::fmt::Debug for MigrateLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrateLayer")
            .field("delete", &self.settings.delete)
            .finish_non_exhaustive()
    }
}

impl MigrateLayer {
    /// Imports from `store` ([`PycketRedis`], or `PycketMemcached` with
    /// the `memcached` feature), trusting cookies signed with `secret` (the
    /// Tornado app's `cookie_secret`).
    pub fn new(store: impl Into<PycketStore>, secret: TornadoSecret) -> Self {
        MigrateLayer {
            settings: Arc::new(Settings {
                store: store.into(),
                secret,
                delete: false,
                done: done_ids(),
            }),
        }
    }

    /// Deletes pycket's session once it is imported (default: keep it).
    pub fn delete_after_import(self, delete: bool) -> Self {
        let s = &self.settings;
        MigrateLayer {
            settings: Arc::new(Settings {
                store: s.store.clone(),
                secret: s.secret.clone(),
                delete,
                done: done_ids(),
            }),
        }
    }
}

impl<S> tower_layer::Layer<S> for MigrateLayer {
    type Service = MigrateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MigrateService {
            inner,
            settings: self.settings.clone(),
        }
    }
}

/// The service [`MigrateLayer`] makes.
#[derive(Clone)]
pub struct MigrateService<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> std::fmt::Debug for MigrateService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrateService").finish_non_exhaustive()
    }
}

/// The valid pycket session id among the request's cookies, if any.
fn pycket_id<B>(req: &Request<B>, secret: &TornadoSecret) -> Option<Vec<u8>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut seen = false;
    let id = req
        .headers()
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|h| h.as_bytes().split(|b| *b == b';'))
        .filter_map(|pair| {
            let pair = pair.trim_ascii();
            let value = pair
                .strip_prefix(PYCKET_COOKIE.as_bytes())?
                .strip_prefix(b"=")?;
            // Python's cookie module quotes values with `=` in them.
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            Some(value)
        })
        .take(4)
        .find_map(|v| {
            seen = true;
            secret
                .verify(PYCKET_COOKIE, v, crate::DEFAULT_MAX_AGE_DAYS, now)
                .map(|s| s.value)
        });
    if seen && id.is_none() {
        crate::tornado::warn_rejected_pycket_id();
    }
    id
}

/// Takes over the session a bulk import prepared for `id`, if there is one.
async fn take_prepared(
    settings: &Settings,
    session: &Session,
    id: &[u8],
) -> Result<bool, MigrateError> {
    let taken = session
        .take_over(&settings.secret.handover(id))
        .await
        .map_err(MigrateError::Session)?;
    if taken {
        tracing::info!("took over a pycket session imported ahead of time");
    }
    Ok(taken)
}

async fn import(settings: &Settings, session: &Session, id: &[u8]) -> Result<(), MigrateError> {
    // Imported already, and nothing prepared to take over: the user signed
    // out of the Cloakroom session since, say, and still sends PYCKET_ID.
    if settings.is_done(id) {
        return Ok(());
    }
    // A session prepared by a bulk import is taken over under a fresh id
    // (one read, on a request without a Cloakroom cookie only).
    if take_prepared(settings, session, id).await? {
        return Ok(());
    }
    // A live Cloakroom session wins (one read, which the handler would
    // make anyway); a request without a Cloakroom cookie costs none.
    if session.id().await.map_err(MigrateError::Session)?.is_some() {
        return Ok(());
    }
    // Once per pycket session, ever: a later request without a live
    // Cloakroom session (after a logout, say) must not import it again.
    if !settings.store.claim(id).await? {
        // Claimed by another import. A bulk import prepares its session
        // before it claims, so one may have appeared since the look above:
        // take it now. Otherwise nothing is left to do, ever.
        if !take_prepared(settings, session, id).await? {
            settings.mark_done(id);
        }
        return Ok(());
    }
    let Some(found) = settings.store.read(id).await? else {
        return Ok(());
    };
    let copied = async {
        for (name, value) in &found.values {
            session.set(name, value).await?;
        }
        for (name, value) in &found.notifications {
            session.notifications().set(name, value).await?;
        }
        Ok::<_, cloakroom::Error>(())
    };
    if let Err(e) = copied.await {
        // All or nothing: drop what this request had set so far (it had
        // no session of its own, so there is nothing else to lose).
        let _ = session.destroy().await;
        return Err(MigrateError::Session(e));
    }
    if !found.notifications.is_empty() {
        settings.store.delete_notifications(id).await?;
    }
    if settings.delete {
        settings.store.delete(id).await?;
    }
    tracing::info!(
        values = found.values.len(),
        notifications = found.notifications.len(),
        "imported a pycket session"
    );
    Ok(())
}

impl<S, B, R> tower_service::Service<Request<B>> for MigrateService<S>
where
    S: tower_service::Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The service that poll_ready readied goes with this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let session = req.extensions().get::<Session>().cloned();
        let id = session
            .as_ref()
            .and_then(|_| pycket_id(&req, &self.settings.secret));
        let settings = self.settings.clone();
        Box::pin(async move {
            if let (Some(session), Some(id)) = (session, id)
                && let Err(e) = import(&settings, &session, &id).await
            {
                tracing::warn!(error = %e, "a pycket session was not imported");
            }
            inner.call(req).await
        })
    }
}

/// What a [`BulkImport`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    /// Keys of the sessions database looked at (import records included).
    pub scanned: u64,
    /// pycket sessions prepared as Cloakroom sessions by this run.
    pub imported: u64,
    /// pycket sessions imported before (by an earlier run, or by
    /// [`MigrateLayer`] when their user came by), or gone meanwhile.
    pub skipped: u64,
    /// pycket sessions that could not be imported: not a pickle of plain
    /// data, or over Cloakroom's limits. The log names each (by a short
    /// prefix of its id) and why; they stay in pycket's Redis.
    pub unreadable: u64,
}

/// Moves every pycket session into Cloakroom ahead of its user's visit,
/// so pycket's pickles can be dropped: `cloakroom pycket import`.
///
/// Each pycket session becomes a Cloakroom session prepared under the key
/// [`TornadoSecret::handover`] derives from its id
/// ([`SessionAdmin::prepare`](cloakroom::SessionAdmin::prepare)), with its
/// values, its unread notifications (then deleted from pycket, so they
/// are shown once) and pycket's remaining TTL. When the user comes with
/// `PYCKET_ID`, [`MigrateLayer`] takes the prepared session over under a
/// fresh id, with no pickle read. The import is recorded as
/// [`MigrateLayer`] records its own, so a session is imported once
/// however the two meet, and a run that stops can simply be run again:
/// what it did is skipped. Keys that are not pycket session ids (uuid4
/// strings) are passed over: the import records, and Cloakroom's own keys
/// when both use the same database.
pub struct BulkImport {
    store: PycketRedis,
    secret: crate::TornadoSecret,
    admin: cloakroom::SessionAdmin,
    delete: bool,
    batch: usize,
}

impl std::fmt::Debug for BulkImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkImport")
            .field("delete", &self.delete)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

/// Whether `key` has the shape of pycket's session ids: `str(uuid4())`,
/// 36 characters of hex digits with dashes at 8, 13, 18 and 23.
fn is_pycket_id(key: &[u8]) -> bool {
    key.len() == 36
        && key.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The longest a prepared session waits for its user: Tornado's signed
/// cookies are valid for 31 days.
const LONGEST_WAIT: Duration = Duration::from_secs(crate::DEFAULT_MAX_AGE_DAYS * 86_400);

impl BulkImport {
    /// An import from pycket's `store`, whose cookies `secret` signs, into
    /// the Cloakroom store behind `admin`.
    pub fn new(
        store: PycketRedis,
        secret: crate::TornadoSecret,
        admin: cloakroom::SessionAdmin,
    ) -> Self {
        BulkImport {
            store,
            secret,
            admin,
            delete: false,
            batch: 500,
        }
    }

    /// Deletes each pycket session once imported, and those imported
    /// before (by a run without it, or by [`MigrateLayer`] on the user's
    /// visit), so that pycket keeps only the import records (default: keep
    /// them, while Tornado still serves some routes).
    pub fn delete_after_import(mut self, delete: bool) -> Self {
        self.delete = delete;
        self
    }

    /// Keys per `SCAN` step (default 500).
    pub fn batch(mut self, keys: usize) -> Self {
        self.batch = keys.max(1);
        self
    }

    /// How many keys the run will look at, about: for a progress bar.
    pub async fn total(&self) -> Result<u64, MigrateError> {
        self.store
            .keys_in_sessions_db()
            .await
            .map_err(MigrateError::Redis)
    }

    /// Runs the import to the end, calling `progress` after each `SCAN`
    /// step. A failure of either store stops it with the error; run it
    /// again to go on.
    pub async fn run(
        &self,
        mut progress: impl FnMut(&ImportCounts),
    ) -> Result<ImportCounts, MigrateError> {
        let mut counts = ImportCounts::default();
        let mut cursor = 0;
        loop {
            let (next, keys) = self
                .store
                .scan(cursor, self.batch)
                .await
                .map_err(MigrateError::Redis)?;
            for id in keys {
                counts.scanned += 1;
                // Import records, and keys of other owners (Cloakroom's
                // own, when both share the database) are no pycket session.
                if !is_pycket_id(&id) {
                    continue;
                }
                self.one(&id, &mut counts).await?;
            }
            progress(&counts);
            if next == 0 {
                return Ok(counts);
            }
            cursor = next;
        }
    }

    async fn one(&self, id: &[u8], counts: &mut ImportCounts) -> Result<(), MigrateError> {
        let short = String::from_utf8_lossy(&id[..id.len().min(8)]).into_owned();
        if self
            .store
            .is_claimed(id)
            .await
            .map_err(MigrateError::Redis)?
        {
            // Imported before: by a run without `delete`, or by the live
            // import. The pickle is left over; `delete` means none are.
            self.delete_if_asked(id).await?;
            counts.skipped += 1;
            return Ok(());
        }
        let found = match self.store.read(id).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                counts.skipped += 1;
                return Ok(());
            }
            Err(MigrateError::Pickle(e)) => {
                tracing::warn!(id = %short, error = %e, "pycket session not imported: unreadable");
                counts.unreadable += 1;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let lifetime = self
            .store
            .ttl(id)
            .await
            .map_err(MigrateError::Redis)?
            .map_or(LONGEST_WAIT, |ttl| ttl.min(LONGEST_WAIT));
        let handover = self.secret.handover(id);
        let prepared = self
            .admin
            .prepare(
                &handover,
                found.values.clone(),
                found.notifications.clone(),
                lifetime,
            )
            .await;
        match prepared {
            // `false`: prepared by an earlier run that stopped before it
            // recorded the import; record it now.
            Ok(_) => {}
            Err(e) if e.is_unavailable() => return Err(MigrateError::Session(e)),
            Err(e) => {
                tracing::warn!(id = %short, error = %e, "pycket session not imported: refused by Cloakroom");
                counts.unreadable += 1;
                return Ok(());
            }
        }
        if !self.store.claim(id).await.map_err(MigrateError::Redis)? {
            // Its user came by meanwhile, and the live import won.
            self.admin
                .end(&handover.id())
                .await
                .map_err(MigrateError::Session)?;
            self.delete_if_asked(id).await?;
            counts.skipped += 1;
            return Ok(());
        }
        if !found.notifications.is_empty() {
            self.store
                .delete_notifications(id)
                .await
                .map_err(MigrateError::Redis)?;
        }
        self.delete_if_asked(id).await?;
        counts.imported += 1;
        Ok(())
    }

    /// Deletes pycket's copy of a session imported now or before, with
    /// [`delete_after_import`](Self::delete_after_import).
    async fn delete_if_asked(&self, id: &[u8]) -> Result<(), MigrateError> {
        if self.delete {
            self.store.delete(id).await.map_err(MigrateError::Redis)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::is_pycket_id;

    #[test]
    fn only_uuid4_strings_are_pycket_ids() {
        assert!(is_pycket_id(b"0b8f3c1e-2d4a-4c6b-9e8f-a1b2c3d4e5f6"));
        for key in [
            &b"cloakroom:imported:0b8f3c1e-2d4a-4c6b-9e8f-a1b2c3d4e5f6"[..],
            b"cr:{AAAAAAAAAAAAAAAAAAAAAA}",
            b"0b8f3c1e-2d4a-4c6b-9e8f-a1b2c3d4e5fg",
            b"0b8f3c1e2d4a-4c6b-9e8f-a1b2c3d4e5f6-",
            b"",
        ] {
            assert!(!is_pycket_id(key), "{}", String::from_utf8_lossy(key));
        }
    }
}
