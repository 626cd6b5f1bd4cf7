//! The store contract on a real redis-server, one server per test.

use cloakroom_redis::{RedisConfig, RedisStore};
use cloakroom_testkit::RedisServer;

async fn store(db_notifications: Option<i64>) -> (RedisServer, RedisStore) {
    let server = RedisServer::start();
    let config = RedisConfig::from_url(&format!("{}/0", server.url()))
        .unwrap()
        .db_notifications(db_notifications);
    let store = RedisStore::connect(config).await.unwrap();
    (server, store)
}

cloakroom_testkit::conformance_tests!(store(None).await);

/// pycket kept notifications in db 1.
mod separate_notifications_db {
    use super::*;

    cloakroom_testkit::conformance_tests!(store(Some(1)).await);

    mod inventory {
        use super::*;

        cloakroom_testkit::inventory_tests!(store(Some(1)).await);
    }
}

/// The session inventory (user index, cap) on a real redis-server.
mod inventory {
    use super::*;

    cloakroom_testkit::inventory_tests!(store(None).await);
}
