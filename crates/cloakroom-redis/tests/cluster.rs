//! RedisStore on a real 3-master Redis Cluster: the store contract, the
//! spread of sessions over masters, and round trips.

use cloakroom::{CookieConfig, KeyRing, SessionLayer};
use cloakroom_redis::{RedisConfig, RedisStore};
use cloakroom_testkit::{RedisCluster, TestServer, app};

async fn store() -> (RedisCluster, RedisStore) {
    let cluster = RedisCluster::start(3);
    let store = RedisStore::connect(RedisConfig::from_url(&cluster.url()).unwrap())
        .await
        .unwrap();
    (cluster, store)
}

cloakroom_testkit::conformance_tests!(store().await);

fn reads(cluster: &RedisCluster) -> u64 {
    cluster
        .nodes
        .iter()
        .map(|n| n.stat("total_reads_processed"))
        .sum()
}

#[tokio::test]
async fn sessions_spread_over_masters_with_the_same_round_trips() {
    let (cluster, store) = store().await;
    let layer = SessionLayer::builder(store, KeyRing::new(["c".repeat(32)]).unwrap())
        .cookie(CookieConfig::default().secure(false))
        .build()
        .unwrap();
    let srv = TestServer::start(app(layer)).await;
    let mut clients = Vec::new();
    for i in 0..30 {
        let c = srv.client();
        c.get(&format!("/?name=user{i}")).await;
        assert_eq!(
            c.get("/detail").await.body,
            format!("detail get ok! user{i}")
        );
        clients.push(c);
    }
    let holding: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|n| n.cli(&["DBSIZE"]).parse().unwrap())
        .collect();
    assert_eq!(holding.iter().sum::<u64>(), 30, "{holding:?}");
    assert!(
        holding.iter().filter(|n| **n > 0).count() >= 2,
        "sessions on at least two masters: {holding:?}"
    );

    // Warm the script caches, then count round trips on every node.
    let c = &clients[0];
    c.get("/read-write").await;
    c.get("/login?name=again").await;
    let idle = {
        let a = reads(&cluster);
        reads(&cluster) - a
    };
    let measure = async |path: &str| {
        let before = reads(&cluster);
        c.get(path).await;
        reads(&cluster) - before - idle
    };
    let untouched = measure("/untouched").await;
    let read = measure("/detail").await;
    let write = measure("/?name=bob").await;
    let read_write = measure("/read-write").await;
    assert_eq!((untouched, read, write, read_write), (0, 1, 1, 2));
    assert_eq!(c.get("/detail").await.body, "detail get ok! bob");

    // A login moves the session to another slot: it must survive the move
    // and the old id must be dead.
    let before = c.cookie("id").unwrap();
    c.get("/set?cart=3").await;
    c.get("/login?name=carol").await;
    assert_ne!(c.cookie("id").unwrap(), before);
    assert_eq!(c.get("/keys").await.body, "cart,login,n");
    let replay = srv.client();
    replay.set_cookie("id", &before);
    assert_eq!(replay.get("/keys").await.body, "");
}
