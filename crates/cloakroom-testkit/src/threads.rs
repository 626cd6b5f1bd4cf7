//! A store on several current-thread runtimes, as on actix-web, whose
//! workers each run one.
//!
//! A socket's readiness, and a multiplexed connection's own task, are
//! driven by the runtime that opened them, and a current-thread runtime
//! drives them only when its thread is free. A store that lets a thread
//! use a connection another thread opened makes that thread's calls wait
//! for the other one: for ever, if it is blocked.

use crate::conformance::{at_now, new_id};
use cloakroom::store::Store;
use std::future::Future;
use std::sync::{Arc, mpsc};
use std::time::Duration;

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

/// One thread connects with `connect` and calls the store, so a
/// connection opened on its runtime is left in the store's pool; then it
/// keeps that runtime busy. Three calls from a second thread must still
/// finish within `within`. Panics otherwise.
pub fn a_busy_thread_does_not_hold_up_another<S, C, F>(connect: C, within: Duration)
where
    S: Store,
    C: FnOnce() -> F + Send + 'static,
    F: Future<Output = S>,
{
    let expiry = at_now(Duration::from_secs(600), Duration::from_secs(3600));
    let (send_store, store_sent) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let busy = std::thread::spawn(move || {
        current_thread_runtime().block_on(async move {
            let store = Arc::new(connect().await);
            let first = store.load(&new_id(), &expiry).await;
            assert!(first.expect("the first call").is_none());
            send_store.send(store).expect("the test waits");
            // Busy: this runtime runs nothing until released.
            let _ = released.recv_timeout(Duration::from_secs(30));
        });
    });
    let store = store_sent
        .recv_timeout(Duration::from_secs(60))
        .expect("the first thread connected");
    // Several calls: a single one could find a shared socket's readiness
    // still set from the first thread's call.
    let other = std::thread::spawn(move || {
        current_thread_runtime().block_on(async move {
            let calls = async {
                for _ in 0..3 {
                    let found = store.load(&new_id(), &expiry).await?;
                    assert!(found.is_none());
                }
                Ok::<(), cloakroom::Error>(())
            };
            tokio::time::timeout(within, calls).await
        })
    });
    let answer = other.join().expect("the second thread");
    release.send(()).expect("the first thread waits");
    busy.join().expect("the first thread");
    let answer = answer.expect("the calls waited on the busy thread's runtime");
    answer.expect("the second thread's calls");
}

/// The store is made on a thread that then exits, and new threads follow
/// one after another, each taking over the exited one's place (see
/// [`cloakroom::store::RuntimeThread::index`]). Every call of every
/// thread must succeed: connections that died with an exited thread's
/// runtime are never handed to the next one.
pub fn a_thread_replacing_an_exited_one_works_at_once<S, C, F>(connect: C)
where
    S: Store,
    C: FnOnce() -> F + Send + 'static,
    F: Future<Output = S>,
{
    let expiry = at_now(Duration::from_secs(600), Duration::from_secs(3600));
    let store = std::thread::spawn(move || current_thread_runtime().block_on(connect()))
        .join()
        .expect("the connecting thread");
    let store = Arc::new(store);
    for round in 0..4 {
        let store = store.clone();
        let answers = std::thread::spawn(move || {
            current_thread_runtime().block_on(async move {
                let first = store.load(&new_id(), &expiry).await;
                let second = store.load(&new_id(), &expiry).await;
                (first.map(drop), second.map(drop))
            })
        })
        .join()
        .expect("a thread of the round");
        assert!(
            answers.0.is_ok() && answers.1.is_ok(),
            "round {round}: {answers:?}"
        );
    }
}
