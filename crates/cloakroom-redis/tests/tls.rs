//! `rediss://` against a real redis-server speaking TLS, with a CA made
//! for the test by openssl. Run with `--features tls`.

use cloakroom::{Applied, Clock, ExpiryPolicy, Patch, Store, SystemClock};
use cloakroom_redis::{RedisConfig, RedisStore};
use cloakroom_testkit::conformance::new_id;
use cloakroom_testkit::{RedisServer, free_port};
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
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=cloakroom test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
}

#[tokio::test]
async fn rediss_with_a_trusted_ca_works_and_an_untrusted_server_is_refused() {
    let dir = std::env::temp_dir().join(format!("cloakroom-tls-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
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
