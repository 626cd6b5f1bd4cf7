//! The store contract on the embedded memory store.

// The memory store takes every instant from `Expiry`: no sleeping.
cloakroom_testkit::conformance_tests!(
    ((), cloakroom::MemoryStore::new()),
    cloakroom_testkit::conformance::SuiteTime::manual()
);

/// The session inventory on the memory store.
mod inventory {
    cloakroom_testkit::inventory_tests!(((), cloakroom::MemoryStore::new()));
}
