//! `cloakroom serve` with `[pycket]`: the seed demo beside the seed's own
//! Tornado app, on one redis-server.

use cloakroom_testkit::tornado::TornadoSeed;
use cloakroom_testkit::{AppProcess, RedisServer};
use std::process::Command;

const TORNADO_SECRET: &str = "the Tornado app's cookie secret";

/// `cloakroom serve` on `store` (default: memory), with its own cookie
/// secret, the Tornado app's secret for `[pycket]`, and `env`.
async fn demo(env: &[(&str, &str)], store: Option<&str>) -> AppProcess {
    let mut cmd = AppProcess::command(env!("CARGO_BIN_EXE_cloakroom"));
    cmd.arg("serve")
        .env(
            "CLOAKROOM_COOKIE_SECRET",
            "the demo's own secret, long enough to sign",
        )
        .env("CLOAKROOM_PYCKET_COOKIE_SECRET", TORNADO_SECRET)
        .envs(env.iter().copied());
    if let Some(store) = store {
        cmd.args(["--store", store]);
    }
    AppProcess::start(cmd).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_in_migrate_mode_carries_a_tornado_user_over() {
    let redis = RedisServer::start();
    let tornado = TornadoSeed::start(&redis, TORNADO_SECRET).await;
    let demo = demo(&[("CLOAKROOM_PYCKET_MODE", "migrate")], Some(&redis.url())).await;

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

/// `cloakroom serve` in share mode beside the seed's Tornado app, on one
/// redis-server: either app serves any request of one user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_share_mode_tornado_and_the_demo_serve_the_same_users() {
    let redis = RedisServer::start();
    let tornado = TornadoSeed::start(&redis, TORNADO_SECRET).await;
    let demo = demo(&[("CLOAKROOM_PYCKET_MODE", "share")], Some(&redis.url())).await;

    // Signed in on Tornado: the Rust service reads the user.
    let on_tornado = tornado.client();
    assert_eq!(on_tornado.get("/?name=alice").await.body, "index get ok!");
    let pycket_id = on_tornado.cookie("PYCKET_ID").expect("a PYCKET_ID");
    let on_rust = demo.client();
    on_rust.set_cookie("PYCKET_ID", &pycket_id);
    assert_eq!(on_rust.get("/detail").await.body, "detail get ok! alice");
    // A value set in Rust is what Tornado's self.session.get returns.
    assert_eq!(on_rust.get("/?name=alice-2").await.body, "index get ok!");
    assert!(
        on_rust.cookie("PYCKET_ID") == Some(pycket_id.clone()),
        "same cookie"
    );
    assert_eq!(
        on_tornado.get("/detail").await.body,
        "detail get ok! alice-2"
    );

    // A session the Rust service creates: a PYCKET_ID that Tornado takes.
    let new_on_rust = demo.client();
    let r = new_on_rust.get("/?name=bob").await;
    let set_cookie = r.set_cookies().join("\n");
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    // Persistent, as Tornado's set_secure_cookie makes it: 30 days.
    assert!(set_cookie.contains("Max-Age=2592000"), "{set_cookie}");
    // Never cached, as Cloakroom's own responses that set a cookie.
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(r.header("vary").as_deref(), Some("cookie"));
    // A read is private to its user; an untouched route says nothing.
    let read = new_on_rust.get("/detail").await;
    assert_eq!(read.body, "detail get ok! bob");
    assert_eq!(read.header("cache-control").as_deref(), Some("private"));
    assert_eq!(read.header("vary").as_deref(), Some("cookie"));
    let untouched = new_on_rust.get("/health").await;
    assert_eq!(untouched.header("cache-control"), None);
    assert_eq!(untouched.header("vary"), None);
    let created = new_on_rust
        .cookie("PYCKET_ID")
        .expect("a PYCKET_ID from Rust");
    let same_on_tornado = tornado.client();
    same_on_tornado.set_cookie("PYCKET_ID", &created);
    assert_eq!(
        same_on_tornado.get("/detail").await.body,
        "detail get ok! bob"
    );

    // Notifications are read once, by whichever app reads first.
    assert_eq!(on_tornado.get("/notify?msg=hello").await.body, "notified");
    assert_eq!(on_rust.get("/flash").await.body, "flash: hello");
    assert_eq!(on_tornado.get("/flash").await.body, "flash: None");
    assert_eq!(on_rust.get("/notify?msg=back").await.body, "notified");
    assert_eq!(on_tornado.get("/flash").await.body, "flash: back");
    assert_eq!(on_rust.get("/flash").await.body, "flash: None");

    // Writes keep pycket's TTL (a day, pushed on every write).
    let keys = redis.cli(&["-n", "0", "KEYS", "*"]);
    for key in keys.lines() {
        let ttl: u64 = redis.cli(&["-n", "0", "TTL", key]).parse().expect("a TTL");
        assert!((86_300..=86_400).contains(&ttl), "{key}: {ttl}");
    }
    assert_eq!(
        keys.lines().count(),
        2,
        "alice and bob, nothing else: {keys}"
    );

    // A forged or tampered PYCKET_ID is no session, and reads nothing.
    let forged = demo.client();
    let mut tampered = pycket_id.clone();
    let last = tampered.pop();
    tampered.push(if last == Some('0') { '1' } else { '0' });
    forged.set_cookie("PYCKET_ID", &tampered);
    let reads = redis.round_trips(forged.get("/detail")).await;
    assert_eq!(reads, 0);
    assert_eq!(forged.get("/detail").await.body, "detail get ok! None");
    demo.stop();
}

/// Runs `cloakroom pycket import` against `redis` and returns its stdout.
fn bulk_import(redis: &RedisServer, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["pycket", "import", "--store", &redis.url(), "--batch", "2"])
        .args(extra)
        .env("CLOAKROOM_PYCKET_COOKIE_SECRET", TORNADO_SECRET)
        .output()
        .expect("run cloakroom pycket import");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `cloakroom pycket import` moves every Tornado user's session (values
/// and unread notifications) into Cloakroom ahead of the visit; a run
/// again imports nothing twice; an unreadable pickle is counted and runs
/// nothing; and the user's first request with `PYCKET_ID` takes the
/// prepared session over, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_import_carries_every_tornado_user_over_before_they_come() {
    let redis = RedisServer::start();
    let tornado = TornadoSeed::start(&redis, TORNADO_SECRET).await;
    let alice = tornado.client();
    assert_eq!(alice.get("/?name=alice").await.body, "index get ok!");
    assert_eq!(alice.get("/notify?msg=welcome").await.body, "notified");
    let bob = tornado.client();
    assert_eq!(bob.get("/?name=bob").await.body, "index get ok!");
    // A pickle that would create a file if anything executed it.
    let marker = std::env::temp_dir().join(format!("cloakroom-bulk-{}", std::process::id()));
    let script = format!(
        "import os, pickle, redis\n\
         class Evil:\n    def __reduce__(self):\n        return (os.system, ('touch {}',))\n\
         redis.Redis(port={}, db=0).set('0b8f3c1e-2d4a-4c6b-9e8f-a1b2c3d4e5f6', pickle.dumps({{'x': Evil()}}))\n",
        marker.display(),
        redis.port
    );
    let status = Command::new(cloakroom_testkit::tornado::python())
        .args(["-c", &script])
        .status()
        .expect("run python");
    assert!(status.success());

    assert_eq!(
        bulk_import(&redis, &[]),
        "imported 2, skipped 0, unreadable 1"
    );
    assert!(!marker.exists(), "the pickle ran code");
    assert_eq!(
        bulk_import(&redis, &[]),
        "imported 0, skipped 2, unreadable 1",
        "a second run imports nothing twice"
    );

    let demo = demo(&[("CLOAKROOM_PYCKET_MODE", "migrate")], Some(&redis.url())).await;
    let pycket_id = alice.cookie("PYCKET_ID").expect("a PYCKET_ID");
    let c = demo.client();
    c.set_cookie("PYCKET_ID", &pycket_id);
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
    assert!(c.cookie("id").is_some(), "a Cloakroom cookie now");
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
    // The same PYCKET_ID without the Cloakroom cookie: taken over once.
    let again = demo.client();
    again.set_cookie("PYCKET_ID", &pycket_id);
    assert_eq!(again.get("/detail").await.body, "detail get ok! None");
    let log = demo.stop();
    assert!(
        log.contains("took over a pycket session imported ahead of time"),
        "{log}"
    );
    assert!(
        !log.contains("imported a pycket session"),
        "no pickle read: {log}"
    );
    // The notification moved with the session: pycket has it no more.
    assert_eq!(alice.get("/flash").await.body, "flash: None");
    assert_eq!(redis.cli(&["-n", "1", "DBSIZE"]), "0");
}

/// An import that finds nothing says where it looked, and that
/// `pycket.db_sessions` may be elsewhere.
#[test]
fn an_import_that_finds_nothing_says_where_it_looked() {
    let redis = RedisServer::start();
    let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["pycket", "import", "--store", &redis.url()])
        .env("CLOAKROOM_PYCKET_COOKIE_SECRET", TORNADO_SECRET)
        .output()
        .expect("run cloakroom pycket import");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "imported 0, skipped 0, unreadable 0"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no pycket session found"), "{err}");
    assert!(err.contains("db_sessions=0"), "{err}");
}

/// `--delete` removes each pycket session once imported, and those a run
/// without it imported before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_import_with_delete_leaves_no_pickle_behind() {
    let redis = RedisServer::start();
    let tornado = TornadoSeed::start(&redis, TORNADO_SECRET).await;
    let carol = tornado.client();
    carol.get("/?name=carol").await;
    assert_eq!(
        bulk_import(&redis, &[]),
        "imported 1, skipped 0, unreadable 0"
    );
    let dave = tornado.client();
    dave.get("/?name=dave").await;
    assert_eq!(
        bulk_import(&redis, &["--delete"]),
        "imported 1, skipped 1, unreadable 0"
    );
    // Only the import record is left in pycket's database, beside
    // Cloakroom's own keys (the demo's store is the same Redis).
    let keys = redis.cli(&["-n", "0", "KEYS", "*"]);
    assert!(
        keys.lines()
            .all(|k| k.starts_with("cloakroom:imported:") || k.starts_with("cr:")),
        "{keys}"
    );
    assert_eq!(carol.get("/detail").await.body, "detail get ok! None");
    assert_eq!(dave.get("/detail").await.body, "detail get ok! None");
}

/// Migrate mode from pycket's Memcached engine: `pycket.url` names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_imports_tornado_users_from_pycket_on_memcached() {
    let memcached = cloakroom_testkit::MemcachedServer::start();
    let tornado = TornadoSeed::start_on_memcached(&memcached, TORNADO_SECRET).await;
    let url = memcached.url();
    let env = [
        ("CLOAKROOM_PYCKET_MODE", "migrate"),
        ("CLOAKROOM_PYCKET_URL", url.as_str()),
    ];
    let demo = demo(&env, None).await;
    let browser = tornado.client();
    assert_eq!(browser.get("/?name=carol").await.body, "index get ok!");
    let c = demo.client();
    c.set_cookie(
        "PYCKET_ID",
        &browser.cookie("PYCKET_ID").expect("a PYCKET_ID"),
    );
    assert_eq!(c.get("/detail").await.body, "detail get ok! carol");
    assert!(c.cookie("id").is_some(), "a Cloakroom cookie now");
    let log = demo.stop();
    assert!(log.contains("from Memcached"), "{log}");
}

/// A Tornado secret that is not the Tornado app's: every Tornado user
/// looks signed out, and the log says why (in either mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_tornado_secret_is_logged() {
    let redis = RedisServer::start();
    let tornado = TornadoSeed::start(&redis, TORNADO_SECRET).await;
    let browser = tornado.client();
    assert_eq!(browser.get("/?name=alice").await.body, "index get ok!");
    let pycket_id = browser.cookie("PYCKET_ID").expect("a PYCKET_ID");
    for mode in ["share", "migrate"] {
        let env = [
            ("CLOAKROOM_PYCKET_MODE", mode),
            (
                "CLOAKROOM_PYCKET_COOKIE_SECRET",
                "not the Tornado app's secret",
            ),
        ];
        let demo = demo(&env, Some(&redis.url())).await;
        let c = demo.client();
        c.set_cookie("PYCKET_ID", &pycket_id);
        assert_eq!(c.get("/detail").await.body, "detail get ok! None", "{mode}");
        let log = demo.stop();
        assert!(
            log.contains("a PYCKET_ID failed verification"),
            "{mode}: {log}"
        );
    }
}

/// pycket's `cookies.expires_days`, as `pycket.expires_days`: a
/// `PYCKET_ID` that share mode makes lasts as long as Tornado's would; `0`
/// keeps it to the browser session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_mode_cookies_last_as_pycket_says() {
    let redis = RedisServer::start();
    for (days, expected) in [("120", Some("Max-Age=10368000")), ("0", None)] {
        let env = [
            ("CLOAKROOM_PYCKET_MODE", "share"),
            ("CLOAKROOM_PYCKET_EXPIRES_DAYS", days),
        ];
        let demo = demo(&env, Some(&redis.url())).await;
        let r = demo.client().get("/?name=erin").await;
        let set_cookie = r.set_cookies().join("\n");
        assert!(set_cookie.contains("PYCKET_ID="), "{set_cookie}");
        match expected {
            Some(max_age) => assert!(set_cookie.contains(max_age), "{set_cookie}"),
            None => assert!(!set_cookie.contains("Max-Age"), "{set_cookie}"),
        }
        demo.stop();
    }
}
