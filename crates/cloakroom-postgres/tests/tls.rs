//! TLS to a real PostgreSQL (`ssl = on`), with a CA made for the test by
//! openssl. Run with `--features tls`.

use cloakroom::{Applied, Clock, Error, ExpiryPolicy, Patch, Store, SystemClock};
use cloakroom_postgres::{PostgresConfig, PostgresStore};
use cloakroom_testkit::conformance::new_id;
use cloakroom_testkit::{PostgresServer, free_port};

#[tokio::test]
async fn sslmode_require_with_a_trusted_ca_works_and_an_untrusted_server_is_refused() {
    let dir = std::env::temp_dir().join(format!("cloakroom-pg-tls-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    cloakroom_testkit::tls::certificates(&dir);
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let server = PostgresServer::start_tls(&read("server.crt"), &read("server.key"));
    let url = format!(
        "{}?sslmode=require&application_name=cloakroom-tls",
        server.url()
    );

    let config = PostgresConfig::from_url(&url)
        .unwrap()
        .tls_ca_pem(read("ca.crt"));
    let store = PostgresStore::connect(config)
        .await
        .expect("TLS with the CA");
    let e = ExpiryPolicy::default().at(SystemClock.now());
    let id = new_id();
    let mut create = Patch::default();
    create.create();
    create.set("login", "\"alice\"".to_owned());
    assert_eq!(store.apply(&id, &create, &e).await.unwrap(), Applied::Done);
    let record = store.load(&id, &e).await.unwrap().expect("stored");
    assert_eq!(record.values["login"], "\"alice\"");
    // The server says the store's connections are encrypted.
    let seen = server.psql(
        "SELECT bool_and(ssl), count(*) > 0 FROM pg_stat_ssl \
         JOIN pg_stat_activity USING (pid) WHERE application_name = 'cloakroom-tls'",
    );
    assert_eq!(seen, "t|t");

    // The system's roots do not know the test CA: refused, and start-up
    // stops (only the operator can mend a certificate), with the reason.
    let untrusted = PostgresStore::connect(PostgresConfig::from_url(&url).unwrap()).await;
    let Err(Error::Config(reason)) = &untrusted else {
        panic!("{untrusted:?}");
    };
    assert!(reason.contains("TLS handshake"), "{reason}");
    assert!(reason.to_lowercase().contains("certificate"), "{reason}");
    // sslmode=prefer (the default) takes the TLS the server offers, and
    // checks its certificate all the same: no quiet fall back to plain.
    let preferred = PostgresStore::connect(PostgresConfig::from_url(&server.url()).unwrap()).await;
    let Err(Error::Config(reason)) = &preferred else {
        panic!("{preferred:?}");
    };
    assert!(reason.contains("TLS handshake"), "{reason}");
    // A CA that is no PEM is a configuration error, before any connection.
    let bad = PostgresConfig::from_url(&url)
        .unwrap()
        .tls_ca_pem(b"not a certificate".to_vec());
    assert!(matches!(PostgresStore::new(bad), Err(Error::Config(_))));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Built with TLS, a store still reaches a server that offers none, under
/// the default `sslmode=prefer`, as libpq does; `require` refuses it at
/// start-up.
#[tokio::test]
async fn prefer_reaches_a_server_without_tls_and_require_does_not() {
    let url = PostgresServer::shared().schema_url();
    let store = PostgresStore::connect(PostgresConfig::from_url(&url).unwrap())
        .await
        .expect("plain TCP under sslmode=prefer");
    let e = ExpiryPolicy::default().at(SystemClock.now());
    let mut create = Patch::default();
    create.create();
    create.set("login", "\"alice\"".to_owned());
    assert_eq!(
        store.apply(&new_id(), &create, &e).await.unwrap(),
        Applied::Done
    );

    let required = PostgresStore::connect(
        PostgresConfig::from_url(&format!("{url}&sslmode=require")).unwrap(),
    )
    .await;
    // Only the operator can mend that: start-up stops, with the reason.
    let Err(Error::Config(reason)) = &required else {
        panic!("{required:?}");
    };
    assert!(reason.contains("server does not support TLS"), "{reason}");
}
