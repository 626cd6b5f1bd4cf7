//! Real store servers, started from their binaries on free loopback ports
//! and stopped when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port. Another process could take it before ours binds
/// it; the servers below retry on a new port when that happens.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn wait_listening(addr: SocketAddr, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn require(binary: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(binary).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{binary} is not installed: run scripts/test, which installs it"
    );
}

/// A free port whose cluster bus port (+10000) is free too.
///
/// Ports 10000-19999, bus ports 20000-29999: below the kernel's usual
/// ephemeral range (32768 and up), so the local end of some outgoing
/// connection cannot take either between this check and the server's
/// bind (a node whose bus port was taken exits after it started
/// listening), and no node's port is another node's bus port.
fn free_port_with_bus() -> u16 {
    use std::hash::BuildHasher;
    loop {
        // A random pick each time, so that test processes running at once
        // rarely try the same ports.
        let random = std::collections::hash_map::RandomState::new().hash_one(0u8);
        let port = 10_000 + (random % 10_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            return port;
        }
    }
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "cloakroom-{what}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server process on a loopback port, which can be killed and started
/// again on the same port.
struct Process {
    binary: &'static str,
    port: u16,
    pick_port: fn() -> u16,
    child: Option<Child>,
    command: Box<dyn Fn(u16) -> Command + Send + Sync>,
}

impl Process {
    /// Starts `command(port)` on a free port, trying a few ports in case
    /// another process takes one first.
    fn start(
        binary: &'static str,
        pick_port: fn() -> u16,
        command: impl Fn(u16) -> Command + Send + Sync + 'static,
    ) -> Process {
        require(binary);
        let mut process = Process {
            binary,
            port: 0,
            pick_port,
            child: None,
            command: Box::new(command),
        };
        // A picked port can still be taken before the server binds it,
        // most often as the local port of some outgoing connection when
        // many tests run at once; a fresh port each time.
        for _ in 0..20 {
            process.port = (process.pick_port)();
            if process.spawn() {
                return process;
            }
        }
        panic!("{binary} did not start on any of 20 ports");
    }

    fn spawn(&mut self) -> bool {
        let mut child = (self.command)(self.port)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.binary));
        let ok = wait_listening(self.addr(), &mut child);
        if ok {
            self.child = Some(child);
        } else {
            let _ = child.kill();
            let _ = child.wait();
        }
        ok
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the running process.
    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the process is running");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(Instant::now() < deadline, "{} did not restart", self.binary);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `redis-server` process, with no persistence.
pub struct RedisServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    process: Process,
    _dir: Scratch,
}

impl RedisServer {
    /// Starts a throw-away redis-server.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts one with extra `--option value` arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let dir = Scratch::new("redis");
        let path = dir.0.clone();
        let cluster = extra.contains(&"--cluster-enabled");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let pick = if cluster {
            free_port_with_bus
        } else {
            free_port
        };
        let process = Process::start("redis-server", pick, move |port| {
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&path)
                .args(&extra);
            if cluster {
                // Its own cluster file per attempt: one left by an attempt
                // that failed on a taken port is never read again.
                cmd.args(["--cluster-config-file", &format!("nodes-{port}.conf")]);
            }
            cmd
        });
        RedisServer {
            port: process.port,
            process,
            _dir: dir,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.process.addr()
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server, as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.process.restart();
    }

    /// Stops the process without closing its sockets, as a hung host
    /// would: connections stay open and nothing answers.
    pub fn freeze(&self) {
        self.process.signal("STOP");
    }

    /// Lets a [`freeze`](Self::freeze)d server run again.
    pub fn thaw(&self) {
        self.process.signal("CONT");
    }

    /// Runs a command with redis-cli and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A field of `INFO stats`, as a number.
    pub fn stat(&self, field: &str) -> u64 {
        let info = self.cli(&["INFO", "stats"]);
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in INFO stats"))
    }

    /// The requests the server read from its clients while `f` ran (its
    /// round trips), less what the measuring itself costs.
    pub async fn round_trips<F: std::future::Future>(&self, f: F) -> u64 {
        let idle = {
            let a = self.stat("total_reads_processed");
            let b = self.stat("total_reads_processed");
            b - a
        };
        let before = self.stat("total_reads_processed");
        f.await;
        let after = self.stat("total_reads_processed");
        after - before - idle
    }
}

/// A `memcached` process with 64 MB of memory.
pub struct MemcachedServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    process: Process,
}

impl MemcachedServer {
    /// Starts a memcached.
    pub fn start() -> MemcachedServer {
        let process = Process::start("memcached", free_port, |port| {
            let mut cmd = Command::new("memcached");
            cmd.args([
                "-l",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "0",
                "-m",
                "64",
            ]);
            // Debian's memcached refuses to run as root without -u.
            if is_root() {
                cmd.args(["-u", "root"]);
            }
            cmd
        });
        MemcachedServer {
            port: process.port,
            process,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.process.addr()
    }

    /// `memcache://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("memcache://127.0.0.1:{}", self.port)
    }

    /// Kills the server, as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.process.restart();
    }

    /// A number from its `stats` (`curr_items`, `cmd_set`, …).
    pub fn stat(&self, name: &str) -> u64 {
        use std::io::{BufRead, BufReader, Write};
        let mut conn = std::net::TcpStream::connect(self.addr()).expect("connect to memcached");
        conn.write_all(b"stats\r\n").expect("send stats");
        let prefix = format!("STAT {name} ");
        for line in BufReader::new(conn).lines() {
            let line = line.expect("read stats");
            if let Some(value) = line.strip_prefix(&prefix) {
                return value.trim().parse().expect("a number");
            }
            assert_ne!(line.trim(), "END", "memcached has no stat {name:?}");
        }
        panic!("memcached closed the connection during stats");
    }
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// A Redis Cluster of `redis-server` masters on loopback, no replicas.
pub struct RedisCluster {
    /// The masters.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` nodes and joins them with `redis-cli --cluster
    /// create`, then waits until every node reports `cluster_state:ok`.
    ///
    /// A failed or stuck create (rare, seen with many tests starting
    /// servers at once) is tried again on new nodes, twice.
    pub fn start(masters: usize) -> RedisCluster {
        let mut attempt = 0;
        let nodes = loop {
            attempt += 1;
            let nodes: Vec<RedisServer> = (0..masters)
                .map(|_| {
                    RedisServer::start_with(&[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-node-timeout",
                        "2000",
                    ])
                })
                .collect();
            let addrs: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
            // Bounded: a node that dies after it started listening (its
            // bus port taken, say) leaves `--cluster create` waiting for
            // the join forever.
            let out = Command::new("timeout")
                .args(["60", "redis-cli", "--cluster", "create"])
                .args(&addrs)
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .output()
                .expect("run redis-cli --cluster create");
            if out.status.success() {
                break nodes;
            }
            assert!(
                attempt < 3,
                "cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        // Every node ok, and every node knowing every other as connected:
        // `cluster_state:ok` comes first, and a `CLUSTER SETSLOT` naming a
        // node the target has not met yet fails (a reshard did, once).
        let knows_everyone = |n: &RedisServer| {
            let table = n.cli(&["CLUSTER", "NODES"]);
            let connected = table
                .lines()
                .filter(|l| l.contains(" connected") && !l.contains("handshake"))
                .count();
            connected == masters
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes
            .iter()
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok") && knows_everyone(n))
        {
            assert!(Instant::now() < deadline, "the cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        RedisCluster { nodes }
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...`
    pub fn url(&self) -> String {
        let addrs: Vec<String> = self.nodes.iter().map(|n| n.addr().to_string()).collect();
        format!("redis+cluster://{}", addrs.join(","))
    }
}

/// A master, one replica and three sentinels watching them as `mymaster`,
/// with a password on the data nodes and another on the sentinels.
pub struct RedisSentinels {
    /// The master at start.
    pub master: RedisServer,
    /// Its replica.
    pub replica: RedisServer,
    sentinels: Vec<Process>,
    _dir: Scratch,
}

impl RedisSentinels {
    /// The data nodes' password.
    pub const DATA_PASSWORD: &'static str = "data-pass";
    /// The sentinels' password.
    pub const SENTINEL_PASSWORD: &'static str = "sentinel-pass";

    /// Starts them and waits until the replica is in sync and every
    /// sentinel knows the replica and the other sentinels.
    pub fn start() -> RedisSentinels {
        let auth = [
            "--requirepass",
            Self::DATA_PASSWORD,
            "--masterauth",
            Self::DATA_PASSWORD,
            "--repl-diskless-sync-delay",
            "0",
        ];
        let master = RedisServer::start_with(&auth);
        let master_port = master.port.to_string();
        let mut replica_args = auth.to_vec();
        replica_args.extend(["--replicaof", "127.0.0.1", &master_port]);
        let replica = RedisServer::start_with(&replica_args);
        let dir = Scratch::new("sentinel");
        let sentinels = (0..3)
            .map(|_| {
                let path = dir.0.clone();
                let master_port = master.port;
                Process::start("redis-server", free_port, move |port| {
                    let conf = path.join(format!("sentinel-{port}.conf"));
                    let text = format!(
                        "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                         requirepass {sp}\n\
                         sentinel monitor mymaster 127.0.0.1 {master_port} 2\n\
                         sentinel auth-pass mymaster {dp}\n\
                         sentinel sentinel-pass {sp}\n\
                         sentinel down-after-milliseconds mymaster 1000\n\
                         sentinel failover-timeout mymaster 4000\n",
                        dir = path.display(),
                        sp = Self::SENTINEL_PASSWORD,
                        dp = Self::DATA_PASSWORD,
                    );
                    std::fs::write(&conf, text).expect("write sentinel config");
                    let mut cmd = Command::new("redis-server");
                    cmd.arg(&conf).arg("--sentinel");
                    cmd
                })
            })
            .collect::<Vec<_>>();
        let set = RedisSentinels {
            master,
            replica,
            sentinels,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let synced = set
                .replica
                .cli(&[
                    "--no-auth-warning",
                    "-a",
                    Self::DATA_PASSWORD,
                    "INFO",
                    "replication",
                ])
                .contains("master_link_status:up");
            let ready = synced
                && (0..3).all(|i| {
                    let replicas = set.sentinel_cli(i, &["SENTINEL", "REPLICAS", "mymaster"]);
                    let others = set.sentinel_cli(i, &["SENTINEL", "SENTINELS", "mymaster"]);
                    replicas.contains(&set.replica.port.to_string())
                        && others.matches("runid").count() == 2
                });
            if ready {
                return set;
            }
            assert!(Instant::now() < deadline, "the sentinels did not settle");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs redis-cli against sentinel `i`.
    pub fn sentinel_cli(&self, i: usize, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.sentinels[i].port.to_string()])
            .args(["--no-auth-warning", "-a", Self::SENTINEL_PASSWORD])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `redis+sentinel://:PASSWORD@S1,S2,S3/mymaster`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| s.addr().to_string())
            .collect();
        format!(
            "redis+sentinel://:{}@{}/mymaster",
            Self::SENTINEL_PASSWORD,
            hosts.join(",")
        )
    }
}

/// A real Prometheus (Debian's `prometheus`), scraping one target every
/// second, with its data in a scratch directory.
pub struct PrometheusServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    _process: Process,
    _dir: Scratch,
}

impl PrometheusServer {
    /// Starts Prometheus scraping `http://TARGET/metrics` as job `app`.
    pub fn start(target: SocketAddr) -> PrometheusServer {
        let dir = Scratch::new("prometheus");
        let config = dir.0.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let data = dir.0.join("data");
        let process = Process::start("prometheus", free_port, move |port| {
            let mut cmd = Command::new("prometheus");
            cmd.arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"));
            cmd
        });
        PrometheusServer {
            port: process.port,
            _process: process,
            _dir: dir,
        }
    }

    /// The value of the instant query `expr`, if it has one result.
    pub async fn query(&self, expr: &str) -> Option<f64> {
        let client = crate::Client::new(SocketAddr::from(([127, 0, 0, 1], self.port)));
        let mut encoded = String::new();
        for b in expr.bytes() {
            if b.is_ascii_alphanumeric() || b"_-.".contains(&b) {
                encoded.push(b as char);
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        let r = client.get(&format!("/api/v1/query?query={encoded}")).await;
        let body: serde_json::Value = serde_json::from_str(&r.body).ok()?;
        let result = body["data"]["result"].as_array()?;
        let [one] = result.as_slice() else {
            return None;
        };
        one["value"][1].as_str()?.parse().ok()
    }
}
