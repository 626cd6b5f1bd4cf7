//! The connections the store runs on: one Redis server (a few multiplexed
//! connections used round-robin) or a Redis Cluster (one slot-aware client
//! that follows MOVED and ASK redirects and topology changes).

use cloakroom::{Error, Result};
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// One connection of either kind.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Connections used round-robin.
#[derive(Clone)]
pub(crate) struct Pool {
    conns: Arc<[Conn]>,
    next: Arc<AtomicUsize>,
}

async fn within<T>(
    timeout: Duration,
    connect: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T> {
    tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| Error::Timeout(timeout))?
        .map_err(Error::unavailable)
}

impl Pool {
    /// `size` multiplexed connections to one server, each reconnecting by
    /// itself.
    pub(crate) async fn single(
        client: redis::Client,
        size: usize,
        timeout: Duration,
    ) -> Result<Pool> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let mut conns = Vec::with_capacity(size);
        for _ in 0..size.max(1) {
            let connect = ConnectionManager::new_with_config(client.clone(), config.clone());
            conns.push(Conn::Single(within(timeout, connect).await?));
        }
        Ok(Pool::of(conns))
    }

    /// One slot-aware connection to a cluster, found from `nodes`.
    pub(crate) async fn cluster(
        client: redis::cluster::ClusterClient,
        timeout: Duration,
    ) -> Result<Pool> {
        let conn = within(timeout, client.get_async_connection()).await?;
        Ok(Pool::of(vec![Conn::Cluster(conn)]))
    }

    fn of(conns: Vec<Conn>) -> Pool {
        Pool {
            conns: conns.into(),
            next: Arc::default(),
        }
    }

    pub(crate) fn get(&self) -> Conn {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].clone()
    }

    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }
}
