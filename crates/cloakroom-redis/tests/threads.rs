//! Connections and runtime threads: on current-thread runtimes (each
//! actix-web worker runs one), each thread makes and uses a connection of
//! its own, so its calls never wait for another thread to be free. The
//! same on one server, on Cluster and through Sentinel.

use cloakroom_redis::{RedisConfig, RedisStore};
use cloakroom_testkit::threads::a_busy_thread_does_not_hold_up_another;
use cloakroom_testkit::{RedisCluster, RedisSentinels, RedisServer};
use std::time::Duration;

fn check(config: RedisConfig) {
    a_busy_thread_does_not_hold_up_another(
        move || async move { RedisStore::connect(config).await.unwrap() },
        Duration::from_secs(2),
    );
}

#[test]
fn a_busy_thread_does_not_hold_up_another_threads_calls() {
    let redis = RedisServer::start();
    check(RedisConfig::from_url(&redis.url()).unwrap());
}

#[test]
fn on_cluster_too() {
    let cluster = RedisCluster::start(3);
    check(RedisConfig::from_url(&cluster.url()).unwrap());
}

#[test]
fn through_sentinel_too() {
    let set = RedisSentinels::start();
    let config = RedisConfig::from_url(&set.url())
        .unwrap()
        .node_credentials(None, RedisSentinels::DATA_PASSWORD);
    check(config);
}

#[test]
fn a_thread_replacing_an_exited_one_works_at_once() {
    let redis = RedisServer::start();
    let config = RedisConfig::from_url(&redis.url()).unwrap();
    cloakroom_testkit::threads::a_thread_replacing_an_exited_one_works_at_once(
        move || async move { RedisStore::connect(config).await.unwrap() },
    );
}

/// With the read cache on, loads that miss read on the cache's tracking
/// connection: each thread has its own, too.
#[test]
fn with_the_read_cache_a_busy_thread_does_not_hold_up_another() {
    let redis = RedisServer::start();
    check(
        RedisConfig::from_url(&redis.url())
            .unwrap()
            .cache_max_bytes(1 << 20),
    );
}

#[test]
fn with_the_read_cache_a_thread_replacing_an_exited_one_works_at_once() {
    let redis = RedisServer::start();
    let config = RedisConfig::from_url(&redis.url())
        .unwrap()
        .cache_max_bytes(1 << 20);
    cloakroom_testkit::threads::a_thread_replacing_an_exited_one_works_at_once(
        move || async move { RedisStore::connect(config).await.unwrap() },
    );
}
