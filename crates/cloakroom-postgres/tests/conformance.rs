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
    let server = PostgresServer::shared();
    let (_, store) = store().await;
    let table = format!("SELECT count(*) FROM {}.sessions", store.schema());
    let rows = || server.psql(&table).parse().ok();
    cloakroom_testkit::conformance::expired_rows_are_swept_in_batches(
        store.clone(),
        |batch| store.delete_expired(batch),
        rows,
    )
    .await;
}
