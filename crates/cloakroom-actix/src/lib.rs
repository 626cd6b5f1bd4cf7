//! Server-side sessions for actix-web 4: the browser keeps a signed, opaque
//! cookie, and the data stays in a cloakroom store (memory, Redis,
//! Memcached, PostgreSQL, SQLite).
//!
//! [`SessionMiddleware`] is a thin shell over cloakroom's framework-neutral
//! [`SessionManager`], so sessions behave exactly as they do on axum:
//! loaded lazily (a handler that never touches its session costs no store
//! call, even with a cookie), written once per request and only the names
//! that changed, and the id renewed by [`Session::cycle_id`].
//!
//! ```no_run
//! use actix_web::{App, HttpServer, web};
//! use cloakroom_actix::{KeyRing, MemoryStore, Session, SessionMiddleware};
//!
//! async fn index(session: Session) -> cloakroom_actix::Result<String> {
//!     let visits: u64 = session.get("visits").await?.unwrap_or(0);
//!     session.set("visits", visits + 1).await?;
//!     Ok(format!("visit {}", visits + 1))
//! }
//!
//! #[actix_web::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let keys = KeyRing::new([std::env::var("SESSION_SECRET")?])?; // 32+ bytes
//!     let sessions = SessionMiddleware::builder(MemoryStore::new(), keys).build()?;
//!     HttpServer::new(move || {
//!         App::new()
//!             .wrap(sessions.clone())
//!             .route("/", web::get().to(index))
//!     })
//!     .bind("127.0.0.1:3000")?
//!     .run()
//!     .await?;
//!     Ok(())
//! }
//! ```
//!
//! [`Session`] and [`Notifications`] are extractors, and
//! [`Error`] is a `ResponseError`: a handler can use `?`,
//! and a store outage becomes `503 Service Unavailable`. An error while
//! saving at the end of the request does the same, and sets no cookie.
#![warn(missing_docs)]

mod middleware;

pub use middleware::{ResponseFuture, SessionMiddleware, SessionMiddlewareBuilder, SessionService};

pub use cloakroom;
pub use cloakroom::{
    ClientInfo, CookieConfig, Error, ExpiryPolicy, KeyRing, Limits, MemoryStore,
    MissingSessionMiddleware, Notifications, OnMaxSessions, Result, SameSite, Session,
    SessionAdmin, SessionId, SessionInfo, SessionManager, Stats, Store,
};
