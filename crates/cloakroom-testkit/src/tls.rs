//! Certificates for the TLS tests, made by openssl.

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

/// Writes into `dir` a CA (`ca.crt`, `ca.key`) and a certificate for
/// 127.0.0.1 that it signed (`server.crt`, `server.key`), valid two days.
pub fn certificates(dir: &Path) {
    let ca = "req -x509 -newkey rsa:2048 -nodes -days 2 -keyout ca.key -out ca.crt";
    let mut args: Vec<&str> = ca.split(' ').collect();
    args.extend(["-subj", "/CN=cloakroom test CA"]);
    openssl(dir, &args);
    let csr = "req -newkey rsa:2048 -nodes -keyout server.key -out server.csr";
    let mut args: Vec<&str> = csr.split(' ').collect();
    args.extend(["-subj", "/CN=127.0.0.1"]);
    openssl(dir, &args);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write san.ext");
    let sign = "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
                -out server.crt -days 2 -extfile san.ext";
    openssl(dir, &sign.split_whitespace().collect::<Vec<_>>());
}

/// A throw-away redis-server that also speaks TLS, with a certificate for
/// 127.0.0.1 from a CA made for the test. Clients need not present one.
pub struct TlsRedis {
    /// The server; its plain port serves `redis-cli` checks.
    pub server: crate::RedisServer,
    /// `rediss://127.0.0.1:TLS_PORT`.
    pub url: String,
    /// The CA's certificate (PEM), to trust.
    pub ca: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl TlsRedis {
    /// Makes the certificates and starts the server.
    pub fn start() -> TlsRedis {
        let dir = std::env::temp_dir().join(format!("cloakroom-tls-{}", crate::free_port()));
        std::fs::create_dir_all(&dir).expect("make the certificates' directory");
        certificates(&dir);
        let tls_port = crate::free_port().to_string();
        let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let server = crate::RedisServer::start_with(&[
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &file("server.crt"),
            "--tls-key-file",
            &file("server.key"),
            "--tls-ca-cert-file",
            &file("ca.crt"),
            "--tls-auth-clients",
            "no",
        ]);
        TlsRedis {
            server,
            url: format!("rediss://127.0.0.1:{tls_port}"),
            ca: dir.join("ca.crt"),
            dir,
        }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
