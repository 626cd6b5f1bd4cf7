//! An app binary (the `cloakroom` demo, an example) run as a user runs it:
//! a process listening on a free loopback port, driven over HTTP.

use crate::Client;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running app, killed when dropped.
pub struct AppProcess {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl AppProcess {
    /// A command for `program` with none of the test's own `CLOAKROOM_*`
    /// variables, stdout dropped and stderr kept for [`stop`](Self::stop).
    /// Add arguments and variables, then [`start`](Self::start) it.
    pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CLOAKROOM_")) {
            cmd.env_remove(k);
        }
        cmd
    }

    /// Runs `cmd` with `--listen ADDR` on a free loopback port appended,
    /// and waits until it accepts connections.
    pub async fn start(mut cmd: Command) -> AppProcess {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port");
        cmd.args(["--listen", &addr.to_string()]);
        let app = AppProcess {
            child: Some(cmd.spawn().expect("start the app")),
            addr,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "the app did not start listening");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        app
    }

    /// A new client with an empty cookie jar.
    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }

    /// Stops the app and returns what it wrote to stderr (its log).
    pub fn stop(mut self) -> String {
        let mut log = String::new();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut log);
            }
        }
        log
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
