//! The demo's metrics after a scripted flow on a real redis-server, read
//! from its `/metrics` text and through a real Prometheus scraping it.

use cloakroom_testkit::{AppProcess, Client, PrometheusServer, RedisServer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The samples of an exposition text: `name{labels}` → value. Comments
/// and histogram buckets are skipped.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The demo on `redis` with `env`, and where it serves its metrics (a
/// port it picked itself, as for its pages).
async fn demo_with_metrics(redis: &RedisServer, env: &[(&str, &str)]) -> (AppProcess, SocketAddr) {
    let mut cmd = AppProcess::command(env!("CARGO_BIN_EXE_cloakroom"));
    cmd.arg("serve")
        .args(["--store", &redis.url()])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env(
            "CLOAKROOM_COOKIE_SECRET",
            "a secret for the metrics test, long enough",
        )
        .envs(env.iter().copied());
    let demo = AppProcess::start(cmd).await;
    let metrics = demo
        .logged_addr("metrics on http://")
        .expect("the metrics address in the log");
    (demo, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_after_a_scripted_flow() {
    let mut redis = RedisServer::start();
    let (demo, metrics_addr) = demo_with_metrics(
        &redis,
        &[
            ("CLOAKROOM_STORAGE_TIMEOUT_MS", "300"),
            ("CLOAKROOM_LIMITS_MAX_SESSIONS_PER_USER", "1"),
        ],
    )
    .await;
    let prometheus = PrometheusServer::start(metrics_addr);

    // The seed flow, and a login.
    let first = demo.client();
    assert_eq!(first.get("/?name=alice").await.body, "index get ok!");
    assert_eq!(first.get("/detail").await.body, "detail get ok! alice");
    assert_eq!(first.get("/login?name=alice").await.body, "login ok!");
    // alice again, from a second browser: the cap of one evicts the first.
    let second = demo.client();
    assert_eq!(second.get("/login?name=alice").await.body, "login ok!");
    assert_eq!(first.get("/detail").await.body, "detail get ok! None");
    // A logout.
    assert_eq!(second.get("/logout").await.body, "logout ok!");
    // Ten forged cookies.
    for i in 0..10 {
        let forged = demo.client();
        forged.set_cookie(
            "id",
            &format!("{}{i:02}.{}", "A".repeat(41), "B".repeat(43)),
        );
        assert_eq!(forged.get("/detail").await.body, "detail get ok! None");
    }
    // A store outage, seen by a reader with a live session.
    let reader = demo.client();
    reader.get("/?name=bob").await;
    redis.kill();
    assert_eq!(reader.get("/detail").await.status, 503);

    let text = Client::new(metrics_addr).get("/metrics").await.body;
    let m = samples(&text);
    let value = |series: &str| {
        *m.get(series)
            .unwrap_or_else(|| panic!("{series} is not in /metrics:\n{text}"))
    };
    assert_eq!(
        value("cloakroom_sessions_created_total"),
        3.0,
        "alice twice, bob"
    );
    assert_eq!(
        value("cloakroom_sessions_cycled_total"),
        1.0,
        "the first login"
    );
    assert_eq!(value("cloakroom_sessions_destroyed_total"), 1.0);
    assert_eq!(value("cloakroom_sessions_ended_total{reason=\"cap\"}"), 1.0);
    assert_eq!(
        value("cloakroom_sessions_ended_total{reason=\"admin\"}"),
        0.0
    );
    assert_eq!(value("cloakroom_rejected_tokens_total"), 10.0);
    assert!(value("cloakroom_store_errors_total{op=\"load\"}") >= 1.0);
    assert_eq!(value("cloakroom_store_errors_total{op=\"apply\"}"), 0.0);
    // Every store call is timed; the reads: 2 by alice, 1 after the cap,
    // 10 never reached the store, bob's failed one.
    assert!(value("cloakroom_store_call_duration_seconds_count{op=\"load\"}") >= 3.0);
    assert!(value("cloakroom_store_call_duration_seconds_count{op=\"apply\"}") >= 4.0);
    assert!(value("cloakroom_store_call_duration_seconds_count{op=\"admit\"}") >= 2.0);
    assert!(
        text.contains("cloakroom_store_call_duration_seconds_bucket{op=\"load\",le=\"0.001\"}"),
        "a histogram, with buckets"
    );
    // No label carries a user or an id: the only labels are the store
    // call, the reason a session ended, and the histogram's buckets.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((_, labels)) = line.split_once('{') else {
            continue;
        };
        let labels = labels.split_once('}').map_or(labels, |(l, _)| l);
        for label in labels.split(',') {
            let name = label.split_once('=').map_or(label, |(n, _)| n);
            assert!(["op", "reason", "le"].contains(&name), "{line}");
        }
        assert!(
            !line.contains("alice") && !line.contains("bob"),
            "a user in a label: {line}"
        );
    }

    // A real Prometheus scraped it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(created) = prometheus.query("cloakroom_sessions_created_total").await {
            assert_eq!(created, 3.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the demo"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Never on the app's own port.
    assert_eq!(demo.client().get("/metrics").await.status, 404);
}

/// With the read cache on, its series are there from the start at zero,
/// and count what the cache does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_metrics_exist_from_the_start_and_count() {
    let redis = RedisServer::start();
    let (demo, metrics_addr) =
        demo_with_metrics(&redis, &[("CLOAKROOM_STORAGE_CACHE_MAX_BYTES", "1048576")]).await;
    let scrape = || async { samples(&Client::new(metrics_addr).get("/metrics").await.body) };

    let before = scrape().await;
    for series in [
        "cloakroom_cache_hits_total",
        "cloakroom_cache_misses_total",
        "cloakroom_cache_invalidations_total",
        "cloakroom_cache_bytes",
    ] {
        assert_eq!(
            before.get(series),
            Some(&0.0),
            "{series} before any request"
        );
    }

    let c = demo.client();
    assert_eq!(c.get("/?name=alice").await.body, "index get ok!");
    // The first read misses and caches the session; the next ones hit.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
        let m = scrape().await;
        if m["cloakroom_cache_hits_total"] >= 1.0 {
            assert!(m["cloakroom_cache_misses_total"] >= 1.0);
            assert!(m["cloakroom_cache_bytes"] > 0.0);
            break;
        }
        assert!(Instant::now() < deadline, "no cache hit in 10 s: {m:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A write invalidates the cached copy, through Redis's push.
    assert_eq!(c.get("/?name=bob").await.body, "index get ok!");
    let deadline = Instant::now() + Duration::from_secs(10);
    while scrape().await["cloakroom_cache_invalidations_total"] < 1.0 {
        assert!(Instant::now() < deadline, "no invalidation counted in 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.get("/detail").await.body, "detail get ok! bob");
}
