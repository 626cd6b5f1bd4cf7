//! RedisStore through Sentinel: a master, a replica and three sentinels,
//! with passwords on both; the master is killed and the store follows the
//! failover.

use cloakroom::{Applied, Clock, ExpiryPolicy, Patch, Store, SystemClock};
use cloakroom_redis::{RedisConfig, RedisStore};
use cloakroom_testkit::RedisSentinels;
use cloakroom_testkit::conformance::new_id;
use std::time::{Duration, Instant};

/// Through the sentinels, with the data nodes' password and a short
/// timeout, so a call to a lost master fails in half a second.
fn config(set: &RedisSentinels) -> RedisConfig {
    RedisConfig::from_url(&set.url())
        .unwrap()
        .node_credentials(None, RedisSentinels::DATA_PASSWORD)
        .timeout(Duration::from_millis(500))
}

/// Waits (`WAIT`, up to 2 s) until the replica has every write so far, and
/// returns how many replicas acknowledged them.
fn replicas_acknowledging(set: &RedisSentinels) -> String {
    set.master.cli(&[
        "--no-auth-warning",
        "-a",
        RedisSentinels::DATA_PASSWORD,
        "WAIT",
        "1",
        "2000",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_failover_and_writes_resume() {
    let mut set = RedisSentinels::start();
    let store = RedisStore::connect(config(&set)).await.unwrap();
    let policy = ExpiryPolicy::default();
    let now = || policy.at(SystemClock.now());

    let mut ids = Vec::new();
    for i in 0..20 {
        let id = new_id();
        let mut p = Patch::default();
        p.create();
        p.set("n", i.to_string());
        assert_eq!(store.apply(&id, &p, &now()).await.unwrap(), Applied::Done);
        ids.push(id);
    }
    // Acknowledged by the replica before the master dies: WAIT.
    let acked = replicas_acknowledging(&set);
    assert_eq!(acked, "1", "the replica acknowledged the writes");

    let killed = Instant::now();
    set.master.kill();
    let deadline = killed + Duration::from_secs(30);
    let mut failures = 0;
    loop {
        let read = store.load(&ids[0], &now()).await;
        if matches!(read, Ok(Some(_))) {
            break;
        }
        failures += 1;
        assert!(
            Instant::now() < deadline,
            "no failover after 30 s: {read:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovery = killed.elapsed();
    println!(
        "failover: reads recovered {recovery:?} after the master died ({failures} failed attempts)"
    );

    for (i, id) in ids.iter().enumerate() {
        let record = store
            .load(id, &now())
            .await
            .unwrap()
            .expect("a session written before the failover");
        assert_eq!(record.values["n"], i.to_string());
    }
    let mut p = Patch::default();
    p.set("after", "1".into());
    assert_eq!(
        store.apply(&ids[0], &p, &now()).await.unwrap(),
        Applied::Done
    );
    let promoted = set.sentinel_cli(0, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"]);
    assert!(
        promoted.contains(&set.replica.port.to_string()),
        "{promoted}"
    );
}

/// A master that hangs (its process stopped, its connections open) is
/// left for the one the sentinels promote: a call that times out counts as
/// the master being gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_master_is_left_for_the_promoted_replica() {
    let set = RedisSentinels::start();
    let store = RedisStore::connect(config(&set)).await.unwrap();
    let policy = ExpiryPolicy::default();
    let now = || policy.at(SystemClock.now());
    let id = new_id();
    let mut p = Patch::default();
    p.create();
    p.set("n", "1".into());
    assert_eq!(store.apply(&id, &p, &now()).await.unwrap(), Applied::Done);
    let acked = replicas_acknowledging(&set);
    assert_eq!(acked, "1", "the replica acknowledged the write");

    set.master.freeze();
    let frozen = Instant::now();
    let deadline = frozen + Duration::from_secs(30);
    let read = loop {
        let read = store.load(&id, &now()).await;
        if matches!(read, Ok(Some(_))) || Instant::now() >= deadline {
            break read;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Thawed before asserting, so the fixture can stop it either way.
    set.master.thaw();
    let record = read
        .unwrap_or_else(|e| panic!("still on the hung master after 30 s: {e}"))
        .expect("the session, from the promoted replica");
    assert_eq!(record.values["n"], "1");
    println!(
        "hung master: reads recovered {:?} after it stopped",
        frozen.elapsed()
    );
    let promoted = set.sentinel_cli(0, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"]);
    assert!(
        promoted.contains(&set.replica.port.to_string()),
        "{promoted}"
    );
}

/// The session inventory through Sentinel.
mod inventory {
    use super::*;

    async fn store() -> (RedisSentinels, RedisStore) {
        let set = RedisSentinels::start();
        let config = RedisConfig::from_url(&set.url())
            .unwrap()
            .node_credentials(None, RedisSentinels::DATA_PASSWORD);
        let store = RedisStore::connect(config).await.unwrap();
        (set, store)
    }

    cloakroom_testkit::inventory_tests!(store().await);
}

/// The read cache through Sentinel: two nodes stay consistent, before and
/// after a failover, and nothing is served from a cache filled by the
/// dead master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_cache_follows_a_failover() {
    let mut set = RedisSentinels::start();
    let connect = || async {
        RedisStore::connect(config(&set).cache_max_bytes(1 << 20))
            .await
            .unwrap()
    };
    let (a, b) = (connect().await, connect().await);
    let policy = ExpiryPolicy::default();
    let now = || policy.at(SystemClock.now());
    let value = |store: RedisStore, id| async move {
        store
            .load(&id, &now())
            .await
            .map(|r| r.map(|r| r.values["n"].clone()))
    };
    let id = new_id();
    let mut p = Patch::default();
    p.create();
    p.set("n", "0".to_owned());
    assert_eq!(b.apply(&id, &p, &now()).await.unwrap(), Applied::Done);
    for round in 1..=20 {
        let mut p = Patch::default();
        p.set("n", round.to_string());
        assert_eq!(b.apply(&id, &p, &now()).await.unwrap(), Applied::Done);
        // What separates two app nodes: at least a network hop (see
        // tests/cache.rs for the window).
        tokio::time::sleep(Duration::from_millis(1)).await;
        for _ in 0..2 {
            assert_eq!(value(a.clone(), id).await.unwrap(), Some(round.to_string()));
        }
    }
    assert!(a.cache_stats().unwrap().hits >= 20);
    replicas_acknowledging(&set);
    set.master.kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Writes resume on the new master...
    loop {
        let mut p = Patch::default();
        p.set("n", "after".to_owned());
        if let Ok(Applied::Done) = b.apply(&id, &p, &now()).await {
            break;
        }
        assert!(Instant::now() < deadline, "no failover after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...and the other node reads them, never its old copy.
    loop {
        match value(a.clone(), id).await {
            Ok(Some(n)) => {
                assert_eq!(n, "after");
                break;
            }
            Ok(None) => panic!("the session was lost in the failover"),
            Err(_) => {
                assert!(Instant::now() < deadline, "node A did not recover");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    for round in 0..10 {
        let mut p = Patch::default();
        p.set("n", format!("new{round}"));
        assert_eq!(b.apply(&id, &p, &now()).await.unwrap(), Applied::Done);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(
            value(a.clone(), id).await.unwrap(),
            Some(format!("new{round}"))
        );
    }
}
