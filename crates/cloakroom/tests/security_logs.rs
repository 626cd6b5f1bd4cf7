//! Point 9 of the checklist (SECURITY.md): no raw token in logs, errors
//! or `Debug` output. Alone in its binary, one adapter at a time, so the
//! log lines it reads are its own.

use cloakroom::{CookieConfig, KeyRing, MemoryStore, SessionManager};
use cloakroom_testkit::counted::Counted;
use cloakroom_testkit::security::SECRET;
use cloakroom_testkit::{Adapter, TestServer};
use std::sync::{Arc, Mutex};

cloakroom_testkit::adapter_tests!(p09_no_raw_token_in_logs_errors_or_debug_output);

/// A `MakeWriter` into a shared buffer, to read what was logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Everything logged by this test process, from any thread: handlers run
/// on the runtime's workers, and actix-web's on a thread of its own. Only
/// point 9 logs here, one adapter at a time (see [`ALONE`]).
fn captured_logs() -> &'static Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(logs.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        logs
    })
}

/// Held by each adapter's run, so that what it reads was logged by it.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn p09_no_raw_token_in_logs_errors_or_debug_output(adapter: Adapter) {
    let _alone = ALONE.lock().await;
    let logs = captured_logs();
    let start = logs.0.lock().unwrap().len();

    let store = Counted::new(MemoryStore::new());
    let counts = store.counts.clone();
    let manager = SessionManager::builder(store, KeyRing::new([SECRET]).unwrap())
        .cookie(CookieConfig::default().secure(false))
        .build()
        .unwrap();
    let srv = TestServer::serve(adapter, manager.clone()).await;
    let c = srv.client();
    c.get("/?name=alice").await;
    let first = c.cookie("id").unwrap();
    c.get("/login?name=alice").await;
    let second = c.cookie("id").unwrap();
    c.get("/detail").await;
    // A forged cookie and a store outage, which both log.
    let mut forged = second.clone().into_bytes();
    forged[50] ^= 1;
    srv.client()
        .get_raw("/detail", Some(&[b"id=", forged.as_slice()].concat()))
        .await;
    counts.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let failed = c.get("/detail").await;
    assert_eq!(failed.status, 503);
    c.get("/?name=bob").await;
    counts
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);

    let logged = String::from_utf8(logs.0.lock().unwrap()[start..].to_vec()).unwrap();
    assert!(logged.contains("rejected a session cookie"), "{logged}");
    assert!(logged.contains("session was not saved"), "{logged}");
    let debug = format!("{manager:?}");
    for cookie in [&first, &second] {
        let token = &cookie[..43];
        let signature = &cookie[44..];
        for (what, text) in [
            ("logs", &logged),
            ("manager Debug", &debug),
            ("body", &failed.body),
        ] {
            assert!(!text.contains(token), "token in {what}");
            assert!(!text.contains(signature), "signature in {what}");
        }
    }
    assert!(!debug.contains(SECRET), "secret in manager Debug: {debug}");
}
