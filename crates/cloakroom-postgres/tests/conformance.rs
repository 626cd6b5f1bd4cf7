//! The store contract on a real PostgreSQL: one server per test binary,
//! a schema of its own per test. Deadlines are checked in SQL against the
//! time each call passes in, so the suite moves a manual clock instead of
//! sleeping.

use cloakroom_postgres::{PostgresConfig, PostgresStore};
use cloakroom_testkit::PostgresServer;
use cloakroom_testkit::conformance::SuiteTime;

async fn store() -> ((), PostgresStore) {
    let url = PostgresServer::shared().schema_url();
    let config = PostgresConfig::from_url(&url).expect("a valid URL");
    let store = PostgresStore::connect(config).await.expect("connect");
    ((), store)
}

cloakroom_testkit::conformance_tests!(store().await, SuiteTime::manual());

/// The session inventory: the `user_key` column and an advisory lock per
/// user.
mod inventory {
    use super::*;

    cloakroom_testkit::inventory_tests!(store().await);
}

/// Expired rows are all deleted, with a batch smaller than their number,
/// live ones kept, and an expired row is never returned before that.
#[tokio::test]
async fn every_expired_row_is_swept_past_one_batch() {
    let server = PostgresServer::shared();
    let (_, store) = store().await;
    let table = format!("SELECT count(*) FROM {}.sessions", store.schema());
    let rows = || server.psql(&table).trim().parse().expect("a row count");
    cloakroom_testkit::conformance::every_expired_row_is_swept_past_one_batch(
        store.clone(),
        |batch| store.delete_expired(batch),
        rows,
    )
    .await;
}

/// Refusals that retrying cannot mend (an unknown role, a missing
/// database, no right to create the schema) are configuration errors
/// carrying PostgreSQL's reason, so start-up stops instead of serving
/// `503` for good; an unreachable server stays an outage.
#[tokio::test]
async fn refusals_only_the_operator_can_mend_stop_start_up_with_the_reason() {
    let pg = PostgresServer::shared();
    let connect = |url: String| async move {
        let config = PostgresConfig::from_url(&url).expect("a valid URL");
        PostgresStore::connect(config)
            .await
            .expect_err("a refused start")
    };
    let err = connect(format!("postgres://nobody@127.0.0.1:{}/postgres", pg.port)).await;
    assert!(matches!(err, cloakroom::Error::Config(_)), "{err:?}");
    assert!(
        err.to_string().contains("role \"nobody\" does not exist"),
        "{err}"
    );

    let err = connect(format!("postgres://postgres@127.0.0.1:{}/nosuch", pg.port)).await;
    assert!(matches!(err, cloakroom::Error::Config(_)), "{err:?}");
    assert!(
        err.to_string().contains("\"nosuch\" does not exist"),
        "{err}"
    );

    // A role that may log in but not create a schema.
    let role = format!("weak{}", std::process::id());
    pg.psql(&format!("CREATE ROLE {role} LOGIN"));
    let err = connect(format!("postgres://{role}@127.0.0.1:{}/postgres", pg.port)).await;
    assert!(matches!(err, cloakroom::Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("permission denied"), "{err}");
    pg.psql(&format!("DROP ROLE {role}"));

    // Nothing listening: not the operator's settings, the server's absence.
    let port = cloakroom_testkit::free_port();
    let err = connect(format!("postgres://postgres@127.0.0.1:{port}/postgres")).await;
    assert!(err.is_unavailable(), "{err:?}");
}

/// A rename that races a create of its new id: the create's row is not
/// committed when the rename checks, so the rename's update meets it on
/// the primary key once it commits. Nothing is written, and the store
/// says `Gone`, not that it is unavailable.
#[tokio::test]
async fn a_rename_that_loses_a_race_for_its_new_id_is_gone() {
    use cloakroom::{Applied, Patch, Store};
    use cloakroom_postgres::tokio_postgres;
    use cloakroom_testkit::conformance::{at_now, new_id};
    use std::time::Duration;

    let server = PostgresServer::shared();
    let (_, store) = store().await;
    let e = at_now(Duration::from_secs(600), Duration::from_secs(3600));
    let (old, new) = (new_id(), new_id());
    let mut create = Patch::default();
    create.create();
    create.set("n", "1".into());
    assert_eq!(store.apply(&old, &create, &e).await.unwrap(), Applied::Done);

    // Another client inserts `new` and holds its transaction open.
    let (mut other, conn) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .expect("a second client");
    tokio::spawn(conn);
    let tx = other.transaction().await.unwrap();
    let now = i64::try_from(e.now.0).unwrap();
    tx.execute(
        &format!(
            "INSERT INTO {}.sessions (id, created, deadline, expires_at) VALUES ($1, $2, $3, $3)",
            store.schema()
        ),
        &[&new.as_bytes().as_slice(), &now, &(now + 3_600_000)],
    )
    .await
    .unwrap();
    let rename = tokio::spawn({
        let store = store.clone();
        async move { store.cycle(&old, &new, &e).await }
    });
    // Let the rename pass its check and wait on the row's key.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.commit().await.unwrap();
    let applied = rename.await.unwrap().expect("not an outage");
    assert_eq!(applied, Applied::Gone);
    let kept = store
        .load(&old, &e)
        .await
        .unwrap()
        .expect("the old id kept");
    assert_eq!(kept.values["n"], "1");
}

/// A schema named by a keyword (`user`, `order`) is valid, and works: the
/// store quotes the name in every statement.
#[tokio::test]
async fn a_schema_named_by_a_keyword_works() {
    use cloakroom::{Applied, Patch, Store};
    use cloakroom_testkit::conformance::{at_now, new_id};
    use std::time::Duration;

    let server = PostgresServer::shared();
    for keyword in ["user", "order"] {
        let config = PostgresConfig::from_url(&server.url())
            .unwrap()
            .schema(keyword)
            .unwrap();
        let store = PostgresStore::connect(config).await.expect("connect");
        let e = at_now(Duration::from_secs(600), Duration::from_secs(3600));
        let id = new_id();
        let mut create = Patch::default();
        create.create();
        create.set("login", "\"alice\"".to_owned());
        assert_eq!(store.apply(&id, &create, &e).await.unwrap(), Applied::Done);
        assert!(store.load(&id, &e).await.unwrap().is_some());
        let rows = server.psql(&format!("SELECT count(*) FROM \"{keyword}\".sessions"));
        assert_eq!(rows.trim(), "1");
    }
}
