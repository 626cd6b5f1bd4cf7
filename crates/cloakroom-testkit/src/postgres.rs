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

/// The shell that runs `postgres`, and exits when it does. A watcher
/// beside it reads the shell's standard input: at end of input (the test
/// process ended, however it ended, or dropped the server) it stops the
/// server and removes the scratch directory, so even a server shared
/// through a `static`, which is never dropped, goes away. A line `keep`
/// first makes the watcher leave instead (a crash played by a test, or a
/// failed start that is retried on the same files). `$1` is the scratch
/// directory, the rest the command.
const WRAPPER: &str = r#"
scratch="$1"; shift
# An asynchronous list reads /dev/null, not our input: keep it on fd 3.
exec 3<&0
"$@" 3<&- 2>>"$scratch/postgres.log" &
pid=$!
(
  read -r line <&3
  [ "$line" = keep ] && exit 0
  kill -INT "$pid" 2>/dev/null
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -rf "$scratch"
) &
wait "$pid"
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
        Self::start_inner(None)
    }

    /// Starts one that also speaks TLS (`ssl = on`) with this certificate
    /// and private key (PEM), for clients that ask for it.
    pub fn start_tls(cert_pem: &[u8], key_pem: &[u8]) -> PostgresServer {
        Self::start_inner(Some((cert_pem, key_pem)))
    }

    fn start_inner(tls: Option<(&[u8], &[u8])>) -> PostgresServer {
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
        if let Some((cert, key)) = tls {
            use std::os::unix::fs::PermissionsExt;
            let data = dir.join("data");
            for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                let path = data.join(name);
                std::fs::write(&path, pem).expect("write a TLS file");
                // PostgreSQL takes a key only its own user can read.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod a TLS file");
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                        .expect("chown a TLS file");
                }
            }
            let conf = data.join("postgresql.conf");
            let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
            text.push_str("\nssl = on\n");
            std::fs::write(&conf, text).expect("write postgresql.conf");
        }
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
            .arg(&self.dir)
            .arg(self.bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            // A killed server keeps what it committed (the OS has it);
            // only a machine crash would lose it.
            .args(["-c", "fsync=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=400"])
            // Every statement in the log, so tests count them at the server.
            .args([
                "-c",
                "log_statement=all",
                "-c",
                "log_parameter_max_length=0",
            ])
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
        let Some((mut child, mut stdin)) = wrapper else {
            return;
        };
        if remove_files {
            drop(stdin);
            let _ = child.wait();
            // The watcher removes the files once the server has stopped.
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.dir.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        let _ = stdin.write_all(b"keep\n");
        drop(stdin);
        self.crash_postmaster();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGKILL to the postmaster and every backend, as a machine crash
    /// would: the postmaster is stopped first, so its children are still
    /// its own when they are killed.
    fn crash_postmaster(&self) {
        let pid_file = self.dir.join("data").join("postmaster.pid");
        let Some(pid) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned))
        else {
            return;
        };
        let _ = Command::new("kill").args(["-STOP", &pid]).status();
        let _ = Command::new("pkill").args(["-KILL", "-P", &pid]).status();
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
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

    /// Runs SQL with `psql` in database `postgres` and returns what it
    /// printed (unaligned, no headers), panicking if it fails.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// [`psql`](Self::psql) in another database.
    pub fn psql_in(&self, database: &str, sql: &str) -> String {
        let mut child = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", database, "-XAtq"])
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

    /// The last lines of the server's log, for a failure message.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// How many statements the server has executed whose text contains
    /// `needle` (a test's schema name, say), counted in its log: the
    /// extended protocol's `execute` lines, one per statement a client ran.
    pub fn executed(&self, needle: &str) -> usize {
        std::fs::read_to_string(self.dir.join("postgres.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("LOG:  execute") && l.contains(needle))
            .count()
    }

    /// The statements containing `needle` that the server executed while
    /// `f` ran.
    pub async fn statements<F: std::future::Future>(&self, needle: &str, f: F) -> usize {
        let before = self.executed(needle);
        f.await;
        self.executed(needle) - before
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
            assert!(
                Instant::now() < deadline,
                "postgres did not restart: {}",
                self.log_tail()
            );
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
