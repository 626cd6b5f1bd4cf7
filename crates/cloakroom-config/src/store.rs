//! The store a configuration picks, chosen at run time.

use cloakroom::{
    Admission, Applied, Error, Expiry, KeyRing, MemoryStore, Patch, Record, Result, SessionCap,
    SessionId, SessionInfo, SessionManager, SessionManagerBuilder, Store,
};

/// One of the stores, as `engine` or `storage.url` picked it. It is a
/// [`Store`] itself, so a manager built over it is not generic over the
/// engine.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ConfiguredStore {
    /// `engine = "memory"`, `memory://`.
    Memory(MemoryStore),
    /// `engine = "redis"`, `redis://`, `rediss://`, `redis+cluster://`,
    /// `redis+sentinel://`.
    #[cfg(feature = "redis")]
    Redis(cloakroom_redis::RedisStore),
    /// `engine = "memcached"`, `memcache://`.
    #[cfg(feature = "memcached")]
    Memcached(cloakroom_memcached::MemcachedStore),
    /// `engine = "postgres"`, `postgres://`, `postgresql://`.
    #[cfg(feature = "postgres")]
    Postgres(cloakroom_postgres::PostgresStore),
    /// `engine = "sqlite"`, `sqlite://PATH`.
    #[cfg(feature = "sqlite")]
    Sqlite(cloakroom_sqlite::SqliteStore),
}

/// Forwards a call to whichever store this is.
macro_rules! each_store {
    ($self:expr, $store:ident => $call:expr) => {
        match $self {
            ConfiguredStore::Memory($store) => $call,
            #[cfg(feature = "redis")]
            ConfiguredStore::Redis($store) => $call,
            #[cfg(feature = "memcached")]
            ConfiguredStore::Memcached($store) => $call,
            #[cfg(feature = "postgres")]
            ConfiguredStore::Postgres($store) => $call,
            #[cfg(feature = "sqlite")]
            ConfiguredStore::Sqlite($store) => $call,
        }
    };
}

impl ConfiguredStore {
    /// A manager builder over the store inside rather than over this enum,
    /// so each store call runs that store's own future: one as large as
    /// the largest engine's would cost every call an allocation that size.
    pub(crate) fn into_manager_builder(self, keys: KeyRing) -> SessionManagerBuilder {
        each_store!(self, s => SessionManager::builder(s, keys))
    }
}

impl Store for ConfiguredStore {
    fn name(&self) -> &'static str {
        each_store!(self, s => s.name())
    }

    async fn load(&self, id: &SessionId, expiry: &Expiry) -> Result<Option<Record>> {
        each_store!(self, s => s.load(id, expiry).await)
    }

    async fn apply(&self, id: &SessionId, patch: &Patch, expiry: &Expiry) -> Result<Applied> {
        each_store!(self, s => s.apply(id, patch, expiry).await)
    }

    async fn take_notification(
        &self,
        id: &SessionId,
        name: &str,
        expiry: &Expiry,
    ) -> Result<Option<String>> {
        each_store!(self, s => s.take_notification(id, name, expiry).await)
    }

    async fn increment(
        &self,
        id: &SessionId,
        name: &str,
        by: i64,
        expiry: &Expiry,
    ) -> Result<Option<i64>> {
        each_store!(self, s => s.increment(id, name, by, expiry).await)
    }

    async fn delete(&self, id: &SessionId) -> Result<()> {
        each_store!(self, s => s.delete(id).await)
    }

    async fn cycle(&self, old: &SessionId, new: &SessionId, expiry: &Expiry) -> Result<Applied> {
        each_store!(self, s => s.cycle(old, new, expiry).await)
    }

    async fn touch(&self, id: &SessionId, expiry: &Expiry) -> Result<Applied> {
        each_store!(self, s => s.touch(id, expiry).await)
    }

    async fn admit(
        &self,
        user: &str,
        id: &SessionId,
        cap: Option<SessionCap>,
        expiry: &Expiry,
        check_only: bool,
    ) -> Result<Admission> {
        each_store!(self, s => s.admit(user, id, cap, expiry, check_only).await)
    }

    async fn sessions_of(&self, user: &str, expiry: &Expiry) -> Result<Vec<SessionInfo>> {
        each_store!(self, s => s.sessions_of(user, expiry).await)
    }

    async fn end_sessions_of(
        &self,
        user: &str,
        except: Option<&SessionId>,
        expiry: &Expiry,
    ) -> Result<usize> {
        each_store!(self, s => s.end_sessions_of(user, except, expiry).await)
    }

    async fn end_all(&self, expiry: &Expiry) -> Result<usize> {
        each_store!(self, s => s.end_all(expiry).await)
    }

    async fn count(&self, expiry: &Expiry) -> Result<usize> {
        each_store!(self, s => s.count(expiry).await)
    }
}

/// The error for an engine this build of the crate leaves out.
#[allow(dead_code)] // unused when every engine's feature is on
pub(crate) fn engine_not_built(engine: &str, feature: &str) -> Error {
    Error::Config(format!(
        "engine {engine:?}: this build of cloakroom-config leaves it out \
         (enable the {feature:?} feature)"
    ))
}
