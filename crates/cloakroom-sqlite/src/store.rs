//! The [`Store`] contract on SQLite: reads on a few reader connections,
//! every write in one `BEGIN IMMEDIATE` transaction on the writer, all of
//! it on Tokio's blocking threads.

use crate::config::SqliteConfig;
use crate::schema;
use cloakroom::inventory::{CLIENT_NAME, USER_NAME, user_json};
use cloakroom::store::add_to;
use cloakroom::{
    Admission, Applied, Change, Clock, Error, Expiry, OnMaxSessions, Patch, Record, Result,
    SessionCap, SessionId, SessionInfo, Store, SystemClock, Timestamp,
};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, Weak};
use std::time::Duration;

/// Sessions in one SQLite file, in the table `cloakroom_sessions`: durable
/// sessions for a single binary, with no server to run.
///
/// - A read is one `SELECT` on a reader connection (and an `UPDATE` of the
///   idle deadline on the writer when
///   [`Expiry::refresh_due`](cloakroom::Expiry::refresh_due) says so); a
///   write (create, change, rename, touch) is one `BEGIN IMMEDIATE` transaction on the
///   writer connection, which reads the row, applies the patch and writes
///   it back under SQLite's write lock, so concurrent writers of different
///   names all keep their names, in this process and in others sharing the
///   file.
/// - Idle and absolute deadlines are checked in every statement: an
///   expired row is never returned, and a background task deletes expired
///   rows in bounded batches ([`SqliteConfig::cleanup_interval`]).
/// - The database runs in WAL mode with `synchronous = NORMAL`: a commit
///   survives the process crashing; a power loss may lose the last few.
/// - Calls run on Tokio's blocking threads, so they never stall the
///   runtime.
///
/// Clones share the connections.
///
/// ```
/// use cloakroom::{KeyRing, SessionManager};
/// use cloakroom_sqlite::{SqliteConfig, SqliteStore};
/// # let dir = std::env::temp_dir().join(format!("cloakroom-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// let store = SqliteStore::open(SqliteConfig::new(dir.join("sessions.db")))?;
/// let manager = SessionManager::builder(store, KeyRing::new(["a secret of at least 32 bytes....."])?)
///     .build()?;
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), cloakroom::Error>(())
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("readers", &self.inner.readers.len())
            .finish()
    }
}

struct Inner {
    path: std::path::PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    busy_timeout: Duration,
    cleanup: Option<(Duration, u32)>,
    cleanup_started: Once,
}

/// A session row as the store reads it.
struct Row {
    data: String,
    notes: String,
    created: i64,
    deadline: i64,
}

const LIVE_ROW: &str = "SELECT data, notes, created, deadline FROM cloakroom_sessions \
                        WHERE id = ?1 AND expires_at > ?2 AND deadline > ?2";

impl SqliteStore {
    /// Opens (or creates) the database and brings its schema to
    /// [`SCHEMA_VERSION`](crate::SCHEMA_VERSION). It blocks while it does:
    /// call it at start-up.
    pub fn open(config: SqliteConfig) -> Result<SqliteStore> {
        let busy = config.busy_timeout;
        let mut writer = connect(&config, busy)?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite_error)?;
        schema::migrate(&mut writer)?;
        let readers = (0..config.readers)
            .map(|_| connect(&config, busy).map(Mutex::new))
            .collect::<Result<Vec<_>>>()?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: config.path.clone(),
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
                busy_timeout: busy,
                cleanup: config
                    .cleanup_interval
                    .map(|every| (every, config.cleanup_batch)),
                cleanup_started: Once::new(),
            }),
        })
    }

    /// Deletes expired rows now, in batches of at most `batch` (each its
    /// own short transaction), and returns how many. The background task
    /// calls this.
    pub async fn delete_expired(&self, batch: u32) -> Result<u64> {
        let now = ms(SystemClock.now());
        let limit = i64::from(batch.max(1));
        let mut total = 0;
        loop {
            let deleted = self
                .write(move |conn| {
                    conn.execute(
                        "DELETE FROM cloakroom_sessions WHERE id IN \
                         (SELECT id FROM cloakroom_sessions WHERE expires_at <= ?1 LIMIT ?2)",
                        params![now, limit],
                    )
                    .map_err(sqlite_error)
                })
                .await?;
            total += deleted as u64;
            if (deleted as i64) < limit {
                return Ok(total);
            }
        }
    }

    /// Runs `f` with the writer connection on a blocking thread.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.start_cleanup();
        let inner = self.inner.clone();
        let busy = self.inner.busy_timeout;
        blocking(busy, move || f(&mut lock(&inner.writer))).await
    }

    /// Runs `f` with a reader connection on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.start_cleanup();
        let inner = self.inner.clone();
        let busy = self.inner.busy_timeout;
        blocking(busy, move || {
            let i = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            f(&lock(&inner.readers[i]))
        })
        .await
    }

    /// Starts the expired-row sweeper on first use (a runtime is there
    /// then), holding only a weak reference: it stops when the last clone
    /// of the store is dropped.
    fn start_cleanup(&self) {
        let Some((every, batch)) = self.inner.cleanup else {
            return;
        };
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        self.inner.cleanup_started.call_once(|| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else {
                        return;
                    };
                    let store = SqliteStore { inner };
                    match store.delete_expired(batch).await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(deleted = n, "expired sessions deleted"),
                        Err(e) => tracing::warn!(error = %e, "deleting expired sessions failed"),
                    }
                }
            });
        });
    }
}

fn connect(config: &SqliteConfig, busy: Duration) -> Result<Connection> {
    let conn = Connection::open(&config.path).map_err(|e| {
        Error::Config(format!(
            "cannot open the SQLite database {}: {e}",
            config.path.display()
        ))
    })?;
    // SQLite counts the wait in milliseconds in a C `int`.
    let most = Duration::from_millis(i32::MAX.unsigned_abs().into());
    conn.busy_timeout(busy.min(most)).map_err(sqlite_error)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sqlite_error)?;
    Ok(conn)
}

async fn blocking<T: Send + 'static>(
    busy: Duration,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Err(Error::Unavailable(e)))
            if matches!(
                e.downcast_ref::<rusqlite::Error>()
                    .and_then(rusqlite::Error::sqlite_error_code),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ) =>
        {
            Err(Error::Timeout(busy))
        }
        Ok(result) => result,
        Err(e) => Err(Error::unavailable(e)),
    }
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while the lock was held dropped its transaction, which
    // rolled back: the connection is still consistent.
    conn.lock().unwrap_or_else(|e| e.into_inner())
}

/// Any SQLite failure, as the store's error.
pub(crate) fn sqlite_error(e: rusqlite::Error) -> Error {
    Error::unavailable(e)
}

fn ms(t: Timestamp) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

fn timestamp(v: i64) -> Timestamp {
    Timestamp(u64::try_from(v).unwrap_or(0))
}

fn id_of(bytes: &[u8]) -> Result<SessionId> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| Error::Corrupt(format!("a session id of {} bytes", bytes.len())))?;
    Ok(SessionId::from(array))
}

fn parse_map(json: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(json)
        .map_err(|e| Error::Corrupt(format!("a session row is not a map of JSON texts: {e}")))
}

fn encode_map(map: &BTreeMap<String, String>) -> Result<String> {
    serde_json::to_string(map).map_err(|e| Error::Corrupt(format!("encoding a session: {e}")))
}

fn begin(conn: &mut Connection) -> Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)
}

fn live_row(tx: &Connection, id: &[u8], now: i64) -> Result<Option<Row>> {
    tx.prepare_cached(LIVE_ROW)
        .and_then(|mut stmt| {
            stmt.query_row(params![id, now], |r| {
                Ok(Row {
                    data: r.get(0)?,
                    notes: r.get(1)?,
                    created: r.get(2)?,
                    deadline: r.get(3)?,
                })
            })
            .optional()
        })
        .map_err(sqlite_error)
}

/// Whether a row is under `id`, after deleting it if it has expired.
fn taken(tx: &Connection, id: &[u8], now: i64) -> Result<bool> {
    tx.execute(
        "DELETE FROM cloakroom_sessions WHERE id = ?1 AND expires_at <= ?2",
        params![id, now],
    )
    .map_err(sqlite_error)?;
    tx.query_row(
        "SELECT 1 FROM cloakroom_sessions WHERE id = ?1",
        params![id],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
    .map_err(sqlite_error)
}

fn apply_patch(conn: &mut Connection, id: SessionId, patch: &Patch, e: Expiry) -> Result<Applied> {
    let now = ms(e.now);
    let tx = begin(conn)?;
    let key = id.as_bytes().as_slice();
    if let Some(to) = patch.renames_to()
        && taken(&tx, to.as_bytes(), now)?
    {
        return Ok(Applied::Gone);
    }
    let (mut values, mut notes, created, mut deadline) = if patch.creates() {
        if taken(&tx, key, now)? {
            return Ok(Applied::Gone);
        }
        (BTreeMap::new(), BTreeMap::new(), now, ms(e.new_deadline()))
    } else {
        let Some(row) = live_row(&tx, key, now)? else {
            return Ok(Applied::Gone);
        };
        let values = if patch.clears() {
            BTreeMap::new()
        } else {
            parse_map(&row.data)?
        };
        (values, parse_map(&row.notes)?, row.created, row.deadline)
    };
    for (name, change) in patch.changes() {
        match change {
            Change::Set(json) => values.insert(name.to_owned(), json.to_owned()),
            Change::Remove => values.remove(name),
        };
    }
    if let Some(limits) = patch.size_limits()
        && patch.changes().any(|(_, c)| c != Change::Remove)
    {
        limits.check(values.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    }
    for (name, json) in patch.notifications() {
        notes.insert(name.to_owned(), json.to_owned());
    }
    if patch.ends_if_empty() && values.is_empty() && notes.is_empty() {
        if !patch.creates() {
            tx.execute("DELETE FROM cloakroom_sessions WHERE id = ?1", params![key])
                .map_err(sqlite_error)?;
        }
        tx.commit().map_err(sqlite_error)?;
        return Ok(Applied::Ended);
    }
    if patch.restarts_lifetime() && !patch.creates() {
        deadline = ms(e.new_deadline());
    }
    let expires_at = ms(e.expires_at(timestamp(deadline)));
    let target = patch.renames_to().unwrap_or(&id).as_bytes().as_slice();
    let user = values.get(USER_NAME).cloned();
    let (data, notes) = (encode_map(&values)?, encode_map(&notes)?);
    if patch.creates() {
        tx.prepare_cached(
            "INSERT INTO cloakroom_sessions \
             (id, data, notes, created, deadline, expires_at, user_json) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut s| {
            s.execute(params![
                target, data, notes, created, deadline, expires_at, user
            ])
        })
        .map_err(sqlite_error)?;
    } else {
        tx.prepare_cached(
            "UPDATE cloakroom_sessions SET id = ?2, data = ?3, notes = ?4, deadline = ?5, \
             expires_at = ?6, user_json = ?7 WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                key, target, data, notes, deadline, expires_at, user
            ])
        })
        .map_err(sqlite_error)?;
    }
    tx.commit().map_err(sqlite_error)?;
    Ok(Applied::Done)
}

impl Store for SqliteStore {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn load(&self, id: &SessionId, expiry: &Expiry) -> Result<Option<Record>> {
        let (id, e) = (*id, *expiry);
        let row = self
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT data, created, deadline, expires_at FROM cloakroom_sessions \
                     WHERE id = ?1 AND expires_at > ?2 AND deadline > ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(params![id.as_bytes().as_slice(), ms(e.now)], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    })
                    .optional()
                })
                .map_err(sqlite_error)
            })
            .await?;
        let Some((data, created, deadline, expires_at)) = row else {
            return Ok(None);
        };
        let record = Record {
            values: parse_map(&data)?,
            created: timestamp(created),
            deadline: timestamp(deadline),
        };
        if expiry.refresh_due(timestamp(expires_at), record.deadline) {
            let to = ms(expiry.expires_at(record.deadline));
            self.write(move |conn| {
                conn.execute(
                    "UPDATE cloakroom_sessions SET expires_at = ?3 \
                     WHERE id = ?1 AND expires_at > ?2 AND expires_at < ?3",
                    params![id.as_bytes().as_slice(), ms(e.now), to],
                )
                .map_err(sqlite_error)
            })
            .await?;
        }
        Ok(Some(record))
    }

    async fn apply(&self, id: &SessionId, patch: &Patch, expiry: &Expiry) -> Result<Applied> {
        let (id, patch, e) = (*id, patch.clone(), *expiry);
        self.write(move |conn| apply_patch(conn, id, &patch, e))
            .await
    }

    async fn take_notification(
        &self,
        id: &SessionId,
        name: &str,
        expiry: &Expiry,
    ) -> Result<Option<String>> {
        let (id, name, now) = (*id, name.to_owned(), ms(expiry.now));
        self.write(move |conn| {
            let tx = begin(conn)?;
            let key = id.as_bytes().as_slice();
            let Some(row) = live_row(&tx, key, now)? else {
                return Ok(None);
            };
            let mut notes = parse_map(&row.notes)?;
            let Some(taken) = notes.remove(&name) else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE cloakroom_sessions SET notes = ?2 WHERE id = ?1",
                params![key, encode_map(&notes)?],
            )
            .map_err(sqlite_error)?;
            tx.commit().map_err(sqlite_error)?;
            Ok(Some(taken))
        })
        .await
    }

    async fn increment(
        &self,
        id: &SessionId,
        name: &str,
        by: i64,
        expiry: &Expiry,
    ) -> Result<Option<i64>> {
        let (id, name, e) = (*id, name.to_owned(), *expiry);
        self.write(move |conn| {
            let tx = begin(conn)?;
            let key = id.as_bytes().as_slice();
            let Some(row) = live_row(&tx, key, ms(e.now))? else {
                return Ok(None);
            };
            let mut values = parse_map(&row.data)?;
            let value = add_to(values.get(&name).map(String::as_str), &name, by)?;
            values.insert(name, value.to_string());
            let expires_at = ms(e.expires_at(timestamp(row.deadline)));
            tx.execute(
                "UPDATE cloakroom_sessions SET data = ?2, expires_at = ?3 WHERE id = ?1",
                params![key, encode_map(&values)?, expires_at],
            )
            .map_err(sqlite_error)?;
            tx.commit().map_err(sqlite_error)?;
            Ok(Some(value))
        })
        .await
    }

    async fn delete(&self, id: &SessionId) -> Result<()> {
        let id = *id;
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM cloakroom_sessions WHERE id = ?1",
                params![id.as_bytes().as_slice()],
            )
            .map(drop)
            .map_err(sqlite_error)
        })
        .await
    }

    async fn admit(
        &self,
        user: &str,
        id: &SessionId,
        cap: Option<SessionCap>,
        expiry: &Expiry,
        check_only: bool,
    ) -> Result<Admission> {
        let (user, id, now) = (user.to_owned(), *id, ms(expiry.now));
        self.write(move |conn| {
            // The write lock serializes admissions: the cap holds.
            let tx = begin(conn)?;
            let live = tx
                .prepare_cached(
                    "SELECT id FROM cloakroom_sessions WHERE user_key = ?1 AND user_json = ?2 \
                     AND expires_at > ?3 AND deadline > ?3 ORDER BY expires_at, id",
                )
                .and_then(|mut stmt| {
                    stmt.query_map(params![user, user_json(&user), now], |r| {
                        r.get::<_, Vec<u8>>(0)
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(sqlite_error)?;
            let key = id.as_bytes().as_slice();
            if live.iter().any(|member| member.as_slice() == key) {
                return Ok(Admission::Admitted { ended: Vec::new() });
            }
            let mut ended = Vec::new();
            if let Some(cap) = cap
                && live.len() >= cap.max
            {
                if cap.on_max == OnMaxSessions::Refuse {
                    return Ok(Admission::Refused);
                }
                if check_only {
                    return Ok(Admission::Admitted { ended });
                }
                for victim in &live[..live.len() + 1 - cap.max] {
                    tx.execute(
                        "DELETE FROM cloakroom_sessions WHERE id = ?1",
                        params![victim],
                    )
                    .map_err(sqlite_error)?;
                    ended.push(id_of(victim)?);
                }
            }
            if !check_only {
                tx.execute(
                    "UPDATE cloakroom_sessions SET user_key = ?2 WHERE id = ?1",
                    params![key, user],
                )
                .map_err(sqlite_error)?;
            }
            tx.commit().map_err(sqlite_error)?;
            Ok(Admission::Admitted { ended })
        })
        .await
    }

    async fn sessions_of(&self, user: &str, expiry: &Expiry) -> Result<Vec<SessionInfo>> {
        let (user, now, idle) = (user.to_owned(), ms(expiry.now), expiry.idle);
        let rows = self
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT id, created, expires_at, deadline, data FROM cloakroom_sessions \
                     WHERE user_key = ?1 AND user_json = ?2 AND expires_at > ?3 AND deadline > ?3 \
                     ORDER BY created, id",
                )
                .and_then(|mut stmt| {
                    stmt.query_map(params![user, user_json(&user), now], |r| {
                        Ok((
                            r.get::<_, Vec<u8>>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, String>(4)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(sqlite_error)
            })
            .await?;
        rows.iter()
            .map(|(id, created, expires_at, deadline, data)| {
                let values = parse_map(data)?;
                Ok(SessionInfo::from_parts(
                    id_of(id)?,
                    timestamp(*created),
                    timestamp(*expires_at),
                    timestamp(*deadline),
                    idle,
                    values.get(CLIENT_NAME).map(String::as_str),
                ))
            })
            .collect()
    }

    async fn end_sessions_of(
        &self,
        user: &str,
        except: Option<&SessionId>,
        expiry: &Expiry,
    ) -> Result<usize> {
        let (user, except, now) = (user.to_owned(), except.copied(), ms(expiry.now));
        self.write(move |conn| {
            let tx = begin(conn)?;
            let except = except.map(|id| id.as_bytes().to_vec()).unwrap_or_default();
            let bound = user_json(&user);
            let live: i64 = tx
                .query_row(
                    "SELECT count(*) FROM cloakroom_sessions WHERE user_key = ?1 \
                     AND user_json = ?2 AND id <> ?3 AND expires_at > ?4 AND deadline > ?4",
                    params![user, bound, except, now],
                    |r| r.get(0),
                )
                .map_err(sqlite_error)?;
            tx.execute(
                "DELETE FROM cloakroom_sessions WHERE user_key = ?1 AND user_json = ?2 \
                 AND id <> ?3",
                params![user, bound, except],
            )
            .map_err(sqlite_error)?;
            tx.commit().map_err(sqlite_error)?;
            Ok(usize::try_from(live).unwrap_or(0))
        })
        .await
    }

    async fn end_all(&self, expiry: &Expiry) -> Result<usize> {
        let now = ms(expiry.now);
        self.write(move |conn| {
            let tx = begin(conn)?;
            let live: i64 = tx
                .query_row(
                    "SELECT count(*) FROM cloakroom_sessions \
                     WHERE expires_at > ?1 AND deadline > ?1",
                    params![now],
                    |r| r.get(0),
                )
                .map_err(sqlite_error)?;
            tx.execute("DELETE FROM cloakroom_sessions", [])
                .map_err(sqlite_error)?;
            tx.commit().map_err(sqlite_error)?;
            Ok(usize::try_from(live).unwrap_or(0))
        })
        .await
    }

    async fn count(&self, expiry: &Expiry) -> Result<usize> {
        let now = ms(expiry.now);
        self.read(move |conn| {
            conn.query_row(
                "SELECT count(*) FROM cloakroom_sessions WHERE expires_at > ?1 AND deadline > ?1",
                params![now],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| usize::try_from(n).unwrap_or(0))
            .map_err(sqlite_error)
        })
        .await
    }
}
