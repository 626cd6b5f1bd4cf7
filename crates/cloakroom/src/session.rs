//! The per-request session handle.
//!
//! A [`Session`] starts untouched: it has not even checked the cookie's
//! signature. It loads from the store at most once, only when a read needs
//! it, and records writes in a [`Patch`]. When the response is ready, the
//! layer commits: one `apply` if something changed (or the cookie is due to
//! be re-signed or its `Max-Age` renewed), plus what the request asked for
//! beyond it: a `delete` after a destroy, an `admit` after a sign-in, and a
//! second `apply` that creates a new session if the first found it gone
//! (unless the request saw it alive and has values or notifications to
//! write without signing a user in: [`Error::EndedMeanwhile`]).

use crate::cookie::{Stamp, Verified};
use crate::error::{Error, Result};
use crate::expiry::{Expiry, SessionExpiry, Timestamp};
use crate::handover::Handover;
use crate::inventory::{self, Admission, CLIENT_NAME, ClientInfo, OnMaxSessions, USER_NAME};
use crate::manager::Shared;
use crate::patch::Patch;
use crate::store::{Applied, Record};
use crate::token::{SessionId, Token};
use crate::transport::{TokenAction, TokenHeaders};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::OnceCell;

/// The session of the current request.
///
/// Get it as an extractor (axum, actix-web), from the request's
/// extensions with the tower layer alone, or from
/// [`SessionManager::open`](crate::SessionManager::open) without a
/// framework. Clones share the same state, so every
/// extractor in one request sees the same session.
///
/// Every method that may reach the store is async and returns
/// [`Result`]: a store failure is an [`Error`], never a panic.
///
/// ```
/// use cloakroom::Session;
///
/// async fn handler(session: Session) -> cloakroom::Result<String> {
///     let visits: u64 = session.get("visits").await?.unwrap_or(0);
///     session.set("visits", visits + 1).await?;
///     Ok(format!("visit number {}", visits + 1))
/// }
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    state: Mutex<State>,
    loaded: OnceCell<Option<Record>>,
    /// A handler called the session's API: the response depends on the
    /// session, so shared caches must not serve it to anyone else.
    used: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct State {
    incoming: Incoming,
    patch: Patch,
    /// The token a new session will be created under.
    fresh: Option<Token>,
    /// The token the incoming session will be renamed to.
    renamed: Option<Token>,
    /// The incoming session is to be deleted.
    destroyed: bool,
    /// The incoming session turned out not to exist: an increment found
    /// it gone, and this request had not seen it alive before.
    gone: bool,
    /// Values learned from atomic store calls this request, newer than the
    /// loaded record; never written back.
    observed: BTreeMap<String, String>,
    /// An atomic call (an increment) found the incoming session alive this
    /// request; kept when the value it learned is removed again.
    answered: bool,
    /// The user this request bound the session to: admitted to the user's
    /// index once the binding is written.
    bound: Option<String>,
    /// An expiry set this request: `Some(None)` goes back to the defaults.
    own: Option<Option<SessionExpiry>>,
}

impl State {
    /// Nothing checked the cookie, and nothing was written.
    fn untouched(&self) -> bool {
        matches!(self.incoming, Incoming::Unchecked(_) | Incoming::Absent)
            && self.fresh.is_none()
            && !self.destroyed
    }
}

/// What a commit has left once the part that needs no store is done.
#[allow(
    clippy::large_enum_variant,
    reason = "returned once and moved into the commit's future; a box would be one more allocation"
)]
pub(crate) enum CommitPlan {
    /// Decided without the store.
    Done(TokenAction),
    /// Store calls to make: [`Session::run_commit`].
    Work(PendingCommit),
}

/// A request's changes, taken from the session for
/// [`Session::run_commit`].
pub(crate) struct PendingCommit {
    existing: Option<Token>,
    stale_key: bool,
    stamp: Option<Stamp>,
    destroyed: Option<SessionId>,
    patch: Patch,
    fresh: Option<Token>,
    renamed: Option<Token>,
    bound: Option<String>,
    pending_own: Option<Option<SessionExpiry>>,
    incoming_own: Option<SessionExpiry>,
    /// This request saw the incoming session alive (loaded, or answered by
    /// an atomic call).
    seen_alive: bool,
}

/// The session cookie of the request, checked lazily.
#[derive(Default)]
enum Incoming {
    /// The headers that may carry our cookie, not yet parsed.
    Unchecked(TokenHeaders),
    #[default]
    Absent,
    Valid(Verified),
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, headers: TokenHeaders) -> Self {
        let incoming = if headers.is_empty() {
            Incoming::Absent
        } else {
            Incoming::Unchecked(headers)
        };
        Session {
            inner: Arc::new(Inner {
                shared,
                state: Mutex::new(State {
                    incoming,
                    ..State::default()
                }),
                loaded: OnceCell::new(),
                used: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Whether this request found the incoming session alive: it loaded
    /// it, or an increment on it answered.
    fn seen_alive(&self, st: &State) -> bool {
        matches!(self.inner.loaded.get(), Some(Some(_))) || st.answered
    }

    /// Whether nothing has used this session: not even its cookie has
    /// been checked, and nothing was written.
    pub(crate) fn untouched(&self) -> bool {
        self.state().untouched()
    }

    /// Whether a handler called the session's API this request.
    pub(crate) fn used(&self) -> bool {
        self.inner.used.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn mark_used(&self) {
        self.inner
            .used
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn shared_arc(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // No code under this lock panics mid-change; see MemoryStore::lock.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token of the incoming session, if it may still exist: its cookie
    /// verified, it was not destroyed, and a load did not find it missing.
    fn existing(&self, st: &mut State) -> Option<Token> {
        if st.destroyed || st.gone || matches!(self.inner.loaded.get(), Some(None)) {
            return None;
        }
        self.verify(st).map(|v| v.token.clone())
    }

    fn verify<'s>(&self, st: &'s mut State) -> Option<&'s Verified> {
        if let Incoming::Unchecked(headers) = &st.incoming {
            let shared = &self.inner.shared;
            let candidates = shared
                .transport
                .candidates(headers, shared.limits.cookie_header_bytes());
            let name = shared.transport.name();
            let verified = candidates.iter().find_map(|c| shared.keys.verify(name, c));
            st.incoming = match verified {
                Some(v) => Incoming::Valid(v),
                None => {
                    // Cookies of other names are no rejected token.
                    if !candidates.is_empty() {
                        shared.reject_token();
                    }
                    Incoming::Absent
                }
            };
        }
        match &st.incoming {
            Incoming::Valid(v) => Some(v),
            _ => None,
        }
    }

    /// The incoming session's own expiry, as its cookie's stamp carries it;
    /// `None` for the defaults (or no valid cookie).
    fn incoming_own(&self, st: &mut State) -> Option<SessionExpiry> {
        let (idle, absolute, max_age) = self.verify(st)?.stamp?.own?;
        Some(self.inner.shared.own_from_stamp(idle, absolute, max_age))
    }

    /// The expiry of store calls on the incoming session.
    fn existing_expiry(&self) -> Expiry {
        let shared = &self.inner.shared;
        let now = shared.now();
        match self.incoming_own(&mut self.state()) {
            Some(own) => own.at(now),
            None => shared.expiry.at(now),
        }
    }

    /// The signed value for the session `token`, whose absolute deadline
    /// is `deadline`, and its cookie `Max-Age`: the session's own or the
    /// configured one, never past the deadline. A session with its own
    /// expiry or a persistent cookie carries a stamp.
    fn issue(
        &self,
        token: &Token,
        own: Option<SessionExpiry>,
        deadline: Timestamp,
        now: Timestamp,
    ) -> TokenAction {
        let shared = &self.inner.shared;
        let max_age = shared.cookie_max_age(own.as_ref());
        let secs = |d: std::time::Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        let stamp = (own.is_some() || max_age.is_some()).then(|| Stamp {
            own: own.map(|o| {
                (
                    secs(o.idle_timeout()),
                    secs(o.absolute_lifetime()),
                    o.cookie_max_age().map_or(0, secs),
                )
            }),
            deadline: deadline.0 / 1000,
            issued: now.0 / 1000,
        });
        let value = shared.sign(token, stamp.as_ref());
        let max_age = max_age
            .map(|age| age.min(std::time::Duration::from_millis(now.millis_until(deadline))));
        TokenAction::Set(value, max_age)
    }

    /// Whether a persistent cookie should be sent again with a fresh
    /// `Max-Age`: once a tenth of the idle window has passed since it was
    /// issued (the rhythm of the store's idle refresh), or it has no stamp.
    fn cookie_due(
        &self,
        stamp: Option<&Stamp>,
        own: Option<&SessionExpiry>,
        now: Timestamp,
    ) -> bool {
        let shared = &self.inner.shared;
        if shared.cookie_max_age(own).is_none() {
            return false;
        }
        let idle = own.map_or(shared.expiry.idle_timeout(), SessionExpiry::idle_timeout);
        let step = (idle.as_secs() / 10).max(1);
        stamp.is_none_or(|s| now.0 / 1000 >= s.issued.saturating_add(step))
    }

    /// Loads the incoming session once; later calls reuse the result.
    async fn load(&self, token: &Token) -> Result<Option<&Record>> {
        let shared = &self.inner.shared;
        let expiry = self.existing_expiry();
        let record = self
            .inner
            .loaded
            .get_or_try_init(|| async {
                let record = shared
                    .call(
                        "load",
                        Some(&token.id()),
                        shared.store.load(&token.id(), &expiry),
                    )
                    .await?;
                // Enforced here too, whatever the store's clock says.
                Ok::<_, Error>(record.filter(|r| expiry.now < r.deadline))
            })
            .await?;
        Ok(record.as_ref())
    }

    /// The stored JSON of `name`, with this request's changes applied.
    async fn raw(&self, name: &str) -> Result<Option<String>> {
        let token = {
            let mut st = self.state();
            if let Some(pending) = st.patch.lookup(name) {
                return Ok(pending.map(str::to_owned));
            }
            if let Some(seen) = st.observed.get(name) {
                return Ok(Some(seen.clone()));
            }
            match self.existing(&mut st) {
                Some(token) => token,
                None => return Ok(None),
            }
        };
        let record = self.load(&token).await?;
        // Another clone may have written while this one loaded.
        let mut st = self.state();
        if let Some(pending) = st.patch.lookup(name) {
            return Ok(pending.map(str::to_owned));
        }
        if let Some(seen) = st.observed.get(name) {
            return Ok(Some(seen.clone()));
        }
        if self.existing(&mut st).is_none() {
            return Ok(None);
        }
        Ok(record.and_then(|r| r.values.get(name).cloned()))
    }

    /// The value of `name`, or `None` if it is not set.
    ///
    /// The first read in a request loads the session (one store round
    /// trip); later reads use that copy. A value that does not deserialize
    /// as `T` is an [`Error::Serde`].
    pub async fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        self.mark_used();
        not_reserved(name)?;
        match self.raw(name).await? {
            Some(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|source| Error::Serde {
                    name: name.to_owned(),
                    source,
                }),
            None => Ok(None),
        }
    }

    /// Whether `name` is set.
    pub async fn contains(&self, name: &str) -> Result<bool> {
        self.mark_used();
        not_reserved(name)?;
        Ok(self.raw(name).await?.is_some())
    }

    /// Sets `name` to `value`, stored as JSON.
    ///
    /// It costs no round trip now: the change is written when the response
    /// is ready, together with the request's other changes. Setting the
    /// value a loaded session already holds records nothing.
    pub async fn set(&self, name: &str, value: impl Serialize) -> Result<()> {
        self.mark_used();
        let json = serde_json::to_string(&value).map_err(|source| Error::Serde {
            name: name.to_owned(),
            source,
        })?;
        self.inner.shared.limits.check(name, &json)?;
        let mut st = self.state();
        // What the store holds now, if this request knows: a value an
        // atomic call returned is newer than the loaded record.
        let unchanged = st.patch.lookup(name).is_none()
            && self.existing(&mut st).is_some()
            && match st.observed.get(name) {
                Some(seen) => *seen == json,
                None => {
                    matches!(self.inner.loaded.get(), Some(Some(r)) if r.values.get(name) == Some(&json))
                }
            };
        if !unchanged {
            st.patch.set(name, json);
            self.ensure_target(&mut st);
        }
        Ok(())
    }

    /// Adds `by` to the integer under `name` (0 when unset) and returns the
    /// new value.
    ///
    /// Unlike `get` followed by `set`, the addition happens atomically in
    /// the store, so concurrent requests (two tabs, say) never lose an
    /// increment. It is one store round trip of its own when the session
    /// exists, and free on a new session. A value that is not an integer is
    /// an error, and so is a session this request saw alive that another
    /// request ended or renamed since ([`Error::EndedMeanwhile`]), unless
    /// `bind_user` was called earlier in this request.
    ///
    /// ```
    /// # async fn f(session: cloakroom::Session) -> cloakroom::Result<()> {
    /// let visits = session.increment("visits", 1).await?;
    /// # Ok(()) }
    /// ```
    pub async fn increment(&self, name: &str, by: i64) -> Result<i64> {
        self.mark_used();
        // The name's own limits (reserved, `max_name_bytes`); the value is
        // at most 20 bytes of digits.
        self.inner.shared.limits.check(name, "")?;
        let not_integer = |source| Error::Serde {
            name: name.to_owned(),
            source,
        };
        let token = {
            let mut st = self.state();
            let local = match st.patch.lookup(name) {
                Some(Some(json)) => Some(serde_json::from_str::<i64>(json).map_err(not_integer)?),
                Some(None) => Some(0),
                None => None,
            };
            let existing = self.existing(&mut st);
            match (local, existing) {
                (None, Some(token)) => token,
                (local, _) => {
                    let value = local.unwrap_or(0).saturating_add(by);
                    st.patch.set(name, value.to_string());
                    self.ensure_target(&mut st);
                    return Ok(value);
                }
            }
        };
        let shared = &self.inner.shared;
        let stored = shared
            .call(
                "increment",
                Some(&token.id()),
                shared
                    .store
                    .increment(&token.id(), name, by, &self.existing_expiry()),
            )
            .await?;
        let mut st = self.state();
        match stored {
            Some(value) => {
                st.observed.insert(name.to_owned(), value.to_string());
                st.answered = true;
                Ok(value)
            }
            // Seen alive earlier in this request, gone now: ended or
            // renamed by another request (see `Error::EndedMeanwhile`).
            // The commit finds it gone too, and writes nothing. A request
            // that signs a user in goes on, in a new session.
            None if st.bound.is_none() && self.seen_alive(&st) => Err(Error::EndedMeanwhile),
            None => {
                // Gone before this request: the value starts a fresh
                // session.
                st.gone = true;
                st.patch.set(name, by.to_string());
                self.ensure_target(&mut st);
                Ok(by)
            }
        }
    }

    /// Removes `name` and returns the value it had, or `None` if it was
    /// not set.
    ///
    /// Like `get`, it reads the session (one store round trip, the first
    /// time in a request); [`discard`](Self::discard) removes without
    /// reading. A value that does not deserialize as `T` is an
    /// [`Error::Serde`], and then nothing is removed.
    ///
    /// ```
    /// # async fn f(session: cloakroom::Session) -> cloakroom::Result<()> {
    /// let coupon: Option<String> = session.remove("coupon").await?;
    /// # Ok(()) }
    /// ```
    pub async fn remove<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        self.mark_used();
        not_reserved(name)?;
        let old = match self.raw(name).await? {
            Some(json) => Some(serde_json::from_str(&json).map_err(|source| Error::Serde {
                name: name.to_owned(),
                source,
            })?),
            None => None,
        };
        self.discard(name).await?;
        Ok(old)
    }

    /// Removes `name` without reading its value: no store round trip now,
    /// and the removal is written with the request's other changes.
    pub async fn discard(&self, name: &str) -> Result<()> {
        self.mark_used();
        not_reserved(name)?;
        let mut st = self.state();
        if self.existing(&mut st).is_some() {
            let absent = st.patch.lookup(name).is_none()
                && !st.observed.contains_key(name)
                && matches!(self.inner.loaded.get(), Some(Some(r)) if !r.values.contains_key(name));
            st.observed.remove(name);
            if !absent {
                st.patch.remove(name);
            }
        } else if st.fresh.is_some() {
            st.patch.remove(name);
        }
        Ok(())
    }

    /// Removes every name. Notifications and the user binding are kept.
    ///
    /// A session left with nothing, no name, no unread notification and
    /// no user (after `clear`, or once `remove` or `discard` took the last
    /// name), ends when the response is ready: the store deletes it and
    /// the cookie is cleared, so no empty session lingers. The store
    /// decides that atomically, so a name another request sets meanwhile
    /// keeps the session.
    pub async fn clear(&self) -> Result<()> {
        self.mark_used();
        let token = self.existing(&mut self.state());
        // The binding lives among the names: learn it before clearing.
        let record = match &token {
            Some(token) => self.load(token).await?,
            None => None,
        };
        let mut st = self.state();
        if self.existing(&mut st).is_some() || st.fresh.is_some() {
            let keep: Vec<(&str, String)> = [USER_NAME, CLIENT_NAME]
                .into_iter()
                .filter_map(|name| {
                    let pending = st.patch.lookup(name).map(|v| v.map(str::to_owned));
                    let stored = || record.and_then(|r| r.values.get(name).cloned());
                    pending.unwrap_or_else(stored).map(|v| (name, v))
                })
                .collect();
            st.patch.clear();
            for (name, json) in keep {
                st.patch.set(name, json);
            }
        }
        Ok(())
    }

    /// Every name that is set and its JSON, with this request's changes
    /// applied; reserved names left out.
    async fn snapshot(&self) -> Result<BTreeMap<String, String>> {
        let token = self.existing(&mut self.state());
        let record = match &token {
            Some(token) => self.load(token).await?,
            None => None,
        };
        let mut st = self.state();
        let mut values = match record {
            Some(r) if !st.patch.clears() && self.existing(&mut st).is_some() => r.values.clone(),
            _ => BTreeMap::new(),
        };
        // Values learned before a clear in this request are gone too.
        if !st.patch.clears() {
            for (name, json) in &st.observed {
                values.insert(name.clone(), json.clone());
            }
        }
        for (name, change) in st.patch.changes() {
            match change {
                crate::Change::Set(json) => values.insert(name.to_owned(), json.to_owned()),
                crate::Change::Remove => values.remove(name),
            };
        }
        values.retain(|k, _| !inventory::is_reserved(k));
        Ok(values)
    }

    /// The names that are set, sorted.
    pub async fn keys(&self) -> Result<Vec<String>> {
        self.mark_used();
        Ok(self.snapshot().await?.into_keys().collect())
    }

    /// Every value whose name starts with `prefix`, by name; `""` gives
    /// them all. One read of the session (none if it was read already),
    /// so a cart kept one item per name is one call.
    ///
    /// Each value must deserialize as `T` (use [`serde_json::Value`] for
    /// values of mixed types), or the answer is an [`Error::Serde`]
    /// naming the first one that does not.
    ///
    /// ```
    /// # async fn f(session: cloakroom::Session) -> cloakroom::Result<()> {
    /// session.set("cart:apple", 3).await?;
    /// session.set("cart:pear", 1).await?;
    /// let cart = session.values::<u32>("cart:").await?;
    /// assert_eq!(cart["cart:apple"], 3);
    /// # Ok(()) }
    /// ```
    pub async fn values<T: DeserializeOwned>(&self, prefix: &str) -> Result<BTreeMap<String, T>> {
        self.mark_used();
        let mut out = BTreeMap::new();
        for (name, json) in self.snapshot().await? {
            if !name.starts_with(prefix) {
                continue;
            }
            let value = serde_json::from_str(&json).map_err(|source| Error::Serde {
                name: name.clone(),
                source,
            })?;
            out.insert(name, value);
        }
        Ok(out)
    }

    /// The id of the live session, or `None` when there is none (yet).
    ///
    /// This is the [`SessionId`], a hash of the cookie's token: safe to log
    /// and to store, useless as a cookie. After [`cycle_id`](Self::cycle_id)
    /// it is the new id.
    ///
    /// It reads nothing from the store when the answer is known already:
    /// for a session created in this request, one read or incremented
    /// earlier in it, or a request without a valid cookie. Otherwise it
    /// reads the session once (as the first `get` would), because a
    /// well-signed cookie may name a session that has expired or was ended,
    /// and only the store knows.
    pub async fn id(&self) -> Result<Option<SessionId>> {
        self.mark_used();
        let token = self.existing(&mut self.state());
        if let Some(token) = token {
            let known_alive = self.state().answered;
            if known_alive || self.load(&token).await?.is_some() {
                let st = self.state();
                if !st.destroyed && !st.gone {
                    return Ok(Some(st.renamed.as_ref().unwrap_or(&token).id()));
                }
            }
        }
        Ok(self.state().fresh.as_ref().map(Token::id))
    }

    /// Gives the session a new id and keeps its data and absolute deadline.
    /// The old id stops working when the response is ready.
    ///
    /// Call it at login and at every change of privilege, so that an id
    /// planted or seen before the change is worthless after it.
    pub async fn cycle_id(&self) -> Result<()> {
        self.mark_used();
        let mut st = self.state();
        if self.existing(&mut st).is_some() {
            st.renamed = Some(Token::generate());
        } else if st.fresh.is_some() {
            st.fresh = Some(Token::generate());
        }
        Ok(())
    }

    /// Takes over the session prepared for this client under `handover`
    /// ([`SessionAdmin::prepare`](crate::SessionAdmin::prepare)), when the
    /// request carries no session cookie of its own. Call it only after
    /// verifying the client's other credential that `handover` is derived
    /// from, and before the handler reads the session.
    ///
    /// On success (`true`) the request's session is the prepared one,
    /// with its values and notifications. When the response is ready it
    /// moves to a fresh id, as [`cycle_id`](Self::cycle_id) does, with the
    /// manager's default expiry and its absolute lifetime starting now, and
    /// the response sets its cookie: the derived id never reaches the
    /// client, and the prepared session is gone, so a second request with
    /// the same credential takes nothing over. `false`, after at most one
    /// store read, when the request has a session cookie (a valid one) or
    /// nothing was prepared (or it expired).
    ///
    /// ```
    /// use cloakroom::{Handover, Session};
    ///
    /// async fn first_visit(session: Session, verified_old_id: &str) -> cloakroom::Result<bool> {
    ///     let handover = Handover::derive(b"the old system's secret", verified_old_id.as_bytes());
    ///     session.take_over(&handover).await
    /// }
    /// ```
    pub async fn take_over(&self, handover: &Handover) -> Result<bool> {
        {
            let mut st = self.state();
            let fresh_request = st.fresh.is_none()
                && st.renamed.is_none()
                && !st.destroyed
                && st.patch.is_empty()
                && !self.inner.loaded.initialized();
            if !fresh_request || self.verify(&mut st).is_some() {
                return Ok(false);
            }
        }
        let shared = &self.inner.shared;
        let id = handover.id();
        let expiry = shared.expiry();
        let record = shared
            .call("load", Some(&id), shared.store.load(&id, &expiry))
            .await?
            .filter(|r| expiry.now < r.deadline);
        let Some(record) = record else {
            return Ok(false);
        };
        let mut st = self.state();
        // A clone of this handle may have read or written meanwhile.
        if st.fresh.is_some()
            || st.renamed.is_some()
            || st.destroyed
            || !matches!(st.incoming, Incoming::Absent)
            || self.inner.loaded.set(Some(record)).is_err()
        {
            return Ok(false);
        }
        st.incoming = Incoming::Valid(Verified {
            token: handover.token.clone(),
            stamp: None,
            stale_key: false,
        });
        st.renamed = Some(Token::generate());
        // Back to the defaults, lifetime restarted (as `set_expiry(None)`).
        st.own = Some(None);
        drop(st);
        self.mark_used();
        Ok(true)
    }

    /// Gives this session its own expiry ("remember me"), or with `None`
    /// takes it back to the manager's defaults. Other sessions keep the
    /// defaults.
    ///
    /// When the response is ready, the session gets a new id (as with
    /// [`cycle_id`](Self::cycle_id): its cookie changes anyway, and the old
    /// one, which carried the old expiry, stops working), and its absolute
    /// lifetime starts again from now. The setting travels signed in the
    /// cookie, so later requests know it without reading the store; the
    /// store holds the deadline and the TTL it implies. A request that
    /// has no session and writes nothing creates none.
    ///
    /// A setting over the maximums of
    /// [`max_session_expiry`](crate::SessionManagerBuilder::max_session_expiry)
    /// is an [`Error::Config`], and changes nothing. A session with its own
    /// expiry does not end when its last name is removed.
    ///
    /// ```
    /// use cloakroom::{Session, SessionExpiry};
    /// use std::time::Duration;
    /// const DAY: Duration = Duration::from_secs(86_400);
    ///
    /// async fn sign_in(session: Session, user: &str, remember_me: bool) -> cloakroom::Result<()> {
    ///     session.cycle_id().await?;
    ///     session.set("user", user).await?;
    ///     if remember_me {
    ///         let expiry = SessionExpiry::new(7 * DAY, 30 * DAY).persistent(30 * DAY);
    ///         session.set_expiry(Some(expiry)).await?;
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub async fn set_expiry(&self, expiry: Option<SessionExpiry>) -> Result<()> {
        self.mark_used();
        if let Some(expiry) = &expiry {
            expiry.check_within(&self.inner.shared.max_own)?;
        }
        let mut st = self.state();
        st.own = Some(expiry);
        if self.existing(&mut st).is_some() && st.renamed.is_none() {
            st.renamed = Some(Token::generate());
        }
        Ok(())
    }

    /// The session's own expiry: set in this request, or carried by its
    /// cookie (held to today's maximums); `None` when it has the defaults.
    /// Reads nothing from the store.
    pub fn expiry(&self) -> Option<SessionExpiry> {
        let mut st = self.state();
        match st.own {
            Some(own) => own,
            None => self.incoming_own(&mut st),
        }
    }

    /// Ends the session: it is deleted from the store and the cookie is
    /// cleared when the response is ready. Writes after this start a new,
    /// empty session under a new id.
    pub async fn destroy(&self) -> Result<()> {
        self.mark_used();
        let mut st = self.state();
        if self.verify(&mut st).is_some() {
            st.destroyed = true;
        }
        st.patch = Patch::default();
        st.observed.clear();
        st.answered = false;
        st.fresh = None;
        st.renamed = None;
        st.bound = None;
        st.own = None;
        Ok(())
    }

    /// Binds the session to `user` (their id in the app: a number, a
    /// name), recording `client` for their list of sessions. Call it at
    /// sign-in, after [`cycle_id`](Self::cycle_id); like `set`, it is
    /// written when the response is ready, and then the session joins the
    /// user's index, where [`SessionAdmin`](crate::SessionAdmin) finds it.
    ///
    /// With `max_sessions_per_user` set, the cap is enforced then:
    /// `evict_oldest` ends the user's least recently used sessions;
    /// `refuse` makes this call fail with [`Error::TooManySessions`] when
    /// the user is at the cap already (one store round trip to check), so
    /// the handler can say so. Two sign-ins racing for the last place are
    /// settled when they are written: the loser's response is a `409`
    /// that sets no cookie.
    ///
    /// A user id is 1 to 256 bytes without control characters.
    ///
    /// ```
    /// use cloakroom::{ClientInfo, Session};
    ///
    /// async fn sign_in(session: Session, user: &str, agent: &str) -> cloakroom::Result<()> {
    ///     session.cycle_id().await?;
    ///     session.bind_user(user, ClientInfo::default().user_agent(agent)).await
    /// }
    /// ```
    pub async fn bind_user(&self, user: &str, client: ClientInfo) -> Result<()> {
        self.mark_used();
        if user.is_empty()
            || user.len() > inventory::MAX_USER_BYTES
            || user.chars().any(char::is_control)
        {
            return Err(Error::Config(format!(
                "user id {user:?}: must be 1 to {} bytes without control characters",
                inventory::MAX_USER_BYTES
            )));
        }
        let client = serde_json::to_string(&client).map_err(|source| Error::Serde {
            name: CLIENT_NAME.to_owned(),
            source,
        })?;
        let shared = &self.inner.shared;
        if let Some(cap) = shared.limits.session_cap()
            && cap.on_max == OnMaxSessions::Refuse
        {
            // The id this device is counted under now, if it has a
            // session: a sign-in again from a counted device adds nothing.
            let target = {
                let mut st = self.state();
                match self.existing(&mut st) {
                    Some(token) => Some(token.id()),
                    None => {
                        self.ensure_target(&mut st);
                        self.target_id(&mut st)
                    }
                }
            };
            if let Some(target) = target {
                let check = shared
                    .call(
                        "admit",
                        Some(&target),
                        shared
                            .store
                            .admit(user, &target, Some(cap), &self.existing_expiry(), true),
                    )
                    .await?;
                if check == Admission::Refused {
                    return Err(Error::TooManySessions { limit: cap.max });
                }
            }
        }
        let mut st = self.state();
        st.patch.set(USER_NAME, inventory::user_json(user));
        st.patch.set(CLIENT_NAME, client);
        st.bound = Some(user.to_owned());
        self.ensure_target(&mut st);
        Ok(())
    }

    /// The user the session is bound to, or `None`. Reads the session
    /// (one round trip, the first time in a request).
    pub async fn user(&self) -> Result<Option<String>> {
        self.mark_used();
        match self.raw(USER_NAME).await? {
            Some(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|source| Error::Serde {
                    name: USER_NAME.to_owned(),
                    source,
                }),
            None => Ok(None),
        }
    }

    /// The admin handle of this session's manager: list and end a user's
    /// sessions from a handler ("sign out everywhere else").
    pub fn admin(&self) -> crate::SessionAdmin {
        crate::SessionAdmin::new(self.inner.shared.clone(), crate::EndReason::User)
    }

    /// The id the session will have once committed, if it will have one.
    fn target_id(&self, st: &mut State) -> Option<SessionId> {
        if let Some(token) = st.renamed.as_ref().or(st.fresh.as_ref()) {
            return Some(token.id());
        }
        self.existing(st).map(|t| t.id())
    }

    /// The session's notifications: values that can be read once.
    pub fn notifications(&self) -> Notifications {
        Notifications {
            session: self.clone(),
        }
    }

    /// Makes sure a write has a session to land in.
    fn ensure_target(&self, st: &mut State) {
        if self.existing(st).is_none() && st.fresh.is_none() {
            st.fresh = Some(Token::generate());
        }
    }

    /// The part of a commit that needs no store: takes this request's
    /// changes, and decides at once when there is nothing to write (a
    /// request that only read its session). Called once, by
    /// [`SessionManager::commit`](crate::SessionManager::commit), when the
    /// response is ready; [`run_commit`](Self::run_commit) does the rest.
    pub(crate) fn plan_commit(&self) -> CommitPlan {
        let shared = &self.inner.shared;
        let (existing, incoming, destroyed, patch, fresh, renamed, bound, own, seen_alive) = {
            let mut st = self.state();
            if st.untouched() {
                return CommitPlan::Done(TokenAction::Keep);
            }
            let seen_alive = self.seen_alive(&st);
            let existing = self.existing(&mut st);
            let incoming = match &st.incoming {
                Incoming::Valid(v) => Some((v.stale_key, v.stamp)),
                _ => None,
            };
            let incoming_own = self.incoming_own(&mut st);
            let destroyed = st
                .destroyed
                .then(|| self.verify(&mut st).map(|v| v.token.id()));
            (
                existing,
                incoming,
                destroyed.flatten(),
                std::mem::take(&mut st.patch),
                st.fresh.take(),
                st.renamed.take(),
                st.bound.take(),
                (st.own.take(), incoming_own),
                seen_alive,
            )
        };
        let (stale_key, stamp) = incoming.unwrap_or((false, None));
        let (pending_own, incoming_own) = own;
        let mut patch = patch;
        patch.limit(shared.limits.session());
        if destroyed.is_none() && renamed.is_none() && patch.is_empty() {
            // Nothing to write. Only a session read alive whose cookie is
            // due again (an old key, or a persistent cookie's Max-Age)
            // needs the store: see `run_commit`.
            let touch = existing.as_ref().is_some_and(|_| {
                let own_after = pending_own.unwrap_or(incoming_own);
                let due = self.cookie_due(stamp.as_ref(), own_after.as_ref(), shared.now());
                matches!(self.inner.loaded.get(), Some(Some(_))) && (stale_key || due)
            });
            if !touch {
                return CommitPlan::Done(TokenAction::Keep);
            }
        }
        CommitPlan::Work(PendingCommit {
            existing,
            stale_key,
            stamp,
            destroyed,
            patch,
            fresh,
            renamed,
            bound,
            pending_own,
            incoming_own,
            seen_alive,
        })
    }

    /// The rest of a commit: the store calls that `plan_commit` left.
    pub(crate) async fn run_commit(&self, work: PendingCommit) -> Result<TokenAction> {
        let shared = &self.inner.shared;
        let PendingCommit {
            existing,
            stale_key,
            stamp,
            destroyed,
            mut patch,
            fresh,
            renamed,
            bound,
            pending_own,
            incoming_own,
            seen_alive,
        } = work;
        let mut action = TokenAction::Keep;
        // The rare paths' futures are boxed: an async fn is as large as
        // its largest await, and the manager allocates this one for every
        // commit that writes.
        if let Some(old) = destroyed {
            Box::pin(shared.call("delete", Some(&old), shared.store.delete(&old))).await?;
            crate::observe::destroyed();
            shared.emit(crate::SessionEvent::Destroyed { id: old });
            action = TokenAction::Clear;
        }
        let now = shared.now();
        if let Some(token) = existing {
            // The expiry the session has once this request is written.
            let own_after = pending_own.unwrap_or(incoming_own);
            let expiry = own_after.map_or(shared.expiry.at(now), |o| o.at(now));
            let due = self.cookie_due(stamp.as_ref(), own_after.as_ref(), now);
            if patch.is_empty() && renamed.is_none() {
                // Nothing to write. A session read alive gets its cookie
                // again if it was signed by an old key, or if its
                // persistent cookie is due a fresh Max-Age.
                if let Some(Some(record)) = self.inner.loaded.get()
                    && (stale_key || due)
                {
                    // Only for an id that still lives: a login in another
                    // request may have renamed it since the load, and
                    // sending the old id back would undo that login's
                    // cookie. A touch says so (and pushes the idle
                    // deadline, as the cookie's new Max-Age assumes).
                    let deadline = record.deadline;
                    let touched = Box::pin(shared.call(
                        "apply",
                        Some(&token.id()),
                        shared.store.apply(&token.id(), &Patch::default(), &expiry),
                    ))
                    .await?;
                    if touched == Applied::Done {
                        action = self.issue(&token, own_after, deadline, now);
                    }
                }
                return Ok(action);
            }
            // A bound session keeps its binding under its new id; learn
            // it, so the user's index can follow the rename.
            let mut admit = bound.clone();
            if admit.is_none() && renamed.is_some() {
                admit = Box::pin(self.load(&token))
                    .await?
                    .and_then(|r| r.values.get(USER_NAME))
                    .and_then(|json| serde_json::from_str(json).ok());
            }
            if let Some(new) = &renamed {
                patch.rename_to(new.id());
            }
            // The deadline the cookie must not outlive.
            let send_cookie = renamed.is_some() || stale_key || due;
            let deadline = if pending_own.is_some() {
                patch.restart_lifetime();
                Some(expiry.new_deadline())
            } else {
                match (self.inner.loaded.get(), &stamp) {
                    (Some(Some(record)), _) => Some(record.deadline),
                    (_, Some(stamp)) => Some(Timestamp(stamp.deadline.saturating_mul(1000))),
                    // Only a cookie signed before stamps existed: one read.
                    _ if send_cookie && shared.cookie_max_age(own_after.as_ref()).is_some() => {
                        Box::pin(self.load(&token)).await?.map(|r| r.deadline)
                    }
                    _ => None,
                }
            };
            // A request that removed names may have removed the last one:
            // the store ends a session left empty, atomically, so a name
            // another request sets meanwhile keeps it alive. A session
            // with its own expiry is kept.
            if own_after.is_none()
                && (patch.clears() || patch.changes().any(|(_, c)| c == crate::Change::Remove))
            {
                patch.end_if_empty();
            }
            match shared
                .call(
                    "apply",
                    Some(&token.id()),
                    shared.store.apply(&token.id(), &patch, &expiry),
                )
                .await?
            {
                Applied::Done => {
                    let now_under = renamed.as_ref().unwrap_or(&token);
                    if let Some(new) = &renamed {
                        crate::observe::cycled();
                        shared.emit(crate::SessionEvent::Cycled {
                            old: token.id(),
                            new: new.id(),
                        });
                    }
                    if let Some(user) = admit {
                        Box::pin(self.admit(user, now_under.id(), &expiry)).await?;
                    }
                    if send_cookie {
                        let deadline = deadline.unwrap_or_else(|| expiry.new_deadline());
                        action = self.issue(now_under, own_after, deadline, now);
                    }
                    return Ok(action);
                }
                Applied::Ended => {
                    crate::observe::ended(crate::EndReason::Empty, 1);
                    shared.emit(crate::SessionEvent::Ended {
                        id: token.id(),
                        reason: crate::EndReason::Empty,
                    });
                    return Ok(TokenAction::Clear);
                }
                // Alive when this request saw it, gone now: another
                // request ended it, or a sign-in there renamed it. A new
                // session for this request's values would send a cookie
                // that replaces that sign-in's, and sign the user out: so
                // values are not written, and the answer says so. A
                // request that signs a user in itself (`bind_user`) still
                // gets its new session: that is what it was for.
                Applied::Gone if seen_alive && bound.is_none() => {
                    // The binding `clear` carries over is no value of
                    // this request's.
                    let values = patch.changes().any(|(name, c)| {
                        c != crate::Change::Remove && !inventory::is_reserved(name)
                    }) || patch.notifications().len() > 0;
                    return if values {
                        Err(Error::EndedMeanwhile)
                    } else {
                        Ok(action)
                    };
                }
                // Ended before this request (a blind write under an old
                // cookie), or this request signs a user in: strict mode,
                // so the changes go to a new session under a new id.
                Applied::Gone => patch.cancel_rename(),
            }
        }
        if bound.is_none() {
            // A binding carried over (by `clear`) from a session that ended
            // meanwhile must not come back in a new, unindexed session.
            patch.forget(USER_NAME);
            patch.forget(CLIENT_NAME);
        }
        let has_data = patch
            .changes()
            .any(|(_, c)| matches!(c, crate::Change::Set(_)))
            || patch.notifications().len() > 0;
        if !has_data {
            return Ok(action);
        }
        // A new session has the defaults, unless this request set its own.
        let own_new = pending_own.flatten();
        let expiry = own_new.map_or(shared.expiry.at(now), |o| o.at(now));
        let mut create = patch;
        create.create();
        let mut token = fresh.unwrap_or_else(Token::generate);
        for _ in 0..3 {
            match shared
                .call(
                    "apply",
                    Some(&token.id()),
                    shared.store.apply(&token.id(), &create, &expiry),
                )
                .await?
            {
                Applied::Done => {
                    crate::observe::created();
                    shared.emit(crate::SessionEvent::Created { id: token.id() });
                    if let Some(user) = bound {
                        Box::pin(self.admit(user, token.id(), &expiry)).await?;
                    }
                    return Ok(self.issue(&token, own_new, expiry.new_deadline(), now));
                }
                // Nothing in it after all: no session, no cookie.
                Applied::Ended => return Ok(action),
                // A 256-bit collision; draw again.
                Applied::Gone => token = Token::generate(),
            }
        }
        Err(Error::Corrupt(
            "the store refused to create a session under three fresh ids".to_owned(),
        ))
    }

    /// Adds the session, written under `id` and bound to `user`, to the
    /// user's index, under the cap. Refused (a sign-in that lost the race
    /// for the last place): the binding is taken off again and the answer
    /// is the error, so the response (a `409`) sets no cookie. The stored
    /// session stays, anonymous, but the client does not learn its id; if
    /// the sign-in renamed it, the client's old cookie no longer works
    /// either, and the user signs in again.
    ///
    /// `expiry` is the one the session was just written with: the index
    /// keeps a member until that expiry's absolute deadline, so a session
    /// with a longer lifetime of its own stays listed, capped and ended
    /// with the user's others.
    async fn admit(&self, user: String, id: SessionId, expiry: &Expiry) -> Result<()> {
        let shared = &self.inner.shared;
        let cap = shared.limits.session_cap();
        let admitted = match shared
            .call(
                "admit",
                Some(&id),
                shared.store.admit(&user, &id, cap, expiry, false),
            )
            .await
        {
            // A store without a user index keeps the binding but cannot
            // list it; without a cap nothing else depends on it.
            Err(Error::Unsupported(why)) if cap.is_none() => {
                crate::manager::warn_once_no_index(&why);
                return Ok(());
            }
            other => other?,
        };
        match admitted {
            Admission::Admitted { ended } => {
                crate::observe::ended(crate::EndReason::Cap, ended.len());
                for id in &ended {
                    shared.emit(crate::SessionEvent::Ended {
                        id: *id,
                        reason: crate::EndReason::Cap,
                    });
                }
                if !ended.is_empty() {
                    tracing::info!(
                        ended = ended.len(),
                        "the per-user session cap ended the least recently used sessions"
                    );
                }
                Ok(())
            }
            Admission::Refused => {
                let mut unbind = Patch::default();
                unbind.remove(USER_NAME);
                unbind.remove(CLIENT_NAME);
                let _ = shared
                    .call("apply", Some(&id), shared.store.apply(&id, &unbind, expiry))
                    .await?;
                Err(Error::TooManySessions {
                    limit: cap.map_or(0, |c| c.max),
                })
            }
        }
    }
}

/// Names starting with U+0001 belong to Cloakroom (the user binding).
fn not_reserved(name: &str) -> Result<()> {
    if inventory::is_reserved(name) {
        return Err(Error::Config(format!(
            "session name {name:?}: names starting with U+0001 are reserved"
        )));
    }
    Ok(())
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.state();
        let incoming = match &st.incoming {
            Incoming::Unchecked(_) => "unchecked".to_owned(),
            Incoming::Absent => "none".to_owned(),
            Incoming::Valid(v) => v.token.id().short(),
        };
        f.debug_struct("Session")
            .field("incoming", &incoming)
            .field("changes", &st.patch.changes().len())
            .field("destroyed", &st.destroyed)
            .finish_non_exhaustive()
    }
}

/// Read-once values, like pycket's `NotificationMixin`: a notification set
/// in one request is returned by the first `take` in a later one, and then
/// it is gone. Two concurrent requests never both receive it.
///
/// ```
/// use cloakroom::Session;
///
/// async fn after_login(session: Session) -> cloakroom::Result<()> {
///     session.notifications().set("welcome", "Welcome back, alice").await
/// }
///
/// async fn next_page(session: Session) -> cloakroom::Result<String> {
///     let welcome: Option<String> = session.notifications().take("welcome").await?;
///     Ok(welcome.unwrap_or_default())
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Notifications {
    session: Session,
}

impl Notifications {
    /// Stores a notification under `name`, replacing any unread one.
    pub async fn set(&self, name: &str, value: impl Serialize) -> Result<()> {
        self.session.mark_used();
        let json = serde_json::to_string(&value).map_err(|source| Error::Serde {
            name: name.to_owned(),
            source,
        })?;
        let s = &self.session;
        s.inner.shared.limits.check(name, &json)?;
        let mut st = s.state();
        st.patch.notify(name, json);
        s.ensure_target(&mut st);
        Ok(())
    }

    /// Returns the notification `name` and removes it, or `None`. This is
    /// one store round trip of its own, so that the removal is atomic.
    pub async fn take<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        self.session.mark_used();
        let s = &self.session;
        let pending_or_token = {
            let mut st = s.state();
            match st.patch.take_notification(name) {
                Some(json) => Ok(json),
                None => Err(s.existing(&mut st)),
            }
        };
        let json = match pending_or_token {
            Ok(json) => Some(json),
            Err(None) => None,
            Err(Some(token)) => {
                let shared = &s.inner.shared;
                shared
                    .call(
                        "take_notification",
                        Some(&token.id()),
                        shared
                            .store
                            .take_notification(&token.id(), name, &s.existing_expiry()),
                    )
                    .await?
            }
        };
        json.map(|json| {
            serde_json::from_str(&json).map_err(|source| Error::Serde {
                name: name.to_owned(),
                source,
            })
        })
        .transpose()
    }
}
