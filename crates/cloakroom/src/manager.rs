//! The framework-neutral request lifecycle: find the token, open a
//! [`Session`], commit it, and say which response headers to set.
//!
//! Every adapter (the tower layer, the actix-web middleware) is a thin
//! shell around a [`SessionManager`]; so is anything that is not a web
//! framework at all, like a hand-written hyper service.

use crate::cookie::{CookieConfig, KeyRing};
use crate::error::{Error, Result};
use crate::expiry::{Clock, Expiry, ExpiryPolicy, SessionExpiry, SystemClock, Timestamp};
use crate::health::Health;
use crate::limits::Limits;
use crate::observe::{self, EndReason, Listener, SessionEvent};
use crate::patch::Patch;
use crate::session::{CommitPlan, Session};
use crate::store::{Applied, DynStore, Store};
use crate::token::Token;
use crate::transport::{TokenAction, Transport};
use http::header::{CACHE_CONTROL, HeaderMap, HeaderName, HeaderValue};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// At most one warning about rejected tokens per this interval.
const REJECT_WARN_INTERVAL: Duration = Duration::from_secs(60);

/// Settings shared by every request of one manager.
pub(crate) struct Shared {
    pub(crate) store: Box<dyn DynStore>,
    pub(crate) keys: KeyRing,
    pub(crate) transport: Transport,
    pub(crate) expiry: ExpiryPolicy,
    /// The most a session may ask for with `Session::set_expiry`.
    pub(crate) max_own: SessionExpiry,
    pub(crate) limits: Limits,
    clock: Box<dyn Clock>,
    error_page: Option<ErrorPage>,
    events: Option<Listener>,
    rejected: AtomicU64,
    last_warning: std::sync::Mutex<Option<Instant>>,
    health: Health,
}

impl Shared {
    /// Runs a store call `op` on session `id` (if it is about one): in a
    /// tracing span with the operation, the store, the session id (a hash
    /// of the token, never the token) and the outcome; timed and counted
    /// in the metrics; its failure logged once per outage (`health.rs`).
    pub(crate) async fn call<T>(
        &self,
        op: &'static str,
        id: Option<&crate::SessionId>,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        use tracing::Instrument as _;
        let span = tracing::debug_span!(
            "session_store",
            op,
            store = self.store.name(),
            session = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        if !span.is_disabled()
            && let Some(id) = id
        {
            span.record("session", tracing::field::display(id.short()));
        }
        let started = Instant::now();
        let result = call.instrument(span.clone()).await;
        observe::store_call(op, started.elapsed(), result.as_ref().err());
        if !span.is_disabled() {
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) if observe::store_fault(e) => "store_error",
                Err(_) => "refused",
            };
            span.record("outcome", outcome);
        }
        self.health.observe(op, result)
    }

    /// Tells the subscriber, if there is one.
    pub(crate) fn emit(&self, event: SessionEvent) {
        if let Some(listener) = &self.events {
            listener(&event);
        }
    }

    pub(crate) fn expiry(&self) -> Expiry {
        self.expiry.at(self.clock.now())
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The `Max-Age` of a session's cookie: its own setting, or the
    /// configured one; always `None` for a token in a header.
    pub(crate) fn cookie_max_age(&self, own: Option<&SessionExpiry>) -> Option<Duration> {
        match &self.transport {
            Transport::Cookie(cookie) => match own {
                Some(own) => own.cookie_max_age(),
                None => cookie.configured_max_age(),
            },
            Transport::Header(_) => None,
        }
    }

    /// A session's own expiry as its cookie's stamp carries it, held to
    /// today's maximums (they may have been lowered since it was signed).
    pub(crate) fn own_from_stamp(
        &self,
        idle_secs: u32,
        absolute_secs: u32,
        max_age_secs: u32,
    ) -> SessionExpiry {
        let max = &self.max_own;
        let secs = |n: u32| Duration::from_secs(n.into());
        let idle = secs(idle_secs).clamp(Duration::from_secs(1), max.idle_timeout());
        let absolute = secs(absolute_secs).clamp(idle, max.absolute_lifetime().max(idle));
        let own = SessionExpiry::new(idle, absolute);
        match (max_age_secs, max.cookie_max_age()) {
            (0, _) | (_, None) => own,
            (age, Some(most)) => own.persistent(secs(age).min(most)),
        }
    }

    pub(crate) fn sign(&self, token: &Token, stamp: Option<&crate::cookie::Stamp>) -> String {
        self.keys.sign_stamped(self.transport.name(), token, stamp)
    }

    /// Counts a cookie that failed verification, and warns now and then:
    /// a stream of them is a sign of someone guessing.
    pub(crate) fn reject_token(&self) {
        observe::rejected();
        let total = self.rejected.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= REJECT_WARN_INTERVAL) {
            *last = Some(Instant::now());
            tracing::warn!(
                rejected_total = total,
                "rejected a session cookie that failed verification"
            );
        }
    }
}

/// Warns, once per process, that bound sessions are not indexed (a store
/// without a user index).
pub(crate) fn warn_once_no_index(why: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            reason = why,
            "sessions are bound to users, but this store keeps no user index: \
             listing and ending a user's sessions will fail"
        );
    });
}

/// Renders the response for a request whose session could not be saved;
/// see [`SessionManagerBuilder::on_commit_error`].
type ErrorPage = Arc<dyn Fn(&Error) -> http::Response<String> + Send + Sync>;

/// Counters of one [`SessionManager`] (and so of the layer or middleware
/// built on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Session cookies that failed verification (forged, malformed, signed
    /// by a removed key) since the manager was built.
    pub rejected_tokens: u64,
}

/// The request lifecycle, without a web framework: it holds the store, the
/// key ring, the transport (cookie or header), the expiry policy and the
/// limits, and it is cheap to clone.
///
/// An adapter calls [`open`](Self::open) when a request arrives, hands the
/// [`Session`] to the handler, and when the response is ready calls
/// [`commit`](Self::commit), which writes the request's changes (in one
/// store call, in the usual case) and returns the headers the response
/// needs.
///
/// ```
/// use cloakroom::{KeyRing, MemoryStore, SessionManager};
/// use http::{HeaderMap, header::SET_COOKIE};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cloakroom::Result<()> {
/// let manager = SessionManager::builder(MemoryStore::new(), KeyRing::random()).build()?;
///
/// // A request without a cookie: the handler stores a name.
/// let session = manager.open(&HeaderMap::new());
/// session.set("login", "alice").await?;
/// let mut response_headers = HeaderMap::new();
/// manager.commit(&session).await?.apply_to(&mut response_headers);
/// let cookie = response_headers[SET_COOKIE].to_str().unwrap();
/// assert!(cookie.starts_with("id="));
///
/// // The next request sends the cookie back and reads the name.
/// let mut request_headers = HeaderMap::new();
/// let value = cookie.split(';').next().unwrap();
/// request_headers.insert(http::header::COOKIE, value.parse().unwrap());
/// let session = manager.open(&request_headers);
/// assert_eq!(session.get::<String>("login").await?.as_deref(), Some("alice"));
/// let mut response_headers = HeaderMap::new();
/// manager.commit(&session).await?.apply_to(&mut response_headers);
/// assert!(response_headers.get(SET_COOKIE).is_none(), "nothing to set");
/// assert_eq!(response_headers["vary"], "cookie", "but it depends on the cookie");
/// assert_eq!(response_headers["cache-control"], "private");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SessionManager {
    shared: Arc<Shared>,
}

impl SessionManager {
    /// Starts building a manager over `store`, signing with `keys`.
    pub fn builder(store: impl Store, keys: KeyRing) -> SessionManagerBuilder {
        SessionManagerBuilder::new(store, keys)
    }

    /// The request header that carries the token: `cookie`, or the header
    /// set with [`SessionManagerBuilder::header`].
    pub fn token_header(&self) -> &HeaderName {
        self.shared.transport.request_header()
    }

    /// Opens the session of a request with these headers. Nothing is
    /// parsed, verified or loaded yet: a handler that never uses the
    /// session costs no store call.
    pub fn open(&self, headers: &HeaderMap) -> Session {
        self.open_values(headers.get_all(self.token_header()).iter().cloned())
    }

    /// Like [`open`](Self::open), for a framework with header types of its
    /// own: pass the values of the request's
    /// [`token_header`](Self::token_header), in order.
    pub fn open_values(&self, values: impl IntoIterator<Item = HeaderValue>) -> Session {
        Session::new(
            self.shared.clone(),
            self.shared.transport.token_headers(values),
        )
    }

    /// Whether [`commit`](Self::commit) would have anything to do: false
    /// when the handler never used the session (no call to its API, and
    /// its cookie not even verified). Adapters use it to skip the commit
    /// entirely.
    pub fn needs_commit(&self, session: &Session) -> bool {
        session.used() || !session.untouched()
    }

    /// Writes the session's changes to the store (one `apply`, plus a
    /// `delete` after [`Session::destroy`], an `admit` after
    /// [`Session::bind_user`], and a second `apply` that creates a new
    /// session if the first found it gone and there are values to write,
    /// unless the request had seen
    /// it alive and writes values or notifications without signing a user
    /// in: then the answer is [`Error::EndedMeanwhile`]) and returns the
    /// headers
    /// the response must carry. Call it once, when the handler's response
    /// is ready and before its head is sent.
    ///
    /// What needs no store is done when it is called: the changes are
    /// taken from the session, and a request with nothing to write (one
    /// that only read its session) gets a future that is ready at once
    /// and allocated nothing.
    ///
    /// On an error nothing about the token goes into the response: answer
    /// with [`commit_error_response`](Self::commit_error_response)
    /// instead, as the adapters do.
    pub fn commit(&self, session: &Session) -> CommitFuture {
        if !Arc::ptr_eq(&self.shared, session.shared_arc()) {
            return CommitFuture::ready(Err(Error::config(
                "a session was committed by a SessionManager that did not open it",
            )));
        }
        match session.plan_commit() {
            CommitPlan::Done(action) => CommitFuture::ready(Ok(self.headers_for(session, action))),
            CommitPlan::Work(work) => {
                let (manager, session) = (self.clone(), session.clone());
                CommitFuture(CommitState::Running(Box::pin(async move {
                    let action = session.run_commit(work).await?;
                    Ok(manager.headers_for(&session, action))
                })))
            }
        }
    }

    /// The headers for a committed session.
    fn headers_for(&self, session: &Session, action: TokenAction) -> ResponseHeaders {
        let mut headers = self.shared.transport.response_headers(action);
        if session.used() {
            headers.vary_on(self.shared.transport.request_header().clone());
        }
        headers
    }

    /// The response to send instead of the handler's when
    /// [`commit`](Self::commit) fails: the page set with
    /// [`on_commit_error`](SessionManagerBuilder::on_commit_error), or by
    /// default a short `text/plain` body with the status of
    /// [`Error::status_and_body`] (`503` while the store is down). It also
    /// logs the error; a store outage is logged once, not per request.
    pub fn commit_error_response(&self, err: &Error) -> http::Response<String> {
        let (status, body) = err.status_and_body();
        if err.is_unavailable() {
            // The store's failure is already in the log, once (health.rs).
            tracing::debug!(error = %err, "session was not saved");
        } else if matches!(err, Error::EndedMeanwhile) {
            // A sign-out or sign-in in another tab: nothing went wrong.
            tracing::debug!(error = %err, "session was not saved");
        } else if status.is_client_error() {
            // The request's doing (over the size limits, over the user's
            // session cap): worth a warning, not an operator's alarm.
            tracing::warn!(error = %err, %status, "session was not saved");
        } else {
            tracing::error!(error = %err, "session was not saved");
        }
        if let Some(page) = &self.shared.error_page {
            return page(err);
        }
        let mut response = http::Response::new(body.to_owned());
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }

    /// The admin handle: list and end users' sessions, outside any
    /// request.
    pub fn admin(&self) -> SessionAdmin {
        SessionAdmin::new(self.shared.clone(), EndReason::Admin)
    }

    /// The manager's counters.
    pub fn stats(&self) -> Stats {
        Stats {
            rejected_tokens: self.shared.rejected.load(Ordering::Relaxed),
        }
    }
}

/// The future of [`SessionManager::commit`]: the headers for the
/// response. Ready at once when nothing goes to the store; otherwise it
/// runs the store calls, in one allocation.
#[must_use = "a commit does nothing until awaited"]
pub struct CommitFuture(CommitState);

enum CommitState {
    Ready(Option<Result<ResponseHeaders>>),
    Running(Pin<Box<dyn Future<Output = Result<ResponseHeaders>> + Send>>),
}

impl CommitFuture {
    fn ready(result: Result<ResponseHeaders>) -> Self {
        CommitFuture(CommitState::Ready(Some(result)))
    }
}

impl Future for CommitFuture {
    type Output = Result<ResponseHeaders>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            CommitState::Ready(result) => Poll::Ready(result.take().unwrap_or_else(|| {
                Err(Error::config(
                    "a commit future was polled after it finished",
                ))
            })),
            CommitState::Running(future) => future.as_mut().poll(cx),
        }
    }
}

impl fmt::Debug for CommitFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.0 {
            CommitState::Ready(_) => "ready",
            CommitState::Running(_) => "running",
        };
        f.debug_tuple("CommitFuture").field(&state).finish()
    }
}

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("transport", &self.shared.transport)
            .field("expiry", &self.shared.expiry)
            .field("keys", &self.shared.keys)
            .finish_non_exhaustive()
    }
}

/// Lists and ends sessions, outside any request: "which sessions does
/// alice have?", "sign alice out everywhere", "sign out every user".
///
/// Ending is immediate: the next request with an ended session's cookie
/// has no session. Get it from [`SessionManager::admin`], from a layer or
/// middleware's manager, or from [`Session::admin`] in a handler. It is
/// cheap to clone.
///
/// ```
/// use cloakroom::{ClientInfo, KeyRing, MemoryStore, SessionManager};
/// use http::HeaderMap;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cloakroom::Result<()> {
/// let manager = SessionManager::builder(MemoryStore::new(), KeyRing::random()).build()?;
/// for _ in 0..2 {
///     // Two sign-ins of alice, from two devices.
///     let session = manager.open(&HeaderMap::new());
///     session.bind_user("alice", ClientInfo::default().user_agent("Firefox")).await?;
///     manager.commit(&session).await?;
/// }
/// let admin = manager.admin();
/// let sessions = admin.list("alice").await?;
/// assert_eq!(sessions.len(), 2);
/// assert_eq!(sessions[0].client.user_agent.as_deref(), Some("Firefox"));
/// assert_eq!(admin.end_user_except("alice", &sessions[0].id).await?, 1);
/// assert_eq!(admin.list("alice").await?.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SessionAdmin {
    shared: Arc<Shared>,
    /// What its ends count as: `admin`, or `user` from a handler.
    reason: EndReason,
}

impl SessionAdmin {
    pub(crate) fn new(shared: Arc<Shared>, reason: EndReason) -> Self {
        SessionAdmin { shared, reason }
    }

    /// `user`'s live sessions, oldest first, each with its deadlines and
    /// the client recorded at sign-in.
    pub async fn list(&self, user: &str) -> Result<Vec<crate::SessionInfo>> {
        let expiry = self.shared.expiry();
        let mut sessions = self
            .shared
            .call(
                "sessions_of",
                None,
                self.shared.store.sessions_of(user, &expiry),
            )
            .await?;
        // A session with a longer idle timeout of its own ("remember me")
        // would otherwise seem to be used in the future: stores keep its
        // idle deadline, not its timeout.
        for s in &mut sessions {
            s.last_seen = s.last_seen.min(expiry.now);
        }
        Ok(sessions)
    }

    /// Creates a session for a client that will arrive with another
    /// credential (see [`Handover`](crate::Handover)), holding `values`
    /// and `notifications` (JSON), alive for `lifetime` or until
    /// [`Session::take_over`](crate::Session::take_over) takes it. Names
    /// and values are checked against the limits, as `set` checks them;
    /// nothing is written when one fails. Returns `false` when a session
    /// is already prepared under `handover`.
    ///
    /// ```
    /// # async fn f(admin: cloakroom::SessionAdmin) -> cloakroom::Result<()> {
    /// use cloakroom::Handover;
    /// use std::time::Duration;
    /// let handover = Handover::derive(b"the old system's secret", b"old-session-id");
    /// let values = [("login".to_owned(), serde_json::json!("alice"))];
    /// admin.prepare(&handover, values, [], Duration::from_secs(86_400)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn prepare(
        &self,
        handover: &crate::Handover,
        values: impl IntoIterator<Item = (String, serde_json::Value)>,
        notifications: impl IntoIterator<Item = (String, serde_json::Value)>,
        lifetime: Duration,
    ) -> Result<bool> {
        let json = |name: &str, value: &serde_json::Value| {
            let text = serde_json::to_string(value).map_err(|source| Error::Serde {
                name: name.to_owned(),
                source,
            })?;
            self.shared.limits.check(name, &text)?;
            Ok::<_, Error>(text)
        };
        let mut patch = Patch::default();
        patch.create();
        for (name, value) in values {
            let text = json(&name, &value)?;
            patch.set(name, text);
        }
        for (name, value) in notifications {
            let text = json(&name, &value)?;
            patch.notify(name, text);
        }
        patch.limit(self.shared.limits.session());
        let expiry = Expiry {
            now: self.shared.now(),
            idle: lifetime,
            absolute: lifetime,
        };
        let id = handover.id();
        let applied = self
            .shared
            .call(
                "apply",
                Some(&id),
                self.shared.store.apply(&id, &patch, &expiry),
            )
            .await?;
        Ok(applied != Applied::Gone)
    }

    /// Ends one session, and says whether it was live. An id that names
    /// no live session ends nothing: no event, and the ended count stays.
    /// Two store calls (a read, then the delete): an admin's action, not
    /// a request's.
    pub async fn end(&self, id: &crate::SessionId) -> Result<bool> {
        let expiry = self.shared.expiry();
        let live = self
            .shared
            .call("load", Some(id), self.shared.store.load(id, &expiry))
            .await?
            .is_some();
        // Deleted either way: a session past its deadline may still hold
        // a key or a row until the store sweeps it.
        self.shared
            .call("delete", Some(id), self.shared.store.delete(id))
            .await?;
        if live {
            observe::ended(self.reason, 1);
            self.shared.emit(SessionEvent::Ended {
                id: *id,
                reason: self.reason,
            });
        }
        Ok(live)
    }

    /// Ends every session of `user` (after a password reset, or when the
    /// account is disabled), and returns how many there were.
    pub async fn end_user(&self, user: &str) -> Result<usize> {
        self.end_user_but(user, None).await
    }

    /// Ends every session of `user` but `keep` (the current one, after a
    /// password change), and returns how many it ended.
    pub async fn end_user_except(&self, user: &str, keep: &crate::SessionId) -> Result<usize> {
        self.end_user_but(user, Some(keep)).await
    }

    async fn end_user_but(&self, user: &str, keep: Option<&crate::SessionId>) -> Result<usize> {
        let expiry = self.shared.expiry();
        let ended = self
            .shared
            .call(
                "end_sessions_of",
                None,
                self.shared.store.end_sessions_of(user, keep, &expiry),
            )
            .await?;
        observe::ended(self.reason, ended);
        self.shared.emit(SessionEvent::UserEnded {
            user: user.to_owned(),
            count: ended,
            reason: self.reason,
        });
        Ok(ended)
    }

    /// Ends every session of every user, and the anonymous ones; returns
    /// how many there were. Not every store can enumerate its sessions
    /// ([`Error::Unsupported`] on Memcached, which cannot list its keys).
    pub async fn end_all(&self) -> Result<usize> {
        let expiry = self.shared.expiry();
        let ended = self
            .shared
            .call("end_all", None, self.shared.store.end_all(&expiry))
            .await?;
        observe::ended(self.reason, ended);
        self.shared.emit(SessionEvent::AllEnded {
            count: ended,
            reason: self.reason,
        });
        Ok(ended)
    }

    /// How many live sessions the store holds ([`Error::Unsupported`] on
    /// Memcached).
    pub async fn count(&self) -> Result<usize> {
        let expiry = self.shared.expiry();
        self.shared
            .call("count", None, self.shared.store.count(&expiry))
            .await
    }
}

impl fmt::Debug for SessionAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionAdmin").finish_non_exhaustive()
    }
}

/// How a [`HeaderEdit`] changes the response's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EditMode {
    /// Add the value beside any the response has (`Set-Cookie`).
    Append,
    /// Replace every value the response has.
    Replace,
    /// Set it only if the response has none (`Cache-Control: private`
    /// leaves a handler's own cache policy alone).
    IfAbsent,
}

/// One change to a response's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeaderEdit {
    /// The header.
    pub name: HeaderName,
    /// Its value.
    pub value: HeaderValue,
    /// Whether it is added or replaces.
    pub mode: EditMode,
}

/// The headers a committed session asks of its response: the cookie (or
/// token header) and `Cache-Control: no-store` when the token is set or
/// cleared; and on every response whose handler used the session, `Vary`
/// on the token's header and, unless the handler set its own,
/// `Cache-Control: private`. Nothing for a response that never touched
/// its session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseHeaders {
    edits: Vec<HeaderEdit>,
}

impl ResponseHeaders {
    /// Whether the response needs no change.
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// The edits, in the order they are to be made.
    pub fn iter(&self) -> std::slice::Iter<'_, HeaderEdit> {
        self.edits.iter()
    }

    /// Makes the edits on an `http` header map.
    pub fn apply_to(self, headers: &mut HeaderMap) {
        for edit in self.edits {
            match edit.mode {
                EditMode::Append => {
                    headers.append(edit.name, edit.value);
                }
                EditMode::Replace => {
                    headers.insert(edit.name, edit.value);
                }
                EditMode::IfAbsent => {
                    if !headers.contains_key(&edit.name) {
                        headers.insert(edit.name, edit.value);
                    }
                }
            }
        }
    }

    /// Marks a response that depends on the session: `Vary` on the token's
    /// header, and `Cache-Control: private` unless the response sets the
    /// token (then it is `no-store` already) or sets its own policy. A
    /// shared cache must never serve one user's page to another.
    pub(crate) fn vary_on(&mut self, token_header: HeaderName) {
        let sets_token = self.edits.iter().any(|e| e.name == CACHE_CONTROL);
        self.edits.push(HeaderEdit {
            name: http::header::VARY,
            // Every header name is a valid value; a standard one (`cookie`)
            // converts without copying.
            value: HeaderValue::from(token_header),
            mode: EditMode::Append,
        });
        if !sets_token {
            self.edits.push(HeaderEdit {
                name: CACHE_CONTROL,
                value: HeaderValue::from_static("private"),
                mode: EditMode::IfAbsent,
            });
        }
    }

    pub(crate) fn token(name: HeaderName, value: HeaderValue) -> Self {
        // Room for the `Vary` that `vary_on` adds next.
        let mut edits = Vec::with_capacity(3);
        edits.push(HeaderEdit {
            name,
            value,
            mode: EditMode::Append,
        });
        edits.push(HeaderEdit {
            name: CACHE_CONTROL,
            value: HeaderValue::from_static("no-store"),
            mode: EditMode::Replace,
        });
        ResponseHeaders { edits }
    }
}

impl IntoIterator for ResponseHeaders {
    type Item = HeaderEdit;
    type IntoIter = std::vec::IntoIter<HeaderEdit>;

    fn into_iter(self) -> Self::IntoIter {
        self.edits.into_iter()
    }
}

/// Builds a [`SessionManager`], or anything made from one (an adapter's
/// layer or middleware, picked by `T`); [`build`](Self::build) checks the
/// settings.
///
/// ```
/// use cloakroom::{ExpiryPolicy, KeyRing, MemoryStore, SessionManager};
/// use std::time::Duration;
///
/// let manager = SessionManager::builder(MemoryStore::new(), KeyRing::random())
///     .expiry(ExpiryPolicy::default().idle(Duration::from_secs(900)))
///     .build()?;
/// # Ok::<(), cloakroom::Error>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct SessionManagerBuilder<T = SessionManager> {
    store: Box<dyn DynStore>,
    keys: KeyRing,
    transport: Transport,
    expiry: ExpiryPolicy,
    max_own: Option<SessionExpiry>,
    limits: Limits,
    clock: Box<dyn Clock>,
    error_page: Option<ErrorPage>,
    events: Option<Listener>,
    output: PhantomData<fn() -> T>,
}

impl SessionManagerBuilder {
    /// Starts building over `store`, signing with `keys`; the same as
    /// [`SessionManager::builder`].
    pub fn new(store: impl Store, keys: KeyRing) -> Self {
        SessionManagerBuilder {
            store: Box::new(store),
            keys,
            transport: Transport::Cookie(CookieConfig::default()),
            expiry: ExpiryPolicy::default(),
            max_own: None,
            limits: Limits::default(),
            clock: Box::new(SystemClock),
            error_page: None,
            events: None,
            output: PhantomData,
        }
    }
}

impl<T> SessionManagerBuilder<T> {
    /// The same settings, building a `U` instead: how an adapter offers
    /// `Adapter::builder(store, keys)`.
    pub fn output<U: From<SessionManager>>(self) -> SessionManagerBuilder<U> {
        SessionManagerBuilder {
            store: self.store,
            keys: self.keys,
            transport: self.transport,
            expiry: self.expiry,
            max_own: self.max_own,
            limits: self.limits,
            clock: self.clock,
            error_page: self.error_page,
            events: self.events,
            output: PhantomData,
        }
    }

    /// The cookie's name and attributes.
    pub fn cookie(mut self, cookie: CookieConfig) -> Self {
        self.transport = Transport::Cookie(cookie);
        self
    }

    /// Carries the token in a request and response header instead of a
    /// cookie, for API clients (like Spring Session's `X-Auth-Token`). The
    /// client sends back the value it last received; an empty value in a
    /// response means the session ended.
    ///
    /// ```
    /// use cloakroom::{KeyRing, MemoryStore, SessionManager};
    /// use http::HeaderName;
    /// let manager = SessionManager::builder(MemoryStore::new(), KeyRing::random())
    ///     .header(HeaderName::from_static("x-auth-token"))
    ///     .build()?;
    /// assert_eq!(manager.token_header(), "x-auth-token");
    /// # Ok::<(), cloakroom::Error>(())
    /// ```
    pub fn header(mut self, name: HeaderName) -> Self {
        self.transport = Transport::Header(name);
        self
    }

    /// The idle timeout and absolute lifetime.
    pub fn expiry(mut self, expiry: ExpiryPolicy) -> Self {
        self.expiry = expiry;
        self
    }

    /// The longest expiry one session may ask for with
    /// [`Session::set_expiry`] ("remember me"). Without it, a session
    /// may only shorten the defaults: the idle timeout and absolute
    /// lifetime of [`expiry`](Self::expiry), and a persistent cookie only
    /// if the cookie's [`max_age`](CookieConfig::max_age) is set, up to it.
    ///
    /// ```
    /// use cloakroom::{KeyRing, MemoryStore, SessionExpiry, SessionManager};
    /// use std::time::Duration;
    /// const DAY: Duration = Duration::from_secs(86_400);
    ///
    /// let manager = SessionManager::builder(MemoryStore::new(), KeyRing::random())
    ///     .max_session_expiry(SessionExpiry::new(7 * DAY, 30 * DAY).persistent(30 * DAY))
    ///     .build()?;
    /// # Ok::<(), cloakroom::Error>(())
    /// ```
    pub fn max_session_expiry(mut self, max: SessionExpiry) -> Self {
        self.max_own = Some(max);
        self
    }

    /// Size limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The clock; tests use a [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Renders the app's own page when a session cannot be saved at the
    /// end of a request (the store is down, the session is over its
    /// limits), like scs's `ErrorFunc`. The page replaces the handler's
    /// response, and sets no session cookie. Without it the response is
    /// a short text with the status of [`Error::status_and_body`].
    ///
    /// ```
    /// use cloakroom::{Error, KeyRing, MemoryStore, SessionManager};
    ///
    /// let manager = SessionManager::builder(MemoryStore::new(), KeyRing::random())
    ///     .on_commit_error(|err: &Error| {
    ///         let (status, _) = err.status_and_body();
    ///         let mut page = http::Response::new(
    ///             "<h1>Sorry, we could not save your changes.</h1>".to_owned(),
    ///         );
    ///         *page.status_mut() = status;
    ///         page.headers_mut().insert(
    ///             http::header::CONTENT_TYPE,
    ///             http::HeaderValue::from_static("text/html; charset=utf-8"),
    ///         );
    ///         page
    ///     })
    ///     .build()?;
    /// # Ok::<(), cloakroom::Error>(())
    /// ```
    pub fn on_commit_error(
        mut self,
        page: impl Fn(&Error) -> http::Response<String> + Send + Sync + 'static,
    ) -> Self {
        self.error_page = Some(Arc::new(page));
        self
    }

    /// Calls `listener` with every [`SessionEvent`]: sessions created,
    /// cycled, destroyed, and ended by someone else or by the cap, for an
    /// audit log. It runs inline, in the request (or the admin call) that
    /// caused the event, so it must be quick: to do more, send the event
    /// into a channel.
    ///
    /// ```
    /// use cloakroom::{KeyRing, MemoryStore, SessionEvent, SessionManager};
    ///
    /// let (audit, mut events) = tokio::sync::mpsc::unbounded_channel::<SessionEvent>();
    /// let manager = SessionManager::builder(MemoryStore::new(), KeyRing::random())
    ///     .on_event(move |event| {
    ///         let _ = audit.send(event.clone());
    ///     })
    ///     .build()?;
    /// # drop(events.try_recv());
    /// # Ok::<(), cloakroom::Error>(())
    /// ```
    pub fn on_event(mut self, listener: impl Fn(&SessionEvent) + Send + Sync + 'static) -> Self {
        self.events = Some(Arc::new(listener));
        self
    }

    /// Checks the settings and builds.
    pub fn build(self) -> Result<T>
    where
        T: From<SessionManager>,
    {
        if let Transport::Cookie(cookie) = &self.transport {
            cookie.validate()?;
        }
        self.expiry.validate()?;
        observe::describe();
        let configured_max_age = match &self.transport {
            Transport::Cookie(cookie) => cookie.configured_max_age(),
            Transport::Header(_) => None,
        };
        let max_own = self
            .max_own
            .unwrap_or_else(|| SessionExpiry::from_policy(&self.expiry, configured_max_age));
        ExpiryPolicy::default()
            .idle(max_own.idle_timeout())
            .absolute(max_own.absolute_lifetime())
            .validate()
            .map_err(|e| Error::config(format!("max_session_expiry: {e}")))?;
        Ok(T::from(SessionManager {
            shared: Arc::new(Shared {
                store: self.store,
                keys: self.keys,
                transport: self.transport,
                expiry: self.expiry,
                max_own,
                limits: self.limits,
                clock: self.clock,
                error_page: self.error_page,
                events: self.events,
                rejected: AtomicU64::new(0),
                last_warning: std::sync::Mutex::new(None),
                health: Health::default(),
            }),
        }))
    }
}

impl<T> fmt::Debug for SessionManagerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManagerBuilder")
            .field("transport", &self.transport)
            .field("expiry", &self.expiry)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}
