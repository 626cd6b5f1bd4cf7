//! The store contract on the embedded memory store.

cloakroom_testkit::conformance_tests!(((), cloakroom::MemoryStore::new()));
