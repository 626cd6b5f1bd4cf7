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
    use cloakroom::{Applied, Clock, ExpiryPolicy, Patch, Store, SystemClock};
    use std::time::Duration;
    let (_dir, store) = store();
    let short = ExpiryPolicy::default()
        .idle(Duration::from_millis(1))
        .absolute(Duration::from_secs(60));
    let long = ExpiryPolicy::default();
    let mut create = Patch::default();
    create.create();
    create.set("n", "1".to_owned());
    let mut expired = Vec::new();
    for _ in 0..10 {
        let id = cloakroom_testkit::conformance::new_id();
        let e = short.at(SystemClock.now());
        assert_eq!(store.apply(&id, &create, &e).await.unwrap(), Applied::Done);
        expired.push(id);
    }
    let live = cloakroom_testkit::conformance::new_id();
    let e = long.at(SystemClock.now());
    assert_eq!(
        store.apply(&live, &create, &e).await.unwrap(),
        Applied::Done
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let now = long.at(SystemClock.now());
    assert!(store.load(&expired[0], &now).await.unwrap().is_none());
    assert_eq!(store.count(&now).await.unwrap(), 1);
    assert_eq!(store.delete_expired(3).await.unwrap(), 10);
    assert_eq!(store.delete_expired(3).await.unwrap(), 0);
    assert!(store.load(&live, &now).await.unwrap().is_some());
}
