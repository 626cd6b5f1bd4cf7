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

/// A write that would take a session past memcached's item size (1 MiB by
/// default) is refused before it is sent: memcached would answer it with
/// an error and delete the session already stored.
#[tokio::test]
async fn a_write_past_the_item_size_is_refused_and_the_session_kept() {
    use cloakroom::{Applied, Error, Patch, Store};
    use cloakroom_testkit::conformance::{at_now, new_id};
    use std::time::Duration;

    let (server, store) = store();
    let e = at_now(Duration::from_secs(600), Duration::from_secs(3600));
    let id = new_id();
    let mut create = Patch::default();
    create.create();
    create.set("a", "1".to_owned());
    assert_eq!(store.apply(&id, &create, &e).await.unwrap(), Applied::Done);

    let mut grow = Patch::default();
    grow.set("big", format!("\"{}\"", "x".repeat(1024 * 1024)));
    let refused = store.apply(&id, &grow, &e).await;
    assert!(
        matches!(refused, Err(Error::TooLarge { .. })),
        "{refused:?}"
    );
    let kept = store
        .load(&id, &e)
        .await
        .unwrap()
        .expect("the session is kept");
    assert_eq!(kept.values["a"], "1");
    assert!(!kept.values.contains_key("big"));

    // Raised to what memcached is started with, a smaller item goes
    // through; the check follows the setting.
    let mut small = Patch::default();
    small.set("b", format!("\"{}\"", "y".repeat(2000)));
    let strict = MemcachedStore::new(
        MemcachedConfig::from_url(&server.url())
            .unwrap()
            .max_item_bytes(1000),
    );
    assert!(matches!(
        strict.apply(&id, &small, &e).await,
        Err(Error::TooLarge { limit: 1000, .. })
    ));
    assert_eq!(store.apply(&id, &small, &e).await.unwrap(), Applied::Done);

    // A rename (a sign-in) deletes the old item before it adds the new
    // one: an item too large is refused before either.
    let mut rename = Patch::rename(new_id());
    rename.set("big", format!("\"{}\"", "x".repeat(1024 * 1024)));
    assert!(matches!(
        store.apply(&id, &rename, &e).await,
        Err(Error::TooLarge { .. })
    ));
    assert!(store.load(&id, &e).await.unwrap().is_some(), "kept");
}
