//! A TCP proxy for tests of replies that never come.

use std::sync::Arc;
use tokio::net::TcpStream;

/// A TCP proxy that can stop passing bytes on the connections it has,
/// silently, while new ones pass.
pub(crate) struct Proxy {
    pub(crate) port: u16,
    open: Arc<std::sync::Mutex<Vec<Arc<std::sync::atomic::AtomicBool>>>>,
}

impl Proxy {
    pub(crate) async fn start(upstream: std::net::SocketAddr) -> Proxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open: Arc<std::sync::Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let all = Arc::clone(&open);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(upstream).await.unwrap();
                let passing = Arc::new(AtomicBool::new(true));
                all.lock().unwrap().push(Arc::clone(&passing));
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = Arc::clone(&passing);
                tokio::spawn(async move {
                    let mut buf = [0; 4096];
                    while let Ok(n @ 1..) = cr.read(&mut buf).await {
                        if up.load(Ordering::SeqCst) && sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let mut buf = [0; 4096];
                    while let Ok(n @ 1..) = sr.read(&mut buf).await {
                        if passing.load(Ordering::SeqCst) && cw.write_all(&buf[..n]).await.is_err()
                        {
                            break;
                        }
                    }
                });
            }
        });
        Proxy { port, open }
    }

    pub(crate) fn black_hole(&self) {
        for passing in self.open.lock().unwrap().iter() {
            passing.store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }
}
