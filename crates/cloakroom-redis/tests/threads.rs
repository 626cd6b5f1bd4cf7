//! Connections and runtime threads. On current-thread runtimes (each
//! actix-web worker runs one), each thread makes and uses a connection of
//! its own, so its calls never wait for another thread to be free.

use cloakroom::Store;
use cloakroom_redis::{RedisConfig, RedisStore};
use cloakroom_testkit::RedisServer;
use cloakroom_testkit::conformance::{at_now, new_id};
use std::sync::mpsc;
use std::time::Duration;

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_busy_thread_does_not_hold_up_another_threads_calls() {
    let redis = RedisServer::start();
    let url = redis.url();
    let expiry = at_now(Duration::from_secs(600), Duration::from_secs(3600));
    let (send_store, store_sent) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();

    // The first thread connects and calls the store, then keeps its
    // runtime busy: nothing that runtime drives makes progress.
    let busy = std::thread::spawn(move || {
        current_thread_runtime().block_on(async move {
            let store = RedisStore::connect(RedisConfig::from_url(&url).unwrap())
                .await
                .unwrap();
            assert!(store.load(&new_id(), &expiry).await.unwrap().is_none());
            send_store.send(store).unwrap();
            let _ = released.recv_timeout(Duration::from_secs(30));
        });
    });
    let store = store_sent.recv_timeout(Duration::from_secs(30)).unwrap();

    // Another thread's calls go through, on a connection of its own.
    let other = std::thread::spawn(move || {
        current_thread_runtime().block_on(async move {
            let id = new_id();
            tokio::time::timeout(Duration::from_secs(1), store.load(&id, &expiry)).await
        })
    });
    let answer = other.join().unwrap();
    release.send(()).unwrap();
    busy.join().unwrap();
    let answer = answer.expect("the call waited on the busy thread's runtime");
    assert!(answer.unwrap().is_none());
}
