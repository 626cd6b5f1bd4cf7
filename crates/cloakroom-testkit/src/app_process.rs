//! An app binary (the `cloakroom` demo, an example) run as a user runs it:
//! a process listening on a free loopback port, driven over HTTP.

use crate::Client;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running app, killed when dropped.
pub struct AppProcess {
    child: Option<Child>,
    /// What the app has written to stderr (its log) so far.
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// What an app logs once it listens; the address follows.
const LISTENING: &str = "listening on http://";

impl AppProcess {
    /// A command for `program` with none of the test's own `CLOAKROOM_*`
    /// variables nor its `RUST_LOG` (the app's default level logs the
    /// `listening on` line [`start`](Self::start) waits for), stdout
    /// dropped and stderr kept for [`stop`](Self::stop). Add arguments and
    /// variables, then [`start`](Self::start) it.
    pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CLOAKROOM_")) {
            cmd.env_remove(k);
        }
        cmd.env_remove("RUST_LOG");
        cmd
    }

    /// Runs `cmd` with `--listen 127.0.0.1:0` appended, and waits until
    /// its log says where it listens (`listening on http://ADDR`).
    ///
    /// The app picks its own port: a port probed here and handed over
    /// could be taken, between the probe and the app's bind, by another
    /// test's app, which this one's requests would then reach.
    pub async fn start(mut cmd: Command) -> AppProcess {
        cmd.args(["--listen", "127.0.0.1:0"]);
        let mut child = cmd.spawn().expect("start the app");
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the app's stderr must be piped: build the command with AppProcess::command");
        };
        let log = Arc::new(Mutex::new(String::new()));
        let reader = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
            })
        };
        let mut app = AppProcess {
            child: Some(child),
            log,
            reader: Some(reader),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(addr) = app.listening() {
                app.addr = addr;
                return app;
            }
            let exited = app.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "the app exited ({status}) before listening:\n{}",
                    app.stop()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the app did not start listening:\n{}",
                app.log_so_far()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The address in the log's `listening on` line, once it is there.
    fn listening(&self) -> Option<SocketAddr> {
        self.logged_addr(LISTENING)
    }

    /// The address that follows `prefix` (`metrics on http://`, say) in
    /// the first log line that has it, for an app that binds more than
    /// one port 0.
    pub fn logged_addr(&self, prefix: &str) -> Option<SocketAddr> {
        let log = self.log_so_far();
        let line = log.lines().find(|l| l.contains(prefix))?;
        let rest = &line[line.find(prefix)? + prefix.len()..];
        let addr = rest.split_whitespace().next()?;
        addr.split('/').next()?.parse().ok()
    }

    fn log_so_far(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A new client with an empty cookie jar.
    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }

    /// Stops the app and returns what it wrote to stderr (its log).
    pub fn stop(mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The pipe closes with the process; the reader then ends.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.log_so_far()
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
