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
