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
use std::time::{SystemTime, UNIX_EPOCH};

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

    /// Deletes pycket's session `id` (after it was imported).
    pub async fn delete(&self, id: &[u8]) -> Result<(), RedisError> {
        let mut sessions = self.sessions.clone();
        redis::cmd("DEL").arg(id).query_async(&mut sessions).await
    }
}

fn dict(raw: &[u8]) -> Result<Map<String, Value>, MigrateError> {
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
}

impl std::fmt::Display for MigrateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MigrateError::Redis(e) => write!(f, "pycket's Redis: {e}"),
            MigrateError::Pickle(e) => write!(f, "{e}"),
            MigrateError::Session(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for MigrateError {}

struct Settings {
    store: PycketRedis,
    secret: TornadoSecret,
    delete: bool,
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
    /// Imports from `store`, trusting cookies signed with `secret` (the
    /// Tornado app's `cookie_secret`).
    pub fn new(store: PycketRedis, secret: TornadoSecret) -> Self {
        MigrateLayer {
            settings: Arc::new(Settings {
                store,
                secret,
                delete: false,
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
    req.headers()
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
            secret
                .verify(PYCKET_COOKIE, v, crate::DEFAULT_MAX_AGE_DAYS, now)
                .map(|s| s.value)
        })
}

async fn import(settings: &Settings, session: &Session, id: &[u8]) -> Result<(), MigrateError> {
    // A live Cloakroom session wins (one read, which the handler would
    // make anyway); a request without a Cloakroom cookie costs none.
    if session.id().await.map_err(MigrateError::Session)?.is_some() {
        return Ok(());
    }
    // Once per pycket session, ever: a later request without a live
    // Cloakroom session (after a logout, say) must not import it again.
    if !settings
        .store
        .claim(id)
        .await
        .map_err(MigrateError::Redis)?
    {
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
        settings
            .store
            .delete_notifications(id)
            .await
            .map_err(MigrateError::Redis)?;
    }
    if settings.delete {
        settings
            .store
            .delete(id)
            .await
            .map_err(MigrateError::Redis)?;
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
