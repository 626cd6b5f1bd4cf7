//! The embedded store: a bounded map in this process.

use super::{Applied, Record, Store};
use crate::error::Result;
use crate::expiry::{Expiry, Timestamp};
use crate::inventory::{Admission, CLIENT_NAME, OnMaxSessions, SessionCap, SessionInfo, USER_NAME};
use crate::patch::{Change, Patch};
use crate::token::SessionId;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// Sessions kept in this process's memory.
///
/// It needs nothing installed, so it is the default for the demo and for
/// tests. Sessions do not survive a restart and are not shared between
/// processes: use the Redis or Memcached store for that.
///
/// It holds at most `max_sessions` sessions. Ended sessions are swept out
/// as new ones arrive; when the store is full of live sessions, those
/// closest to their idle deadline (the least recently used) are evicted.
/// Every operation runs under one short lock that is never held across an
/// `.await`.
///
/// Clones share the same sessions, so two layers (or a layer and an admin
/// task) can use one store: clone it, no `Arc` needed.
///
/// ```
/// use cloakroom::MemoryStore;
/// let store = MemoryStore::new().max_sessions(50_000);
/// let shared = store.clone();
/// assert_eq!(store.len(), 0);
/// assert_eq!(shared.len(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    max_sessions: usize,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<SessionId, Entry>,
    writes_since_sweep: usize,
    /// Each user's admitted session ids; dead ones are pruned when the
    /// user's index is used.
    users: HashMap<String, Vec<SessionId>>,
}

#[derive(Debug)]
struct Entry {
    record: Record,
    expires_at: Timestamp,
    notifications: BTreeMap<String, String>,
}

/// Sweep ended sessions at least this often, counted in creations.
const SWEEP_EVERY: usize = 4096;

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store holding at most 100 000 sessions.
    pub fn new() -> Self {
        MemoryStore {
            inner: Arc::new(Mutex::new(Inner::default())),
            max_sessions: 100_000,
        }
    }

    /// Sets the maximum number of sessions (at least 1).
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = max.max(1);
        self
    }

    /// The number of sessions held, including ended ones not yet swept.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Whether the store holds no sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing under this lock can panic half-way through a change, so
        // a poisoned lock still guards consistent data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Entry {
    fn live(&self, now: Timestamp) -> bool {
        now < self.expires_at && now < self.record.deadline
    }
}

impl Inner {
    /// The live entry under `id`; an ended one is removed on the way.
    fn live(&mut self, id: &SessionId, now: Timestamp) -> Option<&mut Entry> {
        if self.sessions.get(id).is_some_and(|e| !e.live(now)) {
            self.sessions.remove(id);
        }
        self.sessions.get_mut(id)
    }

    /// `user`'s live sessions, the index pruned of the others.
    fn live_sessions_of(&mut self, user: &str, now: Timestamp) -> Vec<SessionId> {
        let bound = crate::inventory::user_json(user);
        let Some(mut ids) = self.users.remove(user) else {
            return Vec::new();
        };
        ids.retain(|id| {
            self.sessions
                .get(id)
                .is_some_and(|e| e.live(now) && e.record.values.get(USER_NAME) == Some(&bound))
        });
        if !ids.is_empty() {
            self.users.insert(user.to_owned(), ids.clone());
        }
        ids
    }

    fn sweep(&mut self, now: Timestamp) {
        self.sessions.retain(|_, e| e.live(now));
        let sessions = &self.sessions;
        self.users.retain(|_, ids| {
            ids.retain(|id| sessions.contains_key(id));
            !ids.is_empty()
        });
        self.writes_since_sweep = 0;
    }

    /// Makes room for one more session.
    fn reserve(&mut self, now: Timestamp, max: usize) {
        self.writes_since_sweep += 1;
        if self.sessions.len() < max && self.writes_since_sweep < SWEEP_EVERY {
            return;
        }
        self.sweep(now);
        if self.sessions.len() < max {
            return;
        }
        // Evict the 1/64 closest to expiry, so a full store pays this scan
        // once per many insertions rather than on each.
        let evict = (self.sessions.len() / 64).max(self.sessions.len() + 1 - max);
        let mut by_expiry: Vec<(Timestamp, SessionId)> = self
            .sessions
            .iter()
            .map(|(id, e)| (e.expires_at, *id))
            .collect();
        by_expiry.select_nth_unstable(evict - 1);
        for (_, id) in &by_expiry[..evict] {
            self.sessions.remove(id);
        }
    }
}

impl Store for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn load(&self, id: &SessionId, expiry: &Expiry) -> Result<Option<Record>> {
        let mut inner = self.lock();
        Ok(inner.live(id, expiry.now).map(|entry| {
            entry.expires_at = expiry.expires_at(entry.record.deadline);
            entry.record.clone()
        }))
    }

    async fn apply(&self, id: &SessionId, patch: &Patch, expiry: &Expiry) -> Result<Applied> {
        let now = expiry.now;
        let mut inner = self.lock();
        if let Some(to) = patch.renames_to()
            && inner.live(to, now).is_some()
        {
            return Ok(Applied::Gone);
        }
        let existing = inner.live(id, now);
        if existing.is_some() == patch.creates() {
            return Ok(Applied::Gone);
        }
        // Work on a copy of the values, so a patch over the limits changes
        // nothing.
        let mut values = match (&existing, patch.clears()) {
            (Some(entry), false) => entry.record.values.clone(),
            _ => BTreeMap::new(),
        };
        for (name, change) in patch.changes() {
            match change {
                Change::Set(json) => {
                    values.insert(name.to_owned(), json.to_owned());
                }
                Change::Remove => {
                    values.remove(name);
                }
            }
        }
        if let Some(limits) = patch.size_limits()
            && patch.changes().any(|(_, c)| c != Change::Remove)
        {
            limits.check(values.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        }
        if patch.creates() {
            inner.reserve(now, self.max_sessions);
            let deadline = expiry.new_deadline();
            let record = Record {
                values: BTreeMap::new(),
                created: now,
                deadline,
            };
            let entry = Entry {
                record,
                expires_at: deadline,
                notifications: BTreeMap::new(),
            };
            inner.sessions.insert(*id, entry);
        }
        let Some(entry) = inner.sessions.get_mut(id) else {
            return Ok(Applied::Gone);
        };
        entry.record.values = values;
        if patch.restarts_lifetime() && !patch.creates() {
            entry.record.deadline = expiry.new_deadline();
        }
        for (name, json) in patch.notifications() {
            entry.notifications.insert(name.to_owned(), json.to_owned());
        }
        entry.expires_at = expiry.expires_at(entry.record.deadline);
        if patch.ends_if_empty() && entry.record.values.is_empty() && entry.notifications.is_empty()
        {
            inner.sessions.remove(id);
            return Ok(Applied::Ended);
        }
        if let Some(to) = patch.renames_to()
            && let Some(entry) = inner.sessions.remove(id)
        {
            inner.sessions.insert(*to, entry);
        }
        Ok(Applied::Done)
    }

    async fn take_notification(
        &self,
        id: &SessionId,
        name: &str,
        expiry: &Expiry,
    ) -> Result<Option<String>> {
        let mut inner = self.lock();
        Ok(inner
            .live(id, expiry.now)
            .and_then(|entry| entry.notifications.remove(name)))
    }

    async fn increment(
        &self,
        id: &SessionId,
        name: &str,
        by: i64,
        expiry: &Expiry,
    ) -> Result<Option<i64>> {
        let mut inner = self.lock();
        let Some(entry) = inner.live(id, expiry.now) else {
            return Ok(None);
        };
        let value = add_to(entry.record.values.get(name).map(String::as_str), name, by)?;
        entry
            .record
            .values
            .insert(name.to_owned(), value.to_string());
        entry.expires_at = expiry.expires_at(entry.record.deadline);
        Ok(Some(value))
    }

    async fn delete(&self, id: &SessionId) -> Result<()> {
        self.lock().sessions.remove(id);
        Ok(())
    }

    async fn admit(
        &self,
        user: &str,
        id: &SessionId,
        cap: Option<SessionCap>,
        expiry: &Expiry,
        check_only: bool,
    ) -> Result<Admission> {
        let mut inner = self.lock();
        let mut live = inner.live_sessions_of(user, expiry.now);
        let mut ended = Vec::new();
        if !live.contains(id)
            && let Some(cap) = cap
            && live.len() >= cap.max
        {
            if cap.on_max == OnMaxSessions::Refuse {
                return Ok(Admission::Refused);
            }
            if check_only {
                return Ok(Admission::Admitted { ended });
            }
            // Least recently used first: the nearest idle deadline.
            live.sort_by_key(|id| inner.sessions.get(id).map(|e| e.expires_at));
            let excess = live.len() + 1 - cap.max;
            for victim in live.drain(..excess) {
                inner.sessions.remove(&victim);
                ended.push(victim);
            }
        }
        if !check_only && !live.contains(id) {
            live.push(*id);
            inner.users.insert(user.to_owned(), live);
        }
        Ok(Admission::Admitted { ended })
    }

    async fn sessions_of(&self, user: &str, expiry: &Expiry) -> Result<Vec<SessionInfo>> {
        let mut inner = self.lock();
        let ids = inner.live_sessions_of(user, expiry.now);
        let mut infos: Vec<SessionInfo> = ids
            .iter()
            .filter_map(|id| {
                let e = inner.sessions.get(id)?;
                Some(SessionInfo::from_parts(
                    *id,
                    e.record.created,
                    e.expires_at,
                    e.record.deadline,
                    expiry.idle,
                    e.record.values.get(CLIENT_NAME).map(String::as_str),
                ))
            })
            .collect();
        infos.sort_by_key(|i| i.created);
        Ok(infos)
    }

    async fn end_sessions_of(
        &self,
        user: &str,
        except: Option<&SessionId>,
        expiry: &Expiry,
    ) -> Result<usize> {
        let mut inner = self.lock();
        let ids = inner.live_sessions_of(user, expiry.now);
        let mut ended = 0;
        for id in ids.iter().filter(|id| Some(*id) != except) {
            inner.sessions.remove(id);
            ended += 1;
        }
        Ok(ended)
    }

    async fn end_all(&self, expiry: &Expiry) -> Result<usize> {
        let mut inner = self.lock();
        let live = inner
            .sessions
            .values()
            .filter(|e| e.live(expiry.now))
            .count();
        inner.sessions.clear();
        inner.users.clear();
        Ok(live)
    }

    async fn count(&self, expiry: &Expiry) -> Result<usize> {
        let inner = self.lock();
        Ok(inner
            .sessions
            .values()
            .filter(|e| e.live(expiry.now))
            .count())
    }
}

/// `current` (JSON, absent meaning 0) plus `by`, saturating. Shared by the
/// stores that increment in Rust.
pub fn add_to(current: Option<&str>, name: &str, by: i64) -> Result<i64> {
    let current = match current {
        Some(json) => serde_json::from_str::<i64>(json).map_err(|source| crate::Error::Serde {
            name: name.to_owned(),
            source,
        })?,
        None => 0,
    };
    Ok(current.saturating_add(by))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expiry::ExpiryPolicy;
    use crate::token::Token;
    use std::time::Duration;

    fn at(ms: u64) -> Expiry {
        ExpiryPolicy::default()
            .idle(Duration::from_secs(10))
            .absolute(Duration::from_secs(100))
            .at(Timestamp(ms))
    }

    async fn create(store: &MemoryStore, now: u64) -> SessionId {
        let id = Token::generate().id();
        let mut p = Patch::default();
        p.create();
        p.set("n", "1".into());
        assert_eq!(store.apply(&id, &p, &at(now)).await.unwrap(), Applied::Done);
        id
    }

    #[tokio::test]
    async fn full_store_evicts_least_recently_used() {
        let store = MemoryStore::new().max_sessions(3);
        let oldest = create(&store, 0).await;
        let b = create(&store, 1_000).await;
        let c = create(&store, 2_000).await;
        let d = create(&store, 3_000).await;
        assert_eq!(store.len(), 3);
        assert!(store.load(&oldest, &at(3_000)).await.unwrap().is_none());
        for id in [b, c, d] {
            assert!(store.load(&id, &at(3_000)).await.unwrap().is_some());
        }
    }

    #[tokio::test]
    async fn ended_sessions_are_swept_before_live_ones_are_evicted() {
        let store = MemoryStore::new().max_sessions(3);
        let _ended = create(&store, 0).await;
        let _also_ended = create(&store, 1_000).await;
        let live = create(&store, 15_000).await;
        // At 20s the first two have passed their 10s idle window; the third
        // has not. Eviction alone would make room for one, and keep three.
        let new = create(&store, 20_000).await;
        assert_eq!(store.len(), 2);
        for id in [live, new] {
            assert!(store.load(&id, &at(20_000)).await.unwrap().is_some());
        }
    }
}
