//! Test fixtures shared by the cloakroom crates: real servers on free
//! loopback ports, and an HTTP/1.1 client that keeps cookies like a browser.

mod app;
pub mod conformance;
pub mod counted;
mod http_client;
pub mod scenarios;
pub mod security;
mod servers;

pub use app::app;
pub use http_client::{Client, TestResponse};
pub use servers::{MemcachedServer, RedisCluster, RedisSentinels, RedisServer, free_port};

use std::net::SocketAddr;

/// An axum app served on a free loopback port, for the life of the test.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Serves `app` on `127.0.0.1:0`.
    pub async fn start(app: axum::Router) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        TestServer { addr, task }
    }

    /// A new client with an empty cookie jar.
    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
