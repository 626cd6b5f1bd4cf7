//! Server-side HTTP sessions for Rust web services: axum and tower,
//! actix-web, or any framework through [`SessionManager`].
//!
//! The browser holds only a signed, opaque ticket (the cookie); the session
//! data stays on the server, in a [`Store`]. Like a cloakroom: the guest
//! hands over a coat and gets a ticket back.
//!
//! With the `axum` feature:
//!
//! ```
//! # #[cfg(feature = "axum")] mod example {
//! use axum::{Router, extract::Query, routing::get};
//! use cloakroom::{KeyRing, MemoryStore, Session, SessionLayer};
//! use std::collections::HashMap;
//!
//! async fn index(session: Session, Query(q): Query<HashMap<String, String>>) -> cloakroom::Result<&'static str> {
//!     if let Some(name) = q.get("name") {
//!         session.set("login", name).await?;
//!     }
//!     Ok("index get ok!")
//! }
//!
//! async fn detail(session: Session) -> cloakroom::Result<String> {
//!     let login: Option<String> = session.get("login").await?;
//!     Ok(format!("detail get ok! {}", login.as_deref().unwrap_or("None")))
//! }
//!
//! pub fn app() -> cloakroom::Result<Router> {
//!     let sessions = SessionLayer::builder(MemoryStore::new(), KeyRing::random()).build()?;
//!     Ok(Router::new()
//!         .route("/", get(index))
//!         .route("/detail", get(detail))
//!         .layer(sessions))
//! }
//! # }
//! # fn main() {}
//! ```
//!
//! The layers:
//! - [`SessionManager`] is the whole request lifecycle, with no framework:
//!   open a [`Session`] from the request's headers, commit it, and get the
//!   [`ResponseHeaders`] to set.
//! - Adapters are thin shells over it: [`SessionLayer`] (feature `tower`,
//!   and `axum` for the extractors), and the `cloakroom-actix` crate
//!   (which turns on the `actix` feature for its extractors).
//! - [`Store`] is where sessions live: [`MemoryStore`] here; Redis,
//!   Memcached, PostgreSQL and SQLite in `cloakroom-redis`,
//!   `cloakroom-memcached`, `cloakroom-postgres` and `cloakroom-sqlite`. The
//!   `cloakroom.toml` loader is the `cloakroom-config` crate.
//!
//! Features, all off by default:
//! - `tower`: [`SessionLayer`], a tower layer;
//! - `axum`: `tower`, plus the [`Session`] and [`Notifications`]
//!   extractors and `IntoResponse` for [`Error`];
//! - `actix`: the extractors and `ResponseError` for actix-web 4.
//!
//! What it guarantees:
//! - **Lazy.** A request that never touches its session makes no store call
//!   and sets no cookie. It loads at most once, and a `set` without a read
//!   loads nothing (`clear`, and a new id or expiry on a session not read,
//!   load it to keep its user binding).
//! - **Deltas, not records.** A request writes once, at the end, and only
//!   the names it changed, in one atomic [`Patch`]. Concurrent requests that
//!   change different names never lose each other's updates.
//! - **Strict.** Only ids this server issued and that are still alive are
//!   used; [`Session::cycle_id`] and [`Session::destroy`] kill the old id at
//!   once.
//! - **Two timeouts**, both enforced on the server: idle and absolute
//!   ([`ExpiryPolicy`]).
#![warn(missing_docs)]

mod adapters;
mod cookie;
mod error;
mod expiry;
mod handover;
mod health;
pub mod inventory;
mod limits;
mod manager;
mod observe;
mod patch;
mod session;
pub mod store;
mod token;
mod transport;

/// Entry points for the fuzz targets in `fuzz/` and the micro-benchmarks;
/// not a public API, and not covered by semver.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals {
    use crate::cookie::{CookieConfig, KeyRing};
    use crate::token::Token;

    /// The cookie codec, as the layer uses it.
    pub struct CookieCodec {
        keys: KeyRing,
        cookie: CookieConfig,
    }

    impl CookieCodec {
        /// A codec signing with the first of `secrets`.
        pub fn new(secrets: &[&str]) -> Self {
            CookieCodec {
                keys: KeyRing::new(secrets).expect("valid secrets"),
                cookie: CookieConfig::default(),
            }
        }

        /// The signed cookie value of a token made of `bytes`.
        pub fn sign(&self, bytes: [u8; 32]) -> String {
            self.keys
                .sign(self.cookie.cookie_name(), &Token::from_bytes(bytes))
        }

        /// Whether `value` verifies, and the token bytes if so.
        pub fn verify(&self, value: &[u8]) -> Option<[u8; 32]> {
            self.keys
                .verify(self.cookie.cookie_name(), value)
                .map(|v| *v.token.as_bytes())
        }

        /// Scans a `Cookie` header and verifies each session cookie, as the
        /// layer does. Returns how many verified.
        pub fn verify_header(&self, header: &[u8]) -> usize {
            self.cookie
                .find_values(header, 4)
                .filter(|v| self.verify(v).is_some())
                .count()
        }
    }

    /// Runs the cookie decoder on an arbitrary `Cookie` header.
    pub fn decode_cookie_header(header: &[u8]) -> usize {
        CookieCodec::new(&[
            "fuzzing secret, long enough to be a key",
            "an older fuzzing secret, long enough",
        ])
        .verify_header(header)
    }

    /// Signs a token made of `bytes` and checks it verifies, and that the
    /// value with any one bit changed does not.
    pub fn sign_and_tamper(bytes: [u8; 32], flip: usize) {
        let codec = CookieCodec::new(&["fuzzing secret, long enough to be a key"]);
        let value = codec.sign(bytes);
        assert_eq!(codec.verify(value.as_bytes()), Some(bytes));
        let mut tampered = value.into_bytes();
        let i = flip % tampered.len();
        tampered[i] ^= 0x01;
        assert!(codec.verify(&tampered).is_none());
    }
}

#[cfg(feature = "actix")]
pub use adapters::actix::MissingSessionMiddleware;
#[cfg(feature = "axum")]
pub use adapters::axum::MissingSessionLayer;
#[cfg(feature = "tower")]
pub use adapters::tower::{ResponseFuture, SessionLayer, SessionLayerBuilder, SessionService};
pub use cookie::{CookieConfig, KeyRing, MIN_SECRET_BYTES, SameSite};
pub use error::{BoxError, Error, Result};
pub use expiry::{Clock, Expiry, ExpiryPolicy, ManualClock, SessionExpiry, SystemClock, Timestamp};
pub use handover::Handover;
pub use inventory::{Admission, ClientInfo, OnMaxSessions, SessionCap, SessionInfo};
pub use limits::{Limits, SizeLimits};
pub use manager::{
    CommitFuture, EditMode, HeaderEdit, ResponseHeaders, SessionAdmin, SessionManager,
    SessionManagerBuilder, Stats,
};
pub use observe::{EndReason, SessionEvent};
pub use patch::{Change, Patch};
pub use session::{Notifications, Session};
pub use store::{Applied, MemoryStore, Record, Store};
pub use token::SessionId;
