//! The store contract on SQLite, a database file per test. Deadlines are
//! checked in SQL against the time each call passes in, so the suite
//! moves a manual clock instead of sleeping.

use cloakroom_sqlite::{SqliteConfig, SqliteStore};
use cloakroom_testkit::conformance::SuiteTime;
use std::path::PathBuf;
use std::time::Duration;

/// A scratch directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn store() -> (Scratch, SqliteStore) {
    let dir = std::env::temp_dir().join(format!(
        "cloakroom-sqlite-{}-{}",
        std::process::id(),
        cloakroom_testkit::free_port()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let store = SqliteStore::open(SqliteConfig::new(dir.join("sessions.db"))).expect("open");
    (Scratch(dir), store)
}

cloakroom_testkit::conformance_tests!(store(), SuiteTime::manual());

/// The session inventory: the `user_key` column, the write lock
/// serializing admissions.
mod inventory {
    use super::*;

    cloakroom_testkit::inventory_tests!(store());
}

/// Expired rows are all deleted, with a batch smaller than their number,
/// live ones kept, and an expired row is never returned before that.
#[tokio::test]
async fn every_expired_row_is_swept_past_one_batch() {
    let (dir, store) = store();
    let rows = || {
        let db = rusqlite::Connection::open(dir.0.join("sessions.db")).expect("open the file");
        db.query_row("SELECT count(*) FROM cloakroom_sessions", [], |r| {
            r.get::<_, usize>(0)
        })
        .expect("count the rows")
    };
    cloakroom_testkit::conformance::every_expired_row_is_swept_past_one_batch(
        store.clone(),
        |batch| store.delete_expired(batch),
        rows,
    )
    .await;
}

/// A wait longer than SQLite can count (`storage.timeout_ms` is read as
/// any `u64`) is cut to its most, not a panic at start-up.
#[tokio::test]
async fn a_wait_longer_than_sqlite_counts_still_opens() {
    let (dir, _) = store();
    let config = SqliteConfig::new(dir.0.join("long-wait.db")).busy_timeout(Duration::MAX);
    let store = SqliteStore::open(config).expect("open with the longest wait");
    store.delete_expired(10).await.expect("a call on it");
}
