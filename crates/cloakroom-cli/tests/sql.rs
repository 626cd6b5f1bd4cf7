//! `cloakroom serve` on the SQL stores, and `cloakroom sql schema`.

use cloakroom_testkit::{AppProcess, PostgresServer};
use std::path::PathBuf;
use std::process::Command;

const SECRET: &str = "a cookie secret that outlives the process, 32+ bytes";

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "cloakroom-cli-sql-{}-{}",
            std::process::id(),
            cloakroom_testkit::free_port()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn serve(dir: &Scratch, store: &str) -> AppProcess {
    let mut cmd = AppProcess::command(env!("CARGO_BIN_EXE_cloakroom"));
    cmd.current_dir(&dir.0)
        .args(["serve", "--store", store])
        .env("CLOAKROOM_COOKIE_SECRET", SECRET);
    AppProcess::start(cmd).await
}

/// The README's promise: `cloakroom serve --store sqlite://sessions.db`
/// keeps sessions across a restart, even one by SIGKILL.
#[tokio::test]
async fn sqlite_sessions_survive_a_restart_of_the_demo() {
    let dir = Scratch::new();
    let first = serve(&dir, "sqlite://sessions.db").await;
    let c = first.client();
    assert_eq!(c.get("/?name=alice").await.body, "index get ok!");
    let cookie = c.cookie("id").expect("a session cookie");
    let log = first.stop();
    assert!(dir.0.join("sessions.db").is_file(), "{log}");

    let second = serve(&dir, "sqlite://sessions.db").await;
    let c = second.client();
    c.set_cookie("id", &cookie);
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
    // The admin command reads the same file beside the running server.
    let count = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .current_dir(&dir.0)
        .args(["sessions", "count", "--store", "sqlite://sessions.db"])
        .output()
        .expect("run cloakroom sessions count");
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "1");
    c.get("/logout").await;
    let replay = second.client();
    replay.set_cookie("id", &cookie);
    assert_eq!(replay.get("/detail").await.body, "detail get ok! None");
    second.stop();
}

/// The seed flow on PostgreSQL, the schema made by the store itself.
#[tokio::test]
async fn the_demo_serves_the_seed_flow_on_postgres() {
    let dir = Scratch::new();
    let server = PostgresServer::shared();
    let url = server.schema_url();
    let demo = serve(&dir, &url).await;
    let c = demo.client();
    assert_eq!(c.get("/?name=alice").await.body, "index get ok!");
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
    let before = c.cookie("id").expect("a cookie");
    c.get("/login?name=bob").await;
    assert_ne!(
        c.cookie("id").expect("a cookie"),
        before,
        "login cycles the id"
    );
    let schema = url.rsplit("schema=").next().expect("a schema");
    let stored = server.psql(&format!("SELECT data ->> 'login' FROM {schema}.sessions"));
    assert_eq!(stored, "\"bob\"", "values are JSON text, readable in SQL");
    demo.stop();
}

/// `cloakroom sql schema` prints SQL that PostgreSQL accepts, and a store
/// told not to create its schema runs on it.
#[tokio::test]
async fn the_printed_schema_is_the_one_the_store_needs() {
    let server = PostgresServer::shared();
    let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["sql", "schema", "--schema", "printed"])
        .output()
        .expect("run cloakroom sql schema");
    assert!(out.status.success());
    let sql = String::from_utf8(out.stdout).expect("UTF-8");
    server.psql(&sql);
    // Applying it twice is harmless.
    server.psql(&sql);
    let config =
        cloakroom_postgres::PostgresConfig::from_url(&format!("{}?schema=printed", server.url()))
            .expect("a URL")
            .create_schema(false);
    let store = cloakroom_postgres::PostgresStore::connect(config)
        .await
        .expect("the printed schema is the needed version");
    let e = cloakroom::ExpiryPolicy::default().at(cloakroom::Timestamp(1_000));
    assert_eq!(cloakroom::Store::count(&store, &e).await.expect("count"), 0);

    // Without the schema, a store that may not create it says so.
    let bare =
        cloakroom_postgres::PostgresConfig::from_url(&format!("{}?schema=absent", server.url()))
            .expect("a URL")
            .create_schema(false);
    let err = cloakroom_postgres::PostgresStore::connect(bare)
        .await
        .expect_err("no schema");
    assert!(err.to_string().contains("cloakroom sql schema"), "{err}");

    let sqlite = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["sql", "schema", "--engine", "sqlite"])
        .output()
        .expect("run cloakroom sql schema");
    let sqlite = String::from_utf8(sqlite.stdout).expect("UTF-8");
    assert!(sqlite.contains("CREATE TABLE IF NOT EXISTS cloakroom_sessions"));
    // A schema name means nothing to SQLite: said, not ignored.
    let named = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["sql", "schema", "--engine", "sqlite", "--schema", "other"])
        .output()
        .expect("run cloakroom sql schema");
    assert!(!named.status.success());
    let err = String::from_utf8_lossy(&named.stderr);
    assert!(err.contains("--schema is for PostgreSQL"), "{err}");
}
