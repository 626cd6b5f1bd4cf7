//! The security checklist points that depend on the store, written once and
//! run on every store with [`security_tests!`](crate::security_tests). Each
//! function is named after its point in SECURITY.md.

use crate::{Adapter, TestServer};
use cloakroom::{CookieConfig, ExpiryPolicy, KeyRing, Limits, ManualClock, SessionManagerBuilder};
use std::sync::Arc;
use std::time::Duration;

/// The current signing secret of the fixtures.
pub const SECRET: &str = "security test secret, long enough to sign";
/// An older secret, for rotation.
pub const OLD_SECRET: &str = "an older security secret, long enough too";

/// A store under test, seen through an adapter.
#[derive(Clone)]
pub struct Fixture {
    /// A builder over the store (the same store on every call).
    pub make: Arc<dyn Fn(KeyRing) -> SessionManagerBuilder + Send + Sync>,
    /// A counter of the store's round trips so far. Reading it may itself
    /// cost a constant amount, which the tests measure and subtract.
    pub round_trips: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// The framework the test app runs on.
    pub adapter: Adapter,
}

impl Fixture {
    /// A fixture over `make`'s store, counting round trips with
    /// `round_trips`, on axum until [`on`](Self::on) says otherwise.
    pub fn new(
        make: impl Fn(KeyRing) -> SessionManagerBuilder + Send + Sync + 'static,
        round_trips: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Self {
        Fixture {
            make: Arc::new(make),
            round_trips: Arc::new(round_trips),
            adapter: Adapter::Axum,
        }
    }

    /// The same store, on `adapter`.
    pub fn on(mut self, adapter: Adapter) -> Self {
        self.adapter = adapter;
        self
    }

    /// A builder over the store with `Secure` off, because the tests speak
    /// plain HTTP, and `clock`.
    fn builder(&self, keys: KeyRing, clock: &ManualClock) -> SessionManagerBuilder {
        (self.make)(keys)
            .cookie(CookieConfig::default().secure(false))
            .clock(clock.clone())
    }

    async fn server(&self, clock: &ManualClock) -> TestServer {
        self.server_with(clock, |b| b).await
    }

    /// A server whose layer `adjust` configures further.
    async fn server_with(
        &self,
        clock: &ManualClock,
        adjust: impl FnOnce(SessionManagerBuilder) -> SessionManagerBuilder,
    ) -> TestServer {
        let manager = adjust(self.builder(keys(&[SECRET]), clock))
            .build()
            .expect("valid settings");
        TestServer::serve(self.adapter, manager).await
    }
}

/// Idle and absolute windows, in seconds.
fn windows(idle: u64, absolute: u64) -> ExpiryPolicy {
    ExpiryPolicy::default()
        .idle(Duration::from_secs(idle))
        .absolute(Duration::from_secs(absolute))
}

fn keys(secrets: &[&str]) -> KeyRing {
    KeyRing::new(secrets).expect("valid secrets")
}

/// A cookie value signed with `secret` for a token nobody issued.
pub fn forge_signed(secret: &str, cookie_name: &str) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::{Hmac, Mac};
    let mut token = [0u8; 32];
    getrandom::fill(&mut token).expect("OS random source");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(cookie_name.as_bytes());
    mac.update(&[0]);
    mac.update(&token);
    let tag = mac.finalize().into_bytes();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(token),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// Point 2: a correctly signed id that the server never issued is not
/// adopted, and a write under it gets a fresh id.
pub async fn p02_strict_mode_never_adopts_unissued_ids(fx: Fixture) {
    let srv = fx.server(&ManualClock::starting_now()).await;
    let planted = forge_signed(SECRET, "id");
    let c = srv.client();
    c.set_cookie("id", &planted);
    assert_eq!(c.get("/detail").await.body, "detail get ok! None");
    let r = c.get("/?name=victim").await;
    assert_eq!(r.set_cookies().len(), 1, "a write gets its own fresh id");
    let issued = c.cookie("id").expect("a cookie");
    assert_ne!(issued, planted);
    let attacker = srv.client();
    attacker.set_cookie("id", &planted);
    assert_eq!(attacker.get("/detail").await.body, "detail get ok! None");
}

/// Point 2: ids of destroyed or expired sessions are not adopted either.
pub async fn p02_strict_mode_never_adopts_destroyed_or_expired_ids(fx: Fixture) {
    let clock = ManualClock::starting_now();
    let srv = fx
        .server_with(&clock, |b| b.expiry(windows(600, 1200)))
        .await;
    for end in ["/logout", "expire"] {
        let c = srv.client();
        c.get("/?name=alice").await;
        let old = c.cookie("id").expect("a cookie");
        if end == "expire" {
            clock.advance(Duration::from_secs(1201));
        } else {
            c.fork().get(end).await;
        }
        assert_eq!(c.get("/detail").await.body, "detail get ok! None", "{end}");
        c.get("/?name=mallory").await;
        let new = c.cookie("id").expect("a cookie");
        assert_ne!(new, old, "{end}: a write under a dead id gets a fresh one");
        let replay = srv.client();
        replay.set_cookie("id", &old);
        assert_eq!(replay.get("/detail").await.body, "detail get ok! None");
    }
}

/// Point 3: `cycle_id` kills the old id at once and keeps the data and
/// the absolute deadline.
pub async fn p03_cycle_id_kills_the_old_id_and_keeps_data_and_deadline(fx: Fixture) {
    let clock = ManualClock::starting_now();
    let srv = fx
        .server_with(&clock, |b| b.expiry(windows(600, 1000)))
        .await;
    let c = srv.client();
    c.get("/set?cart=3").await;
    let before = c.cookie("id").expect("a cookie");
    clock.advance(Duration::from_secs(500));
    let r = c.get("/login?name=alice").await;
    let after = c.cookie("id").expect("a cookie");
    assert_ne!(before, after);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(c.get("/keys").await.body, "cart,login");
    let replay = srv.client();
    replay.set_cookie("id", &before);
    assert_eq!(replay.get("/keys").await.body, "");
    // The deadline still counts from the first creation.
    clock.advance(Duration::from_secs(501));
    assert_eq!(c.get("/keys").await.body, "");
}

/// Point 3: logout deletes the session on the server and clears the
/// cookie with `Max-Age=0` and a past `Expires`.
pub async fn p03_logout_deletes_the_session_and_clears_the_cookie(fx: Fixture) {
    let srv = fx.server(&ManualClock::starting_now()).await;
    let c = srv.client();
    c.get("/login?name=alice").await;
    let cookie = c.cookie("id").expect("a cookie");
    let r = c.get("/logout").await;
    let set = r.set_cookies();
    assert_eq!(set.len(), 1);
    assert!(set[0].starts_with("id=;"), "{set:?}");
    assert!(set[0].contains("Max-Age=0"), "{set:?}");
    assert!(
        set[0].contains("Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
        "{set:?}"
    );
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let replay = srv.client();
    replay.set_cookie("id", &cookie);
    assert_eq!(replay.get("/detail").await.body, "detail get ok! None");
}

/// Point 4: the absolute lifetime ends a session however active it is,
/// and however long the cookie claims to last.
pub async fn p04_absolute_lifetime_is_enforced_on_the_server(fx: Fixture) {
    let clock = ManualClock::starting_now();
    let persistent = CookieConfig::default()
        .secure(false)
        .expires_days(Some(365.0));
    let srv = fx
        .server_with(&clock, |b| b.cookie(persistent).expiry(windows(600, 3600)))
        .await;
    let c = srv.client();
    c.get("/?name=alice").await;
    for _ in 0..6 {
        clock.advance(Duration::from_secs(590));
        assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
        c.get("/read-write").await;
    }
    clock.advance(Duration::from_secs(61));
    assert_eq!(c.get("/detail").await.body, "detail get ok! None");
}

/// Point 7: a cookie signed by an older key is accepted and re-signed with
/// the current key; removing the key invalidates what it signed.
pub async fn p07_key_rotation_without_logging_anyone_out(fx: Fixture) {
    let clock = ManualClock::starting_now();
    let serve = |secrets: &[&str]| {
        let manager = fx
            .builder(keys(secrets), &clock)
            .build()
            .expect("valid settings");
        TestServer::serve(fx.adapter, manager)
    };
    let old = serve(&[OLD_SECRET]).await;
    let rotated = serve(&[SECRET, OLD_SECRET]).await;
    let removed = serve(&[SECRET]).await;

    let c = old.client();
    c.get("/?name=alice").await;
    let old_cookie = c.cookie("id").expect("a cookie");

    let c = rotated.client();
    c.set_cookie("id", &old_cookie);
    let r = c.get("/detail").await;
    assert_eq!(r.body, "detail get ok! alice");
    let resigned = c.cookie("id").expect("a cookie");
    assert_ne!(resigned, old_cookie, "re-signed on its next response");
    assert_eq!(resigned[..43], old_cookie[..43], "same session token");

    let c = removed.client();
    c.set_cookie("id", &old_cookie);
    assert_eq!(c.get("/detail").await.body, "detail get ok! None");
    c.set_cookie("id", &resigned);
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
}

/// Point 8: going over a limit is a clear error (413) and stores nothing.
pub async fn p08_limits_reject_and_store_nothing(fx: Fixture) {
    let clock = ManualClock::starting_now();
    let limits = Limits::default()
        .max_value_bytes(64)
        .max_names(3)
        .max_session_bytes(100)
        .max_cookie_header_bytes(200);
    let srv = fx.server_with(&clock, |b| b.limits(limits)).await;
    let c = srv.client();
    c.get("/set?a=1").await;
    let long = "x".repeat(80);
    let r = c.get(&format!("/set?b={long}")).await;
    assert_eq!(r.status, 413, "value over max_value_bytes: {}", r.body);
    assert!(
        r.body.contains("max_value_bytes"),
        "the 413 names the limit: {}",
        r.body
    );
    let r = c.get("/set?b=2&c=3&d=4").await;
    assert_eq!(r.status, 413, "over max_names: {}", r.body);
    assert!(r.body.contains("max_names"), "{}", r.body);
    let mid = "y".repeat(50);
    let r = c.get(&format!("/set?b={mid}&c={mid}")).await;
    assert_eq!(r.status, 413, "over max_session_bytes: {}", r.body);
    assert!(r.body.contains("max_session_bytes"), "{}", r.body);
    assert_eq!(c.get("/keys").await.body, "a", "nothing partial was stored");
    // A Cookie header over the limit is not read.
    let cookie = c.cookie("id").expect("a cookie");
    let padded = format!("pad={}; id={cookie}", "p".repeat(200));
    let r = srv
        .client()
        .get_raw("/detail", Some(padded.as_bytes()))
        .await;
    assert_eq!(r.body, "detail get ok! None");
}

/// Point 11: forged tokens never reach the store, and are counted.
pub async fn p11_forged_tokens_cost_no_round_trip_and_are_counted(fx: Fixture) {
    let manager = fx
        .builder(keys(&[SECRET]), &ManualClock::starting_now())
        .build()
        .expect("valid settings");
    let srv = TestServer::serve(fx.adapter, manager.clone()).await;
    let rt = &fx.round_trips;
    let (a, b) = (rt(), rt());
    let reading_costs = b - a;
    for _ in 0..100 {
        let forged = forge_signed("not the server's secret, but long enough", "id");
        let r = srv
            .client()
            .get_raw("/detail", Some(format!("id={forged}").as_bytes()))
            .await;
        assert_eq!(r.body, "detail get ok! None");
    }
    let c = rt();
    assert_eq!(c - b - reading_costs, 0, "forged tokens reached the store");
    assert_eq!(manager.stats().rejected_tokens, 100);
}

/// One `#[tokio::test]` per store-dependent security point and adapter,
/// in modules `axum` and `actix`. `$make` is an expression (it may
/// `.await`) giving `(guard, Fixture)`.
#[macro_export]
macro_rules! security_tests {
    ($make:expr) => {
        mod axum {
            #[allow(unused_imports)]
            use super::*;
            $crate::security_tests!(@adapter Axum, $make);
        }
        mod actix {
            #[allow(unused_imports)]
            use super::*;
            $crate::security_tests!(@adapter Actix, $make);
        }
    };
    (@adapter $adapter:ident, $make:expr) => {
        $crate::security_tests!(@each $adapter, $make;
            p02_strict_mode_never_adopts_unissued_ids,
            p02_strict_mode_never_adopts_destroyed_or_expired_ids,
            p03_cycle_id_kills_the_old_id_and_keeps_data_and_deadline,
            p03_logout_deletes_the_session_and_clears_the_cookie,
            p04_absolute_lifetime_is_enforced_on_the_server,
            p07_key_rotation_without_logging_anyone_out,
            p08_limits_reject_and_store_nothing,
            p11_forged_tokens_cost_no_round_trip_and_are_counted);
    };
    (@each $adapter:ident, $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (_guard, fixture) = $make;
                let fixture = fixture.on($crate::Adapter::$adapter);
                $crate::security::$name(fixture).await;
            }
        )*
    };
}
