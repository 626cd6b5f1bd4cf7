//! The tracing span around every store call. Alone in its binary: a
//! subscriber set for one thread only sees callsites whose interest no
//! other test's thread has cached first.

mod common;

use common::{manager, request};

#[tokio::test]
async fn every_store_call_has_a_span_with_the_hashed_id_and_the_outcome() {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::format::FmtSpan;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let m = manager();
    let mut cookie = None;
    request(&m, &mut cookie, async |s| s.set("a", 1).await).await;
    let mut id = None;
    request(&m, &mut cookie, async |s| {
        s.get::<i64>("a").await?;
        id = s.id().await?;
        Ok(())
    })
    .await;
    let id = id.expect("a session").short();
    let log = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let load = log
        .lines()
        .find(|l| l.contains("session_store") && l.contains("op=\"load\""))
        .unwrap_or_else(|| panic!("no load span in:\n{log}"));
    assert!(load.contains("store=\"memory\""), "{load}");
    assert!(load.contains(&format!("session={id}")), "{load}");
    assert!(load.contains("outcome=\"ok\""), "{load}");
    assert!(
        log.lines()
            .any(|l| l.contains("session_store") && l.contains("op=\"apply\"")),
        "{log}"
    );
    let token = cookie.unwrap();
    let token = token.trim_start_matches("id=").split('.').next().unwrap();
    assert!(!log.contains(token), "the token is never logged");
}
