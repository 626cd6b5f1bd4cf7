//! Connections and runtime threads: on current-thread runtimes (each
//! actix-web worker runs one), a thread reuses only the connections it
//! opened, whose readiness its own runtime delivers.

use cloakroom::Store;
use cloakroom_memcached::{MemcachedConfig, MemcachedStore};
use cloakroom_testkit::MemcachedServer;
use cloakroom_testkit::conformance::{at_now, new_id};
use cloakroom_testkit::threads::a_busy_thread_does_not_hold_up_another;
use std::time::Duration;

#[test]
fn a_busy_thread_does_not_hold_up_another_threads_calls() {
    let server = MemcachedServer::start();
    let url = server.url();
    a_busy_thread_does_not_hold_up_another(
        move || async move { MemcachedStore::new(MemcachedConfig::from_url(&url).unwrap()) },
        Duration::from_secs(1),
    );
}

/// Open client connections, as memcached counts them (its own listening
/// socket and the connection asking included).
fn open_connections(server: &MemcachedServer) -> usize {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(server.addr()).unwrap();
    conn.write_all(b"stats\r\n").unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text.ends_with("END\r\n") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "memcached closed the stats connection");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("STAT curr_connections "))
        .and_then(|n| n.trim().parse().ok())
        .expect("curr_connections in stats")
}

#[test]
fn threads_past_the_pool_size_stay_within_it() {
    let server = MemcachedServer::start();
    let before = open_connections(&server);
    let config = MemcachedConfig::from_url(&server.url())
        .unwrap()
        .max_connections(2);
    let store = std::sync::Arc::new(MemcachedStore::new(config));
    let expiry = at_now(Duration::from_secs(600), Duration::from_secs(3600));
    // Five threads, one after another: each finds only the others'
    // connections idle, and opens its own.
    for _ in 0..5 {
        let store = store.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async { store.load(&new_id(), &expiry).await.unwrap() })
        })
        .join()
        .unwrap();
    }
    // memcached counts a closed connection out when it sees the close.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut open = open_connections(&server) - before;
    while open > 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        open = open_connections(&server) - before;
    }
    assert!(open <= 2, "{open} connections open for a pool of 2");
}

#[test]
fn a_thread_replacing_an_exited_one_works_at_once() {
    let server = MemcachedServer::start();
    let url = server.url();
    cloakroom_testkit::threads::a_thread_replacing_an_exited_one_works_at_once(
        move || async move { MemcachedStore::new(MemcachedConfig::from_url(&url).unwrap()) },
    );
}
