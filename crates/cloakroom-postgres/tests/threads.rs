//! Connections and runtime threads: on current-thread runtimes (each
//! actix-web worker runs one), each thread uses a pool of its own, whose
//! connections' tasks its own runtime runs.

use cloakroom_postgres::{PostgresConfig, PostgresStore};
use cloakroom_testkit::PostgresServer;
use cloakroom_testkit::threads::a_busy_thread_does_not_hold_up_another;
use std::time::Duration;

#[test]
fn a_busy_thread_does_not_hold_up_another_threads_calls() {
    let url = PostgresServer::shared().schema_url();
    a_busy_thread_does_not_hold_up_another(
        move || async move {
            PostgresStore::connect(PostgresConfig::from_url(&url).unwrap())
                .await
                .unwrap()
        },
        Duration::from_secs(2),
    );
}

#[test]
fn a_thread_replacing_an_exited_one_works_at_once() {
    let url = PostgresServer::shared().schema_url();
    cloakroom_testkit::threads::a_thread_replacing_an_exited_one_works_at_once(
        move || async move {
            PostgresStore::connect(PostgresConfig::from_url(&url).unwrap())
                .await
                .unwrap()
        },
    );
}
