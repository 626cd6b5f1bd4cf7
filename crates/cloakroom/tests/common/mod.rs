//! What the request-level tests share: one request through a
//! `SessionManager`, as an adapter runs it.

use cloakroom::{KeyRing, MemoryStore, Session, SessionManager};
use http::HeaderMap;
use http::header::{COOKIE, SET_COOKIE};

/// Opens a request with `cookie` (`name=value`), as an adapter does.
pub fn open(m: &SessionManager, cookie: Option<&str>) -> Session {
    let mut headers = HeaderMap::new();
    if let Some(c) = cookie {
        headers.insert(COOKIE, c.parse().unwrap());
    }
    m.open(&headers)
}

/// Commits `session` as an adapter does: the `name=value` of the cookie
/// the response sets (empty value: cleared), if it sets one.
pub async fn commit(m: &SessionManager, session: &Session) -> cloakroom::Result<Option<String>> {
    let mut out = HeaderMap::new();
    m.commit(session).await?.apply_to(&mut out);
    Ok(out.get(SET_COOKIE).map(|line| {
        let line = line.to_str().unwrap();
        line.split(';').next().unwrap().to_owned()
    }))
}

/// Runs one request with `cookie`, and keeps the cookie after it.
pub async fn request<F>(m: &SessionManager, cookie: &mut Option<String>, handler: F)
where
    F: AsyncFnOnce(&Session) -> cloakroom::Result<()>,
{
    let session = open(m, cookie.as_deref());
    handler(&session).await.unwrap();
    if let Some(pair) = commit(m, &session).await.unwrap() {
        *cookie = (!pair.ends_with('=')).then_some(pair);
    }
}

/// A manager on a fresh memory store.
pub fn manager() -> SessionManager {
    SessionManager::builder(MemoryStore::new(), KeyRing::random())
        .build()
        .unwrap()
}
