//! The HTTP scenarios, written once: every store runs them on every
//! adapter with [`http_tests!`](crate::http_tests). The store is wrapped in
//! [`Counted`](crate::counted::Counted), so the tests count its calls and
//! can switch it off to play an outage.

use crate::counted::Counts;
use crate::{Adapter, TestServer};
use cloakroom::{CookieConfig, KeyRing, ManualClock, SessionManager, SessionManagerBuilder};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The current signing secret of the fixtures.
pub const SECRET: &str = "test secret that is long enough to sign with";
/// An older secret, for rotation.
pub const OLD_SECRET: &str = "an older secret, also long enough to sign";

fn keys() -> KeyRing {
    KeyRing::new([SECRET]).expect("a valid secret")
}

/// A counted store under test, seen through an adapter.
#[derive(Clone)]
pub struct HttpFixture {
    /// A builder over the store (the same store on every call).
    pub make: Arc<dyn Fn(KeyRing) -> SessionManagerBuilder + Send + Sync>,
    /// The calls made to the store, and its off switch.
    pub counts: Arc<Counts>,
    /// The framework the test app runs on.
    pub adapter: Adapter,
    /// The clock every manager of this fixture uses.
    pub clock: ManualClock,
}

impl HttpFixture {
    /// A fixture over `make`'s store (wrapped in `Counted` with `counts`),
    /// on axum until [`on`](Self::on) says otherwise.
    pub fn new(
        make: impl Fn(KeyRing) -> SessionManagerBuilder + Send + Sync + 'static,
        counts: Arc<Counts>,
    ) -> Self {
        HttpFixture {
            make: Arc::new(make),
            counts,
            adapter: Adapter::Axum,
            clock: ManualClock::starting_now(),
        }
    }

    /// The same store, on `adapter`.
    pub fn on(mut self, adapter: Adapter) -> Self {
        self.adapter = adapter;
        self
    }

    /// A manager signing with `keys`, `Secure` off (the tests speak plain
    /// HTTP), on the fixture's clock, then adjusted by `adjust`.
    pub fn manager_with(
        &self,
        keys: KeyRing,
        adjust: impl FnOnce(SessionManagerBuilder) -> SessionManagerBuilder,
    ) -> SessionManager {
        let builder = (self.make)(keys)
            .cookie(CookieConfig::default().secure(false))
            .clock(self.clock.clone());
        adjust(builder).build().expect("valid settings")
    }

    /// The default manager of the tests.
    pub fn manager(&self) -> SessionManager {
        self.manager_with(keys(), |b| b)
    }

    /// Serves the test app over `manager` on the fixture's adapter.
    pub async fn serve(&self, manager: SessionManager) -> TestServer {
        TestServer::serve(self.adapter, manager).await
    }

    /// Serves the test app over the default manager.
    pub async fn server(&self) -> TestServer {
        self.serve(self.manager()).await
    }
}

/// Seed flow stores and reads login.
pub async fn seed_flow_stores_and_reads_login(fx: HttpFixture) {
    let srv = fx.server().await;
    let c = srv.client();
    let r = c.get("/?name=alice").await;
    assert_eq!(r.body, "index get ok!");
    let set = r.set_cookies();
    assert_eq!(set.len(), 1);
    assert!(set[0].starts_with("id="), "{set:?}");
    assert!(set[0].contains("HttpOnly") && set[0].contains("SameSite=Lax"));
    assert!(set[0].contains("Path=/"));
    assert!(
        !set[0].contains("Max-Age"),
        "browser-session cookie by default"
    );
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
}

/// A handler's error status does not undo what it set before: the
/// change is written and the cookie sent, on both adapters alike.
pub async fn a_handler_that_fails_after_set_still_writes(fx: HttpFixture) {
    let srv = fx.server().await;
    let c = srv.client();
    let r = c.get("/set-then-fail?login=bob").await;
    assert_eq!((r.status, r.body.as_str()), (400, "refused"));
    assert_eq!(r.set_cookies().len(), 1, "the new session's cookie");
    assert_eq!(c.get("/detail").await.body, "detail get ok! bob");
}

/// Untouched request makes no store call and sets no cookie.
pub async fn untouched_request_makes_no_store_call_and_sets_no_cookie(fx: HttpFixture) {
    let srv = fx.server().await;
    let counts = &fx.counts;
    let c = srv.client();
    c.get("/?name=alice").await;
    let before = counts.total();
    let r = c.get("/untouched").await;
    assert_eq!(r.status, 200);
    assert!(r.set_cookies().is_empty());
    assert_eq!(counts.total(), before);
}

/// Detail without cookie sets no cookie and calls no store.
pub async fn detail_without_cookie_sets_no_cookie_and_calls_no_store(fx: HttpFixture) {
    let srv = fx.server().await;
    let counts = &fx.counts;
    let r = srv.client().get("/detail").await;
    assert_eq!(r.body, "detail get ok! None");
    assert!(r.set_cookies().is_empty());
    // The page depends on the (absent) cookie: private, and varies on it.
    assert_eq!(r.header("cache-control").as_deref(), Some("private"));
    assert_eq!(r.header("vary").as_deref(), Some("cookie"));
    assert_eq!(counts.total(), 0);
}

/// Other cookies are no session and no rejected token.
pub async fn other_cookies_are_no_session_and_no_rejected_token(fx: HttpFixture) {
    let manager = fx.manager();
    let srv = fx.serve(manager.clone()).await;
    let counts = &fx.counts;
    let c = srv.client();
    let r = c.get_raw("/detail", Some(b"theme=dark; lang=en")).await;
    assert_eq!(r.body, "detail get ok! None");
    assert_eq!(counts.total(), 0);
    assert_eq!(manager.stats().rejected_tokens, 0);
    // A cookie of our name that fails verification is counted.
    let r = c.get_raw("/detail", Some(b"theme=dark; id=forged")).await;
    assert_eq!(r.body, "detail get ok! None");
    assert_eq!(manager.stats().rejected_tokens, 1);
}

/// One changed character is no session and no store call.
pub async fn one_changed_character_is_no_session_and_no_store_call(fx: HttpFixture) {
    let srv = fx.server().await;
    let counts = &fx.counts;
    let c = srv.client();
    c.get("/?name=alice").await;
    let value = c.cookie("id").unwrap();
    let loads = counts.loads();
    for i in [0, 10, 43, 50, value.len() - 1] {
        let mut forged = value.clone().into_bytes();
        forged[i] = if forged[i] == b'x' { b'y' } else { b'x' };
        let forged = String::from_utf8(forged).unwrap();
        let r = srv
            .client()
            .get_raw("/detail", Some(format!("id={forged}").as_bytes()))
            .await;
        assert_eq!(r.body, "detail get ok! None", "position {i}");
    }
    assert_eq!(
        counts.loads(),
        loads,
        "a bad signature must not reach the store"
    );
}

/// Junk cookies never cause a server error.
pub async fn junk_cookies_never_cause_a_server_error(fx: HttpFixture) {
    let srv = fx.server().await;
    let counts = &fx.counts;
    let good = {
        let c = srv.client();
        c.get("/?name=alice").await;
        c.cookie("id").unwrap()
    };
    let huge = format!("id={}", "A".repeat(16 * 1024));
    let dots = format!("id={good}.extra");
    let many = format!("id=1; id=2; id=3; id=4; id=5; id={good}");
    let junk: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"id=".to_vec(),
        b"id".to_vec(),
        b"=; ;;; id==".to_vec(),
        huge.into_bytes(),
        b"id=\xff\xfe\x80abc".to_vec(),
        b"id=....".to_vec(),
        dots.into_bytes(),
        b"id=\"\"".to_vec(),
        many.into_bytes(),
    ];
    for cookie in &junk {
        let c = srv.client();
        let r = c.get_raw("/detail", Some(cookie)).await;
        assert_eq!(
            r.status,
            200,
            "cookie {:?}",
            String::from_utf8_lossy(cookie)
        );
        assert_eq!(r.body, "detail get ok! None");
        let r = c.get_raw("/?name=bob", Some(cookie)).await;
        assert_eq!(r.status, 200);
    }
    // A good cookie beside non-UTF-8 junk still works.
    let mixed = [b"x=\xff\xfe; ".as_slice(), format!("id={good}").as_bytes()].concat();
    let r = srv.client().get_raw("/detail", Some(&mixed)).await;
    assert_eq!(r.body, "detail get ok! alice");
    assert!(counts.loads() >= 1);
    // And the server is still up.
    assert_eq!(srv.client().get("/untouched").await.status, 200);
}

/// Loads at most once and writes without reading.
pub async fn loads_at_most_once_and_writes_without_reading(fx: HttpFixture) {
    let srv = fx.server().await;
    let counts = &fx.counts;
    let c = srv.client();
    // A first write creates the session without loading anything.
    c.get("/set?a=1&b=2").await;
    assert_eq!((counts.loads(), counts.applies()), (0, 1));
    // Writing to an existing session, without a read: no load.
    c.get("/set?a=3").await;
    assert_eq!((counts.loads(), counts.applies()), (0, 2));
    // Three reads, one load, no write.
    let r = c.get("/get-many").await;
    assert_eq!(r.body, r#"Some("3") Some("2") None"#);
    assert_eq!((counts.loads(), counts.applies()), (1, 2));
    assert!(r.set_cookies().is_empty());
    // Read then write: one load, one apply.
    c.get("/read-write").await;
    assert_eq!((counts.loads(), counts.applies()), (2, 3));
}

/// Setting the value already stored writes nothing.
pub async fn setting_the_value_already_stored_writes_nothing(fx: HttpFixture) {
    let srv = fx.server().await;
    let counts = &fx.counts;
    let c = srv.client();
    c.get("/?name=alice").await;
    let applies = counts.applies();
    let r = c.get("/same").await;
    assert_eq!(r.body, "alice");
    assert_eq!(counts.applies(), applies);
    assert!(r.set_cookies().is_empty());
}

/// Keys remove and clear.
pub async fn keys_remove_and_clear(fx: HttpFixture) {
    let srv = fx.server().await;
    let c = srv.client();
    c.get("/set?a=1&b=2&c=3").await;
    assert_eq!(c.get("/keys").await.body, "a,b,c");
    c.get("/remove?b").await;
    assert_eq!(c.get("/keys").await.body, "a,c");
    c.get("/clear").await;
    assert_eq!(c.get("/keys").await.body, "");
    c.get("/set?d=4").await;
    assert_eq!(c.get("/keys").await.body, "d");
}

/// `remove` answers the old value; `discard` removes without a read;
/// `values` reads by prefix, or everything, in one load.
pub async fn remove_returns_the_old_value_and_values_read_by_prefix(fx: HttpFixture) {
    let srv = fx.server().await;
    let counts = &fx.counts;
    let c = srv.client();
    c.get("/set?cart:apple=3&cart:pear=1&login=alice&coupon=X1")
        .await;
    let loads = counts.loads();
    assert_eq!(
        c.get("/values?prefix=cart:").await.body,
        "cart:apple=3,cart:pear=1"
    );
    assert_eq!(counts.loads(), loads + 1, "one read for the whole cart");
    assert_eq!(
        c.get("/values").await.body,
        "cart:apple=3,cart:pear=1,coupon=X1,login=alice"
    );
    assert_eq!(
        c.get("/remove?coupon&missing").await.body,
        "coupon=X1,missing=None"
    );
    assert_eq!(c.get("/remove?coupon").await.body, "coupon=None");
    let loads = counts.loads();
    assert_eq!(c.get("/discard?cart:pear").await.body, "discarded");
    assert_eq!(counts.loads(), loads, "discard reads nothing");
    assert_eq!(c.get("/keys").await.body, "cart:apple,login");
}

/// Removing the last name, or a clear, ends the session and clears the
/// cookie; an unread notification or a bound user keeps it.
pub async fn an_emptied_session_ends(fx: HttpFixture) {
    let srv = fx.server().await;
    let c = srv.client();
    c.get("/set?a=1&b=2").await;
    let old_cookie = c.cookie("id").expect("a cookie");
    let r = c.get("/remove?a").await;
    assert!(r.set_cookies().is_empty(), "b is still there");
    let r = c.get("/discard?b").await;
    assert!(
        r.set_cookies()[0].contains("Max-Age=0"),
        "the last name went: {:?}",
        r.set_cookies()
    );
    assert_eq!(c.cookie("id"), None);
    // Sent again anyway, the old cookie names no session.
    let stale = srv.client();
    stale.set_cookie("id", &old_cookie);
    assert_eq!(stale.get("/id").await.body, "");
    c.get("/set?x=1").await;
    let r = c.get("/clear").await;
    assert!(
        r.set_cookies()[0].contains("Max-Age=0"),
        "a clear empties it"
    );
    // A notification keeps it until it is read.
    c.get("/set?a=1").await;
    c.get("/notify?flash=hi").await;
    let r = c.get("/remove?a").await;
    assert!(r.set_cookies().is_empty(), "the notification keeps it");
    assert_eq!(c.get("/take?name=flash").await.body, "hi");
    // A bound user keeps it through a clear.
    let c = srv.client();
    c.get("/signin?name=alice").await;
    let signed_in = c.get("/id").await.body;
    let r = c.get("/clear").await;
    assert!(r.set_cookies().is_empty(), "still alice's session");
    assert_eq!(c.get("/id").await.body, signed_in);
}

/// Concurrent requests setting different names all survive.
pub async fn concurrent_requests_setting_different_names_all_survive(fx: HttpFixture) {
    let srv = fx.server().await;
    let c = srv.client();
    c.get("/set?seed=1").await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let r = c.get(&format!("/set?name{i:03}={i}")).await;
            assert_eq!(r.status, 200);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let keys = c.get("/keys").await.body;
    let names: Vec<&str> = keys.split(',').collect();
    assert_eq!(names.len(), 101, "{keys}");
    for i in 0..100 {
        assert!(names.contains(&format!("name{i:03}").as_str()));
    }
}

/// Cycle id issues a new cookie and kills the old one.
pub async fn cycle_id_issues_a_new_cookie_and_kills_the_old_one(fx: HttpFixture) {
    let srv = fx.server().await;
    let c = srv.client();
    c.get("/?name=anon").await;
    let before = c.cookie("id").unwrap();
    let id_before = c.get("/id").await.body;
    let r = c.get("/login?name=alice").await;
    let after = c.cookie("id").unwrap();
    assert_ne!(before, after);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
    assert_ne!(c.get("/id").await.body, id_before);
    let old = srv.client();
    old.set_cookie("id", &before);
    assert_eq!(old.get("/detail").await.body, "detail get ok! None");
}

/// Destroy deletes the session and clears the cookie.
pub async fn destroy_deletes_the_session_and_clears_the_cookie(fx: HttpFixture) {
    let srv = fx.server().await;
    let counts = &fx.counts;
    let c = srv.client();
    c.get("/?name=alice").await;
    let cookie = c.cookie("id").unwrap();
    let r = c.get("/logout").await;
    let set = r.set_cookies();
    assert_eq!(set.len(), 1);
    assert!(set[0].starts_with("id=;") && set[0].contains("Max-Age=0"));
    assert!(set[0].contains("Expires=Thu, 01 Jan 1970"));
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(counts.deletes.load(Ordering::SeqCst), 1);
    assert!(c.cookie("id").is_none());
    let replay = srv.client();
    replay.set_cookie("id", &cookie);
    assert_eq!(replay.get("/detail").await.body, "detail get ok! None");
}

/// Writes under a dead cookie create a fresh id.
pub async fn writes_under_a_dead_cookie_create_a_fresh_id(fx: HttpFixture) {
    let srv = fx.server().await;
    let c = srv.client();
    c.get("/?name=alice").await;
    let old = c.cookie("id").unwrap();
    c.fork().get("/logout").await;
    // `c` still holds the dead cookie and writes blindly.
    let r = c.get("/?name=mallory").await;
    assert_eq!(r.set_cookies().len(), 1, "a new cookie is issued");
    let new = c.cookie("id").unwrap();
    assert_ne!(old, new);
    assert_eq!(c.get("/detail").await.body, "detail get ok! mallory");
    let replay = srv.client();
    replay.set_cookie("id", &old);
    assert_eq!(replay.get("/detail").await.body, "detail get ok! None");
}

/// Notifications are read once.
pub async fn notifications_are_read_once(fx: HttpFixture) {
    let srv = fx.server().await;
    let c = srv.client();
    c.get("/notify?welcome=hello").await;
    assert_eq!(c.get("/take?name=welcome").await.body, "hello");
    assert_eq!(c.get("/take?name=welcome").await.body, "None");
}

/// Concurrent takes hand a notification out once.
pub async fn concurrent_takes_hand_a_notification_out_once(fx: HttpFixture) {
    let srv = fx.server().await;
    let c = srv.client();
    c.get("/notify?flash=once").await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let c = c.clone();
        tasks.push(tokio::spawn(
            async move { c.get("/take?name=flash").await.body },
        ));
    }
    let mut got = 0;
    for t in tasks {
        if t.await.unwrap() == "once" {
            got += 1;
        }
    }
    assert_eq!(got, 1);
}

/// Clear keeps notifications.
pub async fn clear_keeps_notifications(fx: HttpFixture) {
    let srv = fx.server().await;
    let c = srv.client();
    c.get("/?name=alice").await;
    c.get("/notify?flash=still-here").await;
    c.get("/clear").await;
    assert_eq!(c.get("/detail").await.body, "detail get ok! None");
    assert_eq!(c.get("/take?name=flash").await.body, "still-here");
}

/// Older keys verify and are resigned with the current key.
pub async fn older_keys_verify_and_are_resigned_with_the_current_key(fx: HttpFixture) {
    let with_keys = |secrets: &[&str]| fx.manager_with(KeyRing::new(secrets).unwrap(), |b| b);
    let old_manager = with_keys(&[OLD_SECRET]);
    let rotated = with_keys(&[SECRET, OLD_SECRET]);
    let removed = with_keys(&[SECRET]);
    let old_srv = fx.serve(old_manager).await;
    let c = old_srv.client();
    c.get("/?name=alice").await;
    let old_cookie = c.cookie("id").unwrap();

    let rot_srv = fx.serve(rotated).await;
    let c = rot_srv.client();
    c.set_cookie("id", &old_cookie);
    // Untouched: no cookie. Touched: re-signed.
    assert!(c.get("/untouched").await.set_cookies().is_empty());
    let r = c.get("/detail").await;
    assert_eq!(r.body, "detail get ok! alice");
    assert_eq!(r.set_cookies().len(), 1);
    let resigned = c.cookie("id").unwrap();
    assert_ne!(resigned, old_cookie);
    assert_eq!(
        resigned[..43],
        old_cookie[..43],
        "same token, new signature"
    );
    assert!(c.get("/detail").await.set_cookies().is_empty());

    let rem_srv = fx.serve(removed).await;
    let c = rem_srv.client();
    c.set_cookie("id", &old_cookie);
    assert_eq!(c.get("/detail").await.body, "detail get ok! None");
    let c = rem_srv.client();
    c.set_cookie("id", &resigned);
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
}

/// Forged tokens are counted.
pub async fn forged_tokens_are_counted(fx: HttpFixture) {
    let manager = fx.manager();
    let srv = fx.serve(manager.clone()).await;
    let counts = &fx.counts;
    let token = "A".repeat(43);
    for i in 0..10 {
        let forged = format!("id={token}.{:0>43}", i);
        srv.client()
            .get_raw("/detail", Some(forged.as_bytes()))
            .await;
    }
    assert_eq!(manager.stats().rejected_tokens, 10);
    assert_eq!(counts.total(), 0);
}

/// Store outage becomes 503 and recovers.
pub async fn store_outage_becomes_503_and_recovers(fx: HttpFixture) {
    let srv = fx.server().await;
    let counts = &fx.counts;
    let c = srv.client();
    c.get("/?name=alice").await;
    counts.down.store(true, Ordering::SeqCst);
    // The handler's read fails and it returns the error: 503.
    let r = c.get("/detail").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "session store unavailable\n");
    // The handler's write fails at commit: 503, and no cookie.
    let r = srv.client().get("/?name=bob").await;
    assert_eq!(r.status, 503);
    assert!(r.set_cookies().is_empty());
    // An untouched route is not affected.
    assert_eq!(c.get("/untouched").await.status, 200);
    counts.down.store(false, Ordering::SeqCst);
    assert_eq!(c.get("/detail").await.body, "detail get ok! alice");
}

/// The app's own page replaces the default when a commit fails, and sets
/// no cookie.
pub async fn a_failed_commit_renders_the_apps_error_page(fx: HttpFixture) {
    let manager = fx.manager_with(keys(), |b| {
        b.on_commit_error(|err| {
            let (status, _) = err.status_and_body();
            let mut page = http::Response::new(format!("<p>not saved ({})</p>", status.as_u16()));
            *page.status_mut() = status;
            page.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            page
        })
    });
    let srv = fx.serve(manager).await;
    let c = srv.client();
    fx.counts.down.store(true, Ordering::SeqCst);
    let r = c.get("/?name=alice").await;
    fx.counts.down.store(false, Ordering::SeqCst);
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "<p>not saved (503)</p>");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert!(r.set_cookies().is_empty());
    // Without the hook, the default text.
    let srv = fx.server().await;
    fx.counts.down.store(true, Ordering::SeqCst);
    let r = srv.client().get("/?name=alice").await;
    fx.counts.down.store(false, Ordering::SeqCst);
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "session store unavailable\n")
    );
}

/// The `Max-Age` of a `Set-Cookie` line, if it has one.
fn max_age(line: &str) -> Option<u64> {
    line.split(';')
        .find_map(|attr| attr.trim().strip_prefix("Max-Age="))
        .and_then(|v| v.parse().ok())
}

/// A persistent cookie (`expires_days`) follows the session: its
/// `Max-Age` never reaches past the absolute deadline, and it is sent
/// again with a fresh one as the session is used, at most once per tenth
/// of the idle window.
pub async fn persistent_cookie_follows_the_session(fx: HttpFixture) {
    let persistent = CookieConfig::default()
        .secure(false)
        .expires_days(Some(30.0));
    let policy = cloakroom::ExpiryPolicy::default()
        .idle(Duration::from_secs(100))
        .absolute(Duration::from_secs(1000));
    let manager = fx.manager_with(keys(), |b| b.cookie(persistent).expiry(policy));
    let srv = fx.serve(manager).await;
    let c = srv.client();
    let r = c.get("/?name=alice").await;
    assert_eq!(
        max_age(&r.set_cookies()[0]),
        Some(1000),
        "capped by the absolute deadline"
    );
    // A 30-day cookie on a session with a long lifetime keeps 30 days.
    let long = fx.manager_with(keys(), |b| {
        b.cookie(
            CookieConfig::default()
                .secure(false)
                .expires_days(Some(30.0)),
        )
        .expiry(cloakroom::ExpiryPolicy::default().absolute(Duration::from_secs(90 * 86_400)))
    });
    let long_srv = fx.serve(long).await;
    let r = long_srv.client().get("/?name=bob").await;
    assert_eq!(max_age(&r.set_cookies()[0]), Some(30 * 86_400));

    let elapsed = std::cell::Cell::new(0);
    let step = |secs: u64| {
        fx.clock.advance(Duration::from_secs(secs));
        elapsed.set(elapsed.get() + secs);
        elapsed.get()
    };
    step(5);
    let r = c.get("/detail").await;
    assert_eq!(r.body, "detail get ok! alice");
    assert!(r.set_cookies().is_empty(), "within a tenth of the window");
    let t = step(6);
    let r = c.get("/detail").await;
    assert_eq!(
        max_age(&r.set_cookies()[0]),
        Some(1000 - t),
        "{:?}",
        r.set_cookies()
    );
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    assert!(c.get("/detail").await.set_cookies().is_empty(), "just sent");
    // A write is due as well, without reading the session.
    let t = step(50);
    let r = c.get("/set?x=1").await;
    // From the cookie's stamp, which keeps whole seconds: rounded down.
    let age = max_age(&r.set_cookies()[0]).expect("sent again");
    assert!((999 - t..=1000 - t).contains(&age), "{age} at {t}");
    // Used all along, it never outlives the absolute deadline...
    while elapsed.get() < 990 {
        let t = step(90);
        let r = c.get("/detail").await;
        if t >= 1000 {
            break;
        }
        assert_eq!(r.body, "detail get ok! alice");
        assert_eq!(max_age(&r.set_cookies()[0]), Some(1000 - t));
    }
    // ...which ends the session.
    assert_eq!(c.get("/detail").await.body, "detail get ok! None");
}

/// One session gets its own expiry ("remember me"), within the
/// maximums; the others keep the defaults.
pub async fn remember_me_gets_its_own_expiry(fx: HttpFixture) {
    let policy = cloakroom::ExpiryPolicy::default()
        .idle(Duration::from_secs(1))
        .absolute(Duration::from_secs(1000));
    let max = cloakroom::SessionExpiry::new(Duration::from_secs(600), Duration::from_secs(5000))
        .persistent(Duration::from_secs(4000));
    let manager = fx.manager_with(keys(), |b| b.expiry(policy).max_session_expiry(max));
    let srv = fx.serve(manager).await;
    let (plain, remembered) = (srv.client(), srv.client());
    plain.get("/?name=alice").await;
    remembered.get("/?name=bob").await;
    let before = remembered.cookie("id").expect("a cookie");
    let r = remembered
        .get("/remember?idle=60&absolute=3000&cookie=3000")
        .await;
    assert_eq!(r.body, "remembered");
    assert_eq!(max_age(&r.set_cookies()[0]), Some(3000));
    assert_ne!(remembered.cookie("id").unwrap(), before, "a new id");
    assert_eq!(remembered.get("/expiry").await.body, "idle=60 cookie=3000");
    assert_eq!(plain.get("/expiry").await.body, "default");
    // The old cookie no longer works.
    let old = srv.client();
    old.set_cookie("id", &before);
    assert_eq!(old.get("/detail").await.body, "detail get ok! None");
    // Past the default idle timeout (on the store's real clock too).
    tokio::time::sleep(Duration::from_millis(1300)).await;
    fx.clock.advance(Duration::from_millis(1300));
    assert_eq!(plain.get("/detail").await.body, "detail get ok! None");
    assert_eq!(remembered.get("/detail").await.body, "detail get ok! bob");
    // Over the maximums: refused, and nothing changes.
    let r = remembered.get("/remember?idle=601&absolute=3000").await;
    assert_eq!(r.status, 500);
    assert!(r.set_cookies().is_empty());
    let r = remembered
        .get("/remember?idle=60&absolute=3000&cookie=4001")
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(remembered.get("/expiry").await.body, "idle=60 cookie=3000");
    // Its last name removed, it still lives: its expiry is kept.
    let r = remembered.get("/remove?login").await;
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
    assert_ne!(remembered.get("/id").await.body, "");
    // And back to the defaults: a browser-session cookie again.
    let r = remembered.get("/remember").await;
    assert_eq!(max_age(&r.set_cookies()[0]), None);
    assert_eq!(remembered.get("/expiry").await.body, "default");
}

/// Concurrent increments all count.
pub async fn concurrent_increments_all_count(fx: HttpFixture) {
    crate::scenarios::concurrent_increments_all_count(fx.adapter, fx.manager(), 100).await;
}

/// Responses that use the session vary on the cookie and are private, or
/// `no-store` when they set it; a handler's own cache policy is kept; a
/// response that never touched its session gets neither.
pub async fn responses_that_use_the_session_are_private_and_vary_on_the_cookie(fx: HttpFixture) {
    let srv = fx.server().await;
    let c = srv.client();
    let r = c.get("/?name=alice").await;
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(r.header("vary").as_deref(), Some("cookie"));
    let r = c.get("/detail").await;
    assert!(r.set_cookies().is_empty());
    assert_eq!(r.header("cache-control").as_deref(), Some("private"));
    assert_eq!(r.header("vary").as_deref(), Some("cookie"));
    let r = c.get("/own-cache-policy").await;
    assert_eq!(r.body, "alice");
    assert_eq!(r.header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(r.header("vary").as_deref(), Some("cookie"));
    let r = c.get("/untouched").await;
    assert!(r.header("cache-control").is_none() && r.header("vary").is_none());
}

/// One `#[tokio::test]` per HTTP scenario and adapter, in modules `axum`
/// and `actix`. `$make` is an expression (it may `.await`) giving
/// `(guard, HttpFixture)`.
#[macro_export]
macro_rules! http_tests {
    ($make:expr) => {
        mod axum {
            #[allow(unused_imports)]
            use super::*;
            $crate::http_tests!(@adapter Axum, $make);
        }
        mod actix {
            #[allow(unused_imports)]
            use super::*;
            $crate::http_tests!(@adapter Actix, $make);
        }
    };
    (@adapter $adapter:ident, $make:expr) => {
        $crate::http_tests!(@each $adapter, $make;
            seed_flow_stores_and_reads_login,
            a_handler_that_fails_after_set_still_writes,
            untouched_request_makes_no_store_call_and_sets_no_cookie,
            detail_without_cookie_sets_no_cookie_and_calls_no_store,
            other_cookies_are_no_session_and_no_rejected_token,
            one_changed_character_is_no_session_and_no_store_call,
            junk_cookies_never_cause_a_server_error,
            loads_at_most_once_and_writes_without_reading,
            setting_the_value_already_stored_writes_nothing,
            keys_remove_and_clear,
            remove_returns_the_old_value_and_values_read_by_prefix,
            an_emptied_session_ends,
            concurrent_requests_setting_different_names_all_survive,
            cycle_id_issues_a_new_cookie_and_kills_the_old_one,
            destroy_deletes_the_session_and_clears_the_cookie,
            writes_under_a_dead_cookie_create_a_fresh_id,
            notifications_are_read_once,
            concurrent_takes_hand_a_notification_out_once,
            clear_keeps_notifications,
            older_keys_verify_and_are_resigned_with_the_current_key,
            forged_tokens_are_counted,
            store_outage_becomes_503_and_recovers,
            a_failed_commit_renders_the_apps_error_page,
            persistent_cookie_follows_the_session,
            remember_me_gets_its_own_expiry,
            concurrent_increments_all_count,
            responses_that_use_the_session_are_private_and_vary_on_the_cookie);
    };
    (@each $adapter:ident, $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (_guard, fixture) = $make;
                let fixture = fixture.on($crate::Adapter::$adapter);
                $crate::http_suite::$name(fixture).await;
            }
        )*
    };
}
