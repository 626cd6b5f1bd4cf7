//! Test fixtures shared by the cloakroom crates: real servers on free
//! loopback ports, and an HTTP/1.1 client that keeps cookies like a browser.

pub mod actix_app;
mod app;
mod app_process;
pub mod conformance;
pub mod counted;
mod http_client;
pub mod http_suite;
pub mod inventory;
mod postgres;
pub mod scenarios;
pub mod security;
mod servers;
pub mod threads;
pub mod tls;
pub mod tornado;

pub use app::app;
pub use app_process::AppProcess;
pub use http_client::{Client, TestResponse};
pub use postgres::PostgresServer;
pub use servers::{
    MemcachedServer, PrometheusServer, RedisCluster, RedisSentinels, RedisServer, free_port,
};

use cloakroom::{SessionLayer, SessionManager};
use std::net::SocketAddr;

/// A web framework adapter under test. The HTTP suites run every scenario
/// once per adapter, with the same test app ([`app`] on axum,
/// [`actix_app::routes`] on actix-web).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// `cloakroom::SessionLayer` on axum (hyper).
    Axum,
    /// `cloakroom_actix::SessionMiddleware` on actix-web.
    Actix,
}

/// One test per adapter for each named `async fn(Adapter)`, in modules
/// `axum` and `actix` beside the functions.
#[macro_export]
macro_rules! adapter_tests {
    ($($name:ident),* $(,)?) => {
        mod axum {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name($crate::Adapter::Axum).await;
            })*
        }
        mod actix {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name($crate::Adapter::Actix).await;
            })*
        }
    };
}

/// A test app served on a free loopback port, for the life of the test.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    running: Running,
}

enum Running {
    Tokio(tokio::task::JoinHandle<()>),
    Actix(actix_web::dev::ServerHandle),
}

impl TestServer {
    /// Serves an axum `app` on `127.0.0.1:0`.
    pub async fn start(app: axum::Router) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        TestServer {
            addr,
            running: Running::Tokio(task),
        }
    }

    /// Serves the test app on `adapter`, over `manager`.
    pub async fn serve(adapter: Adapter, manager: SessionManager) -> TestServer {
        match adapter {
            Adapter::Axum => TestServer::start(app(SessionLayer::new(manager))).await,
            Adapter::Actix => TestServer::start_actix(manager),
        }
    }

    /// Serves the actix-web test app on `127.0.0.1:0`, on an actix system
    /// of its own in a thread of its own, as actix-web wants.
    pub fn start_actix(manager: SessionManager) -> TestServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let middleware = cloakroom_actix::SessionMiddleware::new(manager);
                let server = actix_web::HttpServer::new(move || {
                    actix_web::App::new()
                        .wrap(middleware.clone())
                        .configure(actix_app::routes)
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .expect("listen")
                .run();
                handle_tx.send(server.handle()).expect("send the handle");
                server.await.expect("serve");
            });
        });
        let handle = handle_rx.recv().expect("the actix server started");
        TestServer {
            addr,
            running: Running::Actix(handle),
        }
    }

    /// A new client with an empty cookie jar.
    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        match &self.running {
            Running::Tokio(task) => task.abort(),
            // The command is sent now; its completion is not awaited.
            Running::Actix(handle) => drop(handle.stop(false)),
        }
    }
}
