//! Share mode with the real thing: the seed's Tornado app and a Rust
//! service on the same pycket sessions, on one redis-server.

#![cfg(feature = "migrate")]

use axum::extract::{Extension, Query};
use axum::routing::get;
use axum::{Router, http::StatusCode};
use cloakroom_pycket::{PycketRedis, ShareLayer, SharedSession, TornadoSecret};
use cloakroom_testkit::tornado::{TornadoSeed, python};
use cloakroom_testkit::{RedisServer, TestServer};
use std::collections::HashMap;
use std::process::Command;

const TORNADO_SECRET: &str = "the seed's cookie secret, shared with Rust";

/// `/set?k=v` sets each pair; `/get?k=name` answers the value's JSON.
async fn rust_service(redis: &RedisServer) -> TestServer {
    let pycket = PycketRedis::connect(&redis.url(), 0, 1).await.unwrap();
    let share = ShareLayer::new(pycket, TornadoSecret::new(TORNADO_SECRET)).secure(false);
    let app = Router::new()
        .route(
            "/set",
            get(
                |Extension(s): Extension<SharedSession>,
                 Query(q): Query<HashMap<String, String>>| async move {
                    for (k, v) in q {
                        if s.set(&k, v).await.is_err() {
                            return StatusCode::SERVICE_UNAVAILABLE;
                        }
                    }
                    StatusCode::OK
                },
            ),
        )
        .route(
            "/get",
            get(
                |Extension(s): Extension<SharedSession>,
                 Query(q): Query<HashMap<String, String>>| async move {
                    let name = q.get("k").cloned().unwrap_or_default();
                    match s.get::<serde_json::Value>(&name).await {
                        Ok(v) => (StatusCode::OK, format!("{}", v.unwrap_or_default())),
                        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                    }
                },
            ),
        )
        .layer(share);
    TestServer::start(app).await
}

/// 50 concurrent Rust requests, each setting its own name on one pycket
/// session, all keep their name, and Tornado's own value survives them:
/// each write is a compare-and-swap on the pickle it changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rust_writes_lose_nothing() {
    let redis = RedisServer::start();
    let tornado = TornadoSeed::start(&redis, TORNADO_SECRET).await;
    let rust = rust_service(&redis).await;
    let on_tornado = tornado.client();
    on_tornado.get("/?name=alice").await;
    let pycket_id = on_tornado.cookie("PYCKET_ID").unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let c = rust.client();
        c.set_cookie("PYCKET_ID", &pycket_id);
        tasks.spawn(async move { c.get(&format!("/set?n{i}=v{i}")).await.status });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let c = rust.client();
    c.set_cookie("PYCKET_ID", &pycket_id);
    for i in 0..50 {
        assert_eq!(
            c.get(&format!("/get?k=n{i}")).await.body,
            format!("\"v{i}\"")
        );
    }
    assert_eq!(on_tornado.get("/detail").await.body, "detail get ok! alice");
}

/// A session holding a class instance is read as empty and never
/// overwritten: Tornado's data stays as it was, and nothing runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_is_not_plain_data_is_never_overwritten() {
    let redis = RedisServer::start();
    let tornado = TornadoSeed::start(&redis, TORNADO_SECRET).await;
    let rust = rust_service(&redis).await;
    let on_tornado = tornado.client();
    on_tornado.get("/?name=alice").await;
    let pycket_id = on_tornado.cookie("PYCKET_ID").unwrap();
    let marker = std::env::temp_dir().join(format!("cloakroom-share-{}", std::process::id()));
    // Replace the session with one holding an object whose unpickling
    // would create a file.
    let script = format!(
        "import os, pickle, redis\n\
         class Evil:\n    def __reduce__(self):\n        return (os.system, ('touch {}',))\n\
         r = redis.Redis(port={}, db=0)\n\
         key = [k for k in r.keys('*') if len(k) == 36][0]\n\
         r.set(key, pickle.dumps({{'x': Evil()}}))\n\
         print(r.get(key).hex())\n",
        marker.display(),
        redis.port
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let c = rust.client();
    c.set_cookie("PYCKET_ID", &pycket_id);
    assert_eq!(c.get("/get?k=x").await.body, "null", "read as empty");
    assert_eq!(c.get("/set?login=mallory").await.status, 503);
    let keys = redis.cli(&["-n", "0", "KEYS", "*"]);
    assert_eq!(redis.cli(&["-n", "0", "EXISTS", keys.trim()]).trim(), "1");
    assert!(!marker.exists(), "the pickle ran code");
    // The stored bytes are still Python's.
    let check = format!(
        "import redis\nr = redis.Redis(port={}, db=0)\nprint(r.get(r.keys('*')[0]).hex())\n",
        redis.port
    );
    let out = Command::new(python())
        .args(["-c", &check])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), before);
}
