//! The OWASP Session Management / ASVS V7 checklist, one test per point
//! (numbered as in SECURITY.md). Store-dependent points run here on the
//! memory store and, in the store crates, on Redis and Memcached.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloakroom::{CookieConfig, KeyRing, MemoryStore, SameSite, SessionManager};
use cloakroom_testkit::counted::Counted;
use cloakroom_testkit::security::{Fixture, SECRET};
use cloakroom_testkit::{Adapter, TestServer};
use sha2::{Digest, Sha256};

fn memory() -> ((), Fixture) {
    let store = Counted::new(MemoryStore::new());
    let counts = store.counts.clone();
    let fixture = Fixture::new(
        move |keys| SessionManager::builder(store.clone(), keys),
        move || counts.total() as u64,
    );
    ((), fixture)
}

/// The points that depend on the store, from the testkit.
mod store_points {
    use super::*;
    cloakroom_testkit::security_tests!(memory());
}

// The points below are HTTP behaviour: they run on every adapter. Point 9
// reads the process's logs, so it runs alone in `security_logs.rs`.
cloakroom_testkit::adapter_tests!(
    p01_ids_are_256_random_bits_and_store_keys_are_derived,
    p04_idle_timeout_is_enforced_on_the_server,
    p05_cookie_attributes_are_secure_by_default,
    p06_responses_that_set_or_clear_the_cookie_are_not_cached,
    p10_header_token_mode_carries_the_same_sessions
);

fn manager() -> SessionManager {
    SessionManager::builder(MemoryStore::new(), KeyRing::new([SECRET]).unwrap())
        .cookie(CookieConfig::default().secure(false))
        .build()
        .unwrap()
}

async fn p01_ids_are_256_random_bits_and_store_keys_are_derived(adapter: Adapter) {
    let srv = TestServer::serve(adapter, manager()).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let c = srv.client();
        c.get("/?name=x").await;
        let cookie = c.cookie("id").unwrap();
        let (token, _sig) = cookie.split_once('.').unwrap();
        let bytes = URL_SAFE_NO_PAD.decode(token).unwrap();
        assert_eq!(bytes.len(), 32, "256 bits");
        assert!(seen.insert(bytes.clone()), "ids never repeat");
        // The id the store uses is a hash of the token, not the token.
        let store_id = c.get("/id").await.body;
        let expected = URL_SAFE_NO_PAD.encode(&Sha256::digest(&bytes)[..16]);
        assert_eq!(store_id, expected);
        assert!(!cookie.contains(&store_id));
    }
}

/// Redis and Memcached measure idle time on their own clocks, so there the
/// idle timeout is checked by the conformance suite with a short real
/// window; here the clock is injected.
async fn p04_idle_timeout_is_enforced_on_the_server(adapter: Adapter) {
    let clock = cloakroom::ManualClock::starting_now();
    let manager = SessionManager::builder(MemoryStore::new(), KeyRing::new([SECRET]).unwrap())
        .cookie(
            CookieConfig::default()
                .secure(false)
                .expires_days(Some(30.0)),
        )
        .expiry(
            cloakroom::ExpiryPolicy::default()
                .idle(std::time::Duration::from_secs(60))
                .absolute(std::time::Duration::from_secs(3600)),
        )
        .clock(clock.clone())
        .build()
        .unwrap();
    let srv = TestServer::serve(adapter, manager).await;
    let c = srv.client();
    c.get("/?name=alice").await;
    for _ in 0..5 {
        clock.advance(std::time::Duration::from_secs(50));
        assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
    }
    clock.advance(std::time::Duration::from_secs(61));
    assert_eq!(c.get("/detail").await.body, "detail get ok! None");
}

async fn p05_cookie_attributes_are_secure_by_default(adapter: Adapter) {
    let manager = SessionManager::builder(MemoryStore::new(), KeyRing::new([SECRET]).unwrap())
        .build()
        .unwrap();
    let srv = TestServer::serve(adapter, manager).await;
    let r = srv.client().get("/?name=x").await;
    let set = &r.set_cookies()[0];
    for attr in ["; Path=/", "; HttpOnly", "; SameSite=Lax", "; Secure"] {
        assert!(set.contains(attr), "{attr} missing from {set}");
    }
    assert!(!set.contains("Domain"), "{set}");
    assert!(!set.contains("Max-Age"), "browser-session cookie: {set}");
}

#[test]
fn p05_same_site_none_forces_secure_and_strict_is_available() {
    let none = CookieConfig::default()
        .secure(false)
        .same_site(SameSite::None);
    assert!(none.is_secure());
    assert!(none.validate().is_ok());
    assert!(none.secure(false).validate().is_err());
    let keys = || KeyRing::new([SECRET]).unwrap();
    let strict = CookieConfig::default().same_site(SameSite::Strict);
    assert!(
        SessionManager::builder(MemoryStore::new(), keys())
            .cookie(strict)
            .build()
            .is_ok()
    );
}

#[test]
fn p05_host_prefix_conflicts_are_rejected_by_the_builder() {
    let keys = || KeyRing::new([SECRET]).unwrap();
    let build = |cookie: CookieConfig| {
        SessionManager::builder(MemoryStore::new(), keys())
            .cookie(cookie)
            .build()
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let host = CookieConfig::default().name("__Host-id");
    assert_eq!(build(host.clone()), Ok(()));
    for (bad, needle) in [
        (host.clone().secure(false), "secure"),
        (host.clone().path("/app"), "path"),
        (host.clone().domain(Some("example.com")), "domain"),
    ] {
        let err = build(bad).unwrap_err();
        assert!(err.contains("__Host-") && err.contains(needle), "{err}");
    }
}

async fn p06_responses_that_set_or_clear_the_cookie_are_not_cached(adapter: Adapter) {
    let srv = TestServer::serve(adapter, manager()).await;
    let c = srv.client();
    for path in ["/?name=a", "/login?name=b", "/logout"] {
        let r = c.get(path).await;
        assert_eq!(r.set_cookies().len(), 1, "{path}");
        assert_eq!(
            r.header("cache-control").as_deref(),
            Some("no-store"),
            "{path}"
        );
    }
    let r = c.get("/untouched").await;
    assert!(r.header("cache-control").is_none());
}

async fn p10_header_token_mode_carries_the_same_sessions(adapter: Adapter) {
    use cloakroom_testkit::Client;
    let header = http::HeaderName::from_static("x-auth-token");
    let manager = SessionManager::builder(MemoryStore::new(), KeyRing::new([SECRET]).unwrap())
        .header(header)
        .build()
        .unwrap();
    let srv = TestServer::serve(adapter, manager).await;
    let c: Client = srv.client();
    let r = c.get("/?name=alice").await;
    assert!(r.set_cookies().is_empty(), "no cookie in header mode");
    let token = r.header("x-auth-token").expect("token header");
    assert_eq!(token.len(), 87);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let with = |t: &str| vec![("x-auth-token".to_owned(), t.to_owned())];
    assert_eq!(
        c.get_with("/detail", &with(&token)).await.body,
        "detail get ok! alice"
    );
    assert_eq!(c.get("/detail").await.body, "detail get ok! None");
    // The cookie does not carry the session in header mode.
    assert_eq!(
        c.get_raw("/detail", Some(format!("id={token}").as_bytes()))
            .await
            .body,
        "detail get ok! None"
    );
    let r = c.get_with("/login?name=bob", &with(&token)).await;
    let rotated = r.header("x-auth-token").expect("new token");
    assert_ne!(rotated, token);
    assert_eq!(
        c.get_with("/detail", &with(&token)).await.body,
        "detail get ok! None"
    );
    let r = c.get_with("/logout", &with(&rotated)).await;
    assert_eq!(r.header("x-auth-token").as_deref(), Some(""));
    assert_eq!(
        c.get_with("/detail", &with(&rotated)).await.body,
        "detail get ok! None"
    );
}
