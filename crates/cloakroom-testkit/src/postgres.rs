//! A real PostgreSQL server from Debian's packages: `initdb` into a
//! scratch directory, then `postgres` on a free loopback port, as a
//! non-root user when the tests run as root (PostgreSQL refuses root).
//!
//! A test binary usually shares one server ([`PostgresServer::shared`])
//! and gives each test a schema of its own ([`PostgresServer::schema_url`]):
//! `initdb` costs about a second, a schema a millisecond.

use crate::servers::free_port;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The shell that runs `postgres` in the background until its standard
/// input closes: when the test process ends, however it ends, its pipe
/// closes and the server stops, and a server shared through a `static`
/// (never dropped) still goes away. `$1` is the data directory, `$2` the
/// directory to remove afterwards (or empty), the rest the command.
const WRAPPER: &str = r#"
data="$1"; scratch="$2"; shift 2
"$@" &
pid=$!
cat >/dev/null
kill -INT "$pid" 2>/dev/null
wait "$pid"
[ -n "$scratch" ] && rm -rf "$scratch"
"#;

/// A `postgres` process over a scratch cluster, with user `postgres`
/// trusted on loopback and no password.
pub struct PostgresServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    wrapper: Option<(Child, ChildStdin)>,
}

impl PostgresServer {
    /// The server this test process shares: started on first use, stopped
    /// when the process exits.
    pub fn shared() -> &'static PostgresServer {
        static SHARED: OnceLock<PostgresServer> = OnceLock::new();
        SHARED.get_or_init(PostgresServer::start)
    }

    /// Starts a server of its own, stopped (and its files removed) on drop.
    pub fn start() -> PostgresServer {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!(
            "cloakroom-postgres-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let owner = non_root_owner();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown the scratch dir");
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .args(["-E", "UTF8", "--locale=C"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_owner(&mut initdb, owner);
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = PostgresServer {
            port: 0,
            dir,
            bin,
            owner,
            wrapper: None,
        };
        for _ in 0..20 {
            server.port = free_port();
            if server.spawn() {
                return server;
            }
        }
        panic!("postgres did not start on any of 20 ports");
    }

    fn spawn(&mut self) -> bool {
        let data = self.dir.join("data");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WRAPPER)
            .arg("sh")
            .arg(&data)
            .arg(&self.dir)
            .arg(self.bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=400"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_owner(&mut cmd, self.owner);
        let mut child = cmd.spawn().expect("run postgres");
        let Some(stdin) = child.stdin.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        };
        let addr = self.addr();
        let deadline = Instant::now() + Duration::from_secs(20);
        let up = loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() && self.ready()
            {
                break true;
            }
            if matches!(child.try_wait(), Ok(Some(_))) || Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if up {
            self.wrapper = Some((child, stdin));
        } else {
            // Not ours to remove yet: a retry reuses the cluster.
            self.stop_wrapper(Some((child, stdin)), false);
        }
        up
    }

    /// Whether the server accepts queries (not only connections: it
    /// refuses them while it starts up).
    fn ready(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn stop_wrapper(&self, wrapper: Option<(Child, ChildStdin)>, remove_files: bool) {
        let Some((mut child, stdin)) = wrapper else {
            return;
        };
        if !remove_files {
            // Kill the shell first, so it cannot remove the directory, then
            // the server it started, which its pid file names.
            let _ = child.kill();
            let _ = child.wait();
            self.kill_postmaster("-KILL");
            return;
        }
        drop(stdin);
        let _ = child.wait();
    }

    fn kill_postmaster(&self, signal: &str) {
        let pid_file = self.dir.join("data").join("postmaster.pid");
        if let Some(pid) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned))
        {
            let _ = Command::new("kill").args([signal, &pid]).status();
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's URL with a `schema` of its own, fresh for each call,
    /// so tests sharing a server do not see each other's sessions.
    pub fn schema_url(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        format!("{}?schema=t{}_{n}", self.url(), std::process::id())
    }

    /// Runs SQL with `psql` and returns what it printed (unaligned, no
    /// headers), panicking if it fails.
    pub fn psql(&self, sql: &str) -> String {
        let mut child = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-XAtq"])
            .args(["-v", "ON_ERROR_STOP=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run psql");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(sql.as_bytes()).expect("write to psql");
        }
        let out = child.wait_with_output().expect("run psql");
        assert!(
            out.status.success(),
            "psql failed on {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Kills the server as a crash would (SIGKILL to the postmaster). Its
    /// files stay: [`restart`](Self::restart) recovers them, as a real
    /// PostgreSQL does after a crash.
    pub fn kill(&mut self) {
        let wrapper = self.wrapper.take();
        self.stop_wrapper(wrapper, false);
    }

    /// Starts it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(30);
        // Backends of the killed server may hold its shared memory for a
        // moment; postgres refuses to start until they are gone.
        while !self.spawn() {
            assert!(Instant::now() < deadline, "postgres did not restart");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let wrapper = self.wrapper.take();
        if wrapper.is_some() {
            self.stop_wrapper(wrapper, true);
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The directory of Debian's PostgreSQL binaries: the newest
/// `/usr/lib/postgresql/N/bin`, or wherever `initdb` is on `PATH`.
fn bin_dir() -> PathBuf {
    let debian = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(debian).ok().and_then(|entries| {
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let version: u32 = e.file_name().to_str()?.parse().ok()?;
                Some((version, e.path().join("bin")))
            })
            .filter(|(_, bin)| bin.join("initdb").is_file())
            .max_by_key(|(v, _)| *v)
            .map(|(_, bin)| bin)
    });
    if let Some(bin) = newest {
        return bin;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .find(|p| p.join("initdb").is_file() && p.join("postgres").is_file())
        })
        .expect("PostgreSQL is not installed: run scripts/test, which installs it")
}

/// The user and group to run PostgreSQL as when this process is root:
/// `postgres` (Debian's package creates it), else `nobody`.
fn non_root_owner() -> Option<(u32, u32)> {
    if !crate::servers::is_root() {
        return None;
    }
    ["postgres", "nobody"].iter().find_map(|user| {
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new("id").args([flag, user]).output().ok()?;
            if !out.status.success() {
                return None;
            }
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        Some((id("-u")?, id("-g")?))
    })
}

fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
}
