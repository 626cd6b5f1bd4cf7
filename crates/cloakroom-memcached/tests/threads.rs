//! Connections and runtime threads: on current-thread runtimes (each
//! actix-web worker runs one), a thread reuses only the connections it
//! opened, whose readiness its own runtime delivers.

use cloakroom_memcached::{MemcachedConfig, MemcachedStore};
use cloakroom_testkit::MemcachedServer;
use cloakroom_testkit::threads::a_busy_thread_does_not_hold_up_another;
use std::time::Duration;

#[test]
fn a_busy_thread_does_not_hold_up_another_threads_calls() {
    let server = MemcachedServer::start();
    let url = server.url();
    a_busy_thread_does_not_hold_up_another(
        move || async move { MemcachedStore::new(MemcachedConfig::from_url(&url).unwrap()) },
        Duration::from_secs(1),
    );
}
