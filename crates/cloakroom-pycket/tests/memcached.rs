//! Migrate mode from pycket's other engine: the seed's Tornado app with
//! pycket on a real memcached, and a Rust service importing its users.

#![cfg(feature = "memcached")]

mod common;

use cloakroom_pycket::{MigrateLayer, PycketMemcached, TornadoSecret};
use cloakroom_testkit::tornado::TornadoSeed;
use cloakroom_testkit::{MemcachedServer, TestServer};

const TORNADO_SECRET: &str = "the seed's cookie secret, on memcached";

async fn rust_service(memcached: &MemcachedServer, delete: bool) -> TestServer {
    let pycket = PycketMemcached::connect(&memcached.url()).await.unwrap();
    let migrate =
        MigrateLayer::new(pycket, TornadoSecret::new(TORNADO_SECRET)).delete_after_import(delete);
    common::rust_service(migrate).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tornado_user_on_memcached_is_carried_over_once() {
    let memcached = MemcachedServer::start();
    let tornado = TornadoSeed::start_on_memcached(&memcached, TORNADO_SECRET).await;
    let rust = rust_service(&memcached, false).await;
    let browser = tornado.client();
    assert_eq!(browser.get("/?name=alice").await.body, "index get ok!");
    let pycket_id = browser.cookie("PYCKET_ID").expect("a PYCKET_ID");

    let c = rust.client();
    c.set_cookie("PYCKET_ID", &pycket_id);
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
    assert!(c.cookie("id").is_some(), "a Cloakroom cookie now");
    // Kept on Tornado's side while the migration runs.
    assert_eq!(browser.get("/detail").await.body, "detail get ok! alice");
    // Once: after a logout, the same PYCKET_ID brings nothing back.
    c.get("/logout").await;
    let again = rust.client();
    again.set_cookie("PYCKET_ID", &pycket_id);
    assert_eq!(again.get("/detail").await.body, "detail get ok! None");

    // A forged cookie is no session.
    let forged = rust.client();
    forged.set_cookie("PYCKET_ID", &pycket_id.replace('|', "|x"));
    assert_eq!(forged.get("/detail").await.body, "detail get ok! None");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memcached_session_can_be_deleted_after_import() {
    let memcached = MemcachedServer::start();
    let tornado = TornadoSeed::start_on_memcached(&memcached, TORNADO_SECRET).await;
    let rust = rust_service(&memcached, true).await;
    let browser = tornado.client();
    browser.get("/?name=bob").await;
    let c = rust.client();
    c.set_cookie("PYCKET_ID", &browser.cookie("PYCKET_ID").unwrap());
    assert_eq!(c.get("/detail").await.body, "detail get ok! bob");
    assert_eq!(browser.get("/detail").await.body, "detail get ok! None");
}
