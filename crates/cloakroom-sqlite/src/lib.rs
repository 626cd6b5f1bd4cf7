//! A SQLite store for [cloakroom](https://docs.rs/cloakroom) sessions:
//! sessions that survive a restart, in one file, with no server to run.
//!
//! The store keeps the whole [`Store`](cloakroom::Store) contract: a read
//! is one query (and a write of the idle deadline about ten times per idle
//! window), a write one transaction, an untouched request none;
//! concurrent writers of different names lose nothing; nothing is
//! resurrected; notifications are read once; increments are atomic; the
//! size limits are checked in the transaction that writes; idle and
//! absolute deadlines are checked in SQL, so an expired row is never
//! returned; and the per-user index (listing, ending, the cap) is a column.
//!
//! The schema is versioned ([`SCHEMA_VERSION`]) and created or upgraded
//! when the store opens the file. [`schema_sql`] (printed by `cloakroom
//! sql schema --engine sqlite`) gives it for review.
//!
//! With `cloakroom serve`: `--store sqlite://sessions.db`.

mod config;
mod schema;
mod store;

pub use config::SqliteConfig;
pub use schema::{SCHEMA_VERSION, schema_sql};
pub use store::SqliteStore;
