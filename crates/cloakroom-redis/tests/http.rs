//! The session layer on a real redis-server: round trips measured at the
//! server, concurrency, and behaviour while the server is down.

use cloakroom::{CookieConfig, KeyRing, SessionLayer};
use cloakroom_redis::{RedisConfig, RedisStore};
use cloakroom_testkit::{RedisServer, TestServer, app, scenarios};
use std::time::Duration;

async fn layer(redis: &RedisServer, timeout: Duration) -> SessionLayer {
    let store = RedisStore::connect(
        RedisConfig::from_url(&redis.url())
            .unwrap()
            .timeout(timeout),
    )
    .await
    .unwrap();
    SessionLayer::builder(store, KeyRing::new(["x".repeat(32)]).unwrap())
        .cookie(CookieConfig::default().secure(false))
        .build()
        .unwrap()
}

async fn start(redis: &RedisServer, timeout: Duration) -> TestServer {
    TestServer::start(app(layer(redis, timeout).await)).await
}

/// Requests the server read from its clients during `f`, less what the
/// measuring itself costs.
async fn round_trips<F: std::future::Future>(redis: &RedisServer, f: F) -> u64 {
    let idle = {
        let a = redis.stat("total_reads_processed");
        let b = redis.stat("total_reads_processed");
        b - a
    };
    let before = redis.stat("total_reads_processed");
    f.await;
    let after = redis.stat("total_reads_processed");
    after - before - idle
}

#[tokio::test]
async fn round_trips_per_request_are_0_1_1_2() {
    let redis = RedisServer::start();
    let srv = start(&redis, Duration::from_secs(2)).await;
    let c = srv.client();
    // Warm up: the first use of each script loads it.
    c.get("/?name=warm").await;
    c.get("/detail").await;
    c.get("/read-write").await;
    c.clear_cookies();

    let create = round_trips(&redis, c.get("/?name=alice")).await;
    let untouched = round_trips(&redis, c.get("/untouched")).await;
    let read = round_trips(&redis, c.get("/detail")).await;
    let write = round_trips(&redis, c.get("/?name=bob")).await;
    let read_write = round_trips(&redis, c.get("/read-write")).await;
    let anonymous_read = round_trips(&redis, srv.client().get("/detail")).await;
    assert_eq!(
        (untouched, read, write, create, read_write, anonymous_read),
        (0, 1, 1, 1, 2, 0),
        "untouched, read, write, create, read+write, read without a cookie"
    );
    assert_eq!(c.get("/detail").await.body, "detail get ok! bob");
}

#[tokio::test]
async fn two_hundred_concurrent_requests_keep_all_names() {
    let redis = RedisServer::start();
    scenarios::concurrent_names_survive(layer(&redis, Duration::from_secs(5)).await, 200).await;
}

#[tokio::test]
async fn data_is_readable_json_and_keys_are_not_tokens() {
    let redis = RedisServer::start();
    let srv = start(&redis, Duration::from_secs(2)).await;
    let c = srv.client();
    c.get("/?name=alice").await;
    let cookie = c.cookie("id").unwrap();
    let token = &cookie[..43];
    let keys = redis.cli(&["KEYS", "*"]);
    assert!(keys.starts_with("cr:{"), "{keys}");
    assert!(!keys.contains(token));
    let key = keys.lines().next().unwrap();
    assert_eq!(redis.cli(&["HGET", key, "login"]), "\"alice\"");
    let ttl: i64 = redis.cli(&["TTL", key]).parse().unwrap();
    assert!(
        (1700..=1800).contains(&ttl),
        "idle timeout is the TTL: {ttl}"
    );
    let bytes: u64 = redis.cli(&["MEMORY", "USAGE", key]).parse().unwrap();
    println!("MEMORY USAGE of the seed session: {bytes} bytes");
    // tower-sessions' seed session takes 136 bytes on Redis 7.0 (measured
    // side by side by bench/run); ours must not take more.
    assert!(bytes <= 136, "the seed session grew to {bytes} bytes");
}

#[tokio::test]
async fn redis_down_gives_503_within_the_timeout_and_recovers() {
    let mut redis = RedisServer::start();
    let timeout = Duration::from_millis(500);
    let layer = layer(&redis, timeout).await;
    scenarios::outage_and_recovery(&mut redis, layer, timeout).await;
}

#[tokio::test]
async fn concurrent_increments_all_count() {
    let redis = RedisServer::start();
    scenarios::concurrent_increments_all_count(layer(&redis, Duration::from_secs(5)).await, 100)
        .await;
}

#[tokio::test]
async fn password_acl_user_database_and_prefix_from_storage_config() {
    let redis = RedisServer::start_with(&[
        "--requirepass",
        "default-pass",
        "--user",
        "app",
        "on",
        ">app-pass",
        "~*",
        "&*",
        "+@all",
    ]);
    let storage = |user: Option<&str>, password: &str| cloakroom::StorageConfig {
        port: Some(redis.port),
        username: user.map(str::to_owned),
        password: Some(password.to_owned()),
        db_sessions: Some(4),
        prefix: Some("myapp".to_owned()),
        timeout_ms: Some(1000),
        ..Default::default()
    };
    let wrong = RedisConfig::from_storage(&storage(Some("app"), "wrong")).unwrap();
    assert!(
        RedisStore::connect(wrong).await.is_err(),
        "a wrong password is refused"
    );

    for (user, password) in [(None, "default-pass"), (Some("app"), "app-pass")] {
        let config = RedisConfig::from_storage(&storage(user, password)).unwrap();
        let layer = SessionLayer::builder(
            RedisStore::connect(config).await.unwrap(),
            KeyRing::new(["x".repeat(32)]).unwrap(),
        )
        .cookie(CookieConfig::default().secure(false))
        .build()
        .unwrap();
        let srv = TestServer::start(app(layer)).await;
        let c = srv.client();
        c.get("/?name=alice").await;
        assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
    }
    let keys = redis.cli(&[
        "--user", "app", "--pass", "app-pass", "-n", "4", "KEYS", "*",
    ]);
    assert_eq!(keys.lines().count(), 2, "{keys}");
    assert!(keys.lines().all(|k| k.starts_with("myapp:{")), "{keys}");
}
