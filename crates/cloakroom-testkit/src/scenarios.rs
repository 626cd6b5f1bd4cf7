//! HTTP scenarios run the same way on every networked store.

use crate::{Adapter, MemcachedServer, RedisServer, TestServer};
use cloakroom::SessionManager;
use std::time::{Duration, Instant};

/// A store server a test can crash and bring back.
pub trait Restartable {
    /// Kills the server, as a crash would.
    fn kill(&mut self);
    /// Starts it again on the same port, empty.
    fn restart(&mut self);
}

impl Restartable for RedisServer {
    fn kill(&mut self) {
        RedisServer::kill(self);
    }
    fn restart(&mut self) {
        RedisServer::restart(self);
    }
}

impl Restartable for MemcachedServer {
    fn kill(&mut self) {
        MemcachedServer::kill(self);
    }
    fn restart(&mut self) {
        MemcachedServer::restart(self);
    }
}

/// `n` concurrent requests on one session, each setting its own name,
/// leave all `n` names.
pub async fn concurrent_names_survive(adapter: Adapter, manager: SessionManager, n: usize) {
    let srv = TestServer::serve(adapter, manager).await;
    let c = srv.client();
    c.get("/set?seed=1").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let c = c.clone();
        tasks.spawn(async move { c.get(&format!("/set?name{i:03}={i}")).await.status });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.expect("request task"), 200);
    }
    let keys = c.get("/keys").await.body;
    assert_eq!(keys.split(',').count(), n + 1, "{keys}");
    for i in 0..n {
        assert!(keys.contains(&format!("name{i:03}")), "name{i:03} lost");
    }
}

/// Concurrent requests incrementing one counter lose no increment, and a
/// request sees its own increment.
pub async fn concurrent_increments_all_count(adapter: Adapter, manager: SessionManager, n: usize) {
    let srv = TestServer::serve(adapter, manager).await;
    let c = srv.client();
    assert_eq!(
        c.get("/incr").await.body,
        "1 1",
        "first increment on a new session"
    );
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let c = c.clone();
        tasks.spawn(async move { c.get("/incr").await.body });
    }
    let mut values = Vec::new();
    while let Some(body) = tasks.join_next().await {
        let body = body.expect("request task");
        let (n, seen) = body.split_once(' ').expect("two numbers");
        assert_eq!(n, seen, "a request reads back its own increment");
        values.push(n.parse::<usize>().expect("a number"));
    }
    values.sort_unstable();
    assert_eq!(values, (2..=n + 1).collect::<Vec<_>>());
}

/// With the store down, session calls fail with a 503 at once, under a
/// second whatever the store timeout (reads from the handler's `?`,
/// writes from the commit), no
/// cookie is set, and routes that do not use the session still work. After
/// a restart, sessions work again without restarting the app.
pub async fn outage_and_recovery(
    server: &mut impl Restartable,
    adapter: Adapter,
    manager: SessionManager,
    timeout: Duration,
) {
    let srv = TestServer::serve(adapter, manager).await;
    let c = srv.client();
    c.get("/?name=alice").await;
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
    server.kill();

    for path in ["/detail", "/?name=bob", "/read-write", "/take?name=x"] {
        let started = Instant::now();
        let r = c.get(path).await;
        let took = started.elapsed();
        assert_eq!(r.status, 503, "{path}: {}", r.body);
        assert!(
            r.body.starts_with("session store unavailable"),
            "{}",
            r.body
        );
        assert!(r.set_cookies().is_empty(), "{path} set a cookie");
        // The connection is refused: no waiting for the timeout.
        assert!(
            took < timeout.min(Duration::from_secs(1)),
            "{path} took {took:?}"
        );
    }
    assert_eq!(c.get("/untouched").await.status, 200);

    server.restart();
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
