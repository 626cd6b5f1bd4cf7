//! The session layer on a real memcached: concurrency and outages.

use cloakroom::{CookieConfig, KeyRing, SessionLayer};
use cloakroom_memcached::{MemcachedConfig, MemcachedStore};
use cloakroom_testkit::{MemcachedServer, TestServer, app, scenarios};
use std::time::Duration;

fn layer(server: &MemcachedServer, timeout: Duration) -> SessionLayer {
    let config = MemcachedConfig::from_url(&server.url())
        .unwrap()
        .timeout(timeout);
    SessionLayer::builder(
        MemcachedStore::new(config),
        KeyRing::new(["m".repeat(32)]).unwrap(),
    )
    .cookie(CookieConfig::default().secure(false))
    .build()
    .unwrap()
}

#[tokio::test]
async fn seed_flow_and_read_once_notifications() {
    let server = MemcachedServer::start();
    let srv = TestServer::start(app(layer(&server, Duration::from_secs(2)))).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_keep_all_names() {
    let server = MemcachedServer::start();
    scenarios::concurrent_names_survive(layer(&server, Duration::from_secs(10)), 200).await;
}

#[tokio::test]
async fn memcached_down_gives_503_within_the_timeout_and_recovers() {
    let mut server = MemcachedServer::start();
    let timeout = Duration::from_millis(500);
    let layer = layer(&server, timeout);
    scenarios::outage_and_recovery(&mut server, layer, timeout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_all_count() {
    let server = MemcachedServer::start();
    scenarios::concurrent_increments_all_count(layer(&server, Duration::from_secs(10)), 100).await;
}
