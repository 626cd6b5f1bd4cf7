//! The session API within one request, on the memory store: what a
//! handler sees after mixing calls.

use cloakroom::{KeyRing, MemoryStore, Session, SessionManager};
use http::HeaderMap;
use http::header::{COOKIE, SET_COOKIE};

/// Runs one request with `cookie`, and returns the cookie after it.
async fn request<F>(m: &SessionManager, cookie: &mut Option<String>, handler: F)
where
    F: AsyncFnOnce(&Session) -> cloakroom::Result<()>,
{
    let mut headers = HeaderMap::new();
    if let Some(c) = cookie.as_deref() {
        headers.insert(COOKIE, c.parse().unwrap());
    }
    let session = m.open(&headers);
    handler(&session).await.unwrap();
    let mut out = HeaderMap::new();
    m.commit(&session).await.unwrap().apply_to(&mut out);
    if let Some(line) = out.get(SET_COOKIE) {
        let pair = line.to_str().unwrap().split(';').next().unwrap();
        *cookie = (!pair.ends_with('=')).then(|| pair.to_owned());
    }
}

fn manager() -> SessionManager {
    SessionManager::builder(MemoryStore::new(), KeyRing::random())
        .build()
        .unwrap()
}

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
