//! The user index on Memcached: one item per user, `PREFIX:u:HASH` (the
//! first 128 bits of SHA-256 of the user id, in hex, since a user id may
//! hold spaces and run past memcached's key length), holding the ids of
//! the user's sessions with an upper bound of each one's absolute
//! deadline, updated by compare-and-swap.
//!
//! Every admission reads the user's sessions to tell live from dead (one
//! `get` each): fine for the handful of sessions a user has. Memcached
//! cannot list its keys, so ending every session and counting them are
//! not possible here and say so.

use crate::item::{Item, exptime};
use crate::pool::Conn;
use crate::{Attempt, MemcachedStore};
use cloakroom::inventory::{CLIENT_NAME, USER_NAME, user_json};
use cloakroom::{
    Admission, Error, Expiry, OnMaxSessions, Result, SessionCap, SessionId, SessionInfo, Timestamp,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the index item holds: `[id, deadline bound (ms)]` pairs.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    s: Vec<(String, u64)>,
}

impl Index {
    fn decode(bytes: &[u8]) -> Result<Index> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::Corrupt(format!("a user index item is not valid: {e}")))
    }

    fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self)
            .map_err(|e| Error::Corrupt(format!("a user index item could not be encoded: {e}")))
    }

    /// When memcached may drop the item: after the last deadline.
    fn last_deadline(&self) -> Timestamp {
        Timestamp(self.s.iter().map(|(_, d)| *d).max().unwrap_or(0))
    }
}

/// A live session of the user, as its item says.
struct Live {
    id: String,
    item: Item,
}

/// What [`MemcachedStore::admit_to_index`] was asked, for each attempt.
#[derive(Clone, Copy)]
struct Admit<'a> {
    user: &'a str,
    id: &'a SessionId,
    cap: Option<SessionCap>,
    expiry: &'a Expiry,
    check_only: bool,
}

impl MemcachedStore {
    fn index_key(&self, user: &str) -> String {
        let digest = Sha256::digest(user.as_bytes());
        let mut key = format!("{}:u:", self.prefix);
        for byte in &digest[..16] {
            key.push_str(&format!("{byte:02x}"));
        }
        key
    }

    /// The index item and its CAS token, pruned of ids past their bound.
    async fn read_index(
        &self,
        conn: &mut Conn<'_>,
        key: &str,
        expiry: &Expiry,
    ) -> Result<(Index, Option<u64>)> {
        let (mut index, cas) = match conn.get_with_cas(key).await? {
            Some((bytes, cas)) => (Index::decode(&bytes)?, Some(cas)),
            None => (Index::default(), None),
        };
        index.s.retain(|(_, deadline)| expiry.now.0 < *deadline);
        Ok((index, cas))
    }

    /// The index's sessions that are alive and still bound to `user`.
    async fn live_members(
        &self,
        conn: &mut Conn<'_>,
        user: &str,
        index: &Index,
        expiry: &Expiry,
    ) -> Result<Vec<Live>> {
        let bound = user_json(user);
        let mut live = Vec::new();
        for (id, _) in &index.s {
            let Some(session) = SessionId::decode(id) else {
                continue;
            };
            let Some((bytes, _)) = conn.get_with_cas(&self.key(&session)).await? else {
                continue;
            };
            let item = Item::decode(&bytes)?;
            if item.live(expiry.now) && item.value(USER_NAME) == Some(bound.as_str()) {
                live.push(Live {
                    id: id.clone(),
                    item,
                });
            }
        }
        Ok(live)
    }

    /// Writes the index back if nobody changed it since it was read.
    async fn write_index(
        &self,
        conn: &mut Conn<'_>,
        key: &str,
        index: &Index,
        cas: Option<u64>,
        expiry: &Expiry,
    ) -> Result<bool> {
        if index.s.is_empty() {
            return match cas {
                Some(cas) => conn.delete_if(key, cas).await,
                None => Ok(true),
            };
        }
        let ttl = exptime(expiry.now, index.last_deadline());
        let bytes = index.encode()?;
        match cas {
            Some(cas) => conn.replace_if(key, &bytes, cas, ttl).await,
            None => conn.add(key, &bytes, ttl).await,
        }
    }

    async fn admit_once(
        &self,
        conn: &mut Conn<'_>,
        admit: &Admit<'_>,
        evicted: &mut Vec<SessionId>,
    ) -> Result<Attempt<Admission>> {
        let Admit {
            user,
            id,
            cap,
            expiry,
            check_only,
        } = *admit;
        let key = self.index_key(user);
        let own = id.encode();
        let (index, cas) = self.read_index(conn, &key, expiry).await?;
        let mut live = self.live_members(conn, user, &index, expiry).await?;
        let present = live.iter().any(|l| l.id == own);
        let mut ended = Vec::new();
        if !present
            && let Some(cap) = cap
            && live.len() >= cap.max
        {
            if cap.on_max == OnMaxSessions::Refuse {
                return Ok(Attempt::Done(Admission::Refused));
            }
            if !check_only {
                // The nearest idle deadline is the least recently used.
                live.sort_by_key(|l| l.item.expires_at());
                ended = live.drain(..live.len() + 1 - cap.max).collect();
            }
        }
        if check_only {
            return Ok(Attempt::Done(Admission::Admitted { ended: Vec::new() }));
        }
        let bound = expiry.now.plus(expiry.absolute).0;
        let mut next = Index {
            s: live
                .iter()
                .map(|l| (l.id.clone(), l.item.deadline().0))
                .collect(),
        };
        if !present {
            next.s.push((own, bound));
        }
        // The evicted sessions end before the index forgets them: if a
        // step fails, a dead id is left in the index (pruned later), never
        // a live session outside it, where "sign out everywhere" would
        // miss it.
        for victim in ended {
            if let Some(session) = SessionId::decode(&victim.id) {
                conn.delete(&self.key(&session)).await?;
                evicted.push(session);
            }
        }
        if !self.write_index(conn, &key, &next, cas, expiry).await? {
            return Ok(Attempt::Retry);
        }
        Ok(Attempt::Done(Admission::Admitted {
            ended: std::mem::take(evicted),
        }))
    }

    pub(crate) async fn admit_to_index(
        &self,
        user: &str,
        id: &SessionId,
        cap: Option<SessionCap>,
        expiry: &Expiry,
        check_only: bool,
    ) -> Result<Admission> {
        let mut attempts = self.attempts();
        // Sessions ended by attempts that then lost the race for the
        // index: ended all the same, and reported with the last attempt's.
        let mut evicted = Vec::new();
        let admit = Admit {
            user,
            id,
            cap,
            expiry,
            check_only,
        };
        loop {
            attempts.next().await?;
            let once = self.bounded(async {
                let mut conn = self.pool.get().await?;
                self.admit_once(&mut conn, &admit, &mut evicted).await
            });
            if let Attempt::Done(admission) = once.await? {
                return Ok(admission);
            }
        }
    }

    pub(crate) async fn index_sessions(
        &self,
        user: &str,
        expiry: &Expiry,
    ) -> Result<Vec<SessionInfo>> {
        self.bounded(async {
            let mut conn = self.pool.get().await?;
            let key = self.index_key(user);
            let (index, cas) = self.read_index(&mut conn, &key, expiry).await?;
            let live = self.live_members(&mut conn, user, &index, expiry).await?;
            if live.len() < index.s.len() {
                // Prune the dead; a lost race only leaves them for later.
                let pruned = Index {
                    s: live
                        .iter()
                        .map(|l| (l.id.clone(), l.item.deadline().0))
                        .collect(),
                };
                self.write_index(&mut conn, &key, &pruned, cas, expiry)
                    .await?;
            }
            let mut infos: Vec<SessionInfo> = live
                .iter()
                .filter_map(|l| {
                    Some(SessionInfo::from_parts(
                        SessionId::decode(&l.id)?,
                        l.item.created(),
                        l.item.expires_at(),
                        l.item.deadline(),
                        expiry.idle,
                        l.item.value(CLIENT_NAME),
                    ))
                })
                .collect();
            infos.sort_by_key(|i| i.created);
            Ok(infos)
        })
        .await
    }

    pub(crate) async fn end_index_sessions(
        &self,
        user: &str,
        except: Option<&SessionId>,
        expiry: &Expiry,
    ) -> Result<usize> {
        self.bounded(async {
            let mut conn = self.pool.get().await?;
            let key = self.index_key(user);
            let (index, _) = self.read_index(&mut conn, &key, expiry).await?;
            let live = self.live_members(&mut conn, user, &index, expiry).await?;
            let keep = except.map(SessionId::encode);
            let mut ended = 0;
            for l in &live {
                if Some(&l.id) == keep.as_ref() {
                    continue;
                }
                if let Some(session) = SessionId::decode(&l.id) {
                    conn.delete(&self.key(&session)).await?;
                    ended += 1;
                }
            }
            // Ended sessions are dead: the next read of the index prunes
            // them, so a lost race here needs no retry.
            Ok(ended)
        })
        .await
    }
}
