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
