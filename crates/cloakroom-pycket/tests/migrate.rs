//! Migrate mode with the real thing: the seed's Tornado app (pycket on
//! Redis) and a Rust service on the same redis-server, one user moving
//! from one to the other.

#![cfg(feature = "migrate")]

mod common;

use cloakroom_pycket::{MigrateLayer, PycketRedis, TornadoSecret};
use cloakroom_testkit::tornado::{TornadoSeed, python};
use cloakroom_testkit::{Client, RedisServer, TestServer};
use std::process::Command;

const TORNADO_SECRET: &str = "the seed's cookie secret, shared with Rust";

/// The Rust service: the seed's routes on Cloakroom (memory store), with
/// migrate mode reading pycket's Redis.
async fn rust_service(redis: &RedisServer, delete: bool) -> TestServer {
    let pycket = PycketRedis::connect(&redis.url(), 0, 1).await.unwrap();
    let migrate =
        MigrateLayer::new(pycket, TornadoSecret::new(TORNADO_SECRET)).delete_after_import(delete);
    common::rust_service(migrate).await
}

/// A browser that carries its `PYCKET_ID` from Tornado to Rust.
fn with_pycket(on: &TestServer, from: &Client) -> Client {
    let c = on.client();
    c.set_cookie("PYCKET_ID", &from.cookie("PYCKET_ID").expect("a PYCKET_ID"));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tornado_user_is_carried_over_once() {
    let redis = RedisServer::start();
    let tornado = TornadoSeed::start(&redis, TORNADO_SECRET).await;
    let rust = rust_service(&redis, false).await;
    let browser = tornado.client();
    assert_eq!(browser.get("/?name=alice").await.body, "index get ok!");
    assert_eq!(browser.get("/notify?msg=welcome").await.body, "notified");

    let c = with_pycket(&rust, &browser);
    let r = c.get("/detail").await;
    assert_eq!(r.body, "detail get ok! alice", "read from pycket's session");
    assert!(c.cookie("id").is_some(), "and now a Cloakroom cookie");
    // The notification moved: read once, here, and gone from Tornado.
    assert_eq!(c.get("/flash").await.body, "flash: welcome");
    assert_eq!(c.get("/flash").await.body, "flash: None");
    assert_eq!(browser.get("/flash").await.body, "flash: None");
    // Imported once: a change in Rust stays in Rust...
    c.get("/?name=alice-in-rust").await;
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice-in-rust");
    // ...and pycket's session is kept (the default), so Tornado's routes
    // still know the user during the migration.
    assert_eq!(browser.get("/detail").await.body, "detail get ok! alice");
    // Without its PYCKET_ID, the Cloakroom cookie alone is enough.
    let only_cloakroom = rust.client();
    only_cloakroom.set_cookie("id", &c.cookie("id").unwrap());
    assert_eq!(
        only_cloakroom.get("/detail").await.body,
        "detail get ok! alice-in-rust"
    );
    // A logout in Rust does not bring pycket's session back: it was
    // imported once, for good.
    let again = with_pycket(&rust, &browser);
    again.set_cookie("id", &c.cookie("id").unwrap());
    assert_eq!(again.get("/logout").await.body, "logout ok!");
    let after_logout = with_pycket(&rust, &browser);
    assert_eq!(
        after_logout.get("/detail").await.body,
        "detail get ok! None",
        "signed out stays signed out"
    );
    // This process knows now that the pycket session is imported for
    // good: a request with only PYCKET_ID costs no round trip.
    let later = with_pycket(&rust, &browser);
    let trips = redis
        .round_trips(async {
            assert_eq!(later.get("/detail").await.body, "detail get ok! None");
        })
        .await;
    assert_eq!(trips, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pycket_session_can_be_deleted_after_import() {
    let redis = RedisServer::start();
    let tornado = TornadoSeed::start(&redis, TORNADO_SECRET).await;
    let rust = rust_service(&redis, true).await;
    let browser = tornado.client();
    browser.get("/?name=bob").await;
    let c = with_pycket(&rust, &browser);
    assert_eq!(c.get("/detail").await.body, "detail get ok! bob");
    assert_eq!(browser.get("/detail").await.body, "detail get ok! None");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tampered_or_old_cookies_cost_no_store_read() {
    let redis = RedisServer::start();
    let tornado = TornadoSeed::start(&redis, TORNADO_SECRET).await;
    let rust = rust_service(&redis, false).await;
    let browser = tornado.client();
    browser.get("/?name=alice").await;
    let genuine = browser.cookie("PYCKET_ID").unwrap();
    let unquoted = genuine.trim_matches('"').to_owned();
    let id = TornadoSecret::new(TORNADO_SECRET)
        .verify("PYCKET_ID", unquoted.as_bytes(), 31, now())
        .expect("Tornado's own cookie verifies")
        .value;
    let old = TornadoSecret::new(TORNADO_SECRET).sign("PYCKET_ID", &id, now() - 32 * 86_400);
    let other_secret = TornadoSecret::new("a guess").sign("PYCKET_ID", &id, now());
    let mut tampered = unquoted.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
    for bad in [
        old,
        other_secret,
        String::from_utf8(tampered).unwrap(),
        "junk".to_owned(),
    ] {
        let c = rust.client();
        c.set_cookie("PYCKET_ID", &bad);
        let reads = redis
            .round_trips(async {
                assert_eq!(c.get("/detail").await.body, "detail get ok! None");
            })
            .await;
        assert_eq!(reads, 0, "{bad}");
        assert!(c.cookie("id").is_none());
    }
    // The genuine one does read.
    let c = rust.client();
    c.set_cookie("PYCKET_ID", &genuine);
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pickle_with_a_class_is_no_session_and_runs_nothing() {
    let redis = RedisServer::start();
    let rust = rust_service(&redis, false).await;
    let dir = std::env::temp_dir().join(format!("cloakroom-migrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join("pwned");
    // pycket's layout, written by hand: a hostile pickle under an id.
    let made = Command::new(python())
        .args([
            "-c",
            &format!(
                "import pickle, os, redis\n\
                 class Evil:\n\
                 \x20   def __reduce__(self):\n\
                 \x20       return (os.system, ('touch {}',))\n\
                 redis.Redis(port={}).set('evil-id', pickle.dumps({{'login': 'mallory', 'x': Evil()}}))",
                target.display(),
                redis.port
            ),
        ])
        .status()
        .unwrap();
    assert!(made.success());
    let c = rust.client();
    let cookie = TornadoSecret::new(TORNADO_SECRET).sign("PYCKET_ID", b"evil-id", now());
    c.set_cookie("PYCKET_ID", &cookie);
    let r = c.get("/detail").await;
    assert_eq!((r.status, r.body.as_str()), (200, "detail get ok! None"));
    assert!(c.cookie("id").is_none(), "nothing imported");
    assert!(!target.exists(), "nothing ran");
    let _ = std::fs::remove_dir_all(&dir);
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
