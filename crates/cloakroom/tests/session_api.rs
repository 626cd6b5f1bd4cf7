//! The session API within one request, on the memory store: what a
//! handler sees after mixing calls.

mod common;

use cloakroom::{KeyRing, MemoryStore, SessionManager};
use common::{manager, request};

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
    request(&m, &mut laptop, async |s| s.destroy().await).await;
    assert_eq!(take(), [SessionEvent::Destroyed { id: last }]);
}
