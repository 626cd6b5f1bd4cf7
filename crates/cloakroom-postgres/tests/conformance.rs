//! The store contract on a real PostgreSQL: one server per test binary,
//! a schema of its own per test. Deadlines are checked in SQL against the
//! time each call passes in, so the suite moves a manual clock instead of
//! sleeping.

use cloakroom_postgres::{PostgresConfig, PostgresStore};
use cloakroom_testkit::PostgresServer;
use cloakroom_testkit::conformance::SuiteTime;

async fn store() -> ((), PostgresStore) {
    let url = PostgresServer::shared().schema_url();
    let config = PostgresConfig::from_url(&url).expect("a valid URL");
    let store = PostgresStore::connect(config).await.expect("connect");
    ((), store)
}

cloakroom_testkit::conformance_tests!(store().await, SuiteTime::manual());

/// The session inventory: the `user_key` column and an advisory lock per
/// user.
mod inventory {
    use super::*;

    cloakroom_testkit::inventory_tests!(store().await);
}

/// Expired rows are deleted in batches, live ones kept, and an expired
/// row is never returned before that.
#[tokio::test]
async fn expired_rows_are_swept_in_batches() {
    use cloakroom::{Applied, Clock, ExpiryPolicy, Patch, Store, SystemClock};
    use std::time::Duration;
    let server = PostgresServer::shared();
    let (_, store) = store().await;
    let rows = || server.psql(&format!("SELECT count(*) FROM {}.sessions", store.schema()));
    let short = ExpiryPolicy::default()
        .idle(Duration::from_millis(1))
        .absolute(Duration::from_secs(60));
    let long = ExpiryPolicy::default();
    let mut create = Patch::default();
    create.create();
    create.set("n", "1".to_owned());
    let mut expired = Vec::new();
    for _ in 0..10 {
        let id = cloakroom_testkit::conformance::new_id();
        let e = short.at(SystemClock.now());
        assert_eq!(store.apply(&id, &create, &e).await.unwrap(), Applied::Done);
        expired.push(id);
    }
    let live = cloakroom_testkit::conformance::new_id();
    let e = long.at(SystemClock.now());
    assert_eq!(
        store.apply(&live, &create, &e).await.unwrap(),
        Applied::Done
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let now = long.at(SystemClock.now());
    assert!(store.load(&expired[0], &now).await.unwrap().is_none());
    assert_eq!(store.count(&now).await.unwrap(), 1);
    assert_eq!(rows(), "11", "expired rows stay until swept");
    assert_eq!(store.delete_expired(3).await.unwrap(), 10);
    assert_eq!(store.delete_expired(3).await.unwrap(), 0);
    assert_eq!(rows(), "1");
    assert!(store.load(&live, &now).await.unwrap().is_some());
}
