//! A Redis store for [cloakroom](https://docs.rs/cloakroom) sessions.
//!
//! Each session is one Redis hash, with one field per name and JSON values,
//! so `redis-cli HGETALL` shows readable data. A read is one `HGETALL`;
//! creating a session or changing its names is plain commands in one
//! `MULTI`; clearing, renaming and notifications are one atomic Lua script
//! (EVALSHA, falling back to loading the script). A request costs:
//!
//! | request | round trips |
//! | --- | --- |
//! | does not touch the session | 0 |
//! | reads the session | 1 |
//! | writes the session, including creating it | 1 |
//! | reads, then writes | 2 |
//!
//! The idle deadline is the key's TTL, and the hash records the last value
//! given to it. A read pushes it only once a tenth of the idle window has
//! passed, with one more round trip: about ten times per window, not on
//! every read.
//!
//! ```no_run
//! use cloakroom::{KeyRing, SessionLayer};
//! use cloakroom_redis::{RedisConfig, RedisStore};
//!
//! # async fn f() -> cloakroom::Result<()> {
//! let store = RedisStore::connect(RedisConfig::from_url("redis://127.0.0.1:6379/0")?).await?;
//! let layer = SessionLayer::builder(store, KeyRing::random()).build()?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod cluster;
mod config;
mod conn;
mod dump;
mod inventory;
mod keys;

pub use config::RedisConfig;

use cloakroom::{Applied, Change, Error, Expiry, Patch, Record, Result, SessionId, Timestamp};
use conn::Pool;
use keys::{Field, Meta, SessionKeys, field, parse_field, session_keys};
use redis::{Script, Value};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

struct Scripts {
    admit: Script,
    apply: Script,
    refresh: Script,
    rollback: Script,
    take: Script,
    notes: Script,
    increment: Script,
    export: Script,
    import: Script,
}

/// Sessions in Redis. Cheap to clone: clones share the connections.
#[derive(Clone)]
pub struct RedisStore {
    data: Pool,
    /// Connections to `db_notifications`, when it differs from the data's.
    notes: Option<Pool>,
    scripts: Arc<Scripts>,
    prefix: Arc<str>,
    timeout: Duration,
    /// A Redis Cluster: a rename crosses slots, so it cannot be one script.
    cluster: bool,
    /// Creates use `RESTORE` until the server refuses it (an ACL without
    /// `@dangerous`, a server without the command): then the `MULTI`.
    restore: Arc<AtomicBool>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("connections", &self.data.len())
            .field("cluster", &self.cluster)
            .field("separate_notifications_db", &self.notes.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RedisStore {
    /// Connects to Redis. Settings are checked now (a bad URL, a bad
    /// option, wrong credentials fail here). A server that cannot be
    /// reached yet is not fatal: the store starts, session calls fail with
    /// [`Error::Unavailable`] (a `503`) until it is up, and it connects by
    /// itself then. Lost connections are re-established on their own.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let timeout = config.timeout_value();
        let (data, notes, cluster) = match config.clients()? {
            config::Clients::Cluster(client) => (Pool::cluster(client), None, true),
            config::Clients::Sentinel(sentinel) => (Pool::sentinel(sentinel, timeout), None, false),
            config::Clients::Single { data, notes } => {
                let size = config.connections();
                match notes {
                    Some(notes) => {
                        // One connection of the budget serves the notifications db.
                        let data_size = size.saturating_sub(1).max(1);
                        let notes_size = (size - data_size).max(1);
                        (
                            Pool::single(data, data_size, timeout),
                            Some(Pool::single(notes, notes_size, timeout)),
                            false,
                        )
                    }
                    None => (Pool::single(data, size, timeout), None, false),
                }
            }
        };
        for pool in std::iter::once(&data).chain(&notes) {
            first_contact(pool, timeout).await?;
        }
        Ok(RedisStore {
            data,
            notes,
            scripts: Arc::new(Scripts {
                admit: Script::new(include_str!("lua/admit.lua")),
                apply: Script::new(include_str!("lua/apply.lua")),
                refresh: Script::new(include_str!("lua/refresh.lua")),
                rollback: Script::new(include_str!("lua/rollback.lua")),
                take: Script::new(include_str!("lua/take.lua")),
                notes: Script::new(include_str!("lua/notes.lua")),
                increment: Script::new(include_str!("lua/increment.lua")),
                export: Script::new(include_str!("lua/export.lua")),
                import: Script::new(include_str!("lua/import.lua")),
            }),
            prefix: config.key_prefix().into(),
            timeout,
            cluster,
            restore: Arc::new(AtomicBool::new(true)),
        })
    }

    fn keys(&self, id: &SessionId) -> SessionKeys {
        session_keys(&self.prefix, id)
    }

    /// A rename on a Redis Cluster, where the two ids live in different
    /// slots and no script may touch both: check the new id is free, apply
    /// the patch in place, take the session out, and put it in under the
    /// new keys (four round trips, on logins only). The old id is
    /// gone before the new one exists, so no two ids ever hold the session;
    /// if the last step fails, the session is lost (the user signs in
    /// again), never duplicated.
    async fn apply_moving(
        &self,
        keys: &SessionKeys,
        to: &SessionKeys,
        patch: &Patch,
        expiry: &Expiry,
    ) -> Result<Applied> {
        let mut conn = self.data.get();
        let mut taken = redis::cmd("EXISTS");
        taken.arg(&to.data);
        if self.bounded(taken.query_async::<i64>(&mut conn)).await? != 0 {
            return Ok(Applied::Gone);
        }
        let call = apply_call(&self.scripts.apply, keys, None, patch, expiry, true);
        let reply: Vec<i64> = self.bounded(call.invoke_async(&mut conn)).await?;
        if !matches!(reply.as_slice(), [1, _]) {
            return applied_from(&reply, patch).map(|_| Applied::Gone);
        }
        let mut export = self.scripts.export.prepare_invoke();
        export.key(&keys.data).key(keys.notes());
        let taken: Value = self.bounded(export.invoke_async(&mut conn)).await?;
        let Some((ttl, data, notes)) = exported(taken)? else {
            return Ok(Applied::Gone);
        };
        let mut import = self.scripts.import.prepare_invoke();
        import
            .key(&to.data)
            .key(to.notes())
            .arg(ttl)
            .arg(data.len());
        for item in data.iter().chain(&notes) {
            import.arg(item.as_slice());
        }
        let done: i64 = self.bounded(import.invoke_async(&mut conn)).await?;
        Ok(if done == 1 {
            Applied::Done
        } else {
            Applied::Gone
        })
    }

    /// Creates a session without a script, in one `RESTORE` of the hash
    /// with its TTL, which refuses an existing key (see `dump.rs`). Where
    /// Redis refuses `RESTORE` (an ACL without `@dangerous`), the hash is
    /// built under a staging key that only this call uses, given its TTL,
    /// then moved into place with `RENAMENX`, which refuses to replace an
    /// existing session; a refused create deletes the staging key. `MULTI`
    /// makes those three commands all-or-nothing, so a dropped connection
    /// leaves no key without a TTL.
    ///
    /// Plain commands cost Redis a fraction of a script call: a Lua call
    /// costs several microseconds before it runs a single command.
    async fn create(
        &self,
        keys: &SessionKeys,
        patch: &Patch,
        expiry: &Expiry,
    ) -> Result<Option<Applied>> {
        let created = expiry.now.0;
        let absolute = millis(expiry.absolute);
        let deadline = created.saturating_add(absolute);
        let ttl = millis(expiry.idle).min(absolute).max(1);
        let meta = Meta {
            created,
            deadline,
            until: created.saturating_add(ttl),
        };
        let meta = meta.encode();
        let mut pairs: Vec<(std::borrow::Cow<'_, str>, &str)> = Vec::with_capacity(4);
        pairs.push((keys::META.into(), &meta));
        let (mut names, mut bytes) = (0, 0);
        for (name, change) in patch.changes() {
            if let Change::Set(json) = change {
                let f = field(name);
                names += 1;
                bytes += f.len() + json.len();
                pairs.push((f, json));
            }
        }
        if let Some(limits) = patch.size_limits() {
            limits.check_totals(names, bytes)?;
        }
        if self.restore.load(Ordering::Relaxed) {
            let payload =
                dump::hash_payload(pairs.iter().map(|(f, v)| (f.as_bytes(), v.as_bytes())));
            let mut restore = redis::cmd("RESTORE");
            restore.arg(&keys.data).arg(ttl).arg(payload);
            let mut conn = self.data.get();
            match conn::timed(self.timeout, restore.query_async::<()>(&mut conn)).await? {
                Ok(()) => return Ok(Some(Applied::Done)),
                // The id is taken: nothing was written.
                Err(e) if e.code() == Some("BUSYKEY") => return Ok(Some(Applied::Gone)),
                Err(e)
                    if matches!(e.kind(), redis::ErrorKind::Server(_)) && !e.is_cluster_error() =>
                {
                    tracing::warn!(
                        error = %e,
                        "Redis refused RESTORE; creating sessions with MULTI from now on"
                    );
                    self.restore.store(false, Ordering::Relaxed);
                }
                Err(e) if self.cluster && discarded_by_redirect(&e) => return Ok(None),
                Err(e) => return Err(Error::unavailable(e)),
            }
        }
        let staging = keys.staging();
        let mut hset = redis::cmd("HSET");
        hset.arg(&staging);
        for (f, v) in &pairs {
            hset.arg(f.as_ref()).arg(*v);
        }
        let mut pipe = redis::pipe();
        pipe.atomic()
            .add_command(hset)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&staging)
            .arg(ttl)
            .ignore()
            .cmd("RENAMENX")
            .arg(&staging)
            .arg(&keys.data);
        let mut conn = self.data.get();
        let Some((moved,)) = self.transaction::<(i64,)>(&pipe, &mut conn).await? else {
            return Ok(None);
        };
        if moved == 1 {
            return Ok(Some(Applied::Done));
        }
        // The id was taken. The staging key would expire by itself.
        self.del(&mut conn, &[&staging]).await?;
        Ok(Some(Applied::Gone))
    }

    /// Changes names of a live session without a script, in one `MULTI`:
    /// read the hash (or only its meta field when there are no limits),
    /// then `HSET`, `HDEL` and `PEXPIREAT`. Redis has no conditional
    /// `HSET`, so the checks a script would make first are made on what
    /// the read returned, right after:
    ///
    /// - no live session (gone, or past its deadline): the write may have
    ///   made a hash with no meta field, which every read and script
    ///   treats as no session; it is deleted, and the answer is `Gone`;
    /// - over the size limits: each name gets its old value back (unless
    ///   another write has changed it since), and the answer is the limit
    ///   error. Until then, other requests of the same session can see
    ///   the change.
    ///
    /// The TTL goes to `now + idle` even past the absolute deadline; a
    /// read checks the deadline itself.
    async fn change(
        &self,
        keys: &SessionKeys,
        patch: &Patch,
        expiry: &Expiry,
    ) -> Result<Option<Applied>> {
        // Only a patch that sets something can take a session over its
        // limits; one that only removes names always shrinks it, even a
        // session already over limits that were lowered since.
        let grows = patch.changes().any(|(_, c)| c != Change::Remove);
        let limits = patch.size_limits().filter(|_| grows);
        if let Some(limits) = limits {
            // Over the limits by itself: refused before anything is sent.
            let (names, bytes) = patch
                .changes()
                .filter_map(|(name, c)| match c {
                    Change::Set(json) => Some(field(name).len() + json.len()),
                    Change::Remove => None,
                })
                .fold((0, 0), |(n, b), size| (n + 1, b + size));
            limits.check_totals(names, bytes)?;
        }
        let until = expiry.now.0.saturating_add(millis(expiry.idle));
        let pipe = change_pipeline(keys, patch, limits.is_some(), until, false);
        let mut conn = self.data.get();
        let before = match self.transaction::<(Value,)>(&pipe, &mut conn).await? {
            Some((before,)) => before,
            // A cluster slot on the move: the transaction again, where
            // Redis says the key is now.
            None => {
                let asking = change_pipeline(keys, patch, limits.is_some(), until, true);
                match self.transaction_asking(&keys.data, &asking, &pipe).await? {
                    Some(before) => before,
                    None => return Ok(None),
                }
            }
        };
        let (meta, fields) = match (limits, before) {
            (_, Value::Nil) => (None, Vec::new()),
            (Some(_), reply) => match hash_from(reply)? {
                Some(hash) => (hash.meta, hash.fields),
                None => (None, Vec::new()),
            },
            (None, reply) => (
                Some(meta_from(&text(reply, "the meta field")?)?),
                Vec::new(),
            ),
        };
        if meta.is_none_or(|m| expiry.now.0 >= m.deadline) {
            self.del(&mut conn, &[&keys.data]).await?;
            return Ok(Some(Applied::Gone));
        }
        let Some(limits) = limits else {
            return Ok(Some(Applied::Done));
        };
        // Sessions are small: a scan costs less than building a map.
        let old_value = |f: &str| fields.iter().find(|(k, _)| k == f).map(|(_, v)| v.as_str());
        let mut names = fields.len();
        let mut bytes: usize = fields.iter().map(|(k, v)| k.len() + v.len()).sum();
        for (name, change) in patch.changes() {
            let f = field(name);
            let old = old_value(&f).map(|v| f.len() + v.len());
            let new = match change {
                Change::Set(json) => Some(f.len() + json.len()),
                Change::Remove => None,
            };
            names = (names + usize::from(new.is_some())).saturating_sub(usize::from(old.is_some()));
            bytes = (bytes + new.unwrap_or(0)).saturating_sub(old.unwrap_or(0));
        }
        let Err(over) = limits.check_totals(names, bytes) else {
            return Ok(Some(Applied::Done));
        };
        let marked = |v: Option<&str>| v.map_or_else(|| "-".to_owned(), |v| format!("={v}"));
        let mut undo = self.scripts.rollback.prepare_invoke();
        undo.key(&keys.data);
        for (name, change) in patch.changes() {
            let f = field(name);
            let written = match change {
                Change::Set(json) => Some(json),
                Change::Remove => None,
            };
            undo.arg(f.as_ref())
                .arg(marked(written))
                .arg(marked(old_value(&f)));
        }
        self.bounded(undo.invoke_async::<i64>(&mut conn)).await?;
        Err(over)
    }

    /// Runs a `MULTI` under the timeout; `None` when it was discarded
    /// before anything ran because a slot is moving between cluster nodes
    /// (`MOVED` or `ASK` for a queued command), which redis-rs does not
    /// follow for transactions.
    async fn transaction<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        conn: &mut conn::Conn,
    ) -> Result<Option<T>> {
        match conn::timed(self.timeout, pipe.query_async(conn)).await? {
            Ok(v) => Ok(Some(v)),
            Err(e) if self.cluster && discarded_by_redirect(&e) => Ok(None),
            Err(e) => Err(Error::unavailable(e)),
        }
    }

    /// Runs a store call under the timeout, mapping client errors.
    async fn bounded<T>(&self, call: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        conn::within(self.timeout, call).await
    }

    /// Deletes `keys`, in one call.
    async fn del(&self, conn: &mut conn::Conn, keys: &[&str]) -> Result<()> {
        let mut del = redis::cmd("DEL");
        for key in keys {
            del.arg(*key);
        }
        self.bounded(del.query_async::<i64>(conn)).await.map(drop)
    }
}

/// Whether `e` is a transaction that Redis discarded whole (`EXECABORT`)
/// or refused outright because its slot lives elsewhere: nothing ran.
fn discarded_by_redirect(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    e.is_cluster_error() || e.kind() == ErrorKind::Server(ServerErrorKind::ExecAbort)
}

/// Tries the store's first connection once. Refused or unreachable: a
/// warning, and the store starts anyway. Refused for another reason
/// (credentials, a protocol error): that is a configuration error, and
/// start-up stops.
async fn first_contact(pool: &Pool, timeout: Duration) -> Result<()> {
    let attempt = async {
        let mut conn = pool.get().resolve().await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await
    };
    match conn::timed(timeout, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if !unreachable(&e) => Err(Error::Config(format!("storage: {e}"))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Redis is not reachable yet: session calls answer 503 until it is");
            Ok(())
        }
        Err(timed_out) => {
            tracing::warn!(error = %timed_out, "Redis is not reachable yet: session calls answer 503 until it is");
            Ok(())
        }
    }
}

/// Whether `e` says the server could not be reached (as opposed to
/// refusing what was asked).
fn unreachable(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            redis::ErrorKind::Io
                | redis::ErrorKind::ClusterConnectionNotFound
                | redis::ErrorKind::MasterNameNotFoundBySentinel
                | redis::ErrorKind::NoValidReplicasFoundBySentinel
        )
        || e.code()
            .is_some_and(|c| c == "MASTERDOWN" || c == "LOADING")
}

/// The `MULTI` of [`RedisStore::change`]; only the first reply is kept.
///
/// With `asking`, it is the same transaction preceded by `ASKING`, as plain
/// commands whose replies all come back (the `EXEC` reply last), for the
/// node importing a slot that is being migrated (see `cluster.rs`).
fn change_pipeline(
    keys: &SessionKeys,
    patch: &Patch,
    whole_hash: bool,
    until: u64,
    asking: bool,
) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    if asking {
        pipe.cmd("ASKING").cmd("MULTI");
    } else {
        pipe.atomic();
    }
    if whole_hash {
        pipe.cmd("HGETALL").arg(&keys.data);
    } else {
        pipe.cmd("HGET").arg(&keys.data).arg(keys::META);
    }
    let mut hset = redis::cmd("HSET");
    let mut hdel = redis::cmd("HDEL");
    hset.arg(&keys.data);
    hdel.arg(&keys.data);
    let (mut sets, mut removals) = (false, false);
    for (name, change) in patch.changes() {
        match change {
            Change::Set(json) => {
                hset.arg(field(name).as_ref()).arg(json);
                sets = true;
            }
            Change::Remove => {
                hdel.arg(field(name).as_ref());
                removals = true;
            }
        }
    }
    if sets {
        pipe.add_command(hset).ignore();
    }
    if removals {
        pipe.add_command(hdel).ignore();
    }
    pipe.cmd("PEXPIREAT").arg(&keys.data).arg(until).ignore();
    if asking {
        pipe.cmd("EXEC");
    }
    pipe
}

/// The apply script's keys and arguments for `patch` (see `lua/apply.lua`).
fn apply_call<'s>(
    script: &'s Script,
    keys: &SessionKeys,
    renamed: Option<&SessionKeys>,
    patch: &Patch,
    expiry: &Expiry,
    inline_notes: bool,
) -> redis::ScriptInvocation<'s> {
    let rename = renamed.is_some();
    let target = renamed.unwrap_or(keys);
    let mut flags = String::with_capacity(3);
    if patch.creates() {
        flags.push('c');
    }
    if patch.clears() {
        flags.push('x');
    }
    if rename {
        flags.push('r');
    }
    let sets = patch
        .changes()
        .filter(|(_, c)| matches!(c, Change::Set(_)))
        .count();
    let removals = patch.changes().len() - sets;
    let notes = if inline_notes {
        patch.notifications().len()
    } else {
        0
    };
    let limits = patch.size_limits();
    let mut call = script.prepare_invoke();
    call.key(&keys.data)
        .key(keys.notes())
        .key(&target.data)
        .key(target.notes())
        .arg(expiry.now.0)
        .arg(millis(expiry.idle))
        .arg(millis(expiry.absolute))
        .arg(flags)
        .arg(sets)
        .arg(removals)
        .arg(notes)
        .arg(limits.map_or(-1, |l| l.max_names as i64))
        .arg(limits.map_or(0, |l| l.max_bytes));
    for (name, change) in patch.changes() {
        if let Change::Set(json) = change {
            call.arg(field(name).as_ref()).arg(json);
        }
    }
    for (name, change) in patch.changes() {
        if change == Change::Remove {
            call.arg(field(name).as_ref());
        }
    }
    if notes > 0 {
        for (name, json) in patch.notifications() {
            call.arg(name).arg(json);
        }
    }
    call
}

/// Entry points for the micro-benchmarks; not a public API.
#[doc(hidden)]
pub mod internals {
    use super::*;

    /// The bytes a change of `patch`'s names on session `id` sends: one
    /// `MULTI` (see `RedisStore::change`).
    pub fn encode_change(id: &SessionId, patch: &Patch, expiry: &Expiry) -> Vec<u8> {
        let keys = session_keys("cr", id);
        let until = expiry.now.0.saturating_add(millis(expiry.idle));
        change_pipeline(&keys, patch, patch.size_limits().is_some(), until, false)
            .get_packed_pipeline()
    }

    /// Decodes an `HGETALL` reply into a record.
    pub fn decode_load(reply: Value) -> Result<Option<Record>> {
        Ok(record_from(reply)?.map(|(record, _)| record))
    }
}

/// The apply script's answer: `Some(ttl)` when applied, `None` when the
/// session is gone, or the limit error.
fn applied_from(reply: &[i64], patch: &Patch) -> Result<Option<i64>> {
    let limits = patch.size_limits();
    let size = |n: &i64| usize::try_from(*n).unwrap_or(usize::MAX);
    match (reply, limits) {
        ([1, ttl], _) => Ok(Some(*ttl)),
        ([0], _) => Ok(None),
        ([2, names], Some(limits)) => limits.check_totals(size(names), 0).and(Err(Error::Corrupt(
            "apply script reported a limit not exceeded".into(),
        ))),
        ([3, bytes], Some(limits)) => limits.check_totals(0, size(bytes)).and(Err(Error::Corrupt(
            "apply script reported a limit not exceeded".into(),
        ))),
        (other, _) => Err(Error::Corrupt(format!("apply script answered {other:?}"))),
    }
}

type Exported = (i64, Vec<Vec<u8>>, Vec<Vec<u8>>);

/// The export script's answer: TTL, data and notification arguments.
fn exported(reply: Value) -> Result<Option<Exported>> {
    let bytes = |v: Value| match v {
        Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Value::BulkString(b) => Ok(b),
                other => Err(Error::Corrupt(format!("export: a field is {other:?}"))),
            })
            .collect::<Result<Vec<_>>>(),
        other => Err(Error::Corrupt(format!(
            "export: expected an array, got {other:?}"
        ))),
    };
    match reply {
        Value::Array(items) => match <[Value; 4]>::try_from(items) {
            Ok([Value::Int(1), Value::Int(ttl), data, notes]) => {
                Ok(Some((ttl.max(1), bytes(data)?, bytes(notes)?)))
            }
            Ok(other) => Err(Error::Corrupt(format!("export answered {other:?}"))),
            Err(items) if items == [Value::Int(0)] => Ok(None),
            Err(items) => Err(Error::Corrupt(format!("export answered {items:?}"))),
        },
        other => Err(Error::Corrupt(format!("export answered {other:?}"))),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn text(value: Value, what: &str) -> Result<String> {
    match value {
        Value::BulkString(bytes) => {
            String::from_utf8(bytes).map_err(|_| Error::Corrupt(format!("{what} is not UTF-8")))
        }
        Value::SimpleString(s) => Ok(s),
        other => Err(Error::Corrupt(format!(
            "{what}: expected a string, got {other:?}"
        ))),
    }
}

/// A session hash as `HGETALL` returned it.
struct Hash {
    /// The meta field; `None` for a hash without one, which no live
    /// session is (see [`RedisStore::change`]).
    meta: Option<Meta>,
    /// Every other field, names still escaped.
    fields: Vec<(String, String)>,
}

/// Parses an `HGETALL` reply; `None` for an empty one.
fn hash_from(reply: Value) -> Result<Option<Hash>> {
    let items = match reply {
        Value::Array(items) => items,
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        Value::Nil => return Ok(None),
        other => {
            return Err(Error::Corrupt(format!(
                "session load: expected an array, got {other:?}"
            )));
        }
    };
    if items.is_empty() {
        return Ok(None);
    }
    if items.len() % 2 != 0 {
        return Err(Error::Corrupt("session hash has an odd reply".to_owned()));
    }
    let mut hash = Hash {
        meta: None,
        fields: Vec::with_capacity(items.len() / 2 - 1),
    };
    let mut items = items.into_iter();
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        let k = text(k, "a session field name")?;
        let v = text(v, "a session value")?;
        if let Field::Meta = parse_field(&k) {
            hash.meta = Some(meta_from(&v)?);
        } else {
            hash.fields.push((k, v));
        }
    }
    Ok(Some(hash))
}

fn meta_from(text: &str) -> Result<Meta> {
    Meta::parse(text)
        .ok_or_else(|| Error::Corrupt(format!("session meta field is not valid: {text:?}")))
}

/// Turns an `HGETALL` reply into a record and the idle deadline its TTL
/// was last given; `None` for no session.
fn record_from(reply: Value) -> Result<Option<(Record, Timestamp)>> {
    let Some(Hash {
        meta: Some(meta),
        fields,
    }) = hash_from(reply)?
    else {
        return Ok(None);
    };
    let mut record = Record {
        created: Timestamp(meta.created),
        deadline: Timestamp(meta.deadline),
        ..Record::default()
    };
    for (k, v) in fields {
        if let Field::Name(name) = parse_field(&k) {
            let name = if name.len() == k.len() {
                k
            } else {
                name.to_owned()
            };
            record.values.insert(name, v);
        }
    }
    Ok(Some((record, Timestamp(meta.until))))
}

impl cloakroom::Store for RedisStore {
    async fn load(&self, id: &SessionId, expiry: &Expiry) -> Result<Option<Record>> {
        // One plain command: reads are the hot path, and every extra
        // command or reply value costs the client and Redis CPU.
        let keys = self.keys(id);
        let mut read = redis::cmd("HGETALL");
        read.arg(&keys.data);
        let mut conn = self.data.get();
        let reply: Value = self.bounded(read.query_async(&mut conn)).await?;
        let Some((record, until)) = record_from(reply)? else {
            return Ok(None);
        };
        // Checked here whatever the TTL says.
        if expiry.now >= record.deadline {
            return Ok(None);
        }
        // The idle deadline moves in steps of a tenth of the window: a
        // second round trip about ten times per window, not on every read.
        let idle = millis(expiry.idle);
        let wanted = expiry.now.0.saturating_add(idle);
        if wanted.saturating_sub(until.0) >= (idle / 10).max(1) {
            let mut refresh = self.scripts.refresh.prepare_invoke();
            refresh
                .key(&keys.data)
                .key(keys.notes())
                .arg(expiry.now.0)
                .arg(wanted);
            let alive: i64 = self.bounded(refresh.invoke_async(&mut conn)).await?;
            if alive == 0 {
                return Ok(None);
            }
        }
        Ok(Some(record))
    }

    async fn apply(&self, id: &SessionId, patch: &Patch, expiry: &Expiry) -> Result<Applied> {
        let keys = self.keys(id);
        let renamed = patch.renames_to().map(|to| self.keys(to));
        if self.cluster
            && let Some(to) = &renamed
        {
            return self.apply_moving(&keys, to, patch, expiry).await;
        }
        if renamed.is_none() && patch.notifications().len() == 0 {
            let fast = if patch.creates() {
                self.create(&keys, patch, expiry).await?
            } else if !patch.clears() {
                self.change(&keys, patch, expiry).await?
            } else {
                None
            };
            // `None`: a moving cluster slot aborted the `MULTI` before any
            // of it ran; the script below is one command, which the
            // cluster client follows to the slot's new node.
            if let Some(applied) = fast {
                return Ok(applied);
            }
        }
        let target = renamed.as_ref().unwrap_or(&keys);
        // With a separate notifications db they are written there instead.
        let inline_notes = self.notes.is_none();
        let call = apply_call(
            &self.scripts.apply,
            &keys,
            renamed.as_ref(),
            patch,
            expiry,
            inline_notes,
        );
        let mut conn = self.data.get();
        let reply: Vec<i64> = self.bounded(call.invoke_async(&mut conn)).await?;
        let Some(ttl) = applied_from(&reply, patch)? else {
            return Ok(Applied::Gone);
        };
        if let Some(notes) = &self.notes
            && (patch.notifications().len() > 0 || renamed.is_some())
        {
            let mut call = self.scripts.notes.prepare_invoke();
            call.key(keys.notes())
                .key(target.notes())
                .arg(ttl)
                .arg(if renamed.is_some() { "1" } else { "0" });
            for (name, json) in patch.notifications() {
                call.arg(name).arg(json);
            }
            let mut conn = notes.get();
            let _: i64 = self.bounded(call.invoke_async(&mut conn)).await?;
        }
        Ok(Applied::Done)
    }

    async fn take_notification(
        &self,
        id: &SessionId,
        name: &str,
        expiry: &Expiry,
    ) -> Result<Option<String>> {
        let keys = self.keys(id);
        let mut call = self.scripts.take.prepare_invoke();
        // With a separate db the session's liveness cannot be checked in the
        // same script; the notifications' TTL never exceeds the session's.
        let (mut conn, check) = match &self.notes {
            Some(notes) => (notes.get(), "0"),
            None => (self.data.get(), "1"),
        };
        call.key(&keys.data)
            .key(keys.notes())
            .arg(name)
            .arg(expiry.now.0)
            .arg(check);
        let reply: Value = self.bounded(call.invoke_async(&mut conn)).await?;
        match reply {
            Value::Nil => Ok(None),
            other => text(other, "a notification").map(Some),
        }
    }

    async fn increment(
        &self,
        id: &SessionId,
        name: &str,
        by: i64,
        expiry: &Expiry,
    ) -> Result<Option<i64>> {
        let keys = self.keys(id);
        let mut call = self.scripts.increment.prepare_invoke();
        call.key(&keys.data)
            .key(keys.notes())
            .arg(field(name).as_ref())
            .arg(by)
            .arg(expiry.now.0)
            .arg(millis(expiry.idle));
        let mut conn = self.data.get();
        let reply: Vec<i64> = self.bounded(call.invoke_async(&mut conn)).await?;
        match reply.as_slice() {
            [1, value] => Ok(Some(*value)),
            [0] => Ok(None),
            [2] => Err(Error::Corrupt(format!(
                "session value {name:?} is not an integer"
            ))),
            other => Err(Error::Corrupt(format!(
                "increment script answered {other:?}"
            ))),
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<()> {
        let keys = self.keys(id);
        let notes_key = keys.notes();
        self.del(&mut self.data.get(), &[&keys.data, &notes_key])
            .await?;
        if let Some(notes) = &self.notes {
            self.del(&mut notes.get(), &[&notes_key]).await?;
        }
        Ok(())
    }

    async fn admit(
        &self,
        user: &str,
        id: &SessionId,
        cap: Option<cloakroom::SessionCap>,
        expiry: &Expiry,
        check_only: bool,
    ) -> Result<cloakroom::Admission> {
        self.admit_to_index(user, id, cap, expiry, check_only).await
    }

    async fn sessions_of(
        &self,
        user: &str,
        expiry: &Expiry,
    ) -> Result<Vec<cloakroom::SessionInfo>> {
        self.index_sessions(user, expiry).await
    }

    async fn end_sessions_of(
        &self,
        user: &str,
        except: Option<&SessionId>,
        expiry: &Expiry,
    ) -> Result<usize> {
        self.end_index_sessions(user, except, expiry).await
    }

    async fn end_all(&self, _expiry: &Expiry) -> Result<usize> {
        self.end_every_session().await
    }

    async fn count(&self, _expiry: &Expiry) -> Result<usize> {
        self.count_sessions().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        let cases = [
            Value::Int(3),
            Value::Array(vec![bulk("a")]),
            Value::Array(vec![bulk("@m"), bulk("soon")]),
            Value::Array(vec![bulk("@m"), bulk("1,2")]),
            Value::Array(vec![
                Value::BulkString(vec![0xff]),
                bulk("1"),
                bulk("@m"),
                bulk("1,5,5"),
            ]),
            Value::Array(vec![bulk("@m"), Value::Int(5)]),
        ];
        for case in cases {
            assert!(matches!(record_from(case), Err(Error::Corrupt(_))));
        }
        assert_eq!(record_from(Value::Array(vec![])).unwrap(), None);
        // A hash without the meta field is what a write to a session that
        // had just gone leaves for a moment: no session.
        assert_eq!(
            record_from(Value::Array(vec![bulk("a"), bulk("1")])).unwrap(),
            None
        );
        let (ok, until) = record_from(Value::Array(vec![
            bulk("@m"),
            bulk("1,9,7"),
            bulk("@@x"),
            bulk("2"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(ok.values["@x"], "2");
        // The deadline and UNTIL are counted from the creation time.
        assert_eq!(ok.created, Timestamp(1));
        assert_eq!(ok.deadline, Timestamp(10));
        assert_eq!(until, Timestamp(8));
    }
}
