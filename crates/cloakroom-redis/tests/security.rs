//! The store-dependent security points (SECURITY.md) on a real redis-server.
//! Round trips are counted by the server (`total_reads_processed`).

use cloakroom::SessionManager;
use cloakroom_redis::{RedisConfig, RedisStore};
use cloakroom_testkit::RedisServer;
use cloakroom_testkit::security::Fixture;
use std::sync::Arc;

async fn redis() -> (Arc<RedisServer>, Fixture) {
    let server = Arc::new(RedisServer::start());
    let store = RedisStore::connect(RedisConfig::from_url(&server.url()).unwrap())
        .await
        .unwrap();
    let counter = server.clone();
    let fixture = Fixture::new(
        move |keys| SessionManager::builder(store.clone(), keys),
        move || counter.stat("total_reads_processed"),
    );
    (server, fixture)
}

cloakroom_testkit::security_tests!(redis().await);
