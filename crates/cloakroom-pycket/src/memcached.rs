//! pycket's other engine: sessions in Memcached, for migrate mode.

use crate::migrate::{IMPORTED_PREFIX, MigrateError, PycketSession, dict};
use async_memcached::{AsciiProtocol, Client, Status};
use serde_json::Map;
use std::time::Duration;
use tokio::sync::Mutex;

/// pycket's Memcached: each session a pickled dict under its raw id, as
/// pycket's `MemcachedDriver` writes it (`set(id, pickle, 86400)`).
///
/// pycket's Memcached driver keeps notifications under the *same* key as
/// the session (it ignores `db_notifications`), so on Memcached a pycket
/// notification overwrites its session and the other way round; what is
/// stored is imported as the session's values, and there are no
/// notifications to import.
///
/// One connection, dialled again after a failure: it serves only the
/// first request of each Tornado user.
pub struct PycketMemcached {
    addr: String,
    timeout: Duration,
    conn: Mutex<Option<Client>>,
}

impl std::fmt::Debug for PycketMemcached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PycketMemcached")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn failed(e: impl std::fmt::Display) -> MigrateError {
    MigrateError::Memcached(e.to_string())
}

impl PycketMemcached {
    /// Connects to `memcache://HOST:PORT` (or `HOST:PORT`).
    pub async fn connect(url: &str) -> Result<Self, MigrateError> {
        let addr = url
            .strip_prefix("memcache://")
            .or_else(|| url.strip_prefix("memcached://"))
            .unwrap_or(url)
            .trim_end_matches('/')
            .to_owned();
        let store = PycketMemcached {
            addr,
            timeout: Duration::from_secs(2),
            conn: Mutex::new(None),
        };
        // Connect now, so a wrong address is an error at start-up.
        let mut conn = store.conn.lock().await;
        *conn = Some(store.dial().await?);
        drop(conn);
        Ok(store)
    }

    async fn dial(&self) -> Result<Client, MigrateError> {
        tokio::time::timeout(self.timeout, Client::new(format!("tcp://{}", self.addr)))
            .await
            .map_err(|_| failed(format!("connecting to {} timed out", self.addr)))?
            .map_err(failed)
    }

    /// Runs one command on the connection, dialling first if needed; a
    /// failure drops the connection, so the next call dials again.
    async fn run<T>(
        &self,
        op: impl AsyncFnOnce(&mut Client) -> Result<T, async_memcached::Error>,
    ) -> Result<T, MigrateError> {
        let mut slot = self.conn.lock().await;
        let mut client = match slot.take() {
            Some(client) if !client.is_closed() => client,
            _ => self.dial().await?,
        };
        let result = tokio::time::timeout(self.timeout, op(&mut client))
            .await
            .map_err(|_| failed("memcached timed out"));
        if matches!(
            result,
            Ok(Ok(_)) | Ok(Err(async_memcached::Error::Protocol(_)))
        ) {
            *slot = Some(client);
        }
        result?.map_err(failed)
    }

    /// Claims the import of session `id`, once (`add` of
    /// `cloakroom:imported:ID`, kept 31 days): see
    /// [`PycketRedis::claim`](crate::PycketRedis::claim).
    pub async fn claim(&self, id: &[u8]) -> Result<bool, MigrateError> {
        let mut key = IMPORTED_PREFIX.as_bytes().to_vec();
        key.extend_from_slice(id);
        // Memcached reads an expiry over 30 days as a Unix time, and 31
        // days is over: give the time.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let until = now + crate::DEFAULT_MAX_AGE_DAYS * 86_400;
        let ttl = i64::try_from(until).unwrap_or(i64::MAX);
        let added = self
            .run(
                async |c| match c.add(&key, b"1".as_slice(), Some(ttl), None).await {
                    Ok(()) => Ok(true),
                    Err(async_memcached::Error::Protocol(Status::NotStored | Status::Exists)) => {
                        Ok(false)
                    }
                    Err(e) => Err(e),
                },
            )
            .await?;
        Ok(added)
    }

    /// Reads the session `id`: `None` when pycket has nothing for it. A
    /// pickle that is not plain data is an error.
    pub async fn read(&self, id: &[u8]) -> Result<Option<PycketSession>, MigrateError> {
        let found = self.run(async |c| c.get(id).await).await?;
        let Some(raw) = found.and_then(|v| v.data) else {
            return Ok(None);
        };
        let values = dict(&raw)?;
        if values.is_empty() {
            return Ok(None);
        }
        Ok(Some(PycketSession {
            values,
            notifications: Map::new(),
        }))
    }

    /// Deletes pycket's session `id` (after it was imported).
    pub async fn delete(&self, id: &[u8]) -> Result<(), MigrateError> {
        self.run(async |c| match c.delete(id).await {
            Ok(()) | Err(async_memcached::Error::Protocol(Status::NotFound)) => Ok(()),
            Err(e) => Err(e),
        })
        .await
    }
}
