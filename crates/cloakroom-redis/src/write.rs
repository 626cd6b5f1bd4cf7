//! Writes: a create (one `RESTORE`), a change of names (one `MULTI`), and
//! the `apply` script for everything else (clear, rename, notifications).

use crate::keys::{self, Meta, SessionKeys, field};
use crate::read::{hash_from, meta_from, text};
use crate::{RedisStore, conn, discarded_by_redirect, dump, millis};
use cloakroom::{Applied, Change, Error, Expiry, Patch, Result};
use redis::{Script, Value};
use std::sync::atomic::Ordering;

impl RedisStore {
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
    pub(crate) async fn create(
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
        loop {
            let form = self.restore.load(Ordering::Relaxed);
            let fields = pairs.iter().map(|(f, v)| (f.as_bytes(), v.as_bytes()));
            let payload = match form {
                RESTORE_LISTPACK => dump::hash_listpack_payload(fields),
                RESTORE_PLAIN => dump::hash_payload(fields),
                _ => break,
            };
            // Sized up front: growing the command's buffers as arguments
            // arrive cost more than encoding them.
            let mut restore = redis::Cmd::with_capacity(
                4,
                "RESTORE".len() + keys.data.len() + 20 + payload.len(),
            );
            restore.arg("RESTORE").arg(&keys.data).arg(ttl).arg(payload);
            let mut conn = self.data.get();
            match conn::timed(self.timeout, restore.query_async::<()>(&mut conn)).await? {
                Ok(()) => return Ok(Some(Applied::Done)),
                // The id is taken: nothing was written.
                Err(e) if e.code() == Some("BUSYKEY") => return Ok(Some(Applied::Gone)),
                // A payload it does not read (a server older than 7.0):
                // the plain form from now on, and again now.
                Err(e) if form == RESTORE_LISTPACK && payload_refused(&e) => {
                    tracing::info!(
                        error = %e,
                        "Redis does not read listpack payloads; creating sessions from plain ones"
                    );
                    self.restore.store(RESTORE_PLAIN, Ordering::Relaxed);
                }
                // Refused for good (an ACL without `@dangerous`, a server
                // without the command, a payload it does not read): MULTI
                // from now on. Other errors (LOADING, READONLY, OOM) are
                // the server's state, not the command's.
                Err(e) if restore_unsupported(&e) => {
                    tracing::warn!(
                        error = %e,
                        "Redis refused RESTORE; creating sessions with MULTI from now on"
                    );
                    self.restore.store(RESTORE_OFF, Ordering::Relaxed);
                }
                Err(e) if self.cluster && discarded_by_redirect(&e) => return Ok(None),
                Err(e) => return Err(Error::unavailable(e)),
            }
        }
        Box::pin(self.create_with_multi(keys, &pairs, ttl)).await
    }

    /// A create on a server that refuses `RESTORE`: a `MULTI` of `HSET`
    /// into a staging key, `PEXPIRE` and `RENAMENX`, which refuses an id in
    /// use as `RESTORE` does.
    async fn create_with_multi(
        &self,
        keys: &SessionKeys,
        pairs: &[(std::borrow::Cow<'_, str>, &str)],
        ttl: u64,
    ) -> Result<Option<Applied>> {
        let staging = keys.staging();
        let mut hset = redis::cmd("HSET");
        hset.arg(&staging);
        for (f, v) in pairs {
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
    pub(crate) async fn change(
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
                // Boxed, as the other rare paths here: see `apply_patch`.
                match Box::pin(self.transaction_asking(&keys.data, &asking, &pipe)).await? {
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
            Box::pin(self.del(&mut conn, &[&keys.data])).await?;
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
        Box::pin(self.bounded(undo.invoke_async::<i64>(&mut conn))).await?;
        Err(over)
    }
}

/// The `MULTI` of [`RedisStore::change`]; only the first reply is kept.
///
/// With `asking`, it is the same transaction preceded by `ASKING`, as plain
/// commands whose replies all come back (the `EXEC` reply last), for the
/// node importing a slot that is being migrated (see `cluster.rs`).
pub(crate) fn change_pipeline(
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
pub(crate) fn apply_call<'s>(
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
    if patch.restarts_lifetime() {
        flags.push('l');
    }
    // With notifications in another database the script cannot see them:
    // it reports a session without names, and the caller looks there.
    if patch.ends_if_empty() {
        flags.push(if inline_notes { 'e' } else { 'E' });
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
        // -1 tells the script there are no limits: a larger cap than it
        // can count is as good as none, but still caps the bytes.
        .arg(limits.map_or(-1, |l| i64::try_from(l.max_names).unwrap_or(i64::MAX)))
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

/// The apply script's answer: `Some(ttl)` when applied, `None` when the
/// session is gone, or the limit error. (`[4]`, ended, is handled first.)
pub(crate) fn applied_from(reply: &[i64], patch: &Patch) -> Result<Option<i64>> {
    let limits = patch.size_limits();
    let size = |n: &i64| usize::try_from(*n).unwrap_or(usize::MAX);
    match (reply, limits) {
        ([1 | 5, ttl], _) => Ok(Some(*ttl)),
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

/// Creates by `RESTORE` of a listpack payload (`dump::hash_listpack_payload`).
pub(crate) const RESTORE_LISTPACK: u8 = 2;
/// Creates by `RESTORE` of a plain hash payload (`dump::hash_payload`).
pub(crate) const RESTORE_PLAIN: u8 = 1;
/// Creates by `MULTI` (`RedisStore::create_with_multi`).
pub(crate) const RESTORE_OFF: u8 = 0;

/// Whether `e` says this server will never take our `RESTORE`.
fn restore_unsupported(e: &redis::RedisError) -> bool {
    e.code().is_some_and(|c| c == "NOPERM")
        || (e.code() == Some("ERR")
            && e.to_string()
                .to_ascii_lowercase()
                .contains("unknown command"))
        || payload_refused(e)
}

/// Whether `e` is a `RESTORE` refused for its payload: a version or type
/// this server does not know.
fn payload_refused(e: &redis::RedisError) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    e.code() == Some("ERR")
        && (text.contains("payload")
            || text.contains("checksum")
            || text.contains("bad data format"))
}
