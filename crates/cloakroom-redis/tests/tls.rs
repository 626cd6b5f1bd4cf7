//! `rediss://` against a real redis-server speaking TLS, with a CA made
//! for the test by openssl. Run with `--features tls`.

use cloakroom::{Applied, Clock, ExpiryPolicy, Patch, Store, SystemClock};
use cloakroom_redis::{RedisConfig, RedisStore};
use cloakroom_testkit::conformance::new_id;
use cloakroom_testkit::{RedisServer, free_port};

#[tokio::test]
async fn rediss_with_a_trusted_ca_works_and_an_untrusted_server_is_refused() {
    let dir = std::env::temp_dir().join(format!("cloakroom-tls-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    cloakroom_testkit::tls::certificates(&dir);
    let tls_port = free_port().to_string();
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (cert, key, ca) = (file("server.crt"), file("server.key"), file("ca.crt"));
    let _redis = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{tls_port}");

    let untrusted = RedisStore::connect(RedisConfig::from_url(&url).unwrap()).await;
    assert!(
        untrusted.is_err(),
        "a certificate from an unknown CA must be refused"
    );

    let pem = std::fs::read(dir.join("ca.crt")).unwrap();
    let config = RedisConfig::from_url(&url).unwrap().tls_ca_pem(pem);
    let store = RedisStore::connect(config).await.unwrap();
    let e = ExpiryPolicy::default().at(SystemClock.now());
    let id = new_id();
    let mut p = Patch::default();
    p.create();
    p.set("login", "\"alice\"".into());
    assert_eq!(store.apply(&id, &p, &e).await.unwrap(), Applied::Done);
    let record = store.load(&id, &e).await.unwrap().unwrap();
    assert_eq!(record.values["login"], "\"alice\"");
    std::fs::remove_dir_all(dir).unwrap();
}
