//! Shared by the HTTP tests: a demo app, and a store wrapper that counts
//! calls to the real store underneath and can be switched off.
#![allow(dead_code)]

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use cloakroom::{
    Applied, Error, Expiry, KeyRing, ManualClock, MemoryStore, Patch, Record, Session, SessionId,
    SessionLayer, SessionLayerBuilder, Store,
};
use std::collections::HashMap;
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

type Params = Query<HashMap<String, String>>;

/// The seed routes plus a few that exercise the rest of the API.
pub fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route(
            "/",
            get(|s: Session, Query(q): Params| async move {
                s.set("login", q.get("name").cloned().unwrap_or_default())
                    .await?;
                Ok::<_, Error>("index get ok!")
            }),
        )
        .route(
            "/detail",
            get(|s: Session| async move {
                let login: Option<String> = s.get("login").await?;
                Ok::<_, Error>(format!(
                    "detail get ok! {}",
                    login.as_deref().unwrap_or("None")
                ))
            }),
        )
        .route("/untouched", get(|| async { "nothing" }))
        .route(
            "/same",
            get(|s: Session| async move {
                let login: String = s.get("login").await?.unwrap_or_default();
                s.set("login", &login).await?;
                Ok::<_, Error>(login)
            }),
        )
        .route(
            "/set",
            get(|s: Session, Query(q): Params| async move {
                for (k, v) in q {
                    s.set(&k, v).await?;
                }
                Ok::<_, Error>("set")
            }),
        )
        .route(
            "/get-many",
            get(|s: Session| async move {
                let a: Option<String> = s.get("a").await?;
                let b: Option<String> = s.get("b").await?;
                let login: Option<String> = s.get("login").await?;
                Ok::<_, Error>(format!("{a:?} {b:?} {login:?}"))
            }),
        )
        .route(
            "/read-write",
            get(|s: Session| async move {
                let n: u64 = s.get("n").await?.unwrap_or(0);
                s.set("n", n + 1).await?;
                Ok::<_, Error>((n + 1).to_string())
            }),
        )
        .route(
            "/keys",
            get(|s: Session| async move { Ok::<_, Error>(s.keys().await?.join(",")) }),
        )
        .route(
            "/remove",
            get(|s: Session, Query(q): Params| async move {
                for k in q.keys() {
                    s.remove(k).await?;
                }
                Ok::<_, Error>("removed")
            }),
        )
        .route(
            "/clear",
            get(|s: Session| async move {
                s.clear().await?;
                Ok::<_, Error>("cleared")
            }),
        )
        .route(
            "/login",
            get(|s: Session, Query(q): Params| async move {
                s.cycle_id().await?;
                s.set("login", q.get("name").cloned().unwrap_or_default())
                    .await?;
                Ok::<_, Error>("login ok!")
            }),
        )
        .route(
            "/logout",
            get(|s: Session| async move {
                s.destroy().await?;
                Ok::<_, Error>("logout ok!")
            }),
        )
        .route(
            "/id",
            get(|s: Session| async move {
                Ok::<_, Error>(s.id().await?.map(|id| id.to_string()).unwrap_or_default())
            }),
        )
        .route(
            "/notify",
            get(|s: Session, Query(q): Params| async move {
                for (k, v) in q {
                    s.notifications().set(&k, v).await?;
                }
                Ok::<_, Error>("notified")
            }),
        )
        .route(
            "/take",
            get(|s: Session, Query(q): Params| async move {
                let name = q.get("name").cloned().unwrap_or_default();
                let v: Option<String> = s.notifications().take(&name).await?;
                Ok::<_, Error>(v.unwrap_or_else(|| "None".to_owned()))
            }),
        )
        .layer(layer)
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
