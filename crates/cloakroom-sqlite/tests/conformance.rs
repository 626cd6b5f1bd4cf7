//! The store contract on SQLite, a database file per test. Deadlines are
//! checked in SQL against the time each call passes in, so the suite
//! moves a manual clock instead of sleeping.

use cloakroom_sqlite::{SqliteConfig, SqliteStore};
use cloakroom_testkit::conformance::SuiteTime;
use std::path::PathBuf;

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

/// Expired rows are deleted in batches, live ones kept, and an expired
/// row is never returned before that.
#[tokio::test]
async fn expired_rows_are_swept_in_batches() {
    let (_dir, store) = store();
    cloakroom_testkit::conformance::expired_rows_are_swept_in_batches(
        store.clone(),
        |batch| store.delete_expired(batch),
        || None,
    )
    .await;
}
