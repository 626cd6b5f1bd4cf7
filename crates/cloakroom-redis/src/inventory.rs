//! The user index on Redis: `PREFIX:u:{USER}`, a sorted set of the ids of
//! the user's sessions, in its own slot.
//!
//! - A sign-in costs one more round trip, the `admit` script on the
//!   user's slot: it prunes ids past their absolute deadline, enforces the
//!   cap and adds the id. Only at the cap does the store look at the
//!   members' sessions (one pipeline, or one call per member on a
//!   cluster) to skip dead ones and find the least recently used, then
//!   ask the script again; the script decides atomically, so concurrent
//!   sign-ins never go over the cap. If other sign-ins changed the index
//!   in between, the earliest admitted make room instead, so an eviction
//!   takes at most two calls of the script.
//! - Reads, writes and idle refreshes never touch the index. A session
//!   that ended (logout, expiry) stays in it until the next listing or
//!   sign-in at the cap finds it dead, its deadline passes, or a sign-in
//!   finds the index over 32 members and sweeps it: listings check every
//!   member, and an index holds at most the live sessions and 32 more.

use crate::RedisStore;
use crate::cluster::{cluster_nodes, node_lines};
use crate::conn::Conn;
use crate::keys::{self, Meta, field};
use cloakroom::inventory::{CLIENT_NAME, USER_NAME, user_json};
use cloakroom::{
    Admission, Error, Expiry, OnMaxSessions, Result, SessionCap, SessionId, SessionInfo, Timestamp,
};
use redis::Value;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

/// An index larger than this after a sign-in is swept: its members are
/// read and the dead ones pruned. Without a cap nothing else would prune
/// sessions that ended before their absolute deadline, so this bounds an
/// index at the user's live sessions plus this many.
const SWEEP_ABOVE: usize = 32;

/// Rounds of "full, check the members, ask again" before giving up; each
/// round makes progress unless other sign-ins keep filling the index.
const ADMIT_ROUNDS: usize = 8;

/// What a member of the index turned out to be.
struct Member {
    id: String,
    /// `None` when the session is gone, expired, or bound to someone else.
    alive: Option<(Meta, Option<String>)>,
}

impl RedisStore {
    pub(crate) async fn admit_to_index(
        &self,
        user: &str,
        id: &SessionId,
        cap: Option<SessionCap>,
        expiry: &Expiry,
        check_only: bool,
    ) -> Result<Admission> {
        let index = keys::user_index(&self.prefix, user);
        let own = id.encode();
        let score = expiry.now.plus(expiry.absolute).0;
        let (mut gone, mut victims) = (Vec::new(), Vec::new());
        let mut mode = if check_only { "check" } else { "add" };
        let mut conn = self.data.get();
        for _ in 0..ADMIT_ROUNDS {
            let mut call = self.scripts.admit.prepare_invoke();
            call.key(&index)
                .arg(expiry.now.0)
                .arg(&own)
                .arg(score)
                .arg(cap.map_or(0, |c| c.max))
                .arg(mode)
                .arg(gone.len());
            for id in gone.iter().chain(&victims) {
                call.arg(id);
            }
            let reply: Value = self.bounded(call.invoke_async(&mut conn)).await?;
            let (admitted, ids, size) = admit_reply(reply)?;
            if admitted {
                let ended: Vec<SessionId> =
                    ids.iter().filter_map(|i| SessionId::decode(i)).collect();
                self.delete_sessions(&mut conn, &ended).await?;
                if size > SWEEP_ABOVE {
                    self.index_members(&mut conn, user, expiry).await?;
                }
                return Ok(Admission::Admitted { ended });
            }
            let Some(cap) = cap else {
                return Err(Error::Corrupt(
                    "the user index was full without a cap".into(),
                ));
            };
            let members = self.members(&mut conn, user, ids, expiry).await?;
            gone = members
                .iter()
                .filter(|m| m.alive.is_none())
                .map(|m| m.id.clone())
                .collect();
            let mut live: Vec<(u64, String)> = members
                .into_iter()
                .filter(|m| m.id != own)
                .filter_map(|m| m.alive.map(|(meta, _)| (meta.until, m.id)))
                .collect();
            match cap.on_max {
                OnMaxSessions::Refuse if live.len() >= cap.max => return Ok(Admission::Refused),
                OnMaxSessions::Refuse => victims.clear(),
                OnMaxSessions::EvictOldest if check_only => {
                    return Ok(Admission::Admitted { ended: Vec::new() });
                }
                OnMaxSessions::EvictOldest => {
                    // The nearest idle deadline is the least recently used.
                    live.sort();
                    victims = live.into_iter().map(|(_, id)| id).collect();
                    mode = "evict";
                }
            }
        }
        Err(Error::Unavailable(
            "the user's session index kept changing under concurrent sign-ins".into(),
        ))
    }

    pub(crate) async fn index_sessions(
        &self,
        user: &str,
        expiry: &Expiry,
    ) -> Result<Vec<SessionInfo>> {
        let mut conn = self.data.get();
        let members = self.index_members(&mut conn, user, expiry).await?;
        let mut infos: Vec<SessionInfo> = members
            .into_iter()
            .filter_map(|m| {
                let (meta, client) = m.alive?;
                Some(SessionInfo::from_parts(
                    SessionId::decode(&m.id)?,
                    Timestamp(meta.created),
                    Timestamp(meta.until),
                    Timestamp(meta.deadline),
                    expiry.idle,
                    client.as_deref(),
                ))
            })
            .collect();
        infos.sort_by_key(|i| i.created);
        Ok(infos)
    }

    pub(crate) async fn end_index_sessions(
        &self,
        user: &str,
        except: Option<&SessionId>,
        expiry: &Expiry,
    ) -> Result<usize> {
        let mut conn = self.data.get();
        let members = self.index_members(&mut conn, user, expiry).await?;
        let keep = except.map(SessionId::encode);
        let ended: Vec<SessionId> = members
            .iter()
            .filter(|m| m.alive.is_some() && Some(&m.id) != keep.as_ref())
            .filter_map(|m| SessionId::decode(&m.id))
            .collect();
        self.delete_sessions(&mut conn, &ended).await?;
        let index = keys::user_index(&self.prefix, user);
        let mut zrem = redis::cmd("ZREM");
        zrem.arg(&index);
        for id in &ended {
            zrem.arg(id.encode());
        }
        if !ended.is_empty() {
            self.bounded(zrem.query_async::<i64>(&mut conn)).await?;
        }
        Ok(ended.len())
    }

    /// Every member of `user`'s index, checked; the dead ones are taken
    /// out of the index on the way.
    async fn index_members(
        &self,
        conn: &mut Conn,
        user: &str,
        expiry: &Expiry,
    ) -> Result<Vec<Member>> {
        let index = keys::user_index(&self.prefix, user);
        let mut range = redis::cmd("ZRANGE");
        range.arg(&index).arg(0).arg(-1);
        let ids: Vec<String> = self.bounded(range.query_async(conn)).await?;
        let members = self.members(conn, user, ids, expiry).await?;
        let dead: Vec<&str> = members
            .iter()
            .filter(|m| m.alive.is_none())
            .map(|m| m.id.as_str())
            .collect();
        if !dead.is_empty() {
            let mut zrem = redis::cmd("ZREM");
            zrem.arg(&index).arg(&dead);
            self.bounded(zrem.query_async::<i64>(conn)).await?;
        }
        Ok(members)
    }

    /// Reads the meta field, binding and client of each session in `ids`:
    /// one pipeline on a single server, one call each on a cluster (the
    /// sessions live in slots of their own).
    async fn members(
        &self,
        conn: &mut Conn,
        user: &str,
        ids: Vec<String>,
        expiry: &Expiry,
    ) -> Result<Vec<Member>> {
        let bound = user_json(user);
        let hmget = |id: &str| {
            let data = keys::session_keys(&self.prefix, &SessionId::decode(id)?).data;
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(data)
                .arg(keys::META)
                .arg(field(USER_NAME).as_ref())
                .arg(field(CLIENT_NAME).as_ref());
            Some(cmd)
        };
        let replies: Vec<Option<Vec<Option<String>>>> = if self.cluster {
            let mut out = Vec::with_capacity(ids.len());
            for id in &ids {
                out.push(match hmget(id) {
                    Some(cmd) => Some(self.bounded(cmd.query_async(conn)).await?),
                    None => None,
                });
            }
            out
        } else {
            let mut pipe = redis::pipe();
            let mut valid = Vec::with_capacity(ids.len());
            for id in &ids {
                match hmget(id) {
                    Some(cmd) => {
                        pipe.add_command(cmd);
                        valid.push(true);
                    }
                    None => valid.push(false),
                }
            }
            let mut fetched: std::vec::IntoIter<Vec<Option<String>>> = if pipe.is_empty() {
                Vec::new().into_iter()
            } else {
                let replies: Vec<Vec<Option<String>>> =
                    self.bounded(pipe.query_async(conn)).await?;
                replies.into_iter()
            };
            valid
                .into_iter()
                .map(|ok| if ok { fetched.next() } else { None })
                .collect()
        };
        Ok(ids
            .into_iter()
            .zip(replies)
            .map(|(id, reply)| {
                let alive = reply.and_then(|fields| {
                    let mut fields = fields.into_iter();
                    let meta = Meta::parse(&fields.next().flatten()?)?;
                    let owner = fields.next().flatten()?;
                    let client = fields.next().flatten();
                    // The key's TTL is the idle timeout: a hash still
                    // there is alive until its absolute deadline.
                    (owner == bound && expiry.now.0 < meta.deadline).then_some((meta, client))
                });
                Member { id, alive }
            })
            .collect())
    }

    /// Deletes sessions (data and notifications, in their own database
    /// when they have one), one call per session on a cluster, one in all
    /// otherwise.
    pub(crate) async fn delete_sessions(&self, conn: &mut Conn, ids: &[SessionId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        if let Some(notes) = &self.notes {
            let keys: Vec<String> = ids
                .iter()
                .map(|id| keys::session_keys(&self.prefix, id).notes())
                .collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            self.del(&mut notes.get(), &keys).await?;
        }
        if self.cluster {
            for id in ids {
                let keys = keys::session_keys(&self.prefix, id);
                self.del(conn, &[&keys.data, &keys.notes()]).await?;
            }
            return Ok(());
        }
        let all: Vec<(String, String)> = ids
            .iter()
            .map(|id| {
                let keys = keys::session_keys(&self.prefix, id);
                let notes = keys.notes();
                (keys.data, notes)
            })
            .collect();
        let flat: Vec<&str> = all
            .iter()
            .flat_map(|(d, n)| [d.as_str(), n.as_str()])
            .collect();
        self.del(conn, &flat).await
    }
}

impl RedisStore {
    /// Calls `each` with batches of the keys under this store's prefix
    /// that match `suffix_pattern` (a glob after `PREFIX:`), by SCAN: on
    /// the server, or on each master of a cluster in turn.
    async fn scan_keys(&self, suffix_pattern: &str, mut each: impl AsyncKeys) -> Result<()> {
        let mut pattern = String::new();
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push(':');
        pattern.push_str(suffix_pattern);
        let mut conn = self
            .data
            .get()
            .resolve()
            .await
            .map_err(Error::unavailable)?;
        let nodes = match &mut conn {
            Conn::Cluster(cluster) => masters(cluster, self)
                .await?
                .into_iter()
                .map(Some)
                .collect(),
            _ => vec![None],
        };
        for node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                let reply: Value = match (&node, &mut conn) {
                    (Some((host, port)), Conn::Cluster(cluster)) => {
                        let to = SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port: *port,
                        };
                        let call = cluster.route_command(scan, RoutingInfo::SingleNode(to));
                        self.bounded(call).await?
                    }
                    _ => self.bounded(scan.query_async(&mut conn)).await?,
                };
                let (next, keys): (u64, Vec<String>) = redis::from_redis_value(reply)
                    .map_err(|e| Error::Corrupt(format!("SCAN: {e}")))?;
                if !keys.is_empty() {
                    each.batch(self, &mut conn, node.as_ref(), keys).await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    pub(crate) async fn count_sessions(&self, now: Timestamp) -> Result<usize> {
        let mut counter = Counter { now, live: 0 };
        self.scan_keys("{*}", &mut counter).await?;
        Ok(counter.live)
    }

    /// Deletes every key this store writes, and only those: sessions,
    /// their notifications and staging keys (`PREFIX:{…`), and the user
    /// indexes (`PREFIX:u:{…`), not a neighbour's keys under a longer
    /// prefix.
    pub(crate) async fn end_every_session(&self, now: Timestamp) -> Result<usize> {
        let mut counter = Counter { now, live: 0 };
        self.scan_keys("{*}", &mut counter).await?;
        self.scan_keys("{*", Deleter).await?;
        self.scan_keys("u:{*", Deleter).await?;
        if let Some(notes) = &self.notes {
            let in_notes_db = RedisStore {
                data: notes.clone(),
                notes: None,
                ..self.clone()
            };
            in_notes_db.scan_keys("{*", Deleter).await?;
        }
        Ok(counter.live)
    }
}

/// The addresses of a cluster's live masters, from `CLUSTER NODES`.
async fn masters(
    cluster: &mut redis::cluster_async::ClusterConnection,
    store: &RedisStore,
) -> Result<Vec<(String, u16)>> {
    let text = cluster_nodes(store, cluster, SingleNodeRoutingInfo::RandomPrimary).await?;
    let out: Vec<(String, u16)> = node_lines(&text)
        .filter(|n| n.is_live_master())
        .map(|n| (n.host.to_owned(), n.port))
        .collect();
    if out.is_empty() {
        return Err(Error::Corrupt("CLUSTER NODES listed no master".into()));
    }
    Ok(out)
}

/// What [`RedisStore::scan_keys`] does with each batch.
trait AsyncKeys {
    /// `keys` as SCAN found them, on `node` of a cluster (`None` for one
    /// server).
    fn batch(
        &mut self,
        store: &RedisStore,
        conn: &mut Conn,
        node: Option<&(String, u16)>,
        keys: Vec<String>,
    ) -> impl std::future::Future<Output = Result<()>> + Send;
}

/// Counts the live sessions among session keys: a key outlives its
/// session's absolute deadline by up to an idle window (reads check the
/// deadline, not the TTL), and a hash without meta field is no session.
struct Counter {
    now: Timestamp,
    live: usize,
}

impl AsyncKeys for &mut Counter {
    async fn batch(
        &mut self,
        store: &RedisStore,
        conn: &mut Conn,
        node: Option<&(String, u16)>,
        keys: Vec<String>,
    ) -> Result<()> {
        let mut metas = redis::pipe();
        for key in &keys {
            metas.cmd("HGET").arg(key).arg(keys::META);
        }
        let replies: Vec<Value> = match (node, conn) {
            // Keys of many slots: the cluster client refuses such a
            // pipeline, so it goes to the node whose SCAN found them. A
            // key that moved since makes the client redirect the whole
            // pipeline; then each key is read where its slot is now.
            (Some((host, port)), Conn::Cluster(cluster)) => {
                let to = SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                };
                let routed = cluster.route_pipeline(metas, 0, keys.len(), to);
                match crate::conn::timed(store.timeout, routed).await? {
                    Ok(replies) => replies,
                    Err(e) if !e.is_cluster_error() => return Err(Error::unavailable(e)),
                    Err(_) => {
                        let mut one_by_one = Vec::with_capacity(keys.len());
                        for key in &keys {
                            let mut hget = redis::cmd("HGET");
                            hget.arg(key).arg(keys::META);
                            one_by_one.push(store.bounded(hget.query_async(&mut *cluster)).await?);
                        }
                        one_by_one
                    }
                }
            }
            (_, conn) => store.bounded(metas.query_async(conn)).await?,
        };
        for reply in replies {
            let meta = match reply {
                Value::Nil => continue,
                Value::ServerError(e) => {
                    return Err(Error::unavailable(redis::RedisError::from(e)));
                }
                other => redis::from_redis_value::<String>(other)
                    .map_err(|e| Error::Corrupt(format!("a meta field: {e}")))?,
            };
            if Meta::parse(&meta).is_some_and(|m| self.now.0 < m.deadline) {
                self.live += 1;
            }
        }
        Ok(())
    }
}

struct Deleter;

impl AsyncKeys for Deleter {
    async fn batch(
        &mut self,
        store: &RedisStore,
        conn: &mut Conn,
        _: Option<&(String, u16)>,
        keys: Vec<String>,
    ) -> Result<()> {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        store.del(conn, &keys).await
    }
}

/// `{1, ids, size}` or `{0, ids}`.
fn admit_reply(reply: Value) -> Result<(bool, Vec<String>, usize)> {
    let malformed = || Error::Corrupt("the admit script returned a malformed reply".into());
    let Value::Array(items) = reply else {
        return Err(malformed());
    };
    let mut items = items.into_iter();
    let admitted = match items.next() {
        Some(Value::Int(1)) => true,
        Some(Value::Int(0)) => false,
        _ => return Err(malformed()),
    };
    let ids = match items.next() {
        Some(Value::Array(ids)) => ids
            .into_iter()
            .map(|v| match v {
                Value::BulkString(b) => String::from_utf8(b).map_err(|_| malformed()),
                Value::SimpleString(s) => Ok(s),
                _ => Err(malformed()),
            })
            .collect::<Result<Vec<_>>>()?,
        // An empty Lua table may come back as nil.
        Some(Value::Nil) | None => Vec::new(),
        _ => return Err(malformed()),
    };
    let size = match items.next() {
        Some(Value::Int(n)) => usize::try_from(n).unwrap_or(0),
        _ => 0,
    };
    Ok((admitted, ids, size))
}
