//! TLS to a real PostgreSQL (`ssl = on`), with a CA made for the test by
//! openssl. Run with `--features tls`.

use cloakroom::{Applied, Clock, Error, ExpiryPolicy, Patch, Store, SystemClock};
use cloakroom_postgres::{PostgresConfig, PostgresStore};
use cloakroom_testkit::conformance::new_id;
use cloakroom_testkit::{PostgresServer, free_port};
use std::path::Path;
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a certificate for 127.0.0.1 that it signed.
fn certificates(dir: &Path) {
    let ca = "req -x509 -newkey rsa:2048 -nodes -days 2 -keyout ca.key -out ca.crt";
    let mut args: Vec<&str> = ca.split(' ').collect();
    args.extend(["-subj", "/CN=cloakroom test CA"]);
    openssl(dir, &args);
    let csr = "req -newkey rsa:2048 -nodes -keyout server.key -out server.csr";
    let mut args: Vec<&str> = csr.split(' ').collect();
    args.extend(["-subj", "/CN=127.0.0.1"]);
    openssl(dir, &args);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    let sign = "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
                -out server.crt -days 2 -extfile san.ext";
    openssl(dir, &sign.split_whitespace().collect::<Vec<_>>());
}

#[tokio::test]
async fn sslmode_require_with_a_trusted_ca_works_and_an_untrusted_server_is_refused() {
    let dir = std::env::temp_dir().join(format!("cloakroom-pg-tls-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
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

    // The system's roots do not know the test CA: refused.
    let untrusted = PostgresStore::connect(PostgresConfig::from_url(&url).unwrap()).await;
    assert!(
        matches!(untrusted, Err(Error::Unavailable(_))),
        "{untrusted:?}"
    );
    // A CA that is no PEM is a configuration error, before any connection.
    let bad = PostgresConfig::from_url(&url)
        .unwrap()
        .tls_ca_pem(b"not a certificate".to_vec());
    assert!(matches!(PostgresStore::new(bad), Err(Error::Config(_))));
    std::fs::remove_dir_all(&dir).unwrap();
}
