//! A configuration connects the store it names, with its settings applied,
//! on real servers.

use cloakroom::SessionLayer;
use cloakroom_config::{Config, Engine};
use cloakroom_testkit::{MemcachedServer, RedisServer, TestServer, app};

const SECRET: &str = "config test secret, long enough to sign";

fn config(toml: &str) -> Config {
    // Top-level keys first: `toml` may open `[storage]`.
    let text = format!("cookie_secret = {SECRET:?}\n{toml}\n[cookies]\nsecure = false\n");
    Config::from_toml(&text).unwrap()
}

async fn seed_flow(layer: SessionLayer) {
    let srv = TestServer::start(app(layer)).await;
    let c = srv.client();
    c.get("/?name=alice").await;
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
}

#[tokio::test]
async fn password_acl_user_database_and_prefix_reach_redis() {
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
    let storage = |user: Option<&str>, password: &str| {
        let user = user.map_or(String::new(), |u| format!("username = {u:?}\n"));
        config(&format!(
            "[storage]\nport = {}\n{user}password = {password:?}\ndb_sessions = 4\n\
             prefix = 'myapp'\ntimeout_ms = 1000\n",
            redis.port
        ))
    };
    let wrong = storage(Some("app"), "wrong");
    assert_eq!(wrong.effective_engine().unwrap(), Engine::Memory);
    let wrong = Config {
        engine: Engine::Redis,
        ..wrong
    };
    assert!(
        wrong.build::<SessionLayer>().await.is_err(),
        "a wrong password is refused"
    );

    for (user, password) in [(None, "default-pass"), (Some("app"), "app-pass")] {
        let config = Config {
            engine: Engine::Redis,
            ..storage(user, password)
        };
        seed_flow(config.build().await.unwrap()).await;
    }
    let keys = redis.cli(&[
        "--user", "app", "--pass", "app-pass", "-n", "4", "KEYS", "*",
    ]);
    assert_eq!(keys.lines().count(), 2, "{keys}");
    assert!(keys.lines().all(|k| k.starts_with("myapp:{")), "{keys}");
}

#[tokio::test]
async fn a_url_picks_the_engine_whatever_engine_says() {
    let redis = RedisServer::start();
    let memcached = MemcachedServer::start();
    let on_redis = config(&format!(
        "engine = 'memcached'\n[storage]\nurl = {:?}\n",
        redis.url()
    ));
    assert_eq!(on_redis.effective_engine().unwrap(), Engine::Redis);
    seed_flow(on_redis.build().await.unwrap()).await;
    assert_eq!(redis.cli(&["DBSIZE"]).trim(), "1");

    let on_memcached = config(&format!(
        "engine = 'redis'\n[storage]\nurl = 'memcache://127.0.0.1:{}'\n",
        memcached.port
    ));
    assert_eq!(on_memcached.effective_engine().unwrap(), Engine::Memcached);
    seed_flow(on_memcached.build().await.unwrap()).await;
    assert!(memcached.stat("curr_items") >= 1);
    assert_eq!(redis.cli(&["DBSIZE"]).trim(), "1", "nothing more on Redis");
}

#[tokio::test]
async fn the_memory_engine_needs_no_server_and_a_bad_scheme_is_named() {
    seed_flow(config("").build().await.unwrap()).await;
    let err = config("[storage]\nurl = 'mongodb://x'\n")
        .build::<SessionLayer>()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("mongodb"), "{err}");
}

/// `engine = "postgres"` with the separate keys (host, port, username,
/// database, schema) reaches a real PostgreSQL, and the sessions land in
/// the schema it names; a `postgres://` URL does the same.
#[tokio::test]
async fn postgres_keys_and_urls_reach_the_database() {
    let pg = cloakroom_testkit::PostgresServer::shared();
    pg.psql("CREATE DATABASE cfgtest");
    let keyed = config(&format!(
        "engine = 'postgres'\n[storage]\nport = {}\nusername = 'postgres'\n\
         database = 'cfgtest'\nschema = 'keyed'\ncleanup_interval_secs = 0\n",
        pg.port
    ));
    assert_eq!(keyed.effective_engine().unwrap(), Engine::Postgres);
    seed_flow(keyed.build().await.unwrap()).await;
    let count = pg.psql_in("cfgtest", "SELECT count(*) FROM keyed.sessions");
    assert_eq!(count, "1");

    let url = pg.schema_url();
    let by_url = config(&format!("[storage]\nurl = {url:?}\n"));
    assert_eq!(by_url.effective_engine().unwrap(), Engine::Postgres);
    seed_flow(by_url.build().await.unwrap()).await;
}

/// `engine = "sqlite"` with `storage.path`, and `sqlite://` URLs.
#[tokio::test]
async fn sqlite_path_and_url_open_the_file() {
    let dir = std::env::temp_dir().join(format!("cloakroom-config-sqlite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("by-path.db");
    let keyed = config(&format!("engine = 'sqlite'\n[storage]\npath = {file:?}\n"));
    seed_flow(keyed.build().await.unwrap()).await;
    assert!(file.is_file());
    let url = format!("sqlite://{}", dir.join("by-url.db").display());
    let by_url = config(&format!("[storage]\nurl = {url:?}\n"));
    assert_eq!(by_url.effective_engine().unwrap(), Engine::Sqlite);
    seed_flow(by_url.build().await.unwrap()).await;
    assert!(dir.join("by-url.db").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `storage.max_item_bytes` reaches the Memcached store: a write that
/// would make the session's item larger is a `413`, and the session is
/// kept; 0 is refused, naming the key.
#[tokio::test]
async fn max_item_bytes_reaches_memcached() {
    let memcached = MemcachedServer::start();
    let small = config(&format!(
        "[storage]\nurl = 'memcache://127.0.0.1:{}'\nmax_item_bytes = 300\n",
        memcached.port
    ));
    let srv = TestServer::start(app(small.build().await.unwrap())).await;
    let c = srv.client();
    c.get("/?name=alice").await;
    let big = "x".repeat(400);
    assert_eq!(c.get(&format!("/set?big={big}")).await.status, 413);
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");

    let zero = config(&format!(
        "[storage]\nurl = 'memcache://127.0.0.1:{}'\nmax_item_bytes = 0\n",
        memcached.port
    ));
    let err = zero.build::<SessionLayer>().await.unwrap_err().to_string();
    assert!(err.contains("storage.max_item_bytes"), "{err}");
}
