//! Server-side HTTP sessions for tower and axum.
//!
//! The browser holds only a signed, opaque ticket (the cookie); the session
//! data stays on the server, in a [`Store`]. Like a cloakroom: the guest
//! hands over a coat and gets a ticket back.
//!
//! ```
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
//! # fn main() -> cloakroom::Result<()> {
//! let sessions = SessionLayer::builder(MemoryStore::new(), KeyRing::random()).build()?;
//! let app: Router = Router::new()
//!     .route("/", get(index))
//!     .route("/detail", get(detail))
//!     .layer(sessions);
//! # Ok(()) }
//! ```
//!
//! What it guarantees:
//! - **Lazy.** A request that never touches its session makes no store call
//!   and sets no cookie. It loads at most once, and a write without a read
//!   loads nothing.
//! - **Deltas, not records.** A request writes once, at the end, and only
//!   the names it changed, in one atomic [`Patch`]. Concurrent requests that
//!   change different names never lose each other's updates.
//! - **Strict.** Only ids this server issued and that are still alive are
//!   used; [`Session::cycle_id`] and [`Session::destroy`] kill the old id at
//!   once.
//! - **Two timeouts**, both enforced on the server: idle and absolute
//!   ([`ExpiryPolicy`]).
#![warn(missing_docs)]

mod config;
mod cookie;
mod error;
mod expiry;
#[cfg(feature = "axum")]
mod extract;
mod layer;
mod limits;
mod patch;
mod session;
pub mod store;
mod token;

pub use config::{Config, CookiesConfig, Engine, ExpiryConfig, StorageConfig};
pub use cookie::{CookieConfig, KeyRing, MIN_SECRET_BYTES, SameSite};
pub use error::{BoxError, Error, Result};
pub use expiry::{Clock, Expiry, ExpiryPolicy, ManualClock, SystemClock, Timestamp};
#[cfg(feature = "axum")]
pub use extract::MissingSessionLayer;
pub use layer::{SessionLayer, SessionLayerBuilder, SessionService, Stats};
pub use limits::Limits;
pub use patch::{Change, Patch};
pub use session::{Notifications, Session};
pub use store::{Applied, MemoryStore, Record, Store};
pub use token::SessionId;
