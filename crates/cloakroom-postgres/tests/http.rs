//! The session layer on a real PostgreSQL: the shared HTTP suite, the
//! statements per request counted in the server's own log, 200 concurrent
//! writers, and a crash of the server.

use cloakroom::{CookieConfig, KeyRing, SessionManager};
use cloakroom_postgres::{PostgresConfig, PostgresStore};
use cloakroom_testkit::counted::Counted;
use cloakroom_testkit::http_suite::HttpFixture;
use cloakroom_testkit::{Adapter, PostgresServer, TestServer, scenarios};
use std::time::{Duration, Instant};

fn config(url: &str, timeout: Duration) -> PostgresConfig {
    PostgresConfig::from_url(url)
        .expect("a valid URL")
        .timeout(timeout)
}

async fn connect(url: &str, timeout: Duration) -> PostgresStore {
    PostgresStore::connect(config(url, timeout))
        .await
        .expect("connect")
}

fn manager(store: PostgresStore) -> SessionManager {
    SessionManager::builder(store, KeyRing::new(["p".repeat(32)]).expect("a key"))
        .cookie(CookieConfig::default().secure(false))
        .build()
        .expect("valid settings")
}

/// The shared HTTP scenarios, each in a schema of its own.
mod suite {
    use super::*;

    async fn postgres() -> ((), HttpFixture) {
        let url = PostgresServer::shared().schema_url();
        let store = Counted::new(connect(&url, Duration::from_secs(5)).await);
        let counts = store.counts.clone();
        let fixture = HttpFixture::new(
            move |keys| SessionManager::builder(store.clone(), keys),
            counts,
        );
        ((), fixture)
    }

    cloakroom_testkit::http_tests!(postgres().await);
}

cloakroom_testkit::adapter_tests!(
    statements_per_request_are_0_1_1_1,
    two_hundred_concurrent_requests_keep_all_names,
    concurrent_increments_all_count,
    a_crash_gives_503_at_once_and_sessions_survive_the_restart,
);

async fn statements_per_request_are_0_1_1_1(adapter: Adapter) {
    let server = PostgresServer::shared();
    let url = server.schema_url();
    let store = connect(&url, Duration::from_secs(5)).await;
    let schema = format!("\"{}\".", store.schema());
    let srv = TestServer::serve(adapter, manager(store)).await;
    let c = srv.client();

    let create = server.statements(&schema, c.get("/?name=alice")).await;
    let untouched = server.statements(&schema, c.get("/untouched")).await;
    let read = server.statements(&schema, c.get("/detail")).await;
    let write = server.statements(&schema, c.get("/?name=bob")).await;
    let read_write = server.statements(&schema, c.get("/read-write")).await;
    let anonymous_read = server
        .statements(&schema, srv.client().get("/detail"))
        .await;
    assert_eq!(
        (untouched, read, write, create, read_write, anonymous_read),
        (0, 1, 1, 1, 2, 0),
        "untouched, read, write, create, read+write, read without a cookie"
    );
    assert_eq!(c.get("/detail").await.body, "detail get ok! bob");

    // A sign-in costs one more statement (the user's index), nothing else.
    let signin = server
        .statements(&schema, c.get("/signin?name=alice"))
        .await;
    let read = server.statements(&schema, c.get("/detail")).await;
    let write = server.statements(&schema, c.get("/?name=carol")).await;
    assert_eq!(
        (signin, read, write),
        (2, 1, 1),
        "bound: sign-in, read, write"
    );
}

async fn two_hundred_concurrent_requests_keep_all_names(adapter: Adapter) {
    let url = PostgresServer::shared().schema_url();
    let store = connect(&url, Duration::from_secs(10)).await;
    scenarios::concurrent_names_survive(adapter, manager(store), 200).await;
}

async fn concurrent_increments_all_count(adapter: Adapter) {
    let url = PostgresServer::shared().schema_url();
    let store = connect(&url, Duration::from_secs(10)).await;
    scenarios::concurrent_increments_all_count(adapter, manager(store), 100).await;
}

/// PostgreSQL is durable: unlike Redis without persistence, a crash and a
/// restart keep the sessions. While it is down, session routes answer 503
/// at once (the connection is refused) and untouched routes still work.
async fn a_crash_gives_503_at_once_and_sessions_survive_the_restart(adapter: Adapter) {
    let mut server = PostgresServer::start();
    let timeout = Duration::from_secs(3);
    let store = connect(&server.url(), timeout).await;
    let srv = TestServer::serve(adapter, manager(store)).await;
    let c = srv.client();
    c.get("/?name=alice").await;
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");

    server.kill();
    for path in ["/detail", "/?name=bob", "/read-write", "/take?name=x"] {
        let started = Instant::now();
        let r = c.get(path).await;
        assert_eq!(r.status, 503, "{path}: {}", r.body);
        assert!(r.set_cookies().is_empty(), "{path} set a cookie");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "{path} took {took:?}");
    }
    assert_eq!(c.get("/untouched").await.status, 200);

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = c.get("/detail").await;
        if r.status == 200 {
            assert_eq!(r.body, "detail get ok! alice", "the session survived");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery: {} {}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.get("/?name=carol").await.status, 200);
    assert_eq!(c.get("/detail").await.body, "detail get ok! carol");
}
