//! `examples/seed.rs` as a user runs it: a process on a real redis-server,
//! driven over HTTP, with round trips counted by Redis itself.

use cloakroom_testkit::{AppProcess, RedisServer};
use std::path::PathBuf;
use std::process::Command;

/// The example's binary, brought up to date by cargo once per test run
/// (`cargo test --test seed_example` alone does not build examples).
fn example_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = Command::new(env!("CARGO"))
                .args(["build", "-p", "cloakroom-actix", "--example", "seed"])
                .status()
                .expect("run cargo");
            assert!(status.success(), "cargo build --example seed failed");
            // target/<profile>/deps/seed_example-HASH -> target/<profile>/examples/seed
            let exe = std::env::current_exe().expect("the test binary's path");
            let profile_dir = exe
                .parent()
                .and_then(|deps| deps.parent())
                .expect("target/<profile>");
            profile_dir.join("examples").join("seed")
        })
        .clone()
}

/// The example on `store`, with a fixed secret.
async fn example(store: &str) -> AppProcess {
    let mut cmd = AppProcess::command(example_binary());
    cmd.args(["--store", store]).env(
        "CLOAKROOM_COOKIE_SECRET",
        "the example's secret, at least 32 bytes",
    );
    AppProcess::start(cmd).await
}

#[tokio::test]
async fn the_seed_flow_login_and_logout_on_redis() {
    let redis = RedisServer::start();
    let example = example(&redis.url()).await;
    let c = example.client();

    let r = c.get("/?name=alice").await;
    assert_eq!((r.status, r.body.as_str()), (200, "index get ok!"));
    let set = r.set_cookies();
    assert!(
        set[0].starts_with("id=") && set[0].contains("HttpOnly"),
        "{set:?}"
    );
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
    assert_eq!(c.get("/health").await.body, "ok");
    assert_eq!(c.get("/").await.status, 400, "a missing name");

    // /login cycles the id: the old cookie is dead at once.
    let before = c.cookie("id").unwrap();
    assert_eq!(c.get("/login?name=bob").await.body, "login ok!");
    let after = c.cookie("id").unwrap();
    assert_ne!(before, after);
    let replay = example.client();
    replay.set_cookie("id", &before);
    assert_eq!(replay.get("/detail").await.body, "detail get ok! None");
    assert_eq!(c.get("/detail").await.body, "detail get ok! bob");

    // /logout kills the cookie it ends at once.
    let r = c.get("/logout").await;
    assert!(r.set_cookies()[0].contains("Max-Age=0"));
    let replay = example.client();
    replay.set_cookie("id", &after);
    assert_eq!(replay.get("/detail").await.body, "detail get ok! None");
    // No session is left; bob's index remains until its deadline or the
    // next listing prunes it, and lists nothing.
    let keys = redis.cli(&["KEYS", "*"]);
    assert_eq!(keys.trim(), "cr:u:{bob}", "{keys}");
    assert_eq!(redis.cli(&["ZCARD", "cr:u:{bob}"]).trim(), "1");
}

#[tokio::test]
async fn redis_counts_1_round_trip_per_read_and_write_and_0_untouched() {
    let redis = RedisServer::start();
    let example = example(&redis.url()).await;
    let c = example.client();
    // Warm up: the connection and the scripts.
    c.get("/?name=warm").await;
    c.get("/detail").await;
    c.get("/login?name=warm").await;

    let untouched = redis.round_trips(c.get("/health")).await;
    let read = redis.round_trips(c.get("/detail")).await;
    let write = redis.round_trips(c.get("/?name=carol")).await;
    let fresh = example.client();
    let create = redis.round_trips(fresh.get("/?name=dave")).await;
    assert_eq!(
        (untouched, read, write, create),
        (0, 1, 1, 1),
        "untouched, read, write, create"
    );
    assert_eq!(c.get("/detail").await.body, "detail get ok! carol");
}
