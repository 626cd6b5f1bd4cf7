//! RedisStore through Sentinel: a master, a replica and three sentinels,
//! with passwords on both; the master is killed and the store follows the
//! failover.

use cloakroom::{Applied, Clock, ExpiryPolicy, Patch, Store, SystemClock};
use cloakroom_redis::{RedisConfig, RedisStore};
use cloakroom_testkit::RedisSentinels;
use cloakroom_testkit::conformance::new_id;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_failover_and_writes_resume() {
    let mut set = RedisSentinels::start();
    let config = RedisConfig::from_url(&set.url())
        .unwrap()
        .node_credentials(None, RedisSentinels::DATA_PASSWORD)
        .timeout(Duration::from_millis(500));
    let store = RedisStore::connect(config).await.unwrap();
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
    let acked = set.master.cli(&[
        "--no-auth-warning",
        "-a",
        RedisSentinels::DATA_PASSWORD,
        "WAIT",
        "1",
        "2000",
    ]);
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
