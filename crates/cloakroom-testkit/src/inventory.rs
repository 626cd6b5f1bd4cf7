//! The session inventory (user binding, listing, ending, the cap per
//! user), written once and run on every store that keeps a user index
//! with [`inventory_tests!`](crate::inventory_tests). The tests drive a
//! [`SessionManager`] the way an adapter does: open a session from request
//! headers, commit it, keep the cookie.

use cloakroom::{
    ClientInfo, CookieConfig, Error, ExpiryPolicy, KeyRing, Limits, ManualClock, OnMaxSessions,
    Session, SessionManager, SessionManagerBuilder, Store,
};
use http::HeaderMap;
use http::header::{COOKIE, SET_COOKIE};
use std::time::Duration;

const SECRET: &str = "inventory test secret, long enough to sign";

/// A manager over `store` with a manual clock, an idle window of 10
/// minutes and an absolute one of an hour, and `limits`.
fn manager<S: Store + Clone>(store: &S, clock: &ManualClock, limits: Limits) -> SessionManager {
    builder(store, clock, limits)
        .build()
        .expect("valid settings")
}

fn builder<S: Store + Clone>(
    store: &S,
    clock: &ManualClock,
    limits: Limits,
) -> SessionManagerBuilder {
    SessionManagerBuilder::new(store.clone(), KeyRing::new([SECRET]).expect("secret"))
        .cookie(CookieConfig::default().secure(false))
        .expiry(
            ExpiryPolicy::default()
                .idle(Duration::from_secs(600))
                .absolute(Duration::from_secs(3600)),
        )
        .limits(limits)
        .clock(clock.clone())
}

/// One browser: the cookie it holds.
#[derive(Clone, Default)]
struct Device {
    cookie: Option<String>,
}

impl Device {
    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(cookie) = &self.cookie {
            headers.insert(COOKIE, cookie.parse().expect("a cookie header"));
        }
        headers
    }

    /// Runs one request: `handler` on its session, then the commit.
    async fn request<T, F>(&mut self, m: &SessionManager, handler: F) -> cloakroom::Result<T>
    where
        F: AsyncFnOnce(&Session) -> cloakroom::Result<T>,
    {
        let session = m.open(&self.headers());
        let out = handler(&session).await?;
        let headers = m.commit(&session).await?;
        for edit in headers.iter().filter(|e| e.name == SET_COOKIE) {
            let line = edit.value.to_str().expect("ASCII");
            let pair = line.split(';').next().unwrap_or_default();
            self.cookie = (!pair.ends_with('=')).then(|| pair.to_owned());
        }
        Ok(out)
    }

    /// Signs in as `user` from a browser called `agent`: a new id, bound.
    async fn sign_in(
        &mut self,
        m: &SessionManager,
        user: &str,
        agent: &str,
    ) -> cloakroom::Result<()> {
        self.request(m, async |s| {
            s.cycle_id().await?;
            s.set("seen", true).await?;
            s.bind_user(user, ClientInfo::default().user_agent(agent).ip("10.0.0.7"))
                .await
        })
        .await
    }

    /// Whether the device still has a session with data in it.
    async fn signed_in(&mut self, m: &SessionManager) -> bool {
        self.request(m, async |s| s.get::<bool>("seen").await)
            .await
            .expect("a read")
            .is_some()
    }

    async fn user(&mut self, m: &SessionManager) -> Option<String> {
        self.request(m, async |s| s.user().await)
            .await
            .expect("a read")
    }

    async fn id(&mut self, m: &SessionManager) -> cloakroom::SessionId {
        self.request(m, async |s| s.id().await)
            .await
            .expect("a read")
            .expect("a session")
    }
}

/// A session with a lifetime of its own ("remember me") stays in the
/// user's index past the default lifetime: it is listed, and ending the
/// user's sessions ends it.
pub async fn a_remembered_session_stays_in_the_index<S: Store + Clone>(store: S) {
    let clock = ManualClock::starting_now();
    let hour = Duration::from_secs(3600);
    let m = builder(&store, &clock, Limits::default())
        .max_session_expiry(cloakroom::SessionExpiry::new(2 * hour, 24 * hour))
        .build()
        .expect("valid settings");
    let (mut remembered, mut other) = (Device::default(), Device::default());
    remembered.sign_in(&m, "alice", "Firefox").await.unwrap();
    remembered
        .request(&m, async |s| {
            s.set_expiry(Some(cloakroom::SessionExpiry::new(2 * hour, 24 * hour)))
                .await
        })
        .await
        .unwrap();
    // Past the default absolute lifetime (an hour), used all along.
    for _ in 0..3 {
        clock.advance(Duration::from_secs(30 * 60));
        assert!(remembered.signed_in(&m).await);
    }
    other.sign_in(&m, "alice", "Safari").await.unwrap();
    let list = m.admin().list("alice").await.unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    for info in &list {
        // Its idle deadline is two hours out, the default window an hour:
        // never "last seen" in the future.
        let now = cloakroom::Clock::now(&clock);
        assert!(info.last_seen <= now, "{info:?} at {now:?}");
    }
    assert_eq!(m.admin().end_user("alice").await.unwrap(), 2);
    assert!(!remembered.signed_in(&m).await, "signed out everywhere");
}

/// Binding, reading the binding back, and listing with the client info.
pub async fn bind_and_list<S: Store + Clone>(store: S) {
    let clock = ManualClock::starting_now();
    let m = manager(&store, &clock, Limits::default());
    let (mut laptop, mut phone, mut anonymous) =
        (Device::default(), Device::default(), Device::default());
    laptop.sign_in(&m, "alice", "Firefox").await.unwrap();
    clock.advance(Duration::from_secs(5));
    phone.sign_in(&m, "alice", "Safari").await.unwrap();
    anonymous
        .request(&m, async |s| s.set("cart", 1).await)
        .await
        .unwrap();
    assert_eq!(laptop.user(&m).await.as_deref(), Some("alice"));
    assert_eq!(anonymous.user(&m).await, None);

    let list = m.admin().list("alice").await.unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0].id, laptop.id(&m).await, "oldest first");
    assert_eq!(list[0].client.user_agent.as_deref(), Some("Firefox"));
    assert_eq!(list[1].client.user_agent.as_deref(), Some("Safari"));
    assert_eq!(list[0].client.ip.as_deref(), Some("10.0.0.7"));
    for info in &list {
        assert!(info.created <= info.last_seen && info.last_seen < info.idle_deadline);
        assert!(info.idle_deadline <= info.absolute_deadline);
    }
    assert!(m.admin().list("bob").await.unwrap().is_empty());
    // The binding is not among the names, and clear keeps it.
    laptop
        .request(&m, async |s| {
            assert_eq!(s.keys().await?, vec!["seen".to_owned()]);
            s.clear().await
        })
        .await
        .unwrap();
    assert_eq!(laptop.user(&m).await.as_deref(), Some("alice"));
    assert_eq!(m.admin().list("alice").await.unwrap().len(), 2);
}

/// A login after the binding (a second `cycle_id`) keeps the session in
/// the index under its new id.
pub async fn a_cycled_bound_session_stays_listed<S: Store + Clone>(store: S) {
    let clock = ManualClock::starting_now();
    let m = manager(&store, &clock, Limits::default());
    let mut laptop = Device::default();
    laptop.sign_in(&m, "alice", "Firefox").await.unwrap();
    let before = laptop.id(&m).await;
    laptop
        .request(&m, async |s| s.cycle_id().await)
        .await
        .unwrap();
    let after = laptop.id(&m).await;
    assert_ne!(before, after);
    let ids: Vec<_> = m
        .admin()
        .list("alice")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, vec![after]);
}

/// Ending one session, a user's, all but the current one, and all.
pub async fn end_one_a_user_all_but_one_and_all<S: Store + Clone>(store: S) {
    let clock = ManualClock::starting_now();
    let m = manager(&store, &clock, Limits::default());
    let mut alice: Vec<Device> = vec![Device::default(); 4];
    for (i, d) in alice.iter_mut().enumerate() {
        d.sign_in(&m, "alice", &format!("browser {i}"))
            .await
            .unwrap();
    }
    let mut bob = Device::default();
    bob.sign_in(&m, "bob", "Chrome").await.unwrap();
    let admin = m.admin();

    // One, by id: the next request with its cookie has no session.
    let first = alice[0].id(&m).await;
    assert!(admin.end(&first).await.unwrap(), "a live session ended");
    assert!(!alice[0].signed_in(&m).await);
    // Again: nothing live to end.
    assert!(!admin.end(&first).await.unwrap());
    assert_eq!(admin.list("alice").await.unwrap().len(), 3);

    // All but the current one.
    let current = alice[1].id(&m).await;
    assert_eq!(admin.end_user_except("alice", &current).await.unwrap(), 2);
    assert!(alice[1].signed_in(&m).await);
    assert!(!alice[2].signed_in(&m).await && !alice[3].signed_in(&m).await);

    // All of a user's; bob is untouched.
    assert_eq!(admin.end_user("alice").await.unwrap(), 1);
    assert!(!alice[1].signed_in(&m).await);
    assert!(admin.list("alice").await.unwrap().is_empty());
    assert!(bob.signed_in(&m).await);

    // Every session, anonymous ones too, where the store can list them:
    // all but Memcached, which has no way to list its keys.
    let mut anonymous = Device::default();
    anonymous
        .request(&m, async |s| s.set("seen", true).await)
        .await
        .unwrap();
    match admin.end_all().await {
        Ok(n) => {
            assert!(n >= 2, "{n}");
            assert!(!bob.signed_in(&m).await && !anonymous.signed_in(&m).await);
            assert_eq!(admin.count().await.unwrap(), 0);
        }
        Err(Error::Unsupported(why)) if store.name() == "memcached" => {
            assert!(!why.is_empty());
            assert!(bob.signed_in(&m).await && anonymous.signed_in(&m).await);
        }
        Err(e) => panic!("end_all on {}: {e}", store.name()),
    }
}

/// Logged out and expired sessions are never listed.
pub async fn dead_sessions_are_never_listed<S: Store + Clone>(store: S) {
    let clock = ManualClock::starting_now();
    let m = manager(&store, &clock, Limits::default());
    let (mut a, mut b) = (Device::default(), Device::default());
    a.sign_in(&m, "alice", "one").await.unwrap();
    b.sign_in(&m, "alice", "two").await.unwrap();
    a.request(&m, async |s| s.destroy().await).await.unwrap();
    let list = m.admin().list("alice").await.unwrap();
    assert_eq!(list.len(), 1, "a logged-out session is not listed");
    clock.advance(Duration::from_secs(3601));
    assert!(
        m.admin().list("alice").await.unwrap().is_empty(),
        "past the deadline"
    );
}

/// The cap, evicting: the least recently used session ends.
pub async fn the_cap_evicts_the_least_recently_used<S: Store + Clone>(store: S) {
    let clock = ManualClock::starting_now();
    let limits = Limits::default().max_sessions_per_user(Some(2));
    let m = manager(&store, &clock, limits);
    let (mut a, mut b, mut c) = (Device::default(), Device::default(), Device::default());
    a.sign_in(&m, "alice", "a").await.unwrap();
    clock.advance(Duration::from_secs(61));
    b.sign_in(&m, "alice", "b").await.unwrap();
    // `a` is used after `b`'s sign-in (past a tenth of the idle window,
    // so the store records it).
    clock.advance(Duration::from_secs(61));
    assert!(a.signed_in(&m).await);
    clock.advance(Duration::from_secs(61));
    c.sign_in(&m, "alice", "c").await.unwrap();
    assert!(a.signed_in(&m).await, "used most recently but one");
    assert!(!b.signed_in(&m).await, "the least recently used ended");
    assert!(c.signed_in(&m).await);
    assert_eq!(m.admin().list("alice").await.unwrap().len(), 2);
}

/// The cap, refusing: the sign-in fails with a clear error, the session
/// stays anonymous, and a place freed lets the next sign-in in.
pub async fn the_cap_refuses_a_sign_in_over_it<S: Store + Clone>(store: S) {
    let clock = ManualClock::starting_now();
    let limits = Limits::default()
        .max_sessions_per_user(Some(2))
        .on_max_sessions(OnMaxSessions::Refuse);
    let m = manager(&store, &clock, limits);
    let (mut a, mut b, mut c) = (Device::default(), Device::default(), Device::default());
    a.sign_in(&m, "alice", "a").await.unwrap();
    b.sign_in(&m, "alice", "b").await.unwrap();
    // Signing in again on a device already counted adds nothing.
    a.sign_in(&m, "alice", "a again").await.unwrap();
    let refused = c.sign_in(&m, "alice", "c").await.unwrap_err();
    assert!(
        matches!(refused, Error::TooManySessions { limit: 2 }),
        "{refused}"
    );
    assert_eq!(refused.status_and_body().0, 409);
    assert!(a.signed_in(&m).await && b.signed_in(&m).await);
    assert_eq!(c.user(&m).await, None);
    // Signing out on one device frees a place.
    b.request(&m, async |s| s.destroy().await).await.unwrap();
    c.sign_in(&m, "alice", "c").await.unwrap();
    assert_eq!(c.user(&m).await.as_deref(), Some("alice"));
    assert_eq!(m.admin().list("alice").await.unwrap().len(), 2);
}

/// 30 simultaneous sign-ins with a cap of 2 leave exactly 2 sessions
/// bound to the user, under both policies.
pub async fn concurrent_sign_ins_respect_the_cap<S: Store + Clone>(store: S) {
    for on_max in [OnMaxSessions::EvictOldest, OnMaxSessions::Refuse] {
        let clock = ManualClock::starting_now();
        let limits = Limits::default()
            .max_sessions_per_user(Some(2))
            .on_max_sessions(on_max);
        let m = manager(&store, &clock, limits);
        let user = format!("carol-{on_max:?}");
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..30 {
            let (m, user) = (m.clone(), user.clone());
            tasks.spawn(async move {
                let mut d = Device::default();
                let signed = d.sign_in(&m, &user, &format!("device {i}")).await;
                (d, signed)
            });
        }
        let mut devices = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (d, signed) = joined.expect("a sign-in task");
            match signed {
                Ok(()) => {}
                Err(Error::TooManySessions { .. }) if on_max == OnMaxSessions::Refuse => {}
                Err(e) => panic!("{on_max:?}: {e}"),
            }
            devices.push(d);
        }
        let listed = m.admin().list(&user).await.unwrap();
        assert_eq!(listed.len(), 2, "{on_max:?}: {listed:?}");
        let mut bound = 0;
        for d in &mut devices {
            if d.cookie.is_some() && d.user(&m).await.as_deref() == Some(user.as_str()) {
                bound += 1;
            }
        }
        assert_eq!(bound, 2, "{on_max:?}: live sessions bound to the user");
    }
}

/// 1000 sign-ins that expire leave nothing listed, and a later sign-in is
/// admitted under the cap (the dead ones do not count).
pub async fn the_index_forgets_sessions_that_expire<S: Store + Clone>(store: S) {
    let clock = ManualClock::starting_now();
    let limits = Limits::default()
        .max_sessions_per_user(Some(3))
        .on_max_sessions(OnMaxSessions::Refuse);
    let m = manager(&store, &clock, limits);
    for i in 0..1000 {
        Device::default()
            .sign_in(&m, "dave", &format!("{i}"))
            .await
            .unwrap_or_else(|e| panic!("sign-in {i}: {e}"));
        if i % 3 == 2 {
            clock.advance(Duration::from_secs(3601));
        }
    }
    clock.advance(Duration::from_secs(3601));
    assert!(m.admin().list("dave").await.unwrap().is_empty());
    Device::default().sign_in(&m, "dave", "last").await.unwrap();
    assert_eq!(m.admin().list("dave").await.unwrap().len(), 1);
}

/// One `#[tokio::test]` per inventory rule. `$make` is an expression (it
/// may `.await`) giving `(guard, store)`.
#[macro_export]
macro_rules! inventory_tests {
    ($make:expr) => {
        $crate::inventory_tests!(@each $make;
            bind_and_list, a_cycled_bound_session_stays_listed,
            end_one_a_user_all_but_one_and_all, dead_sessions_are_never_listed,
            the_cap_evicts_the_least_recently_used, the_cap_refuses_a_sign_in_over_it,
            concurrent_sign_ins_respect_the_cap, the_index_forgets_sessions_that_expire,
            a_remembered_session_stays_in_the_index);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (_guard, store) = $make;
                $crate::inventory::$name(store).await;
            }
        )*
    };
}
