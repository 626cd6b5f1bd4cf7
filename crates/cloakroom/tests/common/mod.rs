//! Shared by the HTTP tests: secrets and a layer over a counted memory store.
#![allow(dead_code)]

use cloakroom::{KeyRing, ManualClock, MemoryStore, SessionLayer, SessionLayerBuilder};
pub use cloakroom_testkit::app;
pub use cloakroom_testkit::counted::{Counted, Counts};
use std::sync::Arc;

pub const SECRET: &str = "test secret that is long enough to sign with";
pub const OLD_SECRET: &str = "an older secret, also long enough to sign";

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
