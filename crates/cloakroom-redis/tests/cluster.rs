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

/// The session inventory on the cluster: the user index lives in a slot
/// of its own, the sessions in theirs.
mod inventory {
    use super::*;

    cloakroom_testkit::inventory_tests!(store().await);
}

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

/// Node id of a cluster node, from `CLUSTER MYID`.
fn node_id(node: &cloakroom_testkit::RedisServer) -> String {
    node.cli(&["CLUSTER", "MYID"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_keep_working_while_slots_migrate() {
    use cloakroom::{Clock, ExpiryPolicy, Patch, Store, SystemClock};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let (cluster, store) = store().await;
    let store = Arc::new(store);
    let policy = ExpiryPolicy::default();
    let mut ids = Vec::new();
    for i in 0..200 {
        let id = cloakroom_testkit::conformance::new_id();
        let mut p = Patch::default();
        p.create();
        p.set("n", i.to_string());
        let applied = store.apply(&id, &p, &policy.at(SystemClock.now())).await;
        assert_eq!(applied.unwrap(), cloakroom::Applied::Done);
        ids.push(id);
    }
    let ids = Arc::new(ids);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let worker = {
        let (store, ids, stop, ok, failed) = (
            store.clone(),
            ids.clone(),
            stop.clone(),
            ok.clone(),
            failed.clone(),
        );
        tokio::spawn(async move {
            let mut round = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for (i, id) in ids.iter().enumerate() {
                    let e = policy.at(SystemClock.now());
                    let read = store.load(id, &e).await;
                    let mut p = Patch::default();
                    p.set("round", round.to_string());
                    let write = store.apply(id, &p, &e).await;
                    match (read, write) {
                        (Ok(Some(r)), Ok(cloakroom::Applied::Done))
                            if r.values["n"] == i.to_string() =>
                        {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        other => {
                            eprintln!("failed during resharding: {other:?}");
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                round += 1;
            }
        })
    };
    let dbsize =
        |n: &cloakroom_testkit::RedisServer| -> u64 { n.cli(&["DBSIZE"]).parse().unwrap() };
    let before = dbsize(&cluster.nodes[0]);
    // Move a third of the slots from the first master to the second.
    let (from, to) = (node_id(&cluster.nodes[0]), node_id(&cluster.nodes[1]));
    let entry = cluster.nodes[0].addr().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("redis-cli")
            .args(["--cluster", "reshard", &entry])
            .args(["--cluster-from", &from, "--cluster-to", &to])
            .args(["--cluster-slots", "2000", "--cluster-yes"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    worker.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert!(ok > 200, "the worker made progress: {ok}");
    let after = dbsize(&cluster.nodes[0]);
    assert!(
        after < before,
        "sessions moved off the first master: {before} -> {after}"
    );
    assert_eq!(
        failed,
        0,
        "{failed} of {} calls failed while slots moved",
        ok + failed
    );
}

/// A slot that moved after the client learned the map: the old node
/// answers `MOVED` for every command of a `MULTI`, and Redis discards it
/// whole; redis-rs does not follow redirections inside a transaction, so
/// the store must fall back to its script, which the cluster client
/// follows to the new node.
#[tokio::test]
async fn changes_work_right_after_their_slot_moved() {
    use cloakroom::{Applied, Patch, Store};
    use cloakroom_testkit::conformance::{at_now, new_id};
    use std::time::Duration;

    let (cluster, store) = store().await;
    let e = at_now(Duration::from_secs(600), Duration::from_secs(3600));
    let id = new_id();
    let mut create = Patch::default();
    create.create();
    create.set("a", "1".into());
    assert_eq!(store.apply(&id, &create, &e).await.unwrap(), Applied::Done);

    // Move the session's slot, key and all, to another master.
    let key = format!("cr:{{{id}}}");
    let slot = cluster.nodes[0].cli(&["CLUSTER", "KEYSLOT", &key]);
    let owner = cluster
        .nodes
        .iter()
        .position(|n| n.cli(&["EXISTS", &key]) == "1")
        .expect("a node holds the session");
    let target = (owner + 1) % cluster.nodes.len();
    let (owner_id, target_id) = (
        node_id(&cluster.nodes[owner]),
        node_id(&cluster.nodes[target]),
    );
    let ok = |out: String, what: &str| assert_eq!(out, "OK", "{what}");
    ok(
        cluster.nodes[target].cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &owner_id]),
        "importing",
    );
    ok(
        cluster.nodes[owner].cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &target_id]),
        "migrating",
    );
    let port = cluster.nodes[target].port.to_string();
    ok(
        cluster.nodes[owner].cli(&["MIGRATE", "127.0.0.1", &port, &key, "0", "5000"]),
        "migrate",
    );
    for node in &cluster.nodes {
        ok(
            node.cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &target_id]),
            "setslot node",
        );
    }

    let mut change = Patch::default();
    change.set("b", "2".into());
    change.limit(cloakroom::Limits::default().session());
    assert_eq!(store.apply(&id, &change, &e).await.unwrap(), Applied::Done);
    let record = store.load(&id, &e).await.unwrap().expect("the session");
    let values: Vec<_> = record.values.into_iter().collect();
    assert_eq!(
        values,
        [
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned())
        ]
    );
    assert_eq!(cluster.nodes[owner].cli(&["DBSIZE"]), "0");
}

/// A session whose slot is half-way through a migration: its key already
/// moved to the importing node, the slot still owned by the migrating one,
/// which answers `ASK`. Reads and changes succeed (a change is a `MULTI`,
/// which the store sends after `ASKING` to the importing node itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_succeed_while_their_slot_is_migrating() {
    use cloakroom::{Applied, Clock, ExpiryPolicy, Patch, Store, SystemClock};
    let (cluster, store) = store().await;
    let e = || ExpiryPolicy::default().at(SystemClock.now());
    let id = cloakroom_testkit::conformance::new_id();
    let mut create = Patch::default();
    create.create();
    create.set("n", "1".to_owned());
    assert_eq!(
        store.apply(&id, &create, &e()).await.unwrap(),
        Applied::Done
    );
    let key = format!("cr:{{{id}}}");
    let slot = cluster.nodes[0].cli(&["CLUSTER", "KEYSLOT", &key]);
    let owner = cluster
        .nodes
        .iter()
        .position(|n| n.cli(&["CLUSTER", "COUNTKEYSINSLOT", &slot]) == "1")
        .expect("the node holding the key");
    let target = (owner + 1) % cluster.nodes.len();
    let (from, to) = (&cluster.nodes[owner], &cluster.nodes[target]);
    assert_eq!(
        to.cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &node_id(from)]),
        "OK"
    );
    assert_eq!(
        from.cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &node_id(to)]),
        "OK"
    );
    let port = to.port.to_string();
    assert_eq!(
        from.cli(&["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS", &key]),
        "OK"
    );

    // The key is on the importing node now; the owner answers ASK.
    let loaded = store
        .load(&id, &e())
        .await
        .unwrap()
        .expect("read through ASK");
    assert_eq!(loaded.values.get("n").map(String::as_str), Some("1"));
    let mut change = Patch::default();
    change.set("n", "2".to_owned());
    change.set("m", "3".to_owned());
    assert_eq!(
        store.apply(&id, &change, &e()).await.unwrap(),
        Applied::Done
    );
    let loaded = store.load(&id, &e()).await.unwrap().expect("the session");
    assert_eq!(loaded.values.get("n").map(String::as_str), Some("2"));
    assert_eq!(loaded.values.get("m").map(String::as_str), Some("3"));
    let count = |n: &cloakroom_testkit::RedisServer| n.cli(&["CLUSTER", "COUNTKEYSINSLOT", &slot]);
    assert_eq!(count(to), "1", "written on the importing node");
    assert_eq!(count(from), "0", "nothing left on the migrating node");

    // Finish the migration; the session is where it should be.
    for node in &cluster.nodes {
        node.cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &node_id(to)]);
    }
    let loaded = store
        .load(&id, &e())
        .await
        .unwrap()
        .expect("after the move");
    assert_eq!(loaded.values.get("m").map(String::as_str), Some("3"));
}

/// A cluster that is down when the store starts: the store starts anyway,
/// calls fail at once, and the cluster is discovered once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_down_at_start_is_discovered_once_it_is_up() {
    use cloakroom::{Applied, Clock, ExpiryPolicy, Patch, Store, SystemClock};
    let mut cluster = RedisCluster::start(3);
    for node in &mut cluster.nodes {
        node.kill();
    }
    let config = RedisConfig::from_url(&cluster.url())
        .unwrap()
        .timeout(std::time::Duration::from_secs(3));
    let store = RedisStore::connect(config)
        .await
        .expect("starts while down");
    let e = || ExpiryPolicy::default().at(SystemClock.now());
    let mut create = Patch::default();
    create.create();
    create.set("n", "1".to_owned());
    let started = std::time::Instant::now();
    let refused = store
        .apply(&cloakroom_testkit::conformance::new_id(), &create, &e())
        .await;
    assert!(refused.is_err_and(|e| e.is_unavailable()));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "no waiting for the timeout"
    );

    for node in &mut cluster.nodes {
        node.restart();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let id = cloakroom_testkit::conformance::new_id();
        match store.apply(&id, &create, &e()).await {
            Ok(Applied::Done) => break,
            other => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "never discovered: {other:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

/// `count` and `end_all` on a cluster: each master's keys, many slots per
/// master, read in one batch per SCAN step on the node that holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_and_end_all_cover_every_master() {
    use cloakroom::{Applied, Clock, ExpiryPolicy, Patch, Store, SystemClock};
    let (cluster, store) = store().await;
    let e = || ExpiryPolicy::default().at(SystemClock.now());
    for _ in 0..30 {
        let mut create = Patch::default();
        create.create();
        create.set("n", "1".to_owned());
        let id = cloakroom_testkit::conformance::new_id();
        assert_eq!(
            store.apply(&id, &create, &e()).await.unwrap(),
            Applied::Done
        );
    }
    let per_master: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|n| n.cli(&["DBSIZE"]).parse().unwrap())
        .collect();
    assert!(per_master.iter().all(|n| *n >= 2), "{per_master:?}");
    assert_eq!(store.count(&e()).await.unwrap(), 30);
    assert_eq!(store.end_all(&e()).await.unwrap(), 30);
    assert_eq!(store.count(&e()).await.unwrap(), 0);
}
