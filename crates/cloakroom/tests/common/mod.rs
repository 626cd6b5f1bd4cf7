//! What the request-level tests share: one request through a
//! `SessionManager`, as an adapter runs it.

use cloakroom::{KeyRing, MemoryStore, Session, SessionManager};
use http::HeaderMap;
use http::header::{COOKIE, SET_COOKIE};

/// Runs one request with `cookie`, and keeps the cookie after it.
pub async fn request<F>(m: &SessionManager, cookie: &mut Option<String>, handler: F)
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

/// A manager on a fresh memory store.
pub fn manager() -> SessionManager {
    SessionManager::builder(MemoryStore::new(), KeyRing::random())
        .build()
        .unwrap()
}
