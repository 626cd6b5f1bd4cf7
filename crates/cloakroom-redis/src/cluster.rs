//! Transactions during a Redis Cluster slot migration.
//!
//! While a slot moves from one master to another, the old owner answers
//! `ASK` for a key it no longer holds: the client must send `ASKING`, then
//! the command, to the importing node. redis-rs does that for single
//! commands, but not for a `MULTI`: the owner answers `ASK` to each queued
//! command and `EXECABORT` to the `EXEC`, and redis-rs returns an
//! `EXECABORT` error that it neither retries nor refreshes its slot map
//! for. So the store asks the owner itself
//! which node imports the slot (`CLUSTER NODES`, the owner's own line
//! marks `[SLOT->-NODE]`), and sends `ASKING`, `MULTI` … `EXEC` there on
//! one connection, as node-redis and rueidis do. This only happens on the
//! rare path where a transaction was refused for a redirect.

use crate::conn::Conn;
use crate::keys::SessionKeys;
use crate::write::{applied_from, apply_call};
use crate::{RedisStore, discarded_by_redirect};
use cloakroom::{Applied, Error, Expiry, Patch, Result};
use crc::{CRC_16_XMODEM, Crc};
use redis::Value;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_XMODEM);

/// The cluster slot of `key`: CRC-16 of its hash tag (or of the key).
pub(crate) fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tag = bytes
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| {
            let rest = &bytes[open + 1..];
            let close = rest.iter().position(|b| *b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(bytes);
    CRC16.checksum(tag) % 16384
}

/// One line of `CLUSTER NODES`: `<id> <ip:port@cport[,hostname]> <flags>
/// <master> <ping> <pong> <epoch> <state> <slots…>`.
pub(crate) struct NodeLine<'a> {
    pub(crate) id: &'a str,
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    flags: &'a str,
    /// Everything after the flags: slots and migration markers among them.
    rest: Vec<&'a str>,
}

impl NodeLine<'_> {
    pub(crate) fn has_flag(&self, flag: &str) -> bool {
        self.flags.split(',').any(|f| f == flag)
    }

    /// A master that no node marks as failing.
    pub(crate) fn is_live_master(&self) -> bool {
        self.has_flag("master") && !self.flags.split(',').any(|f| f.starts_with("fail"))
    }
}

/// The nodes of a `CLUSTER NODES` text; lines that do not parse are left
/// out.
pub(crate) fn node_lines(text: &str) -> impl Iterator<Item = NodeLine<'_>> {
    text.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        let id = fields.next()?;
        let addr = fields.next()?.split(['@', ',']).next()?;
        let (host, port) = addr.rsplit_once(':')?;
        let flags = fields.next()?;
        Some(NodeLine {
            id,
            host,
            port: port.parse().ok()?,
            flags,
            rest: fields.collect(),
        })
    })
}

/// The address of the node importing `slot`, from the owner's `CLUSTER
/// NODES` text, if the slot is being migrated: the owner's own line marks
/// it `[SLOT->-NODE]`.
pub(crate) fn importing_node(nodes: &str, slot: u16) -> Option<(String, u16)> {
    let marker = format!("[{slot}->-");
    let myself = node_lines(nodes).find(|n| n.has_flag("myself"))?;
    let target = myself.rest.iter().find_map(|field| {
        field
            .strip_prefix(&marker)
            .and_then(|rest| rest.strip_suffix(']'))
    })?;
    let node = node_lines(nodes).find(|n| n.id == target)?;
    Some((node.host.to_owned(), node.port))
}

/// `CLUSTER NODES`, as the node `route` picks sees the cluster.
pub(crate) async fn cluster_nodes(
    store: &RedisStore,
    cluster: &mut redis::cluster_async::ClusterConnection,
    route: SingleNodeRoutingInfo,
) -> Result<String> {
    let call = cluster.route_command(
        redis::cmd("CLUSTER").arg("NODES").clone(),
        RoutingInfo::SingleNode(route),
    );
    redis::from_redis_value(store.bounded(call).await?)
        .map_err(|e| Error::Corrupt(format!("CLUSTER NODES: {e}")))
}

impl RedisStore {
    /// A rename on a Redis Cluster, where the two ids live in different
    /// slots and no script may touch both: check the new id is free, apply
    /// the patch in place, take the session out, and put it in under the
    /// new keys (four round trips, on logins only). The old id is
    /// gone before the new one exists, so no two ids ever hold the session;
    /// if the last step fails, the session is lost (the user signs in
    /// again), never duplicated.
    pub(crate) async fn apply_moving(
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
        if reply == [4] {
            return Ok(Applied::Ended);
        }
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

    /// Runs a transaction refused for a redirect: on the importing node
    /// after `ASKING` (`asking`) if the slot is being migrated, or once
    /// more as it was (`plain`) if it is not migrating. Returns the first
    /// queued command's reply,
    /// or `None` if it was refused again.
    pub(crate) async fn transaction_asking(
        &self,
        key: &str,
        asking: &redis::Pipeline,
        plain: &redis::Pipeline,
    ) -> Result<Option<Value>> {
        if !self.cluster {
            return Ok(None);
        }
        let mut conn = self
            .data
            .get()
            .resolve()
            .await
            .map_err(Error::unavailable)?;
        let Conn::Cluster(cluster) = &mut conn else {
            return Ok(None);
        };
        let slot = key_slot(key);
        let owner = SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
        let nodes = cluster_nodes(self, cluster, owner).await?;
        let Some((host, port)) = importing_node(&nodes, slot) else {
            // Not migrating: the slot has moved, and the client knows it now.
            return Ok(self
                .transaction::<(Value,)>(plain, &mut conn)
                .await?
                .map(|(v,)| v));
        };
        let count = asking.cmd_iter().count();
        let call = cluster.route_pipeline(
            asking.clone(),
            0,
            count,
            SingleNodeRoutingInfo::ByAddress { host, port },
        );
        let replies = match crate::conn::timed(self.timeout, call).await? {
            Ok(replies) => replies,
            Err(e) if discarded_by_redirect(&e) => return Ok(None),
            Err(e) => return Err(Error::unavailable(e)),
        };
        match replies.into_iter().last() {
            Some(Value::Array(results)) => Ok(results.into_iter().next()),
            _ => Ok(None),
        }
    }
}

pub(crate) type Exported = (i64, Vec<Vec<u8>>, Vec<Vec<u8>>);

/// The export script's answer: TTL, data and notification arguments.
pub(crate) fn exported(reply: Value) -> Result<Option<Exported>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_hash_tag() {
        // Redis's own examples (CLUSTER KEYSLOT).
        assert_eq!(key_slot("somekey"), 11058);
        assert_eq!(key_slot("foo{hash_tag}"), key_slot("hash_tag"));
        // An empty tag counts for nothing: the whole key is hashed.
        assert_eq!(key_slot("{}empty"), CRC16.checksum(b"{}empty") % 16384);
        // CRC-16/XMODEM's check value.
        assert_eq!(key_slot("123456789"), 0x31c3);
    }

    #[test]
    fn the_importing_node_is_read_from_the_owners_line() {
        let nodes = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [93->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
";
        assert_eq!(
            importing_node(nodes, 93),
            Some(("127.0.0.1".to_owned(), 30002))
        );
        assert_eq!(importing_node(nodes, 94), None);
    }
}
