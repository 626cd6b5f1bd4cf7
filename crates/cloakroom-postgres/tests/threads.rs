//! Connections and runtime threads. A connection's own task runs on the
//! runtime that opened it, and a current-thread runtime (each actix-web
//! worker runs one) runs it only when its thread is free; so each thread
//! of such a runtime uses connections it opened.

use cloakroom::Store;
use cloakroom_postgres::{PostgresConfig, PostgresStore};
use cloakroom_testkit::PostgresServer;
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
    let url = PostgresServer::shared().schema_url();
    let expiry = at_now(Duration::from_secs(600), Duration::from_secs(3600));
    let (send_store, store_sent) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();

    // The first thread connects and calls the store, so a connection made
    // on its runtime waits in the pool; then it keeps its runtime busy.
    let busy = std::thread::spawn(move || {
        current_thread_runtime().block_on(async move {
            let store = PostgresStore::connect(PostgresConfig::from_url(&url).unwrap())
                .await
                .unwrap();
            assert!(store.load(&new_id(), &expiry).await.unwrap().is_none());
            send_store.send(store).unwrap();
            let _ = released.recv_timeout(Duration::from_secs(30));
        });
    });
    let store = store_sent.recv_timeout(Duration::from_secs(60)).unwrap();

    let other = std::thread::spawn(move || {
        current_thread_runtime().block_on(async move {
            let id = new_id();
            tokio::time::timeout(Duration::from_secs(2), store.load(&id, &expiry)).await
        })
    });
    let answer = other.join().unwrap();
    release.send(()).unwrap();
    busy.join().unwrap();
    let answer = answer.expect("the call waited on the busy thread's runtime");
    assert!(answer.unwrap().is_none());
}
