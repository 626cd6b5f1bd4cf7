//! The session layer on SQLite: the shared HTTP suite on both adapters,
//! 200 concurrent writers, and sessions that outlive the store.

use cloakroom::{CookieConfig, KeyRing, SessionManager};
use cloakroom_sqlite::{SqliteConfig, SqliteStore};
use cloakroom_testkit::counted::Counted;
use cloakroom_testkit::http_suite::HttpFixture;
use cloakroom_testkit::{Adapter, TestServer, scenarios};
use std::path::PathBuf;

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "cloakroom-sqlite-http-{}-{}",
            std::process::id(),
            cloakroom_testkit::free_port()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn open(&self) -> SqliteStore {
        SqliteStore::open(SqliteConfig::new(self.0.join("sessions.db"))).expect("open")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn manager(store: SqliteStore) -> SessionManager {
    SessionManager::builder(store, KeyRing::new(["s".repeat(32)]).expect("a key"))
        .cookie(CookieConfig::default().secure(false))
        .build()
        .expect("valid settings")
}

/// The shared HTTP scenarios, a database file each.
mod suite {
    use super::*;

    fn sqlite() -> (Scratch, HttpFixture) {
        let dir = Scratch::new();
        let store = Counted::new(dir.open());
        let counts = store.counts.clone();
        let fixture = HttpFixture::new(
            move |keys| SessionManager::builder(store.clone(), keys),
            counts,
        );
        (dir, fixture)
    }

    cloakroom_testkit::http_tests!(sqlite());
}

cloakroom_testkit::adapter_tests!(
    two_hundred_concurrent_requests_keep_all_names,
    concurrent_increments_all_count,
    sessions_survive_closing_and_reopening_the_file,
);

async fn two_hundred_concurrent_requests_keep_all_names(adapter: Adapter) {
    let dir = Scratch::new();
    scenarios::concurrent_names_survive(adapter, manager(dir.open()), 200).await;
}

async fn concurrent_increments_all_count(adapter: Adapter) {
    let dir = Scratch::new();
    scenarios::concurrent_increments_all_count(adapter, manager(dir.open()), 100).await;
}

async fn sessions_survive_closing_and_reopening_the_file(adapter: Adapter) {
    let dir = Scratch::new();
    let cookie = {
        let srv = TestServer::serve(adapter, manager(dir.open())).await;
        let c = srv.client();
        c.get("/?name=alice").await;
        c.get("/notify?welcome=hi").await;
        c.cookie("id").expect("a session cookie")
    };
    // The first server is dropped; a second store opens the same file.
    let srv = TestServer::serve(adapter, manager(dir.open())).await;
    let c = srv.client();
    c.set_cookie("id", &cookie);
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
    assert_eq!(c.get("/take?name=welcome").await.body, "hi");
    assert_eq!(c.get("/take?name=welcome").await.body, "None");
}
