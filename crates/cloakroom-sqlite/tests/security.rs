//! The store-dependent security points (SECURITY.md) on SQLite, a file per
//! test. Store calls are counted by a wrapper around the real store.

use cloakroom::SessionManager;
use cloakroom_sqlite::{SqliteConfig, SqliteStore};
use cloakroom_testkit::counted::Counted;
use cloakroom_testkit::security::Fixture;
use std::path::PathBuf;

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sqlite() -> (Scratch, Fixture) {
    let dir = std::env::temp_dir().join(format!(
        "cloakroom-sqlite-security-{}-{}",
        std::process::id(),
        cloakroom_testkit::free_port()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let store = SqliteStore::open(SqliteConfig::new(dir.join("sessions.db"))).expect("open");
    let store = Counted::new(store);
    let counts = store.counts.clone();
    let fixture = Fixture::new(
        move |keys| SessionManager::builder(store.clone(), keys),
        move || counts.total() as u64,
    );
    (Scratch(dir), fixture)
}

cloakroom_testkit::security_tests!(sqlite());
