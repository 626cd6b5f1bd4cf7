//! The session layer on a real memcached: the shared HTTP scenarios,
//! concurrency and outages.

use cloakroom::{CookieConfig, KeyRing, SessionManager};
use cloakroom_memcached::{MemcachedConfig, MemcachedStore};
use cloakroom_testkit::counted::Counted;
use cloakroom_testkit::http_suite::HttpFixture;
use cloakroom_testkit::{Adapter, MemcachedServer, TestServer, scenarios};
use std::time::Duration;

/// The shared HTTP scenarios, on a real memcached.
mod suite {
    use super::*;

    fn memcached() -> (MemcachedServer, HttpFixture) {
        let server = MemcachedServer::start();
        let config = MemcachedConfig::from_url(&server.url())
            .unwrap()
            .timeout(Duration::from_secs(5));
        let store = Counted::new(MemcachedStore::new(config));
        let counts = store.counts.clone();
        let fixture = HttpFixture::new(
            move |keys| SessionManager::builder(store.clone(), keys),
            counts,
        );
        (server, fixture)
    }

    cloakroom_testkit::http_tests!(memcached());
}

cloakroom_testkit::adapter_tests!(
    seed_flow_and_read_once_notifications,
    two_hundred_concurrent_requests_keep_all_names,
    memcached_down_gives_503_at_once_and_recovers,
    concurrent_increments_all_count,
);

fn manager(server: &MemcachedServer, timeout: Duration) -> SessionManager {
    let config = MemcachedConfig::from_url(&server.url())
        .unwrap()
        .timeout(timeout);
    SessionManager::builder(
        MemcachedStore::new(config),
        KeyRing::new(["m".repeat(32)]).unwrap(),
    )
    .cookie(CookieConfig::default().secure(false))
    .build()
    .unwrap()
}

async fn seed_flow_and_read_once_notifications(adapter: Adapter) {
    let server = MemcachedServer::start();
    let srv = TestServer::serve(adapter, manager(&server, Duration::from_secs(2))).await;
    let c = srv.client();
    assert_eq!(c.get("/?name=alice").await.body, "index get ok!");
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
    c.get("/notify?welcome=hi").await;
    assert_eq!(c.get("/take?name=welcome").await.body, "hi");
    assert_eq!(c.get("/take?name=welcome").await.body, "None");
    let before = c.cookie("id").unwrap();
    c.get("/login?name=bob").await;
    assert_ne!(c.cookie("id").unwrap(), before);
    let replay = srv.client();
    replay.set_cookie("id", &before);
    assert_eq!(replay.get("/detail").await.body, "detail get ok! None");
    c.get("/logout").await;
    assert_eq!(c.get("/detail").await.body, "detail get ok! None");
}

async fn two_hundred_concurrent_requests_keep_all_names(adapter: Adapter) {
    let server = MemcachedServer::start();
    let manager = manager(&server, Duration::from_secs(10));
    scenarios::concurrent_names_survive(adapter, manager, 200).await;
}

async fn memcached_down_gives_503_at_once_and_recovers(adapter: Adapter) {
    let mut server = MemcachedServer::start();
    // Longer than a refused call may take: it must fail fast, not time out.
    let timeout = Duration::from_secs(3);
    let manager = manager(&server, timeout);
    scenarios::outage_and_recovery(&mut server, adapter, manager, timeout).await;
}

async fn concurrent_increments_all_count(adapter: Adapter) {
    let server = MemcachedServer::start();
    let manager = manager(&server, Duration::from_secs(10));
    scenarios::concurrent_increments_all_count(adapter, manager, 100).await;
}
