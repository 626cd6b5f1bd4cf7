//! Connections and runtime threads: on current-thread runtimes (each
//! actix-web worker runs one), each thread makes and uses a connection of
//! its own, so its calls never wait for another thread to be free.

use cloakroom_redis::{RedisConfig, RedisStore};
use cloakroom_testkit::RedisServer;
use cloakroom_testkit::threads::a_busy_thread_does_not_hold_up_another;
use std::time::Duration;

#[test]
fn a_busy_thread_does_not_hold_up_another_threads_calls() {
    let redis = RedisServer::start();
    let url = redis.url();
    a_busy_thread_does_not_hold_up_another(
        move || async move {
            RedisStore::connect(RedisConfig::from_url(&url).unwrap())
                .await
                .unwrap()
        },
        Duration::from_secs(1),
    );
}
