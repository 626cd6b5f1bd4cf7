//! The store contract, and the stores that ship with this crate.
//!
//! A store keeps session records under a [`SessionId`]. It is written to
//! only through [`Store::apply`], which applies a [`Patch`] atomically, so a
//! store never needs to read a whole record back to change one name.

mod memory;
mod runtime;

pub use memory::{MemoryStore, add_to};
pub use runtime::{RuntimeThread, current_thread_runtime};

use crate::error::{Error, Result};
use crate::expiry::{Expiry, Timestamp};
use crate::inventory::{Admission, SessionCap, SessionInfo};
use crate::patch::Patch;
use crate::token::SessionId;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

/// The most connections a store opens, whatever it is asked for: Redis's
/// default `maxclients`, and far more than one process needs. The stores'
/// `max_connections` settings are cut to it, and `storage.max_connections`
/// above it is refused.
pub const MAX_CONNECTIONS: usize = 10_000;

/// A session as a store holds it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Each name's value, as JSON text.
    pub values: BTreeMap<String, String>,
    /// When the session was created.
    pub created: Timestamp,
    /// The absolute deadline, fixed at creation.
    pub deadline: Timestamp,
}

/// What [`Store::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Applied {
    /// The patch was applied.
    Done,
    /// Nothing was written: the patch expected an existing session and there
    /// is none (destroyed or expired in the meantime), or it creates or
    /// renames to an id that is already taken.
    Gone,
    /// The patch was applied, left the session empty, and so the session
    /// was deleted, as the patch asked with
    /// [`end_if_empty`](Patch::end_if_empty).
    Ended,
}

/// Where sessions live: the contract every store meets.
///
/// The contract, which the conformance tests check on every store:
/// - **No resurrection.** `apply` writes to an existing session only if it
///   exists and has not expired at `expiry.now`; otherwise it writes nothing
///   and returns [`Applied::Gone`]. Only a patch that
///   [creates](Patch::creates) makes a session, and only under an unused id.
/// - **Atomic per call.** Concurrent `apply` calls on one session behave as
///   if run one after the other, so patches to different names all survive.
/// - **Expiry.** A session ends at `min(idle deadline, absolute deadline)`,
///   computed with [`Expiry`]'s methods. `load` and `apply` return and write
///   nothing for an ended session.
/// - **Notifications** are separate from the data: `load` does not return
///   them, `clear` does not remove them, and `take_notification` hands each
///   one out once, even to concurrent callers.
///
/// Stores implement `load`, `apply`, `take_notification`, `increment`
/// and `delete`;
/// `cycle` and `touch` are patches and have default implementations.
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and traces (`memory`, `redis`, …).
    fn name(&self) -> &'static str {
        "custom"
    }

    /// The live session under `id`, or `None`. A store pushes the idle
    /// deadline forward here when [`Expiry::refresh_due`] says so, about
    /// ten times per idle window rather than on every read; that push may
    /// cost a second round trip or statement (it does on Redis, Memcached,
    /// PostgreSQL and SQLite).
    fn load(
        &self,
        id: &SessionId,
        expiry: &Expiry,
    ) -> impl Future<Output = Result<Option<Record>>> + Send;

    /// Applies `patch` to the session `id`, atomically. See [`Patch`] for the
    /// order of its steps.
    fn apply(
        &self,
        id: &SessionId,
        patch: &Patch,
        expiry: &Expiry,
    ) -> impl Future<Output = Result<Applied>> + Send;

    /// Removes and returns the notification `name` of session `id`.
    fn take_notification(
        &self,
        id: &SessionId,
        name: &str,
        expiry: &Expiry,
    ) -> impl Future<Output = Result<Option<String>>> + Send;

    /// Adds `by` to the integer under `name` (0 when unset), atomically, and
    /// pushes the idle deadline. Returns the new value, or `None` when the
    /// session does not exist (nothing is written then). A value that is
    /// not an integer is an error.
    fn increment(
        &self,
        id: &SessionId,
        name: &str,
        by: i64,
        expiry: &Expiry,
    ) -> impl Future<Output = Result<Option<i64>>> + Send;

    /// Deletes the session and its notifications. Deleting a missing
    /// session is not an error.
    fn delete(&self, id: &SessionId) -> impl Future<Output = Result<()>> + Send;

    /// Moves the session from `old` to `new`, keeping its data, creation
    /// time and absolute deadline.
    fn cycle(
        &self,
        old: &SessionId,
        new: &SessionId,
        expiry: &Expiry,
    ) -> impl Future<Output = Result<Applied>> + Send {
        let patch = Patch::rename(*new);
        async move { self.apply(old, &patch, expiry).await }
    }

    /// Pushes the idle deadline forward.
    fn touch(
        &self,
        id: &SessionId,
        expiry: &Expiry,
    ) -> impl Future<Output = Result<Applied>> + Send {
        async move { self.apply(id, &Patch::default(), expiry).await }
    }

    /// Adds session `id`, already written with the binding to `user`, to
    /// `user`'s index, enforcing `cap` atomically: concurrent admissions
    /// never leave more than `cap.max` live sessions in the index. At the
    /// cap, [`OnMaxSessions::EvictOldest`](crate::OnMaxSessions) deletes
    /// the least recently used sessions and returns them; `Refuse` adds
    /// nothing. Dead sessions in the index never count. With `check_only`,
    /// nothing is added or ended: the answer says whether it would be.
    ///
    /// The default says the store keeps no index.
    fn admit(
        &self,
        user: &str,
        id: &SessionId,
        cap: Option<SessionCap>,
        expiry: &Expiry,
        check_only: bool,
    ) -> impl Future<Output = Result<Admission>> + Send {
        let _ = (user, id, cap, expiry, check_only);
        async { Err(no_index()) }
    }

    /// The live sessions bound to `user`, oldest first. Dead ones found in
    /// the index are pruned from it.
    fn sessions_of(
        &self,
        user: &str,
        expiry: &Expiry,
    ) -> impl Future<Output = Result<Vec<SessionInfo>>> + Send {
        let _ = (user, expiry);
        async { Err(no_index()) }
    }

    /// Ends every session bound to `user` but `except`, and returns how
    /// many were live.
    fn end_sessions_of(
        &self,
        user: &str,
        except: Option<&SessionId>,
        expiry: &Expiry,
    ) -> impl Future<Output = Result<usize>> + Send {
        let _ = (user, except, expiry);
        async { Err(no_index()) }
    }

    /// Ends every session of every user (and the anonymous ones), and
    /// returns how many there were.
    fn end_all(&self, expiry: &Expiry) -> impl Future<Output = Result<usize>> + Send {
        let _ = expiry;
        async {
            Err(Error::Unsupported(
                "this store cannot list its sessions".to_owned(),
            ))
        }
    }

    /// How many live sessions the store holds.
    fn count(&self, expiry: &Expiry) -> impl Future<Output = Result<usize>> + Send {
        let _ = expiry;
        async {
            Err(Error::Unsupported(
                "this store cannot count its sessions".to_owned(),
            ))
        }
    }
}

impl<S: Store> Store for std::sync::Arc<S> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn load(
        &self,
        id: &SessionId,
        expiry: &Expiry,
    ) -> impl Future<Output = Result<Option<Record>>> + Send {
        (**self).load(id, expiry)
    }
    fn apply(
        &self,
        id: &SessionId,
        patch: &Patch,
        expiry: &Expiry,
    ) -> impl Future<Output = Result<Applied>> + Send {
        (**self).apply(id, patch, expiry)
    }
    fn take_notification(
        &self,
        id: &SessionId,
        name: &str,
        expiry: &Expiry,
    ) -> impl Future<Output = Result<Option<String>>> + Send {
        (**self).take_notification(id, name, expiry)
    }
    fn increment(
        &self,
        id: &SessionId,
        name: &str,
        by: i64,
        expiry: &Expiry,
    ) -> impl Future<Output = Result<Option<i64>>> + Send {
        (**self).increment(id, name, by, expiry)
    }
    fn delete(&self, id: &SessionId) -> impl Future<Output = Result<()>> + Send {
        (**self).delete(id)
    }
    fn cycle(
        &self,
        old: &SessionId,
        new: &SessionId,
        expiry: &Expiry,
    ) -> impl Future<Output = Result<Applied>> + Send {
        (**self).cycle(old, new, expiry)
    }
    fn touch(
        &self,
        id: &SessionId,
        expiry: &Expiry,
    ) -> impl Future<Output = Result<Applied>> + Send {
        (**self).touch(id, expiry)
    }
    fn admit(
        &self,
        user: &str,
        id: &SessionId,
        cap: Option<SessionCap>,
        expiry: &Expiry,
        check_only: bool,
    ) -> impl Future<Output = Result<Admission>> + Send {
        (**self).admit(user, id, cap, expiry, check_only)
    }
    fn sessions_of(
        &self,
        user: &str,
        expiry: &Expiry,
    ) -> impl Future<Output = Result<Vec<SessionInfo>>> + Send {
        (**self).sessions_of(user, expiry)
    }
    fn end_sessions_of(
        &self,
        user: &str,
        except: Option<&SessionId>,
        expiry: &Expiry,
    ) -> impl Future<Output = Result<usize>> + Send {
        (**self).end_sessions_of(user, except, expiry)
    }
    fn end_all(&self, expiry: &Expiry) -> impl Future<Output = Result<usize>> + Send {
        (**self).end_all(expiry)
    }
    fn count(&self, expiry: &Expiry) -> impl Future<Output = Result<usize>> + Send {
        (**self).count(expiry)
    }
}

/// The error of a store without a user index.
fn no_index() -> Error {
    Error::Unsupported("this store keeps no per-user session index".to_owned())
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Store`] made object-safe, so the layer is not generic over the store.
pub(crate) trait DynStore: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn load<'a>(
        &'a self,
        id: &'a SessionId,
        e: &'a Expiry,
    ) -> BoxFuture<'a, Result<Option<Record>>>;
    fn apply<'a>(
        &'a self,
        id: &'a SessionId,
        patch: &'a Patch,
        e: &'a Expiry,
    ) -> BoxFuture<'a, Result<Applied>>;
    fn take_notification<'a>(
        &'a self,
        id: &'a SessionId,
        name: &'a str,
        e: &'a Expiry,
    ) -> BoxFuture<'a, Result<Option<String>>>;
    fn increment<'a>(
        &'a self,
        id: &'a SessionId,
        name: &'a str,
        by: i64,
        e: &'a Expiry,
    ) -> BoxFuture<'a, Result<Option<i64>>>;
    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<()>>;
    fn admit<'a>(
        &'a self,
        user: &'a str,
        id: &'a SessionId,
        cap: Option<SessionCap>,
        e: &'a Expiry,
        check_only: bool,
    ) -> BoxFuture<'a, Result<Admission>>;
    fn sessions_of<'a>(
        &'a self,
        user: &'a str,
        e: &'a Expiry,
    ) -> BoxFuture<'a, Result<Vec<SessionInfo>>>;
    fn end_sessions_of<'a>(
        &'a self,
        user: &'a str,
        except: Option<&'a SessionId>,
        e: &'a Expiry,
    ) -> BoxFuture<'a, Result<usize>>;
    fn end_all<'a>(&'a self, e: &'a Expiry) -> BoxFuture<'a, Result<usize>>;
    fn count<'a>(&'a self, e: &'a Expiry) -> BoxFuture<'a, Result<usize>>;
}

impl<S: Store> DynStore for S {
    fn name(&self) -> &'static str {
        Store::name(self)
    }

    fn load<'a>(
        &'a self,
        id: &'a SessionId,
        e: &'a Expiry,
    ) -> BoxFuture<'a, Result<Option<Record>>> {
        Box::pin(Store::load(self, id, e))
    }
    fn apply<'a>(
        &'a self,
        id: &'a SessionId,
        patch: &'a Patch,
        e: &'a Expiry,
    ) -> BoxFuture<'a, Result<Applied>> {
        Box::pin(Store::apply(self, id, patch, e))
    }
    fn take_notification<'a>(
        &'a self,
        id: &'a SessionId,
        name: &'a str,
        e: &'a Expiry,
    ) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(Store::take_notification(self, id, name, e))
    }
    fn increment<'a>(
        &'a self,
        id: &'a SessionId,
        name: &'a str,
        by: i64,
        e: &'a Expiry,
    ) -> BoxFuture<'a, Result<Option<i64>>> {
        Box::pin(Store::increment(self, id, name, by, e))
    }
    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::delete(self, id))
    }
    fn admit<'a>(
        &'a self,
        user: &'a str,
        id: &'a SessionId,
        cap: Option<SessionCap>,
        e: &'a Expiry,
        check_only: bool,
    ) -> BoxFuture<'a, Result<Admission>> {
        Box::pin(Store::admit(self, user, id, cap, e, check_only))
    }
    fn sessions_of<'a>(
        &'a self,
        user: &'a str,
        e: &'a Expiry,
    ) -> BoxFuture<'a, Result<Vec<SessionInfo>>> {
        Box::pin(Store::sessions_of(self, user, e))
    }
    fn end_sessions_of<'a>(
        &'a self,
        user: &'a str,
        except: Option<&'a SessionId>,
        e: &'a Expiry,
    ) -> BoxFuture<'a, Result<usize>> {
        Box::pin(Store::end_sessions_of(self, user, except, e))
    }
    fn end_all<'a>(&'a self, e: &'a Expiry) -> BoxFuture<'a, Result<usize>> {
        Box::pin(Store::end_all(self, e))
    }
    fn count<'a>(&'a self, e: &'a Expiry) -> BoxFuture<'a, Result<usize>> {
        Box::pin(Store::count(self, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExpiryPolicy;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store whose `cycle` and `touch` are its own, not the defaults.
    #[derive(Default)]
    struct OwnCycle {
        inner: MemoryStore,
        own_calls: AtomicUsize,
    }

    impl Store for OwnCycle {
        async fn load(&self, id: &SessionId, e: &Expiry) -> Result<Option<Record>> {
            Store::load(&self.inner, id, e).await
        }
        async fn apply(&self, id: &SessionId, p: &Patch, e: &Expiry) -> Result<Applied> {
            Store::apply(&self.inner, id, p, e).await
        }
        async fn take_notification(
            &self,
            id: &SessionId,
            name: &str,
            e: &Expiry,
        ) -> Result<Option<String>> {
            Store::take_notification(&self.inner, id, name, e).await
        }
        async fn increment(
            &self,
            id: &SessionId,
            name: &str,
            by: i64,
            e: &Expiry,
        ) -> Result<Option<i64>> {
            Store::increment(&self.inner, id, name, by, e).await
        }
        async fn delete(&self, id: &SessionId) -> Result<()> {
            Store::delete(&self.inner, id).await
        }
        async fn cycle(&self, _: &SessionId, _: &SessionId, _: &Expiry) -> Result<Applied> {
            self.own_calls.fetch_add(1, Ordering::SeqCst);
            Ok(Applied::Done)
        }
        async fn touch(&self, _: &SessionId, _: &Expiry) -> Result<Applied> {
            self.own_calls.fetch_add(1, Ordering::SeqCst);
            Ok(Applied::Done)
        }
    }

    #[tokio::test]
    async fn an_arc_forwards_cycle_and_touch_to_the_store_they_belong_to() {
        let store = Arc::new(OwnCycle::default());
        let e = ExpiryPolicy::default().at(Timestamp(1_000));
        let (a, b) = (SessionId::from([1; 16]), SessionId::from([2; 16]));
        // Nothing exists: the defaults (patches) would answer Gone.
        assert_eq!(store.cycle(&a, &b, &e).await.unwrap(), Applied::Done);
        assert_eq!(store.touch(&a, &e).await.unwrap(), Applied::Done);
        assert_eq!(store.own_calls.load(Ordering::SeqCst), 2);
    }
}
