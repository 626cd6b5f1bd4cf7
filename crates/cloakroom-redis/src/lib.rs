//! A Redis store for [cloakroom](https://docs.rs/cloakroom) sessions.
//!
//! Each session is one Redis hash, with one field per name and JSON values,
//! so `redis-cli HGETALL` shows readable data. Every write is one atomic Lua
//! script (EVALSHA, falling back to loading the script), so a request costs:
//!
//! | request | round trips |
//! | --- | --- |
//! | does not touch the session | 0 |
//! | reads the session | 1 |
//! | writes the session, including creating it | 1 |
//! | reads, then writes | 2 |
//!
//! The idle deadline is the key's TTL. A read is one plain pipeline,
//! `HGETALL` with `PEXPIREAT .. GT`: Redis moves the TTL only once a tenth of
//! the idle window has passed, so reads do not each cost a write.
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

mod config;
mod keys;

pub use config::RedisConfig;

use cloakroom::{Applied, Change, Error, Expiry, Patch, Record, Result, SessionId, Timestamp};
use keys::{Field, SessionKeys, field, parse_field, session_keys};
use redis::aio::ConnectionManager;
use redis::{Script, Value};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A set of connections to one Redis database, used round-robin.
#[derive(Clone)]
struct Pool {
    conns: Arc<[ConnectionManager]>,
    next: Arc<AtomicUsize>,
}

impl Pool {
    async fn connect(client: redis::Client, size: usize, timeout: Duration) -> Result<Pool> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let mut conns = Vec::with_capacity(size);
        for _ in 0..size.max(1) {
            let connect = ConnectionManager::new_with_config(client.clone(), config.clone());
            let conn = tokio::time::timeout(timeout, connect)
                .await
                .map_err(|_| Error::Timeout(timeout))?
                .map_err(Error::unavailable)?;
            conns.push(conn);
        }
        Ok(Pool {
            conns: conns.into(),
            next: Arc::default(),
        })
    }

    fn get(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].clone()
    }
}

struct Scripts {
    apply: Script,
    take: Script,
    notes: Script,
    increment: Script,
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
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("connections", &self.data.conns.len())
            .field("separate_notifications_db", &self.notes.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RedisStore {
    /// Connects to Redis. Fails if it cannot reach the server within the
    /// configured timeout; after that, lost connections are re-established
    /// on their own.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let (data_client, notes_client) = config.clients()?;
        let size = config.connections();
        let (data, notes) = match notes_client {
            Some(notes_client) => {
                // One connection of the budget serves the notifications db.
                let data_size = size.saturating_sub(1).max(1);
                let notes_size = (size - data_size).max(1);
                (
                    Pool::connect(data_client, data_size, config.timeout_value()).await?,
                    Some(Pool::connect(notes_client, notes_size, config.timeout_value()).await?),
                )
            }
            None => (
                Pool::connect(data_client, size, config.timeout_value()).await?,
                None,
            ),
        };
        Ok(RedisStore {
            data,
            notes,
            scripts: Arc::new(Scripts {
                apply: Script::new(include_str!("lua/apply.lua")),
                take: Script::new(include_str!("lua/take.lua")),
                notes: Script::new(include_str!("lua/notes.lua")),
                increment: Script::new(include_str!("lua/increment.lua")),
            }),
            prefix: config.key_prefix().into(),
            timeout: config.timeout_value(),
        })
    }

    fn keys(&self, id: &SessionId) -> SessionKeys {
        session_keys(&self.prefix, id)
    }

    /// Runs a store call under the timeout, mapping client errors.
    async fn bounded<T>(&self, call: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::unavailable(e)),
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }
}

/// The apply script's keys and arguments for `patch` (see `lua/apply.lua`).
fn apply_call<'s>(
    script: &'s Script,
    keys: &SessionKeys,
    target: &SessionKeys,
    patch: &Patch,
    expiry: &Expiry,
    inline_notes: bool,
) -> redis::ScriptInvocation<'s> {
    let mut flags = String::with_capacity(3);
    if patch.creates() {
        flags.push('c');
    }
    if patch.clears() {
        flags.push('x');
    }
    if patch.renames_to().is_some() {
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
        .key(&keys.notes)
        .key(&target.data)
        .key(&target.notes)
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

    /// The apply script as Lua text, to build invocations with.
    pub fn apply_script() -> Script {
        Script::new(include_str!("lua/apply.lua"))
    }

    /// Encodes the apply call for `patch` on session `id`.
    pub fn encode_apply<'s>(
        script: &'s Script,
        id: &SessionId,
        patch: &Patch,
        expiry: &Expiry,
    ) -> redis::ScriptInvocation<'s> {
        let keys = session_keys("cr", id);
        let target = patch.renames_to().map(|to| session_keys("cr", to));
        apply_call(
            script,
            &keys,
            target.as_ref().unwrap_or(&keys),
            patch,
            expiry,
            true,
        )
    }

    /// Decodes an `HGETALL` reply into a record.
    pub fn decode_load(reply: Value) -> Result<Option<Record>> {
        record_from(reply)
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

fn timestamp(value: &str, what: &str) -> Result<Timestamp> {
    value
        .parse()
        .map(Timestamp)
        .map_err(|_| Error::Corrupt(format!("{what} is not a timestamp: {value:?}")))
}

/// Turns an HGETALL reply into a record; `None` for an empty reply.
fn record_from(reply: Value) -> Result<Option<Record>> {
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
    let mut record = Record::default();
    let mut deadline = None;
    let mut items = items.into_iter();
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        let k = text(k, "a session field name")?;
        let v = text(v, "a session value")?;
        match parse_field(&k) {
            Field::Name(name) => {
                record.values.insert(name.to_owned(), v);
            }
            Field::Created => record.created = timestamp(&v, "@c")?,
            Field::Deadline => deadline = Some(timestamp(&v, "@d")?),
            Field::Unknown => {}
        }
    }
    record.deadline =
        deadline.ok_or_else(|| Error::Corrupt("session hash has no deadline".to_owned()))?;
    Ok(Some(record))
}

impl cloakroom::Store for RedisStore {
    async fn load(&self, id: &SessionId, expiry: &Expiry) -> Result<Option<Record>> {
        // A plain pipeline rather than a script: reads are the hot path, and
        // a Lua call costs Redis ten times the CPU of these commands.
        //
        // The idle deadline is pushed in the same round trip with
        // `PEXPIREAT .. GT` to `now + idle` rounded down to a tenth of the
        // window: Redis changes (and replicates) the TTL only when that
        // step moves, about ten times per window, not on every read.
        let keys = self.keys(id);
        let idle = millis(expiry.idle);
        let step = (idle / 10).max(1);
        let until = (expiry.now.0.saturating_add(idle) / step) * step;
        let mut read = redis::pipe();
        read.cmd("HGETALL")
            .arg(&keys.data)
            .cmd("PEXPIREAT")
            .arg(&keys.data)
            .arg(until)
            .arg("GT")
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&keys.notes)
            .arg(until)
            .arg("GT")
            .ignore();
        let mut conn = self.data.get();
        let (fields,): (Value,) = self.bounded(read.query_async(&mut conn)).await?;
        // The deadline is checked here; a key kept past it by the step
        // above reads as absent, and the write scripts refuse it too.
        Ok(record_from(fields)?.filter(|r| expiry.now < r.deadline))
    }

    async fn apply(&self, id: &SessionId, patch: &Patch, expiry: &Expiry) -> Result<Applied> {
        let keys = self.keys(id);
        let renamed = patch.renames_to().map(|to| self.keys(to));
        let target = renamed.as_ref().unwrap_or(&keys);
        // With a separate notifications db they are written there instead.
        let inline_notes = self.notes.is_none();
        let call = apply_call(
            &self.scripts.apply,
            &keys,
            target,
            patch,
            expiry,
            inline_notes,
        );
        let limits = patch.size_limits();
        let mut conn = self.data.get();
        let reply: Vec<i64> = self.bounded(call.invoke_async(&mut conn)).await?;
        let ttl = match (reply.as_slice(), limits) {
            ([1, ttl], _) => *ttl,
            ([0], _) => return Ok(Applied::Gone),
            ([2, names], Some(limits)) => {
                limits.check_totals(usize::try_from(*names).unwrap_or(usize::MAX), 0)?;
                return Err(Error::Corrupt(
                    "apply script reported a limit not exceeded".into(),
                ));
            }
            ([3, bytes], Some(limits)) => {
                limits.check_totals(0, usize::try_from(*bytes).unwrap_or(usize::MAX))?;
                return Err(Error::Corrupt(
                    "apply script reported a limit not exceeded".into(),
                ));
            }
            (other, _) => {
                return Err(Error::Corrupt(format!("apply script answered {other:?}")));
            }
        };
        if let Some(notes) = &self.notes
            && (patch.notifications().len() > 0 || renamed.is_some())
        {
            let mut call = self.scripts.notes.prepare_invoke();
            call.key(&keys.notes)
                .key(&target.notes)
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
            .key(&keys.notes)
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
            .key(&keys.notes)
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
        let mut conn = self.data.get();
        let mut del = redis::cmd("DEL");
        del.arg(&keys.data).arg(&keys.notes);
        let _: i64 = self.bounded(del.query_async(&mut conn)).await?;
        if let Some(notes) = &self.notes {
            let mut conn = notes.get();
            let mut del = redis::cmd("DEL");
            del.arg(&keys.notes);
            let _: i64 = self.bounded(del.query_async(&mut conn)).await?;
        }
        Ok(())
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
            Value::Array(vec![bulk("a"), bulk("1")]),
            Value::Array(vec![bulk("@d"), bulk("soon")]),
            Value::Array(vec![
                Value::BulkString(vec![0xff]),
                bulk("1"),
                bulk("@d"),
                bulk("5"),
            ]),
            Value::Array(vec![bulk("@d"), Value::Int(5)]),
        ];
        for case in cases {
            assert!(matches!(record_from(case), Err(Error::Corrupt(_))));
        }
        assert_eq!(record_from(Value::Array(vec![])).unwrap(), None);
        let ok = record_from(Value::Array(vec![
            bulk("@c"),
            bulk("1"),
            bulk("@d"),
            bulk("9"),
            bulk("@@x"),
            bulk("2"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(ok.values["@x"], "2");
        assert_eq!(ok.deadline, Timestamp(9));
    }
}
