//! A PostgreSQL store for [cloakroom](https://docs.rs/cloakroom) sessions.
//!
//! Sessions live in one table, `SCHEMA.sessions` (schema `cloakroom` by
//! default), one row each. The store keeps the whole
//! [`Store`](cloakroom::Store) contract:
//!
//! - a read is one query (and an `UPDATE` of the idle deadline about ten
//!   times per idle window), a write one statement (an `UPDATE` that
//!   merges the changed names, or, to create, rename or end a session, a
//!   call of the schema's `apply` function; an `UPDATE` that finds the
//!   session gone or over the limits is followed by that call, which says
//!   which), an untouched request none;
//! - a write changes only the names its patch names, under the row's lock,
//!   so concurrent writers of different names lose nothing;
//! - nothing is resurrected, and a create only takes an unused id;
//! - notifications are read once, increments are atomic, and the size
//!   limits are checked in the same statement that writes;
//! - idle and absolute deadlines are checked in SQL against the
//!   application's clock, in every statement, so an expired row is never
//!   returned; a background task deletes expired rows in bounded batches;
//! - the per-user index (listing, ending, the cap) is a column, so it
//!   costs no extra structure.
//!
//! The schema is versioned ([`SCHEMA_VERSION`]): the store creates or
//! upgrades it on first use, under an advisory lock, or, with
//! [`PostgresConfig::create_schema`]`(false)`, only checks it, for teams
//! that apply [`schema_sql`] (printed by `cloakroom sql schema`) with their
//! own migrations.
//!
//! TLS needs the `tls` feature (rustls with ring): ask for it in the URL
//! (`sslmode=require`), and the server's certificate is checked against
//! the system's roots, or a CA given with [`PostgresConfig::tls_ca_pem`].
//! Without the feature, connections are plain TCP, and a URL that
//! requires TLS is a configuration error.
//!
//! ```no_run
//! use cloakroom::{KeyRing, SessionLayer};
//! use cloakroom_postgres::{PostgresConfig, PostgresStore};
//! # async fn run() -> cloakroom::Result<()> {
//! let config = PostgresConfig::from_url("postgres://app@127.0.0.1/app")?;
//! let store = PostgresStore::connect(config).await?;
//! let layer = SessionLayer::builder(store, KeyRing::new(["a secret of at least 32 bytes....."])?)
//!     .build()?;
//! # Ok(()) }
//! ```

mod config;
mod error;
mod schema;
mod store;

pub use config::{DEFAULT_SCHEMA, PostgresConfig};
pub use schema::{SCHEMA_VERSION, schema_sql};
pub use store::PostgresStore;
/// The driver, for [`PostgresConfig::new`] with settings built by hand.
pub use tokio_postgres;
