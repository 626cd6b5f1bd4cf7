//! The session API within one request, on the memory store: what a
//! handler sees after mixing calls.

mod common;

use cloakroom::{KeyRing, MemoryStore, SessionManager};
use common::{commit, manager, open, request};

#[tokio::test]
async fn a_name_incremented_earlier_in_the_request_is_removed() {
    let m = manager();
    let mut cookie = None;
    request(&m, &mut cookie, async |s| s.set("keep", 1).await).await;
    request(&m, &mut cookie, async |s| {
        assert_eq!(s.get::<i64>("keep").await?, Some(1));
        assert_eq!(s.increment("n", 5).await?, 5);
        assert_eq!(s.remove::<i64>("n").await?, Some(5));
        assert_eq!(s.get::<i64>("n").await?, None);
        Ok(())
    })
    .await;
    request(&m, &mut cookie, async |s| {
        assert_eq!(s.get::<i64>("n").await?, None, "removed in the store too");
        s.increment("m", 2).await?;
        s.discard("m").await?;
        Ok(())
    })
    .await;
    request(&m, &mut cookie, async |s| {
        assert_eq!(s.keys().await?, ["keep"]);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_clear_hides_names_incremented_before_it() {
    let m = manager();
    let mut cookie = None;
    request(&m, &mut cookie, async |s| s.set("a", 1).await).await;
    request(&m, &mut cookie, async |s| {
        s.increment("n", 1).await?;
        s.clear().await?;
        assert!(s.keys().await?.is_empty());
        assert!(s.values::<serde_json::Value>("").await?.is_empty());
        s.set("b", 2).await?;
        assert_eq!(s.keys().await?, ["b"]);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn lifecycle_events_reach_the_subscriber() {
    use cloakroom::{ClientInfo, EndReason, Limits, SessionEvent};
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<SessionEvent>>> = Arc::default();
    let log = seen.clone();
    let m = SessionManager::builder(MemoryStore::new(), KeyRing::random())
        .limits(Limits::default().max_sessions_per_user(Some(1)))
        .on_event(move |e| log.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let take = || std::mem::take(&mut *seen.lock().unwrap());
    let (mut laptop, mut phone) = (None, None);

    request(&m, &mut laptop, async |s| s.set("a", 1).await).await;
    let [SessionEvent::Created { id: first }] = take()[..] else {
        panic!("a create")
    };
    request(&m, &mut laptop, async |s| {
        s.cycle_id().await?;
        s.bind_user("alice", ClientInfo::default()).await
    })
    .await;
    let [
        SessionEvent::Cycled {
            old,
            new: signed_in,
        },
    ] = take()[..]
    else {
        panic!("a cycle")
    };
    assert_eq!(old, first);
    // A second device: the cap of one evicts the laptop.
    request(&m, &mut phone, async |s| {
        s.set("b", 1).await?;
        s.bind_user("alice", ClientInfo::default()).await
    })
    .await;
    let events = take();
    assert!(
        matches!(events[0], SessionEvent::Created { .. }),
        "{events:?}"
    );
    assert_eq!(
        events[1],
        SessionEvent::Ended {
            id: signed_in,
            reason: EndReason::Cap
        }
    );
    // Emptied: the last name removed.
    request(&m, &mut laptop, async |s| s.set("c", 1).await).await;
    let [SessionEvent::Created { id: emptied }] = take()[..] else {
        panic!("a create")
    };
    request(&m, &mut laptop, async |s| s.discard("c").await).await;
    assert_eq!(
        take(),
        [SessionEvent::Ended {
            id: emptied,
            reason: EndReason::Empty
        }]
    );
    // An admin ends alice's sessions; then a logout.
    assert_eq!(m.admin().end_user("alice").await.unwrap(), 1);
    assert_eq!(
        take(),
        [SessionEvent::UserEnded {
            user: "alice".to_owned(),
            count: 1,
            reason: EndReason::Admin
        }]
    );
    request(&m, &mut laptop, async |s| s.set("d", 1).await).await;
    let [SessionEvent::Created { id: last }] = take()[..] else {
        panic!("a create")
    };
    // One session ended by an admin; ending it again raises nothing.
    assert!(m.admin().end(&last).await.unwrap());
    assert_eq!(
        take(),
        [SessionEvent::Ended {
            id: last,
            reason: EndReason::Admin
        }]
    );
    assert!(!m.admin().end(&last).await.unwrap());
    assert_eq!(take(), []);
    request(&m, &mut laptop, async |s| s.set("e", 1).await).await;
    let [SessionEvent::Created { id: last }] = take()[..] else {
        panic!("a create")
    };
    request(&m, &mut laptop, async |s| s.destroy().await).await;
    assert_eq!(take(), [SessionEvent::Destroyed { id: last }]);
}

/// A session prepared ahead of time is taken over once, under a fresh
/// id with the default lifetime, by a request without a cookie of its
/// own; a request that has one takes nothing over and reads nothing.
#[tokio::test]
async fn a_prepared_session_is_taken_over_once_under_a_fresh_id() {
    use cloakroom::{Handover, Store};
    use std::time::Duration;
    let store = MemoryStore::new();
    let m = SessionManager::builder(store.clone(), KeyRing::random())
        .build()
        .unwrap();
    let handover = Handover::derive(b"the old system's secret", b"old-id-1");
    let values = [("login".to_owned(), serde_json::json!("alice"))];
    let notes = [("flash".to_owned(), serde_json::json!("welcome"))];
    let week = Duration::from_secs(7 * 86_400);
    assert!(
        m.admin()
            .prepare(&handover, values.clone(), notes, week)
            .await
            .unwrap()
    );
    assert!(
        !m.admin()
            .prepare(&handover, values, [], week)
            .await
            .unwrap(),
        "prepared once"
    );

    let mut cookie = None;
    request(&m, &mut cookie, async |s| {
        assert!(s.take_over(&handover).await?);
        assert_eq!(s.get::<String>("login").await?.as_deref(), Some("alice"));
        assert_ne!(s.id().await?, Some(handover.id()), "a fresh id at once");
        Ok(())
    })
    .await;
    let cookie_after = cookie.clone().expect("the response set a cookie");
    request(&m, &mut cookie, async |s| {
        assert_eq!(s.get::<String>("login").await?.as_deref(), Some("alice"));
        assert_eq!(
            s.notifications().take::<String>("flash").await?.as_deref(),
            Some("welcome")
        );
        let id = s.id().await?.expect("a session");
        assert_ne!(id, handover.id());
        let e =
            cloakroom::ExpiryPolicy::default().at(cloakroom::Clock::now(&cloakroom::SystemClock));
        let record = store.load(&id, &e).await?.expect("stored");
        assert!(
            record.deadline.0 <= e.new_deadline().0 + 1_000,
            "the default lifetime, not the week it waited"
        );
        Ok(())
    })
    .await;
    assert_eq!(cookie.as_deref(), Some(cookie_after.as_str()));

    // Taken: a second client with the same credential gets nothing.
    let mut other = None;
    request(&m, &mut other, async |s| {
        assert!(!s.take_over(&handover).await?);
        assert_eq!(s.get::<String>("login").await?, None);
        Ok(())
    })
    .await;
    assert_eq!(other, None);

    // A client with a session of its own takes nothing over: the
    // prepared session stays.
    let second = Handover::derive(b"the old system's secret", b"old-id-2");
    m.admin()
        .prepare(
            &second,
            [("login".to_owned(), serde_json::json!("bob"))],
            [],
            week,
        )
        .await
        .unwrap();
    request(&m, &mut cookie, async |s| {
        assert!(!s.take_over(&second).await?);
        assert_eq!(s.get::<String>("login").await?.as_deref(), Some("alice"));
        Ok(())
    })
    .await;
    let e = cloakroom::ExpiryPolicy::default().at(cloakroom::Clock::now(&cloakroom::SystemClock));
    assert!(store.load(&second.id(), &e).await.unwrap().is_some());
}

/// A request that only read its session commits without the store, at
/// once: adapters then allocate nothing for it. A write still runs.
#[tokio::test]
async fn a_read_only_commit_is_ready_at_once() {
    let m = manager();
    let mut cookie = None;
    request(&m, &mut cookie, async |s| s.set("a", 1).await).await;
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::COOKIE, cookie.unwrap().parse().unwrap());

    let read = m.open(&headers);
    assert_eq!(read.get::<i64>("a").await.unwrap(), Some(1));
    let commit = m.commit(&read);
    assert_eq!(format!("{commit:?}"), r#"CommitFuture("ready")"#);
    let out = commit.await.unwrap();
    assert!(out.iter().all(|e| e.name != http::header::SET_COOKIE));
    assert!(out.iter().any(|e| e.name == http::header::VARY));

    let write = m.open(&headers);
    write.set("a", 2).await.unwrap();
    let commit = m.commit(&write);
    assert_eq!(format!("{commit:?}"), r#"CommitFuture("running")"#);
    commit.await.unwrap();
    let again = m.open(&headers);
    assert_eq!(again.get::<i64>("a").await.unwrap(), Some(2));
}

#[tokio::test]
async fn a_set_after_an_increment_is_written() {
    let m = manager();
    let mut cookie = None;
    request(&m, &mut cookie, async |s| s.set("attempts", 0).await).await;
    request(&m, &mut cookie, async |s| {
        assert_eq!(s.get::<i64>("attempts").await?, Some(0));
        assert_eq!(s.increment("attempts", 1).await?, 1);
        // Back to the value the session was loaded with: still a change,
        // since the store holds 1 now.
        s.set("attempts", 0).await?;
        assert_eq!(s.get::<i64>("attempts").await?, Some(0));
        Ok(())
    })
    .await;
    request(&m, &mut cookie, async |s| {
        assert_eq!(
            s.get::<i64>("attempts").await?,
            Some(0),
            "reset in the store"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn nothing_of_a_destroyed_session_is_read_after_it() {
    let m = manager();
    let mut cookie = None;
    request(&m, &mut cookie, async |s| s.set("a", 1).await).await;
    request(&m, &mut cookie, async |s| {
        assert_eq!(s.increment("n", 5).await?, 5);
        s.destroy().await?;
        assert_eq!(s.get::<i64>("n").await?, None);
        assert!(s.keys().await?.is_empty());
        assert_eq!(s.id().await?, None);
        // Writes after it start a new, empty session.
        assert_eq!(s.increment("n", 1).await?, 1);
        assert_eq!(s.keys().await?, ["n"]);
        Ok(())
    })
    .await;
    request(&m, &mut cookie, async |s| {
        assert_eq!(s.keys().await?, ["n"]);
        assert_eq!(s.get::<i64>("n").await?, Some(1));
        Ok(())
    })
    .await;
}

/// Tab B reads its session, then tab A signs in (a new id) before B's
/// changes are written: B writes nothing and sets no cookie, so A's
/// cookie stays in the browser and the user stays signed in.
#[tokio::test]
async fn a_write_racing_a_sign_in_does_not_undo_it() {
    let m = manager();
    let mut cookie = None;
    request(&m, &mut cookie, async |s| s.set("cart", 1).await).await;
    let old = cookie.clone().unwrap();

    let tab_b = open(&m, Some(&old));
    assert_eq!(tab_b.get::<i64>("cart").await.unwrap(), Some(1));
    request(&m, &mut cookie, async |s| {
        s.cycle_id().await?;
        s.set("user", "alice").await
    })
    .await;
    let signed_in = cookie.clone().unwrap();
    assert_ne!(signed_in, old);

    tab_b.set("cart", 2).await.unwrap();
    let Err(e) = commit(&m, &tab_b).await else {
        panic!("tab B's write must not go to a new session");
    };
    assert!(matches!(e, cloakroom::Error::EndedMeanwhile), "{e}");
    assert_eq!(e.status_and_body().0, http::StatusCode::CONFLICT);
    request(&m, &mut cookie, async |s| {
        assert_eq!(s.get::<String>("user").await?.as_deref(), Some("alice"));
        assert_eq!(s.get::<i64>("cart").await?, Some(1));
        Ok(())
    })
    .await;
    assert_eq!(cookie.unwrap(), signed_in, "the sign-in's cookie stands");
}

/// The same with an increment, after the session was signed out: the
/// increment fails, and the commit writes nothing.
#[tokio::test]
async fn an_increment_racing_a_sign_out_fails_and_writes_nothing() {
    let m = manager();
    let mut cookie = None;
    request(&m, &mut cookie, async |s| s.set("visits", 1).await).await;
    let old = cookie.clone().unwrap();
    let tab_b = open(&m, Some(&old));
    assert_eq!(tab_b.get::<i64>("visits").await.unwrap(), Some(1));
    request(&m, &mut cookie, async |s| s.destroy().await).await;
    assert!(cookie.is_none());

    let e = tab_b.increment("visits", 1).await.unwrap_err();
    assert!(matches!(e, cloakroom::Error::EndedMeanwhile), "{e}");
    tab_b.set("other", true).await.unwrap();
    assert!(matches!(
        commit(&m, &tab_b).await,
        Err(cloakroom::Error::EndedMeanwhile)
    ));
    assert_eq!(m.admin().count().await.unwrap(), 0, "no new session");
}

/// A write under a cookie whose session had ended before the request
/// (never seen alive) still starts a new session, as strict mode says.
#[tokio::test]
async fn a_blind_write_under_an_ended_session_starts_a_new_one() {
    let m = manager();
    let mut cookie = None;
    request(&m, &mut cookie, async |s| s.set("a", 1).await).await;
    let old = cookie.clone().unwrap();
    request(&m, &mut cookie, async |s| s.destroy().await).await;
    let mut stale = Some(old.clone());
    request(&m, &mut stale, async |s| s.set("b", 2).await).await;
    let fresh = stale.unwrap();
    assert_ne!(fresh, old);
    let mut fresh = Some(fresh);
    request(&m, &mut fresh, async |s| {
        assert_eq!(s.keys().await?, ["b"]);
        Ok(())
    })
    .await;
}

/// `increment` checks its name as `set` does: a name over
/// `max_name_bytes` is refused before any store call.
#[tokio::test]
async fn an_increment_checks_its_name_like_set() {
    let m = SessionManager::builder(MemoryStore::new(), KeyRing::random())
        .limits(cloakroom::Limits::default().max_name_bytes(8))
        .build()
        .unwrap();
    let mut cookie = None;
    request(&m, &mut cookie, async |s| {
        let long = "a name longer than eight bytes";
        assert!(matches!(
            s.increment(long, 1).await,
            Err(cloakroom::Error::TooLarge { .. })
        ));
        assert!(matches!(
            s.set(long, 1).await,
            Err(cloakroom::Error::TooLarge { .. })
        ));
        assert_eq!(s.increment("short", 1).await?, 1);
        Ok(())
    })
    .await;
}

/// The same race with nothing to write: the page is served, no cookie;
/// and a sign-in racing a sign-out still signs in, under a new session.
#[tokio::test]
async fn a_race_without_values_is_no_error_and_a_sign_in_still_signs_in() {
    let m = manager();
    let mut cookie = None;
    request(&m, &mut cookie, async |s| s.set("a", 1).await).await;
    let old = cookie.clone().unwrap();

    let reader = open(&m, Some(&old));
    let signer = open(&m, Some(&old));
    assert_eq!(reader.get::<i64>("a").await.unwrap(), Some(1));
    assert_eq!(signer.get::<i64>("a").await.unwrap(), Some(1));
    request(&m, &mut cookie, async |s| s.destroy().await).await;

    reader.discard("a").await.unwrap();
    assert_eq!(commit(&m, &reader).await.unwrap(), None);

    signer.cycle_id().await.unwrap();
    signer
        .bind_user("alice", cloakroom::ClientInfo::default())
        .await
        .unwrap();
    let mut signed_in = commit(&m, &signer).await.unwrap();
    assert!(signed_in.is_some(), "the sign-in's cookie");
    request(&m, &mut signed_in, async |s| {
        assert_eq!(s.user().await?.as_deref(), Some("alice"));
        Ok(())
    })
    .await;
}

/// A rename of its own is no exemption: `cycle_id` with a value, racing a
/// sign-out, writes nothing (a new session would lack the old one's
/// values). A `clear` of a bound session, racing the same, has no values
/// of its own to lose: no error.
#[tokio::test]
async fn a_rename_of_its_own_is_no_exemption_and_a_clear_is_no_value() {
    let m = manager();
    let mut cookie = None;
    request(&m, &mut cookie, async |s| {
        s.set("a", 1).await?;
        s.bind_user("alice", cloakroom::ClientInfo::default()).await
    })
    .await;
    let old = cookie.clone().unwrap();
    let cycler = open(&m, Some(&old));
    let clearer = open(&m, Some(&old));
    assert_eq!(cycler.get::<i64>("a").await.unwrap(), Some(1));
    assert_eq!(clearer.get::<i64>("a").await.unwrap(), Some(1));
    request(&m, &mut cookie, async |s| s.destroy().await).await;

    cycler.cycle_id().await.unwrap();
    cycler.set("b", 2).await.unwrap();
    assert!(matches!(
        commit(&m, &cycler).await,
        Err(cloakroom::Error::EndedMeanwhile)
    ));
    clearer.clear().await.unwrap();
    assert_eq!(commit(&m, &clearer).await.unwrap(), None);
    assert_eq!(m.admin().count().await.unwrap(), 0, "no new session");
}

/// Seen alive by an increment alone, even once its value is removed
/// again: a later write racing a sign-out is refused, not written into a
/// new session. Notifications alone count as values.
#[tokio::test]
async fn an_answered_increment_counts_as_seen_and_notifications_as_values() {
    let m = manager();
    let mut cookie = None;
    request(&m, &mut cookie, async |s| s.set("a", 1).await).await;
    let old = cookie.clone().unwrap();
    let counter = open(&m, Some(&old));
    let notifier = open(&m, Some(&old));
    assert_eq!(counter.increment("n", 1).await.unwrap(), 1);
    counter.discard("n").await.unwrap();
    assert_eq!(notifier.get::<i64>("a").await.unwrap(), Some(1));
    request(&m, &mut cookie, async |s| s.destroy().await).await;

    counter.set("x", true).await.unwrap();
    assert!(matches!(
        commit(&m, &counter).await,
        Err(cloakroom::Error::EndedMeanwhile)
    ));
    notifier.notifications().set("saved", "yes").await.unwrap();
    assert!(matches!(
        commit(&m, &notifier).await,
        Err(cloakroom::Error::EndedMeanwhile)
    ));
    assert_eq!(m.admin().count().await.unwrap(), 0, "no new session");
}

/// After `bind_user`, an increment that finds the session gone goes on in
/// the sign-in's new session.
#[tokio::test]
async fn an_increment_after_bind_user_goes_on_in_the_new_session() {
    let m = manager();
    let mut cookie = None;
    request(&m, &mut cookie, async |s| s.set("a", 1).await).await;
    let old = cookie.clone().unwrap();
    let signer = open(&m, Some(&old));
    assert_eq!(signer.get::<i64>("a").await.unwrap(), Some(1));
    request(&m, &mut cookie, async |s| s.destroy().await).await;

    signer.cycle_id().await.unwrap();
    signer
        .bind_user("alice", cloakroom::ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(signer.increment("logins", 1).await.unwrap(), 1);
    let mut signed_in = commit(&m, &signer).await.unwrap();
    assert!(signed_in.is_some(), "the sign-in's cookie");
    request(&m, &mut signed_in, async |s| {
        assert_eq!(s.user().await?.as_deref(), Some("alice"));
        assert_eq!(s.get::<i64>("logins").await?, Some(1));
        Ok(())
    })
    .await;
}

/// Two first visits take over one prepared session at once (pycket's
/// migrate mode): the one that commits second finds it gone. It writes
/// nothing and sets no cookie, so the first one's cookie, holding the
/// prepared values, stays in the browser.
#[tokio::test]
async fn a_second_take_over_of_one_prepared_session_writes_nothing() {
    use cloakroom::Handover;
    use std::time::Duration;
    let m = manager();
    let handover = Handover::derive(b"the old system's secret", b"old-id-9");
    let values = [("login".to_owned(), serde_json::json!("alice"))];
    let week = Duration::from_secs(7 * 86_400);
    assert!(
        m.admin()
            .prepare(&handover, values, [], week)
            .await
            .unwrap()
    );

    let first = open(&m, None);
    let second = open(&m, None);
    assert!(first.take_over(&handover).await.unwrap());
    assert!(second.take_over(&handover).await.unwrap());
    assert!(commit(&m, &first).await.unwrap().is_some());

    second.set("visited", true).await.unwrap();
    assert!(matches!(
        commit(&m, &second).await,
        Err(cloakroom::Error::EndedMeanwhile)
    ));
    assert_eq!(m.admin().count().await.unwrap(), 1, "only the first one's");
}
