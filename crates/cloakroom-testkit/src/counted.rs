//! A real store with a call counter and an off switch.
//!
//! It wraps a real store rather than imitating one: every call of the
//! [`Store`] contract, its provided methods included, goes to the store
//! underneath, unless the test switched it off to play an outage.

use cloakroom::{
    Admission, Applied, Error, Expiry, Patch, Record, SessionCap, SessionId, SessionInfo, Store,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Calls made to the store, by kind.
#[derive(Debug, Default)]
#[allow(missing_docs)]
pub struct Counts {
    pub loads: AtomicUsize,
    pub applies: AtomicUsize,
    pub takes: AtomicUsize,
    pub deletes: AtomicUsize,
    /// The user index's calls, and the store-wide ones (`end_all`, `count`).
    pub index: AtomicUsize,
    pub down: AtomicBool,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
            + self.applies.load(Ordering::SeqCst)
            + self.takes.load(Ordering::SeqCst)
            + self.deletes.load(Ordering::SeqCst)
            + self.index.load(Ordering::SeqCst)
    }
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
    pub fn applies(&self) -> usize {
        self.applies.load(Ordering::SeqCst)
    }
}

/// A real store, counted; `down` makes every call fail as an outage would.
pub struct Counted<S> {
    pub inner: Arc<S>,
    pub counts: Arc<Counts>,
}

impl<S> Clone for Counted<S> {
    fn clone(&self) -> Self {
        Counted {
            inner: self.inner.clone(),
            counts: self.counts.clone(),
        }
    }
}

impl<S> Counted<S> {
    pub fn new(inner: S) -> Self {
        Counted {
            inner: Arc::new(inner),
            counts: Arc::default(),
        }
    }
    fn check(&self, counter: &AtomicUsize) -> Result<(), Error> {
        counter.fetch_add(1, Ordering::SeqCst);
        if self.counts.down.load(Ordering::SeqCst) {
            return Err(Error::unavailable("store switched off by the test"));
        }
        Ok(())
    }
}

impl<S: Store> Store for Counted<S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn load(&self, id: &SessionId, e: &Expiry) -> Result<Option<Record>, Error> {
        self.check(&self.counts.loads)?;
        self.inner.load(id, e).await
    }
    async fn apply(&self, id: &SessionId, p: &Patch, e: &Expiry) -> Result<Applied, Error> {
        self.check(&self.counts.applies)?;
        self.inner.apply(id, p, e).await
    }
    async fn take_notification(
        &self,
        id: &SessionId,
        name: &str,
        e: &Expiry,
    ) -> Result<Option<String>, Error> {
        self.check(&self.counts.takes)?;
        self.inner.take_notification(id, name, e).await
    }
    async fn increment(
        &self,
        id: &SessionId,
        name: &str,
        by: i64,
        e: &Expiry,
    ) -> Result<Option<i64>, Error> {
        self.check(&self.counts.applies)?;
        self.inner.increment(id, name, by, e).await
    }
    async fn delete(&self, id: &SessionId) -> Result<(), Error> {
        self.check(&self.counts.deletes)?;
        self.inner.delete(id).await
    }
    async fn cycle(&self, old: &SessionId, new: &SessionId, e: &Expiry) -> Result<Applied, Error> {
        self.check(&self.counts.applies)?;
        self.inner.cycle(old, new, e).await
    }
    async fn touch(&self, id: &SessionId, e: &Expiry) -> Result<Applied, Error> {
        self.check(&self.counts.applies)?;
        self.inner.touch(id, e).await
    }
    async fn admit(
        &self,
        user: &str,
        id: &SessionId,
        cap: Option<SessionCap>,
        e: &Expiry,
        check_only: bool,
    ) -> Result<Admission, Error> {
        self.check(&self.counts.index)?;
        self.inner.admit(user, id, cap, e, check_only).await
    }
    async fn sessions_of(&self, user: &str, e: &Expiry) -> Result<Vec<SessionInfo>, Error> {
        self.check(&self.counts.index)?;
        self.inner.sessions_of(user, e).await
    }
    async fn end_sessions_of(
        &self,
        user: &str,
        except: Option<&SessionId>,
        e: &Expiry,
    ) -> Result<usize, Error> {
        self.check(&self.counts.index)?;
        self.inner.end_sessions_of(user, except, e).await
    }
    async fn end_all(&self, e: &Expiry) -> Result<usize, Error> {
        self.check(&self.counts.index)?;
        self.inner.end_all(e).await
    }
    async fn count(&self, e: &Expiry) -> Result<usize, Error> {
        self.check(&self.counts.index)?;
        self.inner.count(e).await
    }
}
