//! `cloakroom sessions …` against a real redis-server and a real Redis
//! Cluster, with sessions made by the demo's `/login` (which binds).

use cloakroom_testkit::{AppProcess, Client, RedisCluster, RedisServer};
use std::process::{Command, Output};

const SECRET: &str = "the sessions test's secret, 32 bytes or more";

/// The demo on `store`, with a fixed secret.
async fn demo(store: &str) -> AppProcess {
    let mut cmd = AppProcess::command(env!("CARGO_BIN_EXE_cloakroom"));
    cmd.args(["serve", "--store", store])
        .env("CLOAKROOM_COOKIE_SECRET", SECRET);
    AppProcess::start(cmd).await
}

/// Signs in as `user` from a new client, whose cookie it keeps.
async fn sign_in(demo: &AppProcess, user: &str, agent: &str) -> Client {
    let c = demo.client();
    let with = vec![("user-agent".to_owned(), agent.to_owned())];
    let r = c.get_with(&format!("/login?name={user}"), &with).await;
    assert_eq!(r.body, "login ok!");
    // get_with leaves the jar alone: keep the new cookie by hand.
    let set = r.set_cookies();
    let value = set[0]
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("id="))
        .expect("a session cookie");
    c.set_cookie("id", value);
    c
}

fn cli() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloakroom"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CLOAKROOM_")) {
        cmd.env_remove(k);
    }
    cmd.env("CLOAKROOM_COOKIE_SECRET", SECRET)
        .env("NO_COLOR", "1");
    cmd
}

fn sessions(store: &str, args: &[&str]) -> Output {
    cli()
        .arg("sessions")
        .args(args)
        .args(["--store", store])
        .output()
        .expect("run cloakroom sessions")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn list_end_and_count(store: &str) {
    let demo = demo(store).await;
    let laptop = sign_in(&demo, "alice", "Firefox on Linux").await;
    let phone = sign_in(&demo, "alice", "Safari on iOS").await;
    let bob = sign_in(&demo, "bob", "Chrome").await;

    // The table, then JSON with RFC 3339 times and the client.
    let table = stdout(&sessions(store, &["list", "--user", "alice"]));
    assert!(table.starts_with("ID"), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.contains("Firefox on Linux") && table.contains("Safari on iOS"));
    let json = stdout(&sessions(store, &["list", "--user", "alice", "--json"]));
    let list: Vec<serde_json::Value> = serde_json::from_str(&json).expect("a JSON array");
    assert_eq!(list.len(), 2);
    for field in [
        "id",
        "created",
        "last_seen",
        "idle_deadline",
        "absolute_deadline",
    ] {
        let value = list[0][field].as_str().unwrap_or_default();
        assert!(!value.is_empty(), "{field} in {json}");
        if field != "id" {
            assert!(
                value.ends_with('Z') && value.contains('T'),
                "{field}: {value}"
            );
        }
    }
    assert_eq!(list[0]["user_agent"], "Firefox on Linux");

    // End all of alice's sessions but the laptop's.
    let keep = list[0]["id"].as_str().unwrap().to_owned();
    let out = stdout(&sessions(
        store,
        &["end", "--user", "alice", "--except", &keep],
    ));
    assert!(out.contains("ended 1"), "{out}");
    assert_eq!(phone.get("/detail").await.body, "detail get ok! None");
    assert_eq!(laptop.get("/detail").await.body, "detail get ok! alice");

    // One by id.
    let out = stdout(&sessions(store, &["end", "--id", &keep]));
    assert!(out.contains(&keep), "{out}");
    assert_eq!(laptop.get("/detail").await.body, "detail get ok! None");

    // An unknown user: one clear line, a non-zero exit; as JSON, `[]`.
    let none = sessions(store, &["list", "--user", "alice"]);
    assert!(!none.status.success());
    let err = String::from_utf8_lossy(&none.stderr);
    assert_eq!(
        err.trim(),
        "cloakroom: no live sessions for user \"alice\"",
        "{err}"
    );
    let none = stdout(&sessions(store, &["list", "--user", "alice", "--json"]));
    assert_eq!(none.trim(), "[]");

    // Ended already: nothing to end, one line, a non-zero exit.
    let again = sessions(store, &["end", "--id", &keep]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(err.trim(), format!("cloakroom: no live session {keep}"));

    // An id that starts with `-` (one in 64 do) is still an id.
    let out = sessions(store, &["end", "--id", "-AAAAAAAAAAAAAAAAAAAAA"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "cloakroom: no live session -AAAAAAAAAAAAAAAAAAAAA"
    );

    assert_eq!(stdout(&sessions(store, &["count"])).trim(), "1");
    let out = stdout(&sessions(store, &["end", "--all"]));
    assert!(out.contains("ended 1"), "{out}");
    assert_eq!(bob.get("/detail").await.body, "detail get ok! None");
    assert_eq!(stdout(&sessions(store, &["count"])).trim(), "0");
}

#[tokio::test]
async fn list_end_and_count_on_redis() {
    let redis = RedisServer::start();
    list_end_and_count(&redis.url()).await;
}

#[tokio::test]
async fn list_end_and_count_on_a_redis_cluster() {
    let cluster = RedisCluster::start(3);
    list_end_and_count(&cluster.url()).await;
}

#[tokio::test]
async fn a_store_that_is_down_is_one_clear_line() {
    let port = cloakroom_testkit::free_port();
    let out = sessions(
        &format!("redis://127.0.0.1:{port}"),
        &["list", "--user", "alice"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("cloakroom: "), "{err}");
}

/// The memory store lives in the server's process: the admin commands say
/// so instead of reading an empty store of their own.
#[test]
fn the_memory_store_is_refused_with_a_clear_line() {
    for args in [
        &["count"][..],
        &["list", "--user", "alice"],
        &["end", "--all"],
    ] {
        let out = cli()
            .arg("sessions")
            .args(args)
            .output()
            .expect("run cloakroom sessions");
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("the memory store lives inside the server's process"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

/// `end` needs one of `--user`, `--id` and `--all`, and only one.
#[test]
fn end_needs_exactly_one_target() {
    let none = cli()
        .args(["sessions", "end"])
        .output()
        .expect("run cloakroom sessions");
    assert!(!none.status.success());
    let err = String::from_utf8_lossy(&none.stderr);
    for option in ["--user", "--id", "--all"] {
        assert!(err.contains(option), "{option} not offered: {err}");
    }
    let two = cli()
        .args(["sessions", "end", "--all", "--user", "bob"])
        .output()
        .expect("run cloakroom sessions");
    assert!(!two.status.success());
    assert!(String::from_utf8_lossy(&two.stderr).contains("cannot be used with"));
}
