//! Connections and runtime threads. A socket's readiness comes from the
//! runtime that opened it, and a current-thread runtime (each actix-web
//! worker runs one) delivers it only when its own thread is free; so each
//! thread of such a runtime reuses only the connections it opened.

use cloakroom::Store;
use cloakroom_memcached::{MemcachedConfig, MemcachedStore};
use cloakroom_testkit::MemcachedServer;
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
    let server = MemcachedServer::start();
    let store = std::sync::Arc::new(MemcachedStore::new(
        MemcachedConfig::from_url(&server.url()).unwrap(),
    ));
    let expiry = at_now(Duration::from_secs(600), Duration::from_secs(3600));
    let (called, call_done) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();

    // The first thread opens a connection with a call, which goes back to
    // the pool; then it keeps its runtime busy.
    let busy = {
        let store = store.clone();
        std::thread::spawn(move || {
            current_thread_runtime().block_on(async move {
                assert!(store.load(&new_id(), &expiry).await.unwrap().is_none());
                called.send(()).unwrap();
                let _ = released.recv_timeout(Duration::from_secs(30));
            });
        })
    };
    call_done.recv_timeout(Duration::from_secs(30)).unwrap();

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
