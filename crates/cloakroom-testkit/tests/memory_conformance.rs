//! The store contract on the embedded memory store.

cloakroom_testkit::conformance_tests!(((), cloakroom::MemoryStore::new()));

/// The session inventory on the memory store.
mod inventory {
    cloakroom_testkit::inventory_tests!(((), cloakroom::MemoryStore::new()));
}
