//! The session layer on a real redis-server: round trips measured at the
//! server, concurrency, and behaviour while the server is down.

use cloakroom::{CookieConfig, KeyRing, SessionManager};
use cloakroom_redis::{RedisConfig, RedisStore};
use cloakroom_testkit::counted::Counted;
use cloakroom_testkit::http_suite::HttpFixture;
use cloakroom_testkit::{Adapter, RedisServer, TestServer, scenarios};
use std::time::Duration;

async fn connect(redis: &RedisServer, timeout: Duration) -> RedisStore {
    RedisStore::connect(
        RedisConfig::from_url(&redis.url())
            .unwrap()
            .timeout(timeout),
    )
    .await
    .unwrap()
}

async fn manager(redis: &RedisServer, timeout: Duration) -> SessionManager {
    SessionManager::builder(
        connect(redis, timeout).await,
        KeyRing::new(["x".repeat(32)]).unwrap(),
    )
    .cookie(CookieConfig::default().secure(false))
    .build()
    .unwrap()
}

async fn start(adapter: Adapter, redis: &RedisServer, timeout: Duration) -> TestServer {
    TestServer::serve(adapter, manager(redis, timeout).await).await
}

/// The shared HTTP scenarios, on a real redis-server.
mod suite {
    use super::*;

    async fn redis() -> (RedisServer, HttpFixture) {
        let server = RedisServer::start();
        let store = Counted::new(connect(&server, Duration::from_secs(5)).await);
        let counts = store.counts.clone();
        let fixture = HttpFixture::new(
            move |keys| SessionManager::builder(store.clone(), keys),
            counts,
        );
        (server, fixture)
    }

    cloakroom_testkit::http_tests!(redis().await);
}

cloakroom_testkit::adapter_tests!(
    round_trips_per_request_are_0_1_1_2,
    two_hundred_concurrent_requests_keep_all_names,
    data_is_readable_json_and_keys_are_not_tokens,
    redis_down_gives_503_at_once_and_recovers,
    concurrent_increments_all_count,
);

async fn round_trips_per_request_are_0_1_1_2(adapter: Adapter) {
    let redis = RedisServer::start();
    let srv = start(adapter, &redis, Duration::from_secs(2)).await;
    let c = srv.client();
    // Warm up: the first use of each script loads it.
    c.get("/?name=warm").await;
    c.get("/detail").await;
    c.get("/read-write").await;
    c.get("/signin?name=warm").await;
    c.clear_cookies();

    let create = redis.round_trips(c.get("/?name=alice")).await;
    let untouched = redis.round_trips(c.get("/untouched")).await;
    let read = redis.round_trips(c.get("/detail")).await;
    let write = redis.round_trips(c.get("/?name=bob")).await;
    let read_write = redis.round_trips(c.get("/read-write")).await;
    let anonymous_read = redis.round_trips(srv.client().get("/detail")).await;
    assert_eq!(
        (untouched, read, write, create, read_write, anonymous_read),
        (0, 1, 1, 1, 2, 0),
        "untouched, read, write, create, read+write, read without a cookie"
    );
    assert_eq!(c.get("/detail").await.body, "detail get ok! bob");

    // Bound to a user: a sign-in costs one more round trip (the user's
    // index), and nothing else does.
    let signin = redis.round_trips(c.get("/signin?name=alice")).await;
    let untouched = redis.round_trips(c.get("/untouched")).await;
    let read = redis.round_trips(c.get("/detail")).await;
    let write = redis.round_trips(c.get("/?name=carol")).await;
    let read_write = redis.round_trips(c.get("/read-write")).await;
    assert_eq!(
        (signin, untouched, read, write, read_write),
        (2, 0, 1, 1, 2),
        "bound: sign-in, untouched, read, write, read+write"
    );
    assert_eq!(c.get("/detail").await.body, "detail get ok! carol");
}

async fn two_hundred_concurrent_requests_keep_all_names(adapter: Adapter) {
    let redis = RedisServer::start();
    let manager = manager(&redis, Duration::from_secs(5)).await;
    scenarios::concurrent_names_survive(adapter, manager, 200).await;
}

async fn data_is_readable_json_and_keys_are_not_tokens(adapter: Adapter) {
    let redis = RedisServer::start();
    let srv = start(adapter, &redis, Duration::from_secs(2)).await;
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

async fn redis_down_gives_503_at_once_and_recovers(adapter: Adapter) {
    let mut redis = RedisServer::start();
    // Longer than a refused call may take: it must fail fast, not time out.
    let timeout = Duration::from_secs(3);
    let manager = manager(&redis, timeout).await;
    scenarios::outage_and_recovery(&mut redis, adapter, manager, timeout).await;
}

async fn concurrent_increments_all_count(adapter: Adapter) {
    let redis = RedisServer::start();
    let manager = manager(&redis, Duration::from_secs(5)).await;
    scenarios::concurrent_increments_all_count(adapter, manager, 100).await;
}
