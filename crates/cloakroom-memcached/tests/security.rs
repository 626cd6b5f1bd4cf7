//! The store-dependent security points (SECURITY.md) on a real memcached.
//! Store calls are counted by a wrapper around the real store.

use cloakroom::SessionManager;
use cloakroom_memcached::{MemcachedConfig, MemcachedStore};
use cloakroom_testkit::MemcachedServer;
use cloakroom_testkit::counted::Counted;
use cloakroom_testkit::security::Fixture;

fn memcached() -> (MemcachedServer, Fixture) {
    let server = MemcachedServer::start();
    let store = Counted::new(MemcachedStore::new(
        MemcachedConfig::from_url(&server.url()).unwrap(),
    ));
    let counts = store.counts.clone();
    let fixture = Fixture::new(
        move |keys| SessionManager::builder(store.clone(), keys),
        move || counts.total() as u64,
    );
    (server, fixture)
}

cloakroom_testkit::security_tests!(memcached());
