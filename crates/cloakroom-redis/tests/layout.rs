//! What the store leaves in Redis: one hash per session, a TTL on every
//! key, and nothing left over from the way a session was written.

use cloakroom::{Applied, Patch, Store};
use cloakroom_redis::{RedisConfig, RedisStore};
use cloakroom_testkit::RedisServer;
use cloakroom_testkit::conformance::{at_now, new_id};
use std::time::Duration;

fn creating(name: &str, json: &str) -> Patch {
    let mut p = Patch::default();
    p.create();
    p.set(name, json.to_owned());
    p
}

fn keys(redis: &RedisServer) -> Vec<String> {
    let mut keys: Vec<String> = redis
        .cli(&["KEYS", "*"])
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    keys.sort();
    keys
}

async fn store(redis: &RedisServer) -> RedisStore {
    RedisStore::connect(RedisConfig::from_url(&redis.url()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_refused_create_leaves_only_the_existing_session() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let e = at_now(Duration::from_secs(600), Duration::from_secs(3600));
    let id = new_id();
    assert_eq!(
        store.apply(&id, &creating("a", "1"), &e).await.unwrap(),
        Applied::Done
    );
    let created = keys(&redis);
    assert_eq!(created.len(), 1, "{created:?}");

    assert_eq!(
        store.apply(&id, &creating("b", "2"), &e).await.unwrap(),
        Applied::Gone
    );
    assert_eq!(keys(&redis), created, "no staging key is left behind");
    let key = &created[0];
    assert_eq!(redis.cli(&["HGET", key, "a"]), "1");
    assert_eq!(redis.cli(&["HEXISTS", key, "b"]), "0");
    let ttl: i64 = redis.cli(&["PTTL", key]).parse().unwrap();
    assert!((590_000..=600_000).contains(&ttl), "idle TTL: {ttl}");
}

#[tokio::test]
async fn an_absolute_window_shorter_than_idle_bounds_the_ttl() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let e = at_now(Duration::from_secs(600), Duration::from_secs(60));
    assert_eq!(
        store
            .apply(&new_id(), &creating("a", "1"), &e)
            .await
            .unwrap(),
        Applied::Done
    );
    let created = keys(&redis);
    assert_eq!(created.len(), 1, "{created:?}");
    let ttl: i64 = redis.cli(&["PTTL", &created[0]]).parse().unwrap();
    assert!((50_000..=60_000).contains(&ttl), "absolute bound: {ttl}");
}

#[tokio::test]
async fn one_meta_field_and_reads_push_the_ttl_in_steps() {
    use cloakroom::{Clock, ExpiryPolicy, SystemClock, Timestamp};
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let policy = ExpiryPolicy::default()
        .idle(Duration::from_secs(600))
        .absolute(Duration::from_secs(3600));
    let start = SystemClock.now();
    let id = new_id();
    assert_eq!(
        store
            .apply(&id, &creating("a", "1"), &policy.at(start))
            .await
            .unwrap(),
        Applied::Done
    );
    let key = keys(&redis).remove(0);
    let meta = |redis: &RedisServer| -> Vec<u64> {
        redis
            .cli(&["HGET", &key, "@m"])
            .split(',')
            .map(|n| n.parse().unwrap())
            .collect()
    };
    // CREATED, then the deadline and UNTIL counted from it.
    let created = start.0;
    assert_eq!(meta(&redis), [created, 3_600_000, 600_000]);
    assert_eq!(redis.cli(&["HLEN", &key]), "2", "one meta field and `a`");

    // Within a tenth of the window, a read is one HGETALL and moves nothing.
    let before = redis.stat("total_commands_processed");
    let at = |secs: u64| policy.at(Timestamp(created + secs * 1000));
    assert!(store.load(&id, &at(30)).await.unwrap().is_some());
    let commands = redis.stat("total_commands_processed") - before;
    assert_eq!(commands, 2, "HGETALL, and the INFO that counted it");
    assert_eq!(meta(&redis)[2], 600_000);

    // Two minutes on, the read pushes the TTL and records it.
    assert!(store.load(&id, &at(120)).await.unwrap().is_some());
    assert_eq!(meta(&redis)[2], 720_000);
    let ttl: u64 = redis.cli(&["PTTL", &key]).parse().unwrap();
    let expected = created + 720_000 - SystemClock.now().0;
    assert!(ttl.abs_diff(expected) < 5_000, "{ttl} vs {expected}");
}

/// A cap on names larger than the script counts (`usize::MAX` for "no
/// cap on names") still leaves the cap on bytes in force, on the
/// script's path (a clear) as on the plain one.
#[tokio::test]
async fn no_cap_on_names_still_caps_the_bytes() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let e = at_now(Duration::from_secs(600), Duration::from_secs(3600));
    let limits = cloakroom::SizeLimits {
        max_names: usize::MAX,
        max_bytes: 30,
    };
    let id = new_id();
    assert_eq!(
        store.apply(&id, &creating("a", "1"), &e).await.unwrap(),
        Applied::Done
    );
    let mut over = Patch::default();
    over.clear();
    over.set("a", "\"a long value, over the limit\"".into());
    over.limit(limits);
    assert!(matches!(
        store.apply(&id, &over, &e).await,
        Err(cloakroom::Error::TooLarge { .. })
    ));
    let record = store.load(&id, &e).await.unwrap().unwrap();
    assert_eq!(record.values.get("a").map(String::as_str), Some("1"));
}

#[tokio::test]
async fn a_change_over_the_limits_puts_every_old_value_back() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let e = at_now(Duration::from_secs(600), Duration::from_secs(3600));
    let limits = cloakroom::SizeLimits {
        max_names: 3,
        max_bytes: 30,
    };
    let id = new_id();
    let mut first = Patch::default();
    first.create();
    first.set("a", "1".into());
    first.set("b", "2".into());
    assert_eq!(store.apply(&id, &first, &e).await.unwrap(), Applied::Done);

    // Replaces `a`, removes `b`, adds `c`: too many bytes.
    let mut over = Patch::default();
    over.set("a", "\"a long value, over the limit\"".into());
    over.remove("b");
    over.set("c", "3".into());
    over.limit(limits);
    assert!(matches!(
        store.apply(&id, &over, &e).await,
        Err(cloakroom::Error::TooLarge { .. })
    ));
    let record = store.load(&id, &e).await.unwrap().unwrap();
    let values: Vec<_> = record.values.into_iter().collect();
    assert_eq!(
        values,
        [
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_change_to_a_gone_session_leaves_nothing() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let e = at_now(Duration::from_secs(600), Duration::from_secs(3600));
    let mut change = Patch::default();
    change.set("a", "1".into());
    for limits in [None, Some(cloakroom::Limits::default().session())] {
        let mut change = change.clone();
        if let Some(limits) = limits {
            change.limit(limits);
        }
        assert_eq!(
            store.apply(&new_id(), &change, &e).await.unwrap(),
            Applied::Gone
        );
        assert_eq!(keys(&redis), Vec::<String>::new());
    }
}

/// A create is one `RESTORE` (the hash and its TTL, refused over an
/// existing key). Where an ACL forbids it, creates fall back to the
/// `MULTI` with a staging key, with the same guarantees.
#[tokio::test]
async fn creates_restore_the_hash_or_fall_back_where_restore_is_forbidden() {
    for forbidden in [false, true] {
        let acl = if forbidden { "-@dangerous" } else { "+@all" };
        let redis = RedisServer::start_with(&[
            "--user",
            "app",
            "on",
            ">app-pass",
            "~*",
            "&*",
            "+@all",
            acl,
        ]);
        let url = format!("redis://app:app-pass@127.0.0.1:{}", redis.port);
        let store = RedisStore::connect(RedisConfig::from_url(&url).unwrap())
            .await
            .unwrap();
        let e = at_now(Duration::from_secs(600), Duration::from_secs(3600));
        let restores = || {
            redis
                .cli(&["INFO", "commandstats"])
                .lines()
                .find(|l| l.starts_with("cmdstat_restore:"))
                .map(str::to_owned)
        };
        for round in 0..2 {
            let id = new_id();
            let created = store.apply(&id, &creating("a", "\"x\""), &e).await.unwrap();
            assert_eq!(
                created,
                Applied::Done,
                "forbidden {forbidden}, round {round}"
            );
            assert_eq!(
                store.apply(&id, &creating("b", "2"), &e).await.unwrap(),
                Applied::Gone,
                "an existing id is never overwritten"
            );
            let loaded = store.load(&id, &e).await.unwrap().expect("the session");
            assert_eq!(loaded.values.get("a").map(String::as_str), Some("\"x\""));
            assert!(!loaded.values.contains_key("b"));
        }
        let all = keys(&redis);
        assert_eq!(all.len(), 2, "two sessions, no staging key: {all:?}");
        for key in &all {
            let ttl: i64 = redis.cli(&["PTTL", key]).parse().unwrap();
            assert!((590_000..=600_000).contains(&ttl), "idle TTL: {ttl}");
        }
        let stat = restores();
        if forbidden {
            // Refused once (counted as a rejected call, or not at all).
            assert!(
                stat.as_deref()
                    .is_none_or(|s| s.contains("calls=0") || s.contains("rejected_calls=1")),
                "{stat:?}"
            );
        } else {
            assert!(
                stat.as_deref()
                    .is_some_and(|s| s.starts_with("cmdstat_restore:calls=4")),
                "{stat:?}"
            );
        }
    }
}

/// A create's listpack payload holds what `HSET` would have stored, under
/// Redis's deep payload checks: strings at every length boundary of the
/// listpack encoding, number-like names and values (Redis itself would
/// store those as integers), and more fields than a compact hash holds
/// (Redis converts it on load). Each session then takes writes,
/// increments and reads like any other.
#[tokio::test]
async fn listpack_creates_read_back_as_written_under_deep_payload_checks() {
    let redis = RedisServer::start_with(&["--sanitize-dump-payload", "yes"]);
    let store = store(&redis).await;
    let e = at_now(Duration::from_secs(600), Duration::from_secs(3600));
    let json = |len: usize| format!("\"{}\"", "v".repeat(len.saturating_sub(2)));
    let mut cases: Vec<Vec<(String, String)>> =
        [2, 61, 62, 63, 64, 125, 126, 4094, 4095, 4096, 20_000]
            .iter()
            .map(|&len| vec![("text".to_owned(), json(len))])
            .collect();
    cases.push(vec![
        ("42".to_owned(), "7".to_owned()),
        ("n".to_owned(), "-12".to_owned()),
    ]);
    cases.push(
        (0..200)
            .map(|i| (format!("name{i}"), i.to_string()))
            .collect(),
    );
    for pairs in cases {
        let id = new_id();
        let mut patch = Patch::default();
        patch.create();
        for (name, value) in &pairs {
            patch.set(name.as_str(), value.clone());
        }
        assert_eq!(store.apply(&id, &patch, &e).await.unwrap(), Applied::Done);
        let loaded = store.load(&id, &e).await.unwrap().expect("the session");
        assert_eq!(loaded.values.len(), pairs.len());
        for (name, value) in &pairs {
            assert_eq!(loaded.values.get(name), Some(value), "{name}");
        }
        let name = &pairs[0].0;
        let mut write = Patch::default();
        write.set(name.as_str(), "1".to_owned());
        assert_eq!(store.apply(&id, &write, &e).await.unwrap(), Applied::Done);
        assert_eq!(store.increment(&id, name, 2, &e).await.unwrap(), Some(3));
    }
    let stat = redis.cli(&["INFO", "commandstats"]);
    let restores = stat.lines().find(|l| l.starts_with("cmdstat_restore:"));
    assert!(
        restores.is_some_and(|l| l.contains("calls=13,") && l.contains("failed_calls=0")),
        "{restores:?}"
    );
    // Two names and the meta field.
    let small = keys(&redis)
        .into_iter()
        .find(|k| redis.cli(&["HLEN", k]) == "3")
        .expect("the two-name session");
    assert_eq!(redis.cli(&["OBJECT", "ENCODING", &small]), "listpack");
}

/// Sessions that end before their deadline (a logout) stay in the user's
/// index only until a sign-in finds it over 32 members and sweeps it.
#[tokio::test]
async fn the_user_index_stays_bounded_without_a_cap() {
    use cloakroom::{ClientInfo, KeyRing, SessionManager};
    let redis = RedisServer::start();
    let manager = SessionManager::builder(store(&redis).await, KeyRing::random())
        .build()
        .unwrap();
    let mut live = Vec::new();
    for i in 0..200 {
        let session = manager.open(&http::HeaderMap::new());
        session
            .bind_user("erin", ClientInfo::default())
            .await
            .unwrap();
        let id = session.id().await.unwrap().expect("the new session's id");
        manager.commit(&session).await.unwrap();
        if i % 10 == 0 {
            live.push(id);
        } else {
            manager.admin().end(&id).await.unwrap();
        }
    }
    let size: usize = redis.cli(&["ZCARD", "cr:u:{erin}"]).parse().unwrap();
    assert!(
        size <= live.len() + 33,
        "{size} members for {} live",
        live.len()
    );
    let listed: Vec<_> = manager
        .admin()
        .list("erin")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed.len(), live.len());
    assert_eq!(redis.cli(&["ZCARD", "cr:u:{erin}"]), live.len().to_string());
}

/// The rollback after a change over the limits runs one round trip after
/// the change. A session deleted (or renamed) in between is left alone:
/// putting an old value back would make a hash without meta field or TTL.
#[tokio::test]
async fn a_rollback_on_a_session_gone_meanwhile_writes_nothing() {
    let redis = RedisServer::start();
    let rollback = include_str!("../src/lua/rollback.lua");
    // Give `a` back its old value "1", where this change had removed it.
    let out = redis.cli(&["EVAL", rollback, "1", "cr:{gone}", "a", "-", "=1"]);
    assert_eq!(out.trim(), "0");
    assert!(keys(&redis).is_empty(), "{:?}", keys(&redis));
    // On a live session it does put the value back.
    redis.cli(&["HSET", "cr:{live}", "@m", "1,2,3"]);
    redis.cli(&["PEXPIRE", "cr:{live}", "60000"]);
    let out = redis.cli(&["EVAL", rollback, "1", "cr:{live}", "a", "-", "=1"]);
    assert_eq!(out.trim(), "1");
    assert_eq!(redis.cli(&["HGET", "cr:{live}", "a"]).trim(), "1");
}

/// `count` and `end_all` count live sessions only: not a session past its
/// absolute deadline whose key a write kept for an idle window more, nor
/// a hash without meta field.
#[tokio::test]
async fn counts_are_of_live_sessions_only() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let short = || at_now(Duration::from_secs(600), Duration::from_millis(1500));
    let ending = new_id();
    assert_eq!(
        store
            .apply(&ending, &creating("a", "1"), &short())
            .await
            .unwrap(),
        Applied::Done
    );
    // A write pushes the key's TTL to now + idle, past the deadline.
    let mut write = Patch::default();
    write.set("b", "2".to_owned());
    assert_eq!(
        store.apply(&ending, &write, &short()).await.unwrap(),
        Applied::Done
    );
    let live = new_id();
    let long = at_now(Duration::from_secs(600), Duration::from_secs(3600));
    assert_eq!(
        store
            .apply(&live, &creating("a", "1"), &long)
            .await
            .unwrap(),
        Applied::Done
    );
    redis.cli(&["HSET", "cr:{not-a-session}", "a", "1"]);
    tokio::time::sleep(Duration::from_millis(1700)).await;

    let now = at_now(Duration::from_secs(600), Duration::from_secs(3600));
    assert_eq!(keys(&redis).len(), 3, "{:?}", keys(&redis));
    assert_eq!(store.count(&now).await.unwrap(), 1);
    assert_eq!(store.end_all(&now).await.unwrap(), 1);
    assert!(keys(&redis).is_empty(), "{:?}", keys(&redis));
}
