//! The store-dependent security points (SECURITY.md) on a real PostgreSQL,
//! a schema per test. Store calls are counted by a wrapper around the real
//! store.

use cloakroom::SessionManager;
use cloakroom_postgres::{PostgresConfig, PostgresStore};
use cloakroom_testkit::PostgresServer;
use cloakroom_testkit::counted::Counted;
use cloakroom_testkit::security::Fixture;

async fn postgres() -> ((), Fixture) {
    let url = PostgresServer::shared().schema_url();
    let config = PostgresConfig::from_url(&url).expect("a valid URL");
    let store = Counted::new(PostgresStore::connect(config).await.expect("connect"));
    let counts = store.counts.clone();
    let fixture = Fixture::new(
        move |keys| SessionManager::builder(store.clone(), keys),
        move || counts.total() as u64,
    );
    ((), fixture)
}

cloakroom_testkit::security_tests!(postgres().await);
