//! `cloakroom serve` with `[pycket]`: the seed demo beside the seed's own
//! Tornado app, on one redis-server.

use cloakroom_testkit::tornado::TornadoSeed;
use cloakroom_testkit::{AppProcess, RedisServer};
use std::process::Command;

const TORNADO_SECRET: &str = "the Tornado app's cookie secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_in_migrate_mode_carries_a_tornado_user_over() {
    let redis = RedisServer::start();
    let tornado = TornadoSeed::start(&redis, TORNADO_SECRET).await;
    let mut cmd = AppProcess::command(env!("CARGO_BIN_EXE_cloakroom"));
    cmd.arg("serve")
        .args(["--store", &redis.url()])
        .env(
            "CLOAKROOM_COOKIE_SECRET",
            "the demo's own secret, long enough to sign",
        )
        .env("CLOAKROOM_PYCKET_MODE", "migrate")
        .env("CLOAKROOM_PYCKET_COOKIE_SECRET", TORNADO_SECRET);
    let demo = AppProcess::start(cmd).await;

    let browser = tornado.client();
    assert_eq!(browser.get("/?name=alice").await.body, "index get ok!");
    let c = demo.client();
    c.set_cookie(
        "PYCKET_ID",
        &browser.cookie("PYCKET_ID").expect("a PYCKET_ID"),
    );
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
    assert!(c.cookie("id").is_some(), "a Cloakroom cookie now");
    // From here on the demo's own session: a change stays in it.
    c.get("/?name=alice-in-rust").await;
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice-in-rust");
    assert_eq!(browser.get("/detail").await.body, "detail get ok! alice");
    let log = demo.stop();
    assert!(log.contains("imported a pycket session"), "{log}");
}

#[test]
fn share_mode_is_refused_at_start_up_with_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("CLOAKROOM_PYCKET_MODE", "share")
        .env("CLOAKROOM_PYCKET_COOKIE_SECRET", TORNADO_SECRET)
        .output()
        .expect("run cloakroom");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not available yet"), "{err}");
}
