//! The `cloakroom` binary itself: started as a process, driven over HTTP.

use cloakroom_testkit::AppProcess;
use std::process::Command;
use std::time::{Duration, Instant};

/// The demo binary, serving on a free port: `serve` with `extra`
/// arguments and `env` variables, logging at `info`.
struct Demo;

impl Demo {
    async fn start(extra: &[&str], env: &[(&str, &str)]) -> AppProcess {
        let mut cmd = AppProcess::command(env!("CARGO_BIN_EXE_cloakroom"));
        cmd.arg("serve")
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR");
        for (k, v) in env {
            cmd.env(k, v);
        }
        AppProcess::start(cmd).await
    }
}

#[tokio::test]
async fn seed_demo_round_trip_on_the_default_store() {
    let demo = Demo::start(&[], &[]).await;
    let c = demo.client();
    let r = c.get("/?name=alice").await;
    assert_eq!((r.status, r.body.as_str()), (200, "index get ok!"));
    assert!(
        !r.set_cookies()[0].contains("Secure"),
        "loopback demo turns Secure off"
    );
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
    let fresh = demo.client().get("/detail").await;
    assert_eq!(fresh.body, "detail get ok! None");
    assert!(fresh.set_cookies().is_empty());
    let log = demo.stop();
    assert!(log.contains("Secure flag is OFF"), "{log}");
    assert!(log.contains("no cookie_secret configured"), "{log}");
    // The log goes to a pipe here, as to a file or a collector: no colour.
    assert!(
        !log.contains('\x1b'),
        "ANSI codes in a non-terminal log: {log:?}"
    );
}

#[tokio::test]
async fn missing_name_is_a_400_with_a_message() {
    let demo = Demo::start(&[], &[]).await;
    for path in ["/", "/?name=", "/login"] {
        let r = demo.client().get(path).await;
        assert_eq!(r.status, 400, "{path}");
        assert!(r.body.contains("missing query parameter: name"), "{path}");
        assert!(r.set_cookies().is_empty());
    }
    demo.stop();
}

#[tokio::test]
async fn login_cycles_the_id_and_logout_kills_it() {
    let demo = Demo::start(&[], &[]).await;
    let c = demo.client();
    c.get("/?name=guest").await;
    let pre_login = c.cookie("id").unwrap();
    let r = c.get("/login?name=alice").await;
    assert_eq!(r.body, "login ok!");
    let logged_in = c.cookie("id").unwrap();
    assert_ne!(pre_login, logged_in);
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");

    let replay = demo.client();
    replay.set_cookie("id", &pre_login);
    assert_eq!(replay.get("/detail").await.body, "detail get ok! None");

    let r = c.get("/logout").await;
    assert!(r.set_cookies()[0].contains("Max-Age=0"));
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    assert!(c.cookie("id").is_none());
    let replay = demo.client();
    replay.set_cookie("id", &logged_in);
    assert_eq!(replay.get("/detail").await.body, "detail get ok! None");
    demo.stop();
}

/// With `cookie_secret` set and a store that outlives the process
/// (SQLite here), a browser's cookie still opens its session after the
/// app restarts; under another secret, the same cookie is no session.
#[tokio::test]
async fn a_configured_secret_keeps_sessions_across_a_restart() {
    let dir = std::env::temp_dir().join(format!(
        "cloakroom-demo-restart-{}-{}",
        std::process::id(),
        cloakroom_testkit::free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("sessions.db");
    let db = db.to_str().unwrap();
    let env = |secret| {
        [
            ("CLOAKROOM_COOKIE_SECRET", secret),
            ("CLOAKROOM_COOKIES_NAME", "sid"),
            ("CLOAKROOM_ENGINE", "sqlite"),
            ("CLOAKROOM_STORAGE_PATH", db),
        ]
    };
    let secret = "a demo secret that is long enough!!";

    let demo = Demo::start(&[], &env(secret)).await;
    let c = demo.client();
    let r = c.get("/?name=alice").await;
    assert!(r.set_cookies()[0].starts_with("sid="));
    let cookie = c.cookie("sid").expect("the session cookie");
    let log = demo.stop();
    assert!(!log.contains("no cookie_secret configured"), "{log}");

    let again = Demo::start(&[], &env(secret)).await;
    let browser = again.client();
    browser.set_cookie("sid", &cookie);
    assert_eq!(browser.get("/detail").await.body, "detail get ok! alice");
    again.stop();

    let other = Demo::start(&[], &env("another secret, also long enough!!")).await;
    let browser = other.client();
    browser.set_cookie("sid", &cookie);
    assert_eq!(browser.get("/detail").await.body, "detail get ok! None");
    other.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_configuration_stops_start_up_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("cloakroom-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("[storage]\nhots = 'x'\n", "hots"),
        ("[cookies]\nsame_site = 'often'\n", "cookies.same_site"),
        ("engine = 'mysql'\n", "mysql"),
        ("cookie_secret = 'short'\n", "cookie_secret"),
        (
            "[expiry]\nidle_timeout_secs = 'ten'\n",
            "expiry.idle_timeout_secs",
        ),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "expected {key:?} in {err}");
        // A configuration that does not build says only what is wrong.
        assert!(!err.contains("Secure flag is OFF"), "{err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["serve", "--listen", "127.0.0.1:0", "--store", "ftp://x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ftp"), "{err}");
    assert!(!err.contains("Secure flag is OFF"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn seed_demo_on_redis_via_store_url_and_config() {
    let mut redis = cloakroom_testkit::RedisServer::start();
    let demo = Demo::start(&["--store", &format!("{}/3", redis.url())], &[]).await;
    let c = demo.client();
    assert_eq!(c.get("/?name=alice").await.body, "index get ok!");
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
    assert_eq!(redis.cli(&["-n", "3", "DBSIZE"]), "1");
    demo.stop();

    // pycket-style: engine + [storage] keys, from the environment.
    let port = redis.port.to_string();
    let env = [
        ("CLOAKROOM_ENGINE", "redis"),
        ("CLOAKROOM_STORAGE_PORT", port.as_str()),
        ("CLOAKROOM_STORAGE_DB_SESSIONS", "5"),
    ];
    let demo = Demo::start(&[], &env).await;
    let c = demo.client();
    c.get("/?name=bob").await;
    assert_eq!(c.get("/detail").await.body, "detail get ok! bob");
    assert_eq!(redis.cli(&["-n", "5", "DBSIZE"]), "1");

    // An outage: 503s with a short body, and each distinct failure logged
    // once: four failed calls, at most two lines (the first call may find
    // the connection broken; the others are refused).
    redis.kill();
    let r = c.get("/detail").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "session store unavailable\n")
    );
    for _ in 0..3 {
        let r = demo.client().get("/?name=carol").await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (503, "session store unavailable\n")
        );
    }
    let log = demo.stop();
    let lines = log.matches("session store call failed").count();
    assert!((1..=2).contains(&lines), "{log}");
    assert!(log.matches("Connection refused").count() <= 1, "{log}");
    assert!(!log.contains("session error returned by handler"), "{log}");
}

#[tokio::test]
async fn seed_demo_on_a_three_master_redis_cluster() {
    let cluster = cloakroom_testkit::RedisCluster::start(3);
    let demo = Demo::start(&["--store", &cluster.url()], &[]).await;
    for i in 0..12 {
        let c = demo.client();
        assert_eq!(c.get(&format!("/?name=u{i}")).await.body, "index get ok!");
        assert_eq!(c.get("/detail").await.body, format!("detail get ok! u{i}"));
    }
    let holding: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|n| n.cli(&["DBSIZE"]).parse().unwrap())
        .collect();
    assert_eq!(holding.iter().sum::<u64>(), 12);
    assert!(
        holding.iter().filter(|n| **n > 0).count() >= 2,
        "{holding:?}"
    );
    demo.stop();
}

#[tokio::test]
async fn seed_demo_on_memcached() {
    let memcached = cloakroom_testkit::MemcachedServer::start();
    let demo = Demo::start(&["--store", &memcached.url()], &[]).await;
    let c = demo.client();
    assert_eq!(c.get("/?name=alice").await.body, "index get ok!");
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
    demo.stop();
}

/// The store may come up after the app (containers boot in any order):
/// the demo starts anyway, answers 503 at once on session routes and 200
/// on the others, and connects by itself when the store is up.
async fn starts_while_the_store_is_down(
    server: &mut impl cloakroom_testkit::scenarios::Restartable,
    url: &str,
) {
    server.kill();
    // A long store timeout: a refused connection must not wait for it.
    let demo = Demo::start(
        &["--store", url],
        &[("CLOAKROOM_STORAGE_TIMEOUT_MS", "5000")],
    )
    .await;
    let c = demo.client();
    assert_eq!(c.get("/health").await.status, 200);
    for _ in 0..3 {
        let started = Instant::now();
        let r = c.get("/?name=alice").await;
        let took = started.elapsed();
        assert_eq!(
            (r.status, r.body.as_str()),
            (503, "session store unavailable\n")
        );
        assert!(
            took < Duration::from_secs(1),
            "a refused connection took {took:?}"
        );
    }
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.get("/?name=alice").await;
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never connected: {}", r.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
    let log = demo.stop();
    assert!(log.contains("not reachable yet"), "{log}");
    assert!(log.contains("session store recovered"), "{log}");
    // Three failed calls of one kind: one line, not three.
    let failures = log.matches("session store call failed").count();
    assert!((1..=2).contains(&failures), "{failures} lines: {log}");
}

#[tokio::test]
async fn starts_while_redis_is_down_and_connects_when_it_is_up() {
    let mut redis = cloakroom_testkit::RedisServer::start();
    let url = redis.url();
    starts_while_the_store_is_down(&mut redis, &url).await;
}

#[tokio::test]
async fn starts_while_memcached_is_down_and_connects_when_it_is_up() {
    let mut memcached = cloakroom_testkit::MemcachedServer::start();
    let url = memcached.url();
    starts_while_the_store_is_down(&mut memcached, &url).await;
}
