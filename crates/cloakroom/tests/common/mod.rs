//! Shared by the HTTP tests: a store wrapper that counts calls to the real
//! store underneath and can be switched off.
#![allow(dead_code)]

use cloakroom::{
    Applied, Error, Expiry, KeyRing, ManualClock, MemoryStore, Patch, Record, SessionId,
    SessionLayer, SessionLayerBuilder, Store,
};
pub use cloakroom_testkit::app;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub const SECRET: &str = "test secret that is long enough to sign with";
pub const OLD_SECRET: &str = "an older secret, also long enough to sign";

/// Calls made to the store, by kind.
#[derive(Debug, Default)]
pub struct Counts {
    pub loads: AtomicUsize,
    pub applies: AtomicUsize,
    pub takes: AtomicUsize,
    pub deletes: AtomicUsize,
    pub down: AtomicBool,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
            + self.applies.load(Ordering::SeqCst)
            + self.takes.load(Ordering::SeqCst)
            + self.deletes.load(Ordering::SeqCst)
    }
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
    pub fn applies(&self) -> usize {
        self.applies.load(Ordering::SeqCst)
    }
}

/// A real store, counted; `down` makes every call fail as an outage would.
#[derive(Clone)]
pub struct Counted<S> {
    pub inner: Arc<S>,
    pub counts: Arc<Counts>,
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
    async fn delete(&self, id: &SessionId) -> Result<(), Error> {
        self.check(&self.counts.deletes)?;
        self.inner.delete(id).await
    }
}

pub fn keys() -> KeyRing {
    KeyRing::new([SECRET]).unwrap()
}

/// A builder over a counted memory store, with a manual clock and `Secure`
/// off (the tests speak plain HTTP).
pub fn builder() -> (SessionLayerBuilder, Arc<Counts>, ManualClock) {
    let store = Counted::new(MemoryStore::new());
    let counts = store.counts.clone();
    let clock = ManualClock::starting_now();
    let builder = SessionLayer::builder(store, keys())
        .cookie(cloakroom::CookieConfig::default().secure(false))
        .clock(clock.clone());
    (builder, counts, clock)
}
