//! `rediss://` against a real redis-server speaking TLS, with a CA made
//! for the test by openssl. Run with `--features tls`.

use cloakroom::{Applied, Clock, ExpiryPolicy, Patch, Store, SystemClock};
use cloakroom_redis::{RedisConfig, RedisStore};
use cloakroom_testkit::conformance::new_id;
use cloakroom_testkit::tls::TlsRedis;

#[tokio::test]
async fn rediss_with_a_trusted_ca_works_and_an_untrusted_server_is_refused() {
    let redis = TlsRedis::start();
    let url = &redis.url;

    let untrusted = RedisStore::connect(RedisConfig::from_url(url).unwrap()).await;
    assert!(
        untrusted.is_err(),
        "a certificate from an unknown CA must be refused"
    );

    let pem = std::fs::read(&redis.ca).unwrap();
    let config = RedisConfig::from_url(url).unwrap().tls_ca_pem(pem);
    let store = RedisStore::connect(config).await.unwrap();
    let e = ExpiryPolicy::default().at(SystemClock.now());
    let id = new_id();
    let mut p = Patch::default();
    p.create();
    p.set("login", "\"alice\"".into());
    assert_eq!(store.apply(&id, &p, &e).await.unwrap(), Applied::Done);
    let record = store.load(&id, &e).await.unwrap().unwrap();
    assert_eq!(record.values["login"], "\"alice\"");
}
