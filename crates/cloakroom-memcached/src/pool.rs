//! A small connection pool over `async-memcached`, and the handful of
//! meta-protocol commands the store needs.
//!
//! A connection goes back to the pool only while it is healthy: the client
//! closes itself after an I/O error or a cancelled call (a timeout), and a
//! closed one is dropped, so the next call dials again. That is how the
//! store recovers after memcached restarts.
//!
//! A socket's readiness comes from the runtime that opened it. On a
//! current-thread runtime (each actix-web worker runs one) that runtime
//! delivers it only when its own thread is free, so a connection opened
//! there is reused only by the same thread; see
//! [`cloakroom::store::current_thread_runtime`]. A thread that replaces
//! an exited one never gets the exited one's connections: they died with
//! its runtime.

use async_memcached::{Client, MetaProtocol, Status};
use cloakroom::store::RuntimeThread;
use cloakroom::{Error, Result};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(crate) struct Pool {
    addr: String,
    /// Each with the current-thread runtime thread that opened it, if one
    /// did.
    idle: Mutex<Vec<(Option<RuntimeThread>, Client)>>,
    permits: std::sync::Arc<Semaphore>,
    timeout: Duration,
    /// The largest value a write sends (see [`Conn::fits`]).
    max_item_bytes: usize,
}

/// A connection borrowed from the pool; returned on drop if healthy.
pub(crate) struct Conn<'a> {
    client: Option<Client>,
    /// The runtime thread that opened it (see [`Pool`]).
    thread: Option<RuntimeThread>,
    pool: &'a Pool,
    _permit: OwnedSemaphorePermit,
}

fn unavailable(e: async_memcached::Error) -> Error {
    Error::unavailable(format!("memcached: {e}"))
}

impl Pool {
    pub(crate) fn new(addr: String, size: usize, timeout: Duration, max_item_bytes: usize) -> Pool {
        Pool {
            addr,
            idle: Mutex::new(Vec::new()),
            permits: std::sync::Arc::new(Semaphore::new(size)),
            timeout,
            max_item_bytes,
        }
    }

    pub(crate) async fn get(&self) -> Result<Conn<'_>> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::unavailable("memcached pool closed"))?;
        let thread = cloakroom::store::current_thread_runtime();
        let (reused, surplus) = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.retain(|(_, c)| !c.is_closed());
            // Oldest first: connections go back to the end.
            match idle.iter().rposition(|(t, _)| *t == thread) {
                Some(i) => (Some(idle.remove(i).1), None),
                // A new connection follows. If the idle ones and those in
                // use (this call's included) would then pass the pool's
                // size, the oldest idle one is closed first. (A connection
                // being given back counts as both for a moment, so this
                // may close one that could have stayed; never too few.)
                None if idle.len() > self.permits.available_permits() => {
                    (None, Some(idle.remove(0)))
                }
                None => (None, None),
            }
        };
        drop(surplus);
        let client = match reused {
            Some(client) => client,
            None => tokio::time::timeout(self.timeout, Client::new(format!("tcp://{}", self.addr)))
                .await
                .map_err(|_| Error::Timeout(self.timeout))?
                .map_err(unavailable)?,
        };
        Ok(Conn {
            client: Some(client),
            thread,
            pool: self,
            _permit: permit,
        })
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && !client.is_closed()
        {
            let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.push((self.thread, client));
        }
    }
}

impl Conn<'_> {
    fn client(&mut self) -> &mut Client {
        // Only `drop` takes it out.
        self.client.as_mut().expect("connection present until drop")
    }

    pub(crate) async fn version(&mut self) -> Result<String> {
        self.client().version().await.map_err(unavailable)
    }

    /// The value and CAS token of `key`.
    pub(crate) async fn get_with_cas(&mut self, key: &str) -> Result<Option<(Vec<u8>, u64)>> {
        let found = self
            .client()
            .meta_get(key, false, None, Some(&["v", "c"]))
            .await
            .map_err(unavailable)?;
        match found {
            None => Ok(None),
            Some(v) => match (v.data, v.cas) {
                (Some(data), Some(cas)) => Ok(Some((data, cas))),
                _ => Err(Error::Corrupt(
                    "memcached answered a get without value or CAS".to_owned(),
                )),
            },
        }
    }

    /// Refuses a value memcached could not store. Memcached answers such a
    /// set with `SERVER_ERROR object too large` and deletes the item
    /// already under the key, CAS token or not: a session would be lost
    /// by the write that outgrew it. Checked before anything is sent.
    pub(crate) fn fits(&self, value: &[u8]) -> Result<()> {
        let limit = self.pool.max_item_bytes;
        if value.len() > limit {
            return Err(Error::TooLarge {
                what: "session (store item)".to_owned(),
                size: value.len(),
                limit,
            });
        }
        Ok(())
    }

    /// Stores `key` only if it does not exist.
    pub(crate) async fn add(&mut self, key: &str, value: &[u8], ttl: u64) -> Result<bool> {
        self.fits(value)?;
        let ttl = format!("T{ttl}");
        match self
            .client()
            .meta_set(key, value, false, None, Some(&["ME", &ttl]))
            .await
        {
            Ok(_) => Ok(true),
            Err(async_memcached::Error::Protocol(Status::NotStored | Status::Exists)) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Stores `key` only if its CAS token is still `cas`.
    pub(crate) async fn replace_if(
        &mut self,
        key: &str,
        value: &[u8],
        cas: u64,
        ttl: u64,
    ) -> Result<bool> {
        self.fits(value)?;
        let (cas, ttl) = (format!("C{cas}"), format!("T{ttl}"));
        match self
            .client()
            .meta_set(key, value, false, None, Some(&[&cas, &ttl]))
            .await
        {
            Ok(_) => Ok(true),
            Err(async_memcached::Error::Protocol(Status::Exists | Status::NotFound)) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Deletes `key` only if its CAS token is still `cas`.
    pub(crate) async fn delete_if(&mut self, key: &str, cas: u64) -> Result<bool> {
        let cas = format!("C{cas}");
        match self
            .client()
            .meta_delete(key, false, None, Some(&[&cas]))
            .await
        {
            Ok(_) => Ok(true),
            Err(async_memcached::Error::Protocol(Status::Exists | Status::NotFound)) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Deletes `key`; a missing key is fine.
    pub(crate) async fn delete(&mut self, key: &str) -> Result<()> {
        match self.client().meta_delete(key, false, None, None).await {
            Ok(_) | Err(async_memcached::Error::Protocol(Status::NotFound)) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}
