//! The session layer on a real redis-server: round trips measured at the
//! server, concurrency, and behaviour while the server is down.

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use cloakroom::{CookieConfig, Error, KeyRing, Session, SessionLayer};
use cloakroom_redis::{RedisConfig, RedisStore};
use cloakroom_testkit::{RedisServer, TestServer};
use std::collections::HashMap;
use std::time::{Duration, Instant};

type Params = Query<HashMap<String, String>>;

fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route(
            "/",
            get(|s: Session, Query(q): Params| async move {
                s.set("login", q.get("name").cloned().unwrap_or_default())
                    .await?;
                Ok::<_, Error>("index get ok!")
            }),
        )
        .route(
            "/detail",
            get(|s: Session| async move {
                let login: Option<String> = s.get("login").await?;
                Ok::<_, Error>(format!(
                    "detail get ok! {}",
                    login.as_deref().unwrap_or("None")
                ))
            }),
        )
        .route(
            "/count",
            get(|s: Session| async move {
                let n: u64 = s.get("n").await?.unwrap_or(0);
                s.set("n", n + 1).await?;
                Ok::<_, Error>((n + 1).to_string())
            }),
        )
        .route(
            "/set",
            get(|s: Session, Query(q): Params| async move {
                for (k, v) in q {
                    s.set(&k, v).await?;
                }
                Ok::<_, Error>("set")
            }),
        )
        .route(
            "/keys",
            get(|s: Session| async move { Ok::<_, Error>(s.keys().await?.join(",")) }),
        )
        .route("/untouched", get(|| async { "untouched" }))
        .layer(layer)
}

async fn start(redis: &RedisServer, timeout: Duration) -> TestServer {
    let store = RedisStore::connect(
        RedisConfig::from_url(&redis.url())
            .unwrap()
            .timeout(timeout),
    )
    .await
    .unwrap();
    let layer = SessionLayer::builder(store, KeyRing::new(["x".repeat(32)]).unwrap())
        .cookie(CookieConfig::default().secure(false))
        .build()
        .unwrap();
    TestServer::start(app(layer)).await
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
    c.get("/count").await;
    c.clear_cookies();

    let create = round_trips(&redis, c.get("/?name=alice")).await;
    let untouched = round_trips(&redis, c.get("/untouched")).await;
    let read = round_trips(&redis, c.get("/detail")).await;
    let write = round_trips(&redis, c.get("/?name=bob")).await;
    let read_write = round_trips(&redis, c.get("/count")).await;
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
    let srv = start(&redis, Duration::from_secs(5)).await;
    let c = srv.client();
    c.get("/set?seed=1").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let c = c.clone();
        tasks.spawn(async move { c.get(&format!("/set?name{i:03}={i}")).await.status });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let keys = c.get("/keys").await.body;
    assert_eq!(keys.split(',').count(), 201, "{keys}");
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
}

#[tokio::test]
async fn redis_down_gives_503_within_the_timeout_and_recovers() {
    let mut redis = RedisServer::start();
    let timeout = Duration::from_millis(500);
    let srv = start(&redis, timeout).await;
    let c = srv.client();
    c.get("/?name=alice").await;
    redis.kill();

    for path in ["/detail", "/?name=bob", "/count"] {
        let started = Instant::now();
        let r = c.get(path).await;
        let took = started.elapsed();
        assert_eq!(r.status, 503, "{path}: {}", r.body);
        assert!(
            r.body.starts_with("session store unavailable"),
            "{}",
            r.body
        );
        assert!(r.set_cookies().is_empty());
        assert!(took < timeout * 3, "{path} took {took:?}");
    }
    assert_eq!(c.get("/untouched").await.status, 200);

    redis.restart();
    // The restarted server is empty: the old session is gone, new ones work.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.get("/detail").await;
        if r.status == 200 {
            assert_eq!(r.body, "detail get ok! None");
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {}", r.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.get("/?name=carol").await.status, 200);
    assert_eq!(c.get("/detail").await.body, "detail get ok! carol");
}
