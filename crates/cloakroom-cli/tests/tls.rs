//! `cloakroom serve` and `cloakroom sessions` on `rediss://`, against a
//! real redis-server speaking TLS, with a CA made for the test by openssl.
//! Run with `--features tls`.

use cloakroom_testkit::AppProcess;
use cloakroom_testkit::tls::TlsRedis;
use std::process::Command;

const SECRET: &str = "the TLS test's secret, 32 bytes or more";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_sessions_work_on_rediss_with_the_configured_ca() {
    let redis = TlsRedis::start();
    let (url, ca) = (&redis.url, redis.ca.to_string_lossy().into_owned());

    let mut cmd = AppProcess::command(env!("CARGO_BIN_EXE_cloakroom"));
    cmd.args(["serve", "--store", url])
        .env("CLOAKROOM_COOKIE_SECRET", SECRET)
        .env("CLOAKROOM_STORAGE_TLS_CA_FILE", &ca);
    let demo = AppProcess::start(cmd).await;
    let c = demo.client();
    assert_eq!(c.get("/?name=alice").await.body, "index get ok!");
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
    // The session is in Redis, read here over its plain port.
    assert_eq!(redis.server.cli(&["DBSIZE"]), "1");

    let count = |ca: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloakroom"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CLOAKROOM_")) {
            cmd.env_remove(k);
        }
        cmd.env("CLOAKROOM_COOKIE_SECRET", SECRET)
            .args(["sessions", "count", "--store", url]);
        if let Some(ca) = ca {
            cmd.env("CLOAKROOM_STORAGE_TLS_CA_FILE", ca);
        }
        cmd.output().expect("run cloakroom sessions count")
    };
    let trusted = count(Some(&ca));
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&trusted.stdout).trim(), "1");
    // Without the CA, the test's certificate is not trusted.
    let untrusted = count(None);
    assert!(!untrusted.status.success(), "an untrusted server was used");
}
