//! Share mode: the Rust service reads and writes pycket's own sessions, in
//! pycket's format, so a Tornado app and the Rust service serve the same
//! users at the same time.

use crate::migrate::{PycketRedis, RedisError};
use crate::{PYCKET_COOKIE, PickleError, TornadoSecret, pickle, unpickle};
use http::header::{CACHE_CONTROL, COOKIE, HeaderValue, SET_COOKIE, VARY};
use http::{Request, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long pycket keeps a session after each write (its driver's
/// `EXPIRE_SECONDS`); share mode writes with the same TTL.
pub const PYCKET_EXPIRE: Duration = Duration::from_secs(24 * 60 * 60);

/// How many times a write is tried again after another writer changed
/// the session between its read and its write, with a random pause that
/// grows each time (up to 64 ms), so writers racing for one session take
/// turns instead of colliding again.
const CAS_ATTEMPTS: u32 = 48;

/// Why a shared session could not be read or written.
#[derive(Debug)]
pub enum ShareError {
    /// pycket's Redis failed.
    Redis(RedisError),
    /// The stored session is not a pickle of plain data (a class instance,
    /// say): it is never overwritten, since that would lose what Tornado
    /// stored.
    Pickle(PickleError),
    /// A value could not be turned into JSON, or a stored one into the
    /// type asked for.
    Json(serde_json::Error),
    /// Other writers changed the session on every attempt.
    Contended,
}

impl std::fmt::Display for ShareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShareError::Redis(e) => write!(f, "pycket's Redis: {e}"),
            ShareError::Pickle(e) => write!(f, "the pycket session cannot be written: {e}"),
            ShareError::Json(e) => write!(f, "a session value: {e}"),
            ShareError::Contended => {
                f.write_str("the pycket session changed under every attempt to write it; try again")
            }
        }
    }
}

impl std::error::Error for ShareError {}

impl ShareError {
    /// True when pycket's Redis is down or slow (a `503`); the others are
    /// `500`s.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ShareError::Redis(_) | ShareError::Contended)
    }
}

#[derive(Clone)]
struct Settings {
    store: PycketRedis,
    secret: TornadoSecret,
    secure: bool,
    /// Days a new `PYCKET_ID` lasts; `None`: until the browser closes.
    expires_days: Option<u32>,
}

/// How long Tornado's `set_secure_cookie` keeps a cookie unless told
/// otherwise, and so pycket's `PYCKET_ID` without `cookies.expires_days`.
pub const TORNADO_EXPIRES_DAYS: u32 = 30;

/// The tower layer of share mode. For each request it puts a
/// [`SharedSession`] in the request's extensions: the pycket session that
/// the request's `PYCKET_ID` names (checked as Tornado's
/// `get_secure_cookie` does, 31 days), or a new one on the first write,
/// whose `PYCKET_ID` cookie (Tornado's signed format, version 2) the
/// response sets.
///
/// What share mode guarantees, and what it cannot (pycket rewrites whole
/// dicts):
/// - **Formats.** Sessions are pickled dicts under the raw id in
///   `db_sessions`, notifications the same in `db_notifications`, written
///   with pycket's TTL ([`PYCKET_EXPIRE`], pushed on every write, as
///   pycket does). Values cross as JSON (see [`unpickle`]): a value Rust
///   writes becomes a `str`, `int`, `float`, `bool`, `None`, `list` or
///   `dict` in Python. A Rust write rewrites the whole dict, as pycket's
///   writes do, so a tuple or set that Tornado stored comes back a list,
///   and a non-string dict key a string.
/// - **Rust's writes lose nothing.** Each one is a compare-and-swap: it
///   writes only if the stored pickle is still the one it changed, and
///   otherwise reads again and retries. Concurrent Rust requests writing
///   different names all keep them, and a Rust write never undoes a
///   Tornado write that landed before it.
/// - **Tornado's writes can still lose updates**, as they always could:
///   pycket reads, changes and writes the whole dict, so a Tornado write
///   racing another writer (Rust or Tornado) may write back an old copy.
/// - **Notifications** are taken with the same compare-and-swap, so two
///   Rust requests never both get one; a Tornado request racing a Rust one
///   for the same notification can, as two Tornado requests can.
/// - A stored session that is not plain data is read as empty (and
///   logged), and never overwritten: writes to it fail with
///   [`ShareError::Pickle`].
#[derive(Clone)]
pub struct ShareLayer {
    settings: Arc<Settings>,
}

impl std::fmt::Debug for ShareLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareLayer")
            .field("secure", &self.settings.secure)
            .finish_non_exhaustive()
    }
}

impl ShareLayer {
    /// Share the sessions in pycket's `store`, whose cookies `secret`
    /// (the Tornado app's `cookie_secret`) signs.
    pub fn new(store: PycketRedis, secret: TornadoSecret) -> Self {
        ShareLayer {
            settings: Arc::new(Settings {
                store,
                secret,
                secure: true,
                expires_days: Some(TORNADO_EXPIRES_DAYS),
            }),
        }
    }

    /// Whether a new `PYCKET_ID` cookie is `Secure` (default `true`; pycket
    /// set no flags at all, share mode also sets `HttpOnly` and
    /// `SameSite=Lax`).
    pub fn secure(self, secure: bool) -> Self {
        self.with(|s| s.secure = secure)
    }

    /// How many days a new `PYCKET_ID` cookie lasts, as pycket's
    /// `cookies.expires_days` says to Tornado (default
    /// [`TORNADO_EXPIRES_DAYS`], Tornado's own default); `None`: until the
    /// browser closes.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), redis::RedisError> {
    /// use cloakroom_pycket::{PycketRedis, ShareLayer, TornadoSecret};
    /// let store = PycketRedis::connect("redis://127.0.0.1:6379", 10, 11).await?;
    /// let layer = ShareLayer::new(store, TornadoSecret::new("the Tornado cookie_secret"))
    ///     .expires_days(Some(120));
    /// # Ok(()) }
    /// ```
    pub fn expires_days(self, days: Option<u32>) -> Self {
        self.with(|s| s.expires_days = days)
    }

    fn with(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = Settings::clone(&self.settings);
        change(&mut settings);
        ShareLayer {
            settings: Arc::new(settings),
        }
    }
}

impl<S> tower_layer::Layer<S> for ShareLayer {
    type Service = ShareService<S>;

    fn layer(&self, inner: S) -> ShareService<S> {
        ShareService {
            inner,
            settings: self.settings.clone(),
        }
    }
}

/// The service [`ShareLayer`] wraps around an app.
#[derive(Clone)]
pub struct ShareService<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S, B, R> tower_service::Service<Request<B>> for ShareService<S>
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

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // Checked on first use: a route that never touches the session
        // costs no HMAC.
        let unchecked = pycket_cookies(&req);
        let session = SharedSession {
            inner: Arc::new(Inner {
                settings: self.settings.clone(),
                state: Mutex::new(State {
                    unchecked,
                    ..State::default()
                }),
            }),
        };
        req.extensions_mut().insert(session.clone());
        Box::pin(async move {
            let mut response = inner.call(req).await?;
            let (cookie, used) = session.outcome();
            let headers = response.headers_mut();
            // As Cloakroom's own layer does: a shared cache must never
            // serve one user's page, or their new cookie, to another.
            if let Some(cookie) = cookie {
                headers.append(SET_COOKIE, cookie);
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            if used {
                headers.append(VARY, HeaderValue::from_static("cookie"));
                if !headers.contains_key(CACHE_CONTROL) {
                    headers.insert(CACHE_CONTROL, HeaderValue::from_static("private"));
                }
            }
            Ok(response)
        })
    }
}

/// The values of the request's `PYCKET_ID` cookies, not yet verified.
fn pycket_cookies<B>(req: &Request<B>) -> Vec<String> {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == PYCKET_COOKIE)
        .map(|(_, v)| v.trim_matches('"').to_owned())
        .collect()
}

/// The pycket id the first of `values` that Tornado's
/// `get_secure_cookie` would accept carries, if any.
fn verified_id(values: &[String], secret: &TornadoSecret) -> Option<String> {
    let now = unix_now();
    let id = values.iter().find_map(|value| {
        secret
            .verify(
                PYCKET_COOKIE,
                value.as_bytes(),
                crate::DEFAULT_MAX_AGE_DAYS,
                now,
            )
            .and_then(|s| String::from_utf8(s.value).ok())
    });
    if id.is_none() && !values.is_empty() {
        crate::tornado::warn_rejected_pycket_id();
    }
    id
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The pycket session of the current request, in share mode: take it from
/// the request's extensions (with axum, `Extension<SharedSession>`).
///
/// It reads the stored dict once per request, lazily, and writes each
/// change at once, as pycket does, with a compare-and-swap (see
/// [`ShareLayer`]).
#[derive(Clone)]
pub struct SharedSession {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SharedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSession").finish_non_exhaustive()
    }
}

struct Inner {
    settings: Arc<Settings>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The request's `PYCKET_ID` values, until the first use checks them.
    unchecked: Vec<String>,
    /// The pycket id: the request's, or one made by the first write.
    id: Option<String>,
    /// The `Set-Cookie` value for an id this request made.
    cookie: Option<HeaderValue>,
    /// The stored pickle as last read or written.
    loaded: Option<Stored>,
    /// Whether the handler used the session at all.
    used: bool,
}

/// A stored pickle (`None`: nothing stored) and its dict (`None` when it
/// is not plain data).
type Stored = (Option<Vec<u8>>, Option<Map<String, Value>>);

/// Which of pycket's two databases.
#[derive(Clone, Copy)]
enum Db {
    Sessions,
    Notifications,
}

impl SharedSession {
    /// The state, with the request's cookie checked.
    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing under this lock can panic half-way.
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        st.used = true;
        if !st.unchecked.is_empty() {
            let values = std::mem::take(&mut st.unchecked);
            st.id = verified_id(&values, &self.inner.settings.secret);
        }
        st
    }

    /// The pycket id, if the request has one (or a write made one).
    pub fn id(&self) -> Option<String> {
        self.state().id.clone()
    }

    /// The cookie a write made, and whether the session was used, without
    /// checking the request's cookie (an untouched request stays
    /// unchecked).
    fn outcome(&self) -> (Option<HeaderValue>, bool) {
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        (st.cookie.take(), st.used)
    }

    /// The id to write under: the request's, or a new one (uuid4, as
    /// pycket makes them) whose signed cookie the response will set.
    fn id_for_write(&self) -> String {
        let mut st = self.state();
        if let Some(id) = &st.id {
            return id.clone();
        }
        let id = uuid4();
        let signed = self
            .inner
            .settings
            .secret
            .sign(PYCKET_COOKIE, id.as_bytes(), unix_now());
        let mut cookie = format!("{PYCKET_COOKIE}={signed}; Path=/; HttpOnly; SameSite=Lax");
        if let Some(days) = self.inner.settings.expires_days {
            cookie.push_str(&format!("; Max-Age={}", u64::from(days) * 86_400));
        }
        if self.inner.settings.secure {
            cookie.push_str("; Secure");
        }
        // A signed value is base64 and digits: always a valid header.
        st.cookie = HeaderValue::from_str(&cookie).ok();
        st.id = Some(id.clone());
        // A new id has nothing stored yet.
        st.loaded = Some((None, Some(Map::new())));
        id
    }

    /// The stored dict (read once per request; empty when there is no id,
    /// nothing stored, or what is stored is not plain data).
    async fn dict(&self) -> Result<Map<String, Value>, ShareError> {
        let Some(id) = self.id() else {
            return Ok(Map::new());
        };
        if let Some((_, dict)) = &self.state().loaded {
            return Ok(dict.clone().unwrap_or_default());
        }
        let raw = self.read(Db::Sessions, &id).await?;
        let dict = decode(&raw);
        self.state().loaded = Some((raw, dict.clone()));
        Ok(dict.unwrap_or_default())
    }

    async fn read(&self, db: Db, id: &str) -> Result<Option<Vec<u8>>, ShareError> {
        let store = &self.inner.settings.store;
        match db {
            Db::Sessions => store.get_raw(false, id.as_bytes()).await,
            Db::Notifications => store.get_raw(true, id.as_bytes()).await,
        }
        .map_err(ShareError::Redis)
    }

    /// The value of `name`, or `None`.
    pub async fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ShareError> {
        match self.dict().await?.remove(name) {
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(ShareError::Json),
            None => Ok(None),
        }
    }

    /// The names the session holds.
    pub async fn keys(&self) -> Result<Vec<String>, ShareError> {
        Ok(self.dict().await?.keys().cloned().collect())
    }

    /// Sets `name` to `value`, written at once.
    pub async fn set(&self, name: &str, value: impl Serialize) -> Result<(), ShareError> {
        let value = serde_json::to_value(value).map_err(ShareError::Json)?;
        let name = name.to_owned();
        self.change_session(move |dict| {
            dict.insert(name.clone(), value.clone());
        })
        .await
    }

    /// Removes `name`, written at once.
    pub async fn remove(&self, name: &str) -> Result<(), ShareError> {
        if self.id().is_none() {
            return Ok(());
        }
        let name = name.to_owned();
        self.change_session(move |dict| {
            dict.remove(&name);
        })
        .await
    }

    /// Stores a notification, read once by whichever app takes it.
    pub async fn notify(&self, name: &str, value: impl Serialize) -> Result<(), ShareError> {
        let value = serde_json::to_value(value).map_err(ShareError::Json)?;
        let id = self.id_for_write();
        let name = name.to_owned();
        cas_loop(self, Db::Notifications, &id, None, |dict| {
            dict.insert(name.clone(), value.clone());
            true
        })
        .await
        .map(drop)
    }

    /// Takes the notification `name`: it is gone for every app after.
    pub async fn take_notification<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, ShareError> {
        let Some(id) = self.id() else {
            return Ok(None);
        };
        let mut taken = None;
        cas_loop(self, Db::Notifications, &id, None, |dict| {
            taken = dict.remove(name);
            taken.is_some()
        })
        .await?;
        match taken {
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(ShareError::Json),
            None => Ok(None),
        }
    }

    async fn change_session(
        &self,
        mut change: impl FnMut(&mut Map<String, Value>),
    ) -> Result<(), ShareError> {
        let id = self.id_for_write();
        let known = self.state().loaded.clone();
        let written = cas_loop(self, Db::Sessions, &id, known, |dict| {
            change(dict);
            true
        })
        .await?;
        if let Some(written) = written {
            self.state().loaded = Some(written);
        }
        Ok(())
    }
}

/// The stored pickle as JSON, or `None` when it is not plain data.
fn decode(raw: &Option<Vec<u8>>) -> Option<Map<String, Value>> {
    let Some(raw) = raw else {
        return Some(Map::new());
    };
    match unpickle(raw) {
        Ok(Value::Object(dict)) => Some(dict),
        Ok(_) => {
            tracing::warn!("a pycket session is not a dict; read as empty");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "a pycket session is not plain data; read as empty");
            None
        }
    }
}

/// Reads the dict (or starts from `known`), applies `change`, and writes
/// it back only if the stored pickle is still the one read; otherwise
/// reads again. `change` returns whether it changed anything (nothing is
/// written when not). Returns what was written.
async fn cas_loop(
    session: &SharedSession,
    db: Db,
    id: &str,
    mut known: Option<Stored>,
    mut change: impl FnMut(&mut Map<String, Value>) -> bool,
) -> Result<Option<Stored>, ShareError> {
    let store = &session.inner.settings.store;
    let notifications = matches!(db, Db::Notifications);
    for attempt in 0..CAS_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt)).await;
        }
        let (raw, dict) = match known.take() {
            Some(known) => known,
            None => {
                let raw = session.read(db, id).await?;
                let dict = decode(&raw);
                (raw, dict)
            }
        };
        let Some(mut dict) = dict else {
            let err = match &raw {
                Some(raw) => unpickle(raw).err(),
                None => None,
            };
            return Err(ShareError::Pickle(
                err.unwrap_or_else(PickleError::not_a_dict),
            ));
        };
        if !change(&mut dict) {
            return Ok(None);
        }
        let new = pickle(&Value::Object(dict.clone()));
        let swapped = store
            .compare_and_set(
                notifications,
                id.as_bytes(),
                raw.as_deref(),
                &new,
                PYCKET_EXPIRE,
            )
            .await
            .map_err(ShareError::Redis)?;
        if swapped {
            return Ok(Some((Some(new), Some(dict))));
        }
    }
    Err(ShareError::Contended)
}

/// A random pause of up to 2^attempt ms, at most 64 ms.
fn backoff(attempt: u32) -> Duration {
    let ceiling = 1u64 << attempt.min(6);
    let mut b = [0u8; 8];
    // Without randomness the pause is simply the ceiling.
    let jitter = match getrandom::fill(&mut b) {
        Ok(()) => u64::from_le_bytes(b) % (ceiling * 1000),
        Err(_) => ceiling * 1000,
    };
    Duration::from_micros(jitter)
}

/// A random uuid4 string, as Python's `str(uuid.uuid4())`.
fn uuid4() -> String {
    let mut b = [0u8; 16];
    // The OS random source failing is not a state to go on from.
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::uuid4;

    #[test]
    fn ids_look_like_pythons_uuid4() {
        let id = uuid4();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(uuid4(), id);
    }
}
