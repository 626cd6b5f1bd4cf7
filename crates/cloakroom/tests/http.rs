//! The HTTP scenarios on the memory store, on axum and on actix-web,
//! through a real TCP listener and a cookie-keeping client.

use cloakroom::{MemoryStore, SessionManager};
use cloakroom_testkit::counted::Counted;
use cloakroom_testkit::http_suite::HttpFixture;

fn memory() -> ((), HttpFixture) {
    let store = Counted::new(MemoryStore::new());
    let counts = store.counts.clone();
    let fixture = HttpFixture::new(
        move |keys| SessionManager::builder(store.clone(), keys),
        counts,
    );
    ((), fixture)
}

cloakroom_testkit::http_tests!(memory());
