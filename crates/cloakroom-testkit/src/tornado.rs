//! The seed's Tornado app with pycket, run as a process beside the Rust
//! service, on the venv that `scripts/test` installs (`.venv-pycket`, with
//! tornado, pycket and redis from PyPI).

use crate::RedisServer;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The venv's Python: `CLOAKROOM_PYCKET_PYTHON`, or `.venv-pycket` at the
/// workspace root.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CLOAKROOM_PYCKET_PYTHON") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-pycket/bin/python");
    assert!(
        p.exists(),
        "no Python with tornado and pycket at {}: run scripts/test, which installs them",
        p.display()
    );
    p
}

/// The seed's Tornado app (`tornado/seed_app.py`: `/?name=`, `/detail`,
/// `/notify?msg=`, `/flash`), with pycket on `redis`'s databases 0 and 1,
/// killed when dropped.
pub struct TornadoSeed {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl TornadoSeed {
    /// Starts it with `cookie_secret`, on a free port.
    pub async fn start(redis: &RedisServer, cookie_secret: &str) -> TornadoSeed {
        Self::start_with(&[("REDIS_PORT", redis.port.to_string())], cookie_secret).await
    }

    /// Starts it with pycket's Memcached engine on `memcached`.
    pub async fn start_on_memcached(
        memcached: &crate::MemcachedServer,
        cookie_secret: &str,
    ) -> TornadoSeed {
        let env = [
            ("ENGINE", "memcached".to_owned()),
            ("MEMCACHED_PORT", memcached.port.to_string()),
        ];
        Self::start_with(&env, cookie_secret).await
    }

    async fn start_with(env: &[(&str, String)], cookie_secret: &str) -> TornadoSeed {
        let port = crate::free_port();
        let child = Command::new(python())
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tornado/seed_app.py"))
            .env("PORT", port.to_string())
            .env("COOKIE_SECRET", cookie_secret)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the Tornado app");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "Tornado did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        TornadoSeed { child, addr }
    }

    /// A client of the Tornado app, with an empty cookie jar.
    pub fn client(&self) -> crate::Client {
        crate::Client::new(self.addr)
    }
}

impl Drop for TornadoSeed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
