//! The store contract on a real memcached, one server per test.

use cloakroom_memcached::{MemcachedConfig, MemcachedStore};
use cloakroom_testkit::MemcachedServer;

fn store() -> (MemcachedServer, MemcachedStore) {
    let server = MemcachedServer::start();
    let store = MemcachedStore::new(MemcachedConfig::from_url(&server.url()).unwrap());
    (server, store)
}

cloakroom_testkit::conformance_tests!(store());

/// The session inventory on a real memcached: a CAS-updated index item
/// per user.
mod inventory {
    use super::*;

    cloakroom_testkit::inventory_tests!(store());
}
