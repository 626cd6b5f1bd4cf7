//! The store contract, written once and run against every store.
//!
//! Each check is a function taking a fresh store. [`conformance_tests!`]
//! turns them into one `#[tokio::test]` each, so a failure names the rule
//! that broke. Time is real where the store expires keys on its own clock
//! (Redis, Memcached), with windows of about a second, and a manual clock
//! on the memory store (see [`SuiteTime`]).
//!
//! [`conformance_tests!`]: crate::conformance_tests

use cloakroom::{
    Applied, Clock, Expiry, ExpiryPolicy, ManualClock, Patch, SessionId, Store, SystemClock,
};
use std::sync::Arc;
use std::time::Duration;

/// How time passes in the suite.
///
/// Redis and Memcached expire keys on their own clock, so the idle rules
/// run there with real windows of about a second, and sleep. The memory
/// store takes every instant from [`Expiry`], so there the suite moves a
/// [`ManualClock`] instead and runs without sleeping.
#[derive(Clone)]
pub enum SuiteTime {
    /// Real time: sleeps.
    Real,
    /// A manual clock that the suite advances.
    Manual(ManualClock),
}

impl SuiteTime {
    /// A manual clock starting now.
    pub fn manual() -> Self {
        SuiteTime::Manual(ManualClock::starting_now())
    }

    /// Expiry with these windows, now.
    pub fn at(&self, idle: Duration, absolute: Duration) -> Expiry {
        let policy = ExpiryPolicy::default().idle(idle).absolute(absolute);
        match self {
            SuiteTime::Real => policy.at(SystemClock.now()),
            SuiteTime::Manual(clock) => policy.at(clock.now()),
        }
    }

    /// Lets `d` pass.
    pub async fn pass(&self, d: Duration) {
        match self {
            SuiteTime::Real => tokio::time::sleep(d).await,
            SuiteTime::Manual(clock) => clock.advance(d),
        }
    }
}

/// A fresh random session id.
pub fn new_id() -> SessionId {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("OS random source");
    SessionId::from(bytes)
}

/// Expiry at the current time with the given windows.
pub fn at_now(idle: Duration, absolute: Duration) -> Expiry {
    ExpiryPolicy::default()
        .idle(idle)
        .absolute(absolute)
        .at(SystemClock.now())
}

fn long() -> Expiry {
    at_now(Duration::from_secs(600), Duration::from_secs(3600))
}

fn creating(pairs: &[(&str, &str)]) -> Patch {
    let mut p = Patch::default();
    p.create();
    for (k, v) in pairs {
        p.set(*k, (*v).to_owned());
    }
    p
}

async fn create<S: Store>(store: &S, pairs: &[(&str, &str)], e: &Expiry) -> SessionId {
    let id = new_id();
    let applied = store.apply(&id, &creating(pairs), e).await.expect("create");
    assert_eq!(applied, Applied::Done, "creating a new session");
    id
}

async fn values<S: Store>(store: &S, id: &SessionId) -> Option<Vec<(String, String)>> {
    store
        .load(id, &long())
        .await
        .expect("load")
        .map(|r| r.values.into_iter().collect())
}

fn pairs(list: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
    Some(
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// Create, load, and apply changes.
pub async fn load_and_apply<S: Store>(store: S, _: &SuiteTime) {
    let e = long();
    assert_eq!(values(&store, &new_id()).await, None);
    let id = create(&store, &[("login", "\"alice\""), ("n", "1")], &e).await;
    let record = store.load(&id, &e).await.unwrap().expect("created");
    assert_eq!(record.created, e.now);
    assert_eq!(record.deadline, e.new_deadline());
    let mut p = Patch::default();
    p.set("n", "2".into());
    p.set("cart", "[1,2]".into());
    assert_eq!(store.apply(&id, &p, &e).await.unwrap(), Applied::Done);
    assert_eq!(
        values(&store, &id).await,
        pairs(&[("cart", "[1,2]"), ("login", "\"alice\""), ("n", "2")])
    );
}

/// Names that look like internal fields are stored like any other.
pub async fn unusual_names_round_trip<S: Store>(store: S, _: &SuiteTime) {
    let e = long();
    let odd = [
        ("@m", "0"),
        ("@c", "1"),
        ("@@d", "2"),
        ("", "3"),
        ("a:b{c}", "4"),
        ("ünï", "\"ç\""),
    ];
    let id = create(&store, &odd, &e).await;
    let mut expected: Vec<(String, String)> = odd
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    expected.sort();
    assert_eq!(values(&store, &id).await, Some(expected));
    let record = store.load(&id, &e).await.unwrap().unwrap();
    assert_eq!(record.deadline, e.new_deadline(), "meta fields intact");
    // And through a change, not only a create.
    let mut change = Patch::default();
    change.set("@m", "5".into());
    assert_eq!(store.apply(&id, &change, &e).await.unwrap(), Applied::Done);
    let record = store.load(&id, &e).await.unwrap().unwrap();
    assert_eq!(record.values["@m"], "5");
    assert_eq!(record.deadline, e.new_deadline(), "meta fields intact");
}

/// `Change::Remove` removes one name.
pub async fn removal<S: Store>(store: S, _: &SuiteTime) {
    let e = long();
    let id = create(&store, &[("a", "1"), ("b", "2")], &e).await;
    let mut p = Patch::default();
    p.remove("a");
    p.remove("never-set");
    assert_eq!(store.apply(&id, &p, &e).await.unwrap(), Applied::Done);
    assert_eq!(values(&store, &id).await, pairs(&[("b", "2")]));
}

/// A patch with `end_if_empty` that leaves no name and no notification
/// ends the session (`Applied::Ended`); one that leaves either keeps it;
/// without the flag an empty session stays.
pub async fn emptied_sessions_end_when_asked<S: Store>(store: S, _: &SuiteTime) {
    let e = long();
    let remove_a = || {
        let mut p = Patch::default();
        p.remove("a");
        p.end_if_empty();
        p
    };
    // Another name left: kept.
    let id = create(&store, &[("a", "1"), ("b", "2")], &e).await;
    assert_eq!(
        store.apply(&id, &remove_a(), &e).await.unwrap(),
        Applied::Done
    );
    assert_eq!(values(&store, &id).await, pairs(&[("b", "2")]));
    // The last name: ended.
    let id = create(&store, &[("a", "1")], &e).await;
    assert_eq!(
        store.apply(&id, &remove_a(), &e).await.unwrap(),
        Applied::Ended
    );
    assert!(store.load(&id, &e).await.unwrap().is_none());
    // A clear, too.
    let id = create(&store, &[("a", "1"), ("b", "2")], &e).await;
    let mut clear = Patch::default();
    clear.clear();
    clear.end_if_empty();
    assert_eq!(store.apply(&id, &clear, &e).await.unwrap(), Applied::Ended);
    assert!(store.load(&id, &e).await.unwrap().is_none());
    // Without the flag the empty session stays.
    let id = create(&store, &[("a", "1")], &e).await;
    let mut plain = Patch::default();
    plain.remove("a");
    assert_eq!(store.apply(&id, &plain, &e).await.unwrap(), Applied::Done);
    assert_eq!(values(&store, &id).await, pairs(&[]));
    // An unread notification keeps it.
    let id = create(&store, &[("a", "1")], &e).await;
    let mut note = Patch::default();
    note.notify("flash", "\"hi\"".into());
    assert_eq!(store.apply(&id, &note, &e).await.unwrap(), Applied::Done);
    assert_eq!(
        store.apply(&id, &remove_a(), &e).await.unwrap(),
        Applied::Done
    );
    assert_eq!(
        store
            .take_notification(&id, "flash", &e)
            .await
            .unwrap()
            .as_deref(),
        Some("\"hi\"")
    );
}

/// `clear` removes every name, keeps the session and its notifications,
/// and changes after it in the same patch apply.
pub async fn clear<S: Store>(store: S, _: &SuiteTime) {
    let e = long();
    let id = create(&store, &[("a", "1"), ("b", "2")], &e).await;
    let mut n = Patch::default();
    n.notify("flash", "\"kept\"".into());
    assert_eq!(store.apply(&id, &n, &e).await.unwrap(), Applied::Done);
    let mut p = Patch::default();
    p.clear();
    p.set("c", "3".into());
    assert_eq!(store.apply(&id, &p, &e).await.unwrap(), Applied::Done);
    assert_eq!(values(&store, &id).await, pairs(&[("c", "3")]));
    let record = store.load(&id, &e).await.unwrap().unwrap();
    assert_eq!(record.deadline, e.new_deadline());
    assert_eq!(
        store.take_notification(&id, "flash", &e).await.unwrap(),
        Some("\"kept\"".into())
    );
}

/// A patch that restarts the lifetime (a session given its own expiry)
/// moves the absolute deadline to `now + absolute`, with or without a
/// rename, and keeps the data; the TTL follows the operation's idle.
pub async fn restarted_lifetime_moves_the_deadline<S: Store>(store: S, _: &SuiteTime) {
    let e = long();
    let id = create(&store, &[("login", "\"alice\"")], &e).await;
    let own = at_now(Duration::from_secs(1200), Duration::from_secs(9000));
    let new = new_id();
    let mut p = Patch::rename(new);
    p.restart_lifetime();
    assert_eq!(store.apply(&id, &p, &own).await.unwrap(), Applied::Done);
    assert_eq!(store.load(&id, &own).await.unwrap(), None);
    let after = store.load(&new, &own).await.unwrap().unwrap();
    assert_eq!(after.deadline, own.new_deadline());
    assert_eq!(after.values["login"], "\"alice\"");
    // In place too, alongside a change.
    let shorter = at_now(Duration::from_secs(60), Duration::from_secs(120));
    let mut p = Patch::default();
    p.restart_lifetime();
    p.set("a", "1".into());
    assert_eq!(
        store.apply(&new, &p, &shorter).await.unwrap(),
        Applied::Done
    );
    let after = store.load(&new, &shorter).await.unwrap().unwrap();
    assert_eq!(after.deadline, shorter.new_deadline());
    assert_eq!(after.values.len(), 2);
}

/// `cycle` moves data, notifications and the absolute deadline; the old id
/// is gone at once.
pub async fn cycle_keeps_data_and_deadline<S: Store>(store: S, _: &SuiteTime) {
    let e = long();
    let old = create(&store, &[("login", "\"alice\"")], &e).await;
    let mut n = Patch::default();
    n.notify("flash", "\"hi\"".into());
    assert_eq!(store.apply(&old, &n, &e).await.unwrap(), Applied::Done);
    let before = store.load(&old, &e).await.unwrap().unwrap();

    let later = at_now(Duration::from_secs(600), Duration::from_secs(7200));
    let new = new_id();
    assert_eq!(
        store.cycle(&old, &new, &later).await.unwrap(),
        Applied::Done
    );
    assert_eq!(store.load(&old, &later).await.unwrap(), None);
    let after = store.load(&new, &later).await.unwrap().unwrap();
    assert_eq!(after.values, before.values);
    assert_eq!(after.created, before.created);
    assert_eq!(after.deadline, before.deadline, "cycle keeps the deadline");
    assert_eq!(
        store
            .take_notification(&new, "flash", &later)
            .await
            .unwrap(),
        Some("\"hi\"".into())
    );
    // A rename with changes in the same patch (login: cycle + set).
    let newer = new_id();
    let mut p = Patch::rename(newer);
    p.set("login", "\"bob\"".into());
    assert_eq!(store.apply(&new, &p, &later).await.unwrap(), Applied::Done);
    assert_eq!(values(&store, &newer).await, pairs(&[("login", "\"bob\"")]));
    assert_eq!(values(&store, &new).await, None);
}

/// `delete` removes the session and its notifications; deleting twice is
/// fine.
pub async fn destroy<S: Store>(store: S, _: &SuiteTime) {
    let e = long();
    let id = create(&store, &[("a", "1")], &e).await;
    let mut n = Patch::default();
    n.notify("flash", "1".into());
    assert_eq!(store.apply(&id, &n, &e).await.unwrap(), Applied::Done);
    store.delete(&id).await.unwrap();
    store.delete(&id).await.unwrap();
    assert_eq!(values(&store, &id).await, None);
    assert_eq!(
        store.take_notification(&id, "flash", &e).await.unwrap(),
        None
    );
}

/// Nothing brings a missing, deleted or expired session back, and a create
/// never overwrites.
pub async fn no_resurrection<S: Store>(store: S, _: &SuiteTime) {
    let e = long();
    let mut p = Patch::default();
    p.set("a", "1".into());
    let missing = new_id();
    assert_eq!(store.apply(&missing, &p, &e).await.unwrap(), Applied::Gone);
    assert_eq!(store.touch(&missing, &e).await.unwrap(), Applied::Gone);
    assert_eq!(
        store.cycle(&missing, &new_id(), &e).await.unwrap(),
        Applied::Gone
    );
    assert_eq!(values(&store, &missing).await, None);

    let id = create(&store, &[("a", "1")], &e).await;
    assert_eq!(
        store
            .apply(&id, &creating(&[("b", "2")]), &e)
            .await
            .unwrap(),
        Applied::Gone,
        "create must not overwrite"
    );
    assert_eq!(values(&store, &id).await, pairs(&[("a", "1")]));
    store.delete(&id).await.unwrap();
    assert_eq!(store.apply(&id, &p, &e).await.unwrap(), Applied::Gone);
    assert_eq!(values(&store, &id).await, None);

    // Renaming onto a live id is refused too.
    let a = create(&store, &[("a", "1")], &e).await;
    let b = create(&store, &[("b", "2")], &e).await;
    assert_eq!(store.cycle(&a, &b, &e).await.unwrap(), Applied::Gone);
    assert_eq!(values(&store, &b).await, pairs(&[("b", "2")]));
}

/// The idle timeout ends an unused session, and use pushes it forward.
pub async fn idle_expiry<S: Store>(store: S, time: &SuiteTime) {
    let idle = Duration::from_millis(1500);
    let absolute = Duration::from_secs(60);
    let kept = create(&store, &[("a", "1")], &time.at(idle, absolute)).await;
    let dropped = create(&store, &[("a", "1")], &time.at(idle, absolute)).await;
    for _ in 0..3 {
        time.pass(Duration::from_millis(700)).await;
        assert_eq!(
            store.touch(&kept, &time.at(idle, absolute)).await.unwrap(),
            Applied::Done
        );
    }
    // 2.1 s after creation: past `dropped`'s idle window, not `kept`'s.
    assert!(
        store
            .load(&dropped, &time.at(idle, absolute))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .load(&kept, &time.at(idle, absolute))
            .await
            .unwrap()
            .is_some()
    );
    let mut p = Patch::default();
    p.set("b", "2".into());
    assert_eq!(
        store
            .apply(&dropped, &p, &time.at(idle, absolute))
            .await
            .unwrap(),
        Applied::Gone
    );
}

/// A read pushes the idle deadline forward once enough of the window has
/// passed, so a session that is only read stays alive.
pub async fn reads_refresh_idle<S: Store>(store: S, time: &SuiteTime) {
    let idle = Duration::from_millis(1500);
    let absolute = Duration::from_secs(60);
    let id = create(&store, &[("a", "1")], &time.at(idle, absolute)).await;
    for _ in 0..4 {
        time.pass(Duration::from_millis(600)).await;
        assert!(
            store
                .load(&id, &time.at(idle, absolute))
                .await
                .unwrap()
                .is_some(),
            "a session read every 0.6 s must outlive its 1.5 s idle window"
        );
    }
}

/// The absolute deadline ends a session however active it is.
pub async fn absolute_expiry<S: Store>(store: S, time: &SuiteTime) {
    let idle = Duration::from_millis(1500);
    let absolute = Duration::from_millis(2000);
    let id = create(&store, &[("a", "1")], &time.at(idle, absolute)).await;
    for _ in 0..3 {
        time.pass(Duration::from_millis(600)).await;
        assert_eq!(
            store.touch(&id, &time.at(idle, absolute)).await.unwrap(),
            Applied::Done
        );
    }
    // 1.8 s: past a first idle window, alive because it was touched.
    assert!(
        store
            .load(&id, &time.at(idle, absolute))
            .await
            .unwrap()
            .is_some()
    );
    time.pass(Duration::from_millis(300)).await;
    // 2.1 s: past the absolute deadline, within the idle window.
    assert!(
        store
            .load(&id, &time.at(idle, absolute))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.touch(&id, &time.at(idle, absolute)).await.unwrap(),
        Applied::Gone
    );
}

/// A notification is handed out once, even to concurrent takers.
pub async fn read_once_notifications<S: Store>(store: S, _: &SuiteTime) {
    let e = long();
    let id = create(&store, &[], &e).await;
    assert_eq!(
        store.take_notification(&id, "none", &e).await.unwrap(),
        None
    );
    let mut n = Patch::default();
    n.notify("flash", "\"once\"".into());
    assert_eq!(store.apply(&id, &n, &e).await.unwrap(), Applied::Done);
    let store = Arc::new(store);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.spawn(async move { store.take_notification(&id, "flash", &long()).await });
    }
    let mut got = 0;
    while let Some(r) = tasks.join_next().await {
        if r.unwrap().unwrap().is_some() {
            got += 1;
        }
    }
    assert_eq!(got, 1);
    assert!(store.load(&id, &e).await.unwrap().is_some());
}

/// Concurrent patches to different names all survive.
pub async fn concurrent_patches_all_survive<S: Store>(store: S, _: &SuiteTime) {
    let e = long();
    let id = create(&store, &[], &e).await;
    let store = Arc::new(store);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut p = Patch::default();
            p.set(format!("name{i:03}"), i.to_string());
            store.apply(&id, &p, &long()).await
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap(), Applied::Done);
    }
    let record = store.load(&id, &e).await.unwrap().unwrap();
    assert_eq!(record.values.len(), 200);
    for i in 0..200 {
        assert_eq!(record.values[&format!("name{i:03}")], i.to_string());
    }
}

/// Concurrent increments all count; a missing session is not created; a
/// value that is not an integer is an error.
pub async fn increments_are_atomic<S: Store>(store: S, _: &SuiteTime) {
    let e = long();
    assert_eq!(store.increment(&new_id(), "n", 1, &e).await.unwrap(), None);
    let id = create(&store, &[("text", "\"abc\"")], &e).await;
    assert!(store.increment(&id, "text", 1, &e).await.is_err());
    let store = Arc::new(store);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let store = store.clone();
        tasks.spawn(async move { store.increment(&id, "visits", 2, &long()).await });
    }
    let mut seen = Vec::new();
    while let Some(r) = tasks.join_next().await {
        seen.push(r.unwrap().unwrap().expect("live session"));
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=100).map(|i| i * 2).collect::<Vec<i64>>());
    let record = store.load(&id, &e).await.unwrap().unwrap();
    assert_eq!(record.values["visits"], "200");
    assert_eq!(
        record.values["text"], "\"abc\"",
        "a failed increment wrote nothing"
    );
}

/// Size limits carried by a patch are checked before anything is written.
pub async fn size_limits_write_nothing_when_exceeded<S: Store>(store: S, _: &SuiteTime) {
    let e = long();
    let limits = cloakroom::SizeLimits {
        max_names: 2,
        max_bytes: 20,
    };
    let mut too_many = creating(&[("a", "1"), ("b", "2"), ("c", "3")]);
    too_many.limit(limits);
    let id = new_id();
    assert!(matches!(
        store.apply(&id, &too_many, &e).await,
        Err(cloakroom::Error::TooLarge { .. })
    ));
    assert_eq!(values(&store, &id).await, None, "no session was created");

    let mut ok = creating(&[("a", "1")]);
    ok.limit(limits);
    assert_eq!(store.apply(&id, &ok, &e).await.unwrap(), Applied::Done);
    let mut third = Patch::default();
    third.set("b", "2".into());
    third.set("c", "3".into());
    third.limit(limits);
    assert!(matches!(
        store.apply(&id, &third, &e).await,
        Err(cloakroom::Error::TooLarge { .. })
    ));
    let mut big = Patch::default();
    big.set("b", "\"0123456789012345678\"".into());
    big.limit(limits);
    assert!(matches!(
        store.apply(&id, &big, &e).await,
        Err(cloakroom::Error::TooLarge { .. })
    ));
    assert_eq!(
        values(&store, &id).await,
        pairs(&[("a", "1")]),
        "nothing partial"
    );
    // Replacing a name does not count it twice; clearing frees room.
    let mut swap = Patch::default();
    swap.clear();
    swap.set("x", "1".into());
    swap.set("y", "2".into());
    swap.limit(limits);
    assert_eq!(store.apply(&id, &swap, &e).await.unwrap(), Applied::Done);
    let mut again = Patch::default();
    again.set("x", "3".into());
    again.limit(limits);
    assert_eq!(store.apply(&id, &again, &e).await.unwrap(), Applied::Done);
    assert_eq!(values(&store, &id).await, pairs(&[("x", "3"), ("y", "2")]));
}

/// A patch that only removes names is accepted on a session that is over
/// its limits (they were lowered after it grew), and shrinks it; a patch
/// that also sets a name is refused there, and writes nothing.
pub async fn removals_pass_over_lowered_limits<S: Store>(store: S, _: &SuiteTime) {
    let e = long();
    let id = create(&store, &[("a", "1"), ("b", "2"), ("c", "3")], &e).await;
    let lowered = cloakroom::SizeLimits {
        max_names: 1,
        max_bytes: 1 << 20,
    };
    let mut grow = Patch::default();
    grow.remove("a");
    grow.set("d", "4".into());
    grow.limit(lowered);
    assert!(
        store.apply(&id, &grow, &e).await.is_err(),
        "still over the limit"
    );
    assert_eq!(
        values(&store, &id).await,
        pairs(&[("a", "1"), ("b", "2"), ("c", "3")]),
        "a refused patch writes nothing"
    );
    let mut shrink = Patch::default();
    shrink.remove("a");
    shrink.limit(lowered);
    assert_eq!(store.apply(&id, &shrink, &e).await.unwrap(), Applied::Done);
    assert_eq!(values(&store, &id).await, pairs(&[("b", "2"), ("c", "3")]));
}

/// A session with no absolute limit (`Duration::MAX`) and a very long
/// idle window (a century) works like any other: created, read, changed,
/// counted, renamed, its notifications taken. Its deadlines saturate
/// instead of overflowing the store's arithmetic.
pub async fn lifetimes_without_a_limit_work<S: Store>(store: S, time: &SuiteTime) {
    for idle in [
        Duration::from_secs(3600),
        Duration::from_secs(100 * 365 * 86_400),
    ] {
        let e = time.at(idle, Duration::MAX);
        let id = create(&store, &[("a", "1")], &e).await;
        let record = store.load(&id, &e).await.unwrap().expect("created");
        assert_eq!(record.values["a"], "1");
        let mut change = Patch::default();
        change.set("b", "2".to_owned());
        change.notify("hello", "\"hi\"".to_owned());
        assert_eq!(store.apply(&id, &change, &e).await.unwrap(), Applied::Done);
        assert_eq!(store.increment(&id, "n", 2, &e).await.unwrap(), Some(2));
        let moved = new_id();
        assert_eq!(store.cycle(&id, &moved, &e).await.unwrap(), Applied::Done);
        assert_eq!(
            store
                .take_notification(&moved, "hello", &e)
                .await
                .unwrap()
                .as_deref(),
            Some("\"hi\"")
        );
        time.pass(Duration::from_secs(1)).await;
        let e = time.at(idle, Duration::MAX);
        let record = store.load(&moved, &e).await.unwrap().expect("still alive");
        assert_eq!(record.values.len(), 3, "{:?}", record.values);
        assert!(store.load(&id, &e).await.unwrap().is_none());
    }
}

/// An increment past 64 bits stops at the bound, on every store, rather
/// than failing or wrapping.
pub async fn increments_saturate<S: Store>(store: S, time: &SuiteTime) {
    let e = time.at(Duration::from_secs(600), Duration::from_secs(3600));
    let id = create(
        &store,
        &[
            ("up", "9223372036854775806"),
            ("down", "-9223372036854775807"),
        ],
        &e,
    )
    .await;
    assert_eq!(
        store.increment(&id, "up", 5, &e).await.unwrap(),
        Some(i64::MAX)
    );
    assert_eq!(
        store.increment(&id, "down", -5, &e).await.unwrap(),
        Some(i64::MIN)
    );
    assert_eq!(
        store.increment(&id, "up", -1, &e).await.unwrap(),
        Some(i64::MAX - 1)
    );
    let record = store.load(&id, &e).await.unwrap().expect("alive");
    assert_eq!(record.values["down"], i64::MIN.to_string());
}

/// One `#[tokio::test]` per contract rule. `$make` is an expression
/// (it may `.await`) giving `(guard, store)`: the guard, such as the server
/// process, lives until the test ends. Time is real unless a second
/// argument gives a [`SuiteTime`] expression (a manual clock for a store
/// that takes all its time from `Expiry`).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!($make, $crate::conformance::SuiteTime::Real);
    };
    ($make:expr, $time:expr) => {
        $crate::conformance_tests!(@each $make, $time;
            load_and_apply, unusual_names_round_trip, removal,
            emptied_sessions_end_when_asked, clear,
            cycle_keeps_data_and_deadline, restarted_lifetime_moves_the_deadline,
            destroy, no_resurrection,
            idle_expiry, reads_refresh_idle, absolute_expiry,
            read_once_notifications, concurrent_patches_all_survive,
            size_limits_write_nothing_when_exceeded, increments_are_atomic,
            removals_pass_over_lowered_limits, lifetimes_without_a_limit_work,
            increments_saturate);
    };
    (@each $make:expr, $time:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (_guard, store) = $make;
                $crate::conformance::$name(store, &$time).await;
            }
        )*
    };
}

/// For the SQL stores, which keep expired rows until a sweep deletes
/// them: an expired session is never returned nor counted before, and
/// `sweep(batch)` (the store's own `delete_expired`, on the real clock)
/// deletes every expired row, with a batch smaller than their number, and
/// no live one. `rows()` counts the rows really in the table.
pub async fn every_expired_row_is_swept_past_one_batch<S, F, Fut>(
    store: S,
    sweep: F,
    rows: impl Fn() -> usize,
) where
    S: Store,
    F: Fn(u32) -> Fut,
    Fut: std::future::Future<Output = cloakroom::Result<u64>>,
{
    let short = ExpiryPolicy::default()
        .idle(Duration::from_millis(1))
        .absolute(Duration::from_secs(60));
    let long = ExpiryPolicy::default();
    let patch = creating(&[("n", "1")]);
    let mut expired = Vec::new();
    for _ in 0..10 {
        let id = new_id();
        let e = short.at(SystemClock.now());
        assert_eq!(store.apply(&id, &patch, &e).await.unwrap(), Applied::Done);
        expired.push(id);
    }
    let live = new_id();
    let e = long.at(SystemClock.now());
    assert_eq!(store.apply(&live, &patch, &e).await.unwrap(), Applied::Done);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let now = long.at(SystemClock.now());
    assert!(store.load(&expired[0], &now).await.unwrap().is_none());
    assert_eq!(store.count(&now).await.unwrap(), 1);
    assert_eq!(rows(), 11, "expired rows stay until swept");
    assert_eq!(sweep(3).await.unwrap(), 10);
    assert_eq!(sweep(3).await.unwrap(), 0);
    assert_eq!(rows(), 1);
    assert!(store.load(&live, &now).await.unwrap().is_some());
}
