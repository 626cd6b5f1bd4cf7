//! The [`Store`] contract on PostgreSQL: every operation is one statement,
//! most of them a call to one of the schema's functions, so a write is one
//! round trip and atomic under the row's lock.

use crate::config::PostgresConfig;
use crate::error::{PgError, pg_error, refused_for_good};
use crate::schema;
use cloakroom::inventory::{CLIENT_NAME, USER_NAME, user_json};
use cloakroom::store::RuntimeThread;
use cloakroom::{
    Admission, Applied, Change, Clock, Error, Expiry, OnMaxSessions, Patch, Record, Result,
    SessionCap, SessionId, SessionInfo, Store, Timestamp,
};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

/// Sessions in PostgreSQL: one row per session in `SCHEMA.sessions`.
///
/// - A read is one `SELECT` (and an `UPDATE` of the idle deadline when
///   [`Expiry::refresh_due`](cloakroom::Expiry::refresh_due) says so); a
///   change (or touch) of an existing session is one `UPDATE` that
///   merges the changed names into the row as it is when the row lock is
///   granted, and a create, rename or end is one call of
///   the schema's `apply` function, which locks the row: concurrent
///   writers of different names all keep their names.
/// - Idle and absolute deadlines are checked in every statement: an
///   expired row is never returned, and a background task deletes expired
///   rows in bounded batches ([`PostgresConfig::cleanup_interval`]).
/// - The per-user index is a column set at sign-in; the cap is enforced
///   under an advisory lock per user.
/// - The store creates and upgrades its schema on first use
///   ([`PostgresConfig::create_schema`]); a database that is down at start
///   is not fatal: calls fail with [`Error::Unavailable`] until it is up.
///
/// Clones share one connection pool.
///
/// ```no_run
/// use cloakroom::{KeyRing, SessionManager};
/// use cloakroom_postgres::{PostgresConfig, PostgresStore};
/// # async fn run() -> cloakroom::Result<()> {
/// let store = PostgresStore::connect(PostgresConfig::from_url("postgres://app@db/app")?).await?;
/// let manager = SessionManager::builder(store, KeyRing::new(["a secret of at least 32 bytes....."])?)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.inner.pool.status();
        let per_thread = self.inner.per_thread.iter().map(Pool::status);
        let (open, max) = per_thread.fold((0, 0), |(n, m), s| (n + s.size, m + s.max_size));
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .field("connections", &status.size)
            .field("max_connections", &status.max_size)
            .field("per_thread_connections", &open)
            .field("per_thread_max_connections", &max)
            .finish()
    }
}

struct Inner {
    /// Shared by the tasks of multi-thread runtimes.
    pool: Pool,
    /// One per thread of a current-thread runtime (threads past the end
    /// share, modulo). A connection's own task runs on the runtime that
    /// opened it, and a current-thread runtime (each actix-web worker
    /// runs one) runs it only when its thread is free: a call on another
    /// thread's connection would wait for that thread.
    per_thread: Box<[Pool]>,
    schema: String,
    timeout: Duration,
    create_schema: bool,
    cleanup: Option<(Duration, u32)>,
    ready: OnceCell<()>,
    sql: Sql,
}

/// The statements, with the configured schema in them.
struct Sql {
    load: String,
    refresh: String,
    change: String,
    apply: String,
    take: String,
    increment: String,
    delete: String,
    admit: String,
    sessions_of: String,
    end_sessions_of: String,
    end_all: String,
    count: String,
    delete_expired: String,
}

impl Sql {
    fn new(s: &str) -> Sql {
        Sql {
            load: format!(
                "SELECT data::text, created, deadline, expires_at FROM {s}.sessions \
                 WHERE id = $1 AND expires_at > $2 AND deadline > $2"
            ),
            refresh: format!(
                "UPDATE {s}.sessions SET expires_at = $3 \
                 WHERE id = $1 AND expires_at > $2 AND expires_at < $3"
            ),
            // The common write, to an existing session, as one plain
            // UPDATE: under READ COMMITTED a waiting UPDATE re-reads the
            // row once the holder commits and computes its SET from that
            // version, so changes to different names compose. It matches
            // no row when the session is gone or the patch would pass the
            // limits; `apply` then says which.
            change: format!(
                "UPDATE {s}.sessions SET \
                 data = (CASE WHEN $3 THEN '{{}}'::jsonb ELSE data END - $4::text[]) \
                        || ($5::text)::jsonb, \
                 notes = notes || ($6::text)::jsonb, \
                 deadline = CASE WHEN $7 THEN $2 + $9 ELSE deadline END, \
                 expires_at = least($2 + $8, CASE WHEN $7 THEN $2 + $9 ELSE deadline END) \
                 WHERE id = $1 AND expires_at > $2 AND deadline > $2 \
                 AND ($10::bigint IS NULL OR $5::text = '{{}}' OR ( \
                     SELECT count(*) <= $10 \
                        AND coalesce(sum(octet_length(key) + octet_length(value)), 0) <= $11 \
                     FROM jsonb_each_text((CASE WHEN $3 THEN '{{}}'::jsonb ELSE data END \
                                           - $4::text[]) || ($5::text)::jsonb)))"
            ),
            apply: format!(
                "SELECT outcome, names, bytes FROM {s}.apply($1, $2, $3, $4, $5, $6, \
                 ($7::text)::jsonb, $8, ($9::text)::jsonb, $10, $11, $12, $13, $14)"
            ),
            take: format!("SELECT {s}.take_notification($1, $2, $3)"),
            increment: format!(
                "SELECT live, value, not_integer FROM {s}.increment($1, $2, $3, $4, $5)"
            ),
            delete: format!("DELETE FROM {s}.sessions WHERE id = $1"),
            admit: format!("SELECT refused, ended FROM {s}.admit($1, $2, $3, $4, $5, $6, $7, $8)"),
            sessions_of: format!(
                "SELECT id, created, expires_at, deadline, data ->> $3 FROM {s}.sessions \
                 WHERE user_key = $1 AND data ->> $4 = $2 AND expires_at > $5 AND deadline > $5 \
                 ORDER BY created, id"
            ),
            end_sessions_of: format!(
                "WITH ended AS (DELETE FROM {s}.sessions \
                 WHERE user_key = $1 AND data ->> $3 = $2 AND id <> $4 RETURNING expires_at) \
                 SELECT count(*) FILTER (WHERE expires_at > $5) FROM ended"
            ),
            end_all: format!(
                "WITH ended AS (DELETE FROM {s}.sessions RETURNING expires_at) \
                 SELECT count(*) FILTER (WHERE expires_at > $1) FROM ended"
            ),
            count: format!("SELECT count(*) FROM {s}.sessions WHERE expires_at > $1"),
            delete_expired: format!(
                "DELETE FROM {s}.sessions WHERE id IN (SELECT id FROM {s}.sessions \
                 WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
        }
    }
}

impl PostgresStore {
    /// A store over `config`'s database, connecting when first used.
    /// Needs a Tokio runtime only once it is used.
    pub fn new(config: PostgresConfig) -> Result<PostgresStore> {
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let connector = connector(&config)?;
        // Plain TCP's connector is `Copy`, the TLS one only `Clone`.
        #[allow(clippy::clone_on_copy)]
        let pool_of = |size: usize| {
            let manager =
                Manager::from_config(config.pg.clone(), connector.clone(), manager_config.clone());
            Pool::builder(manager)
                .max_size(size)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(config.timeout))
                .create_timeout(Some(config.timeout))
                .build()
                .map_err(|e| Error::Config(format!("postgres pool: {e}")))
        };
        let pool = pool_of(config.pool_size)?;
        // Each sized for actix-web's default of one worker per CPU (half
        // the slots); none connects before it is used. At least two each,
        // so one slow statement does not hold up every other request of
        // the worker.
        let slots = RuntimeThread::slots();
        let per_thread = (0..slots)
            .map(|_| pool_of(per_thread_size(config.pool_size, slots / 2)))
            .collect::<Result<_>>()?;
        let sql = Sql::new(&schema::quoted(&config.schema));
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                per_thread,
                timeout: config.timeout,
                create_schema: config.create_schema,
                cleanup: config.cleanup_interval.map(|d| (d, config.cleanup_batch)),
                ready: OnceCell::new(),
                schema: config.schema,
                sql,
            }),
        })
    }

    /// A store that has connected and has its schema ready: errors here
    /// (an unreachable database, a schema too new) are the caller's to see
    /// at start-up.
    pub async fn connect(config: PostgresConfig) -> Result<PostgresStore> {
        let store = PostgresStore::new(config)?;
        store.ping().await?;
        Ok(store)
    }

    /// Connects, and makes the schema ready if it is not yet: a health
    /// check, and a way to see start-up errors early. A refusal that only
    /// the operator can mend (wrong credentials, a database that does not
    /// exist, no right to create the schema) is [`Error::Config`], with
    /// PostgreSQL's reason; an unreachable server is
    /// [`Error::Unavailable`]. (The same refusal during a session call is
    /// an outage, answered with `503`.)
    pub async fn ping(&self) -> Result<()> {
        self.run(async { self.conn().await.map(drop) })
            .await
            .map_err(refused_for_good)
    }

    /// The schema the store uses.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// Deletes expired rows now, in batches of at most `batch`, and
    /// returns how many. The background task calls this.
    pub async fn delete_expired(&self, batch: u32) -> Result<u64> {
        let now = ms(cloakroom::SystemClock.now());
        let limit = i64::from(batch.max(1));
        let mut total = 0;
        loop {
            let deleted = self
                .run(async {
                    let conn = self.conn().await?;
                    let stmt = prepare(&conn, &self.inner.sql.delete_expired).await?;
                    conn.execute(&stmt, &[&now, &limit]).await.map_err(pg_error)
                })
                .await?;
            total += deleted;
            if deleted < limit.unsigned_abs() {
                return Ok(total);
            }
            // Let other work in between batches.
            tokio::task::yield_now().await;
        }
    }

    /// A pooled connection, the schema made ready first on first use.
    async fn conn(&self) -> Result<Object> {
        // A thread that replaces an exited one may find its connections in
        // the pool: their tasks died with that thread's runtime, so they
        // are closed, and deadpool's recycling drops them.
        let pool = match cloakroom::store::current_thread_runtime() {
            Some(thread) => &self.inner.per_thread[thread.index() % self.inner.per_thread.len()],
            None => &self.inner.pool,
        };
        let mut conn = pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Timeout(_) => Error::Timeout(self.inner.timeout),
            deadpool_postgres::PoolError::Backend(e) => pg_error(e),
            other => Error::unavailable(other),
        })?;
        if !self.inner.ready.initialized() {
            let inner = &self.inner;
            inner
                .ready
                .get_or_try_init(|| async {
                    schema::migrate(&mut conn, &inner.schema, inner.create_schema).await?;
                    // Inside the cell's init: one sweeper, however many
                    // first calls waited for the schema together.
                    self.start_cleanup();
                    Ok::<_, Error>(())
                })
                .await?;
        }
        Ok(conn)
    }

    /// Runs `f` within the store's timeout.
    async fn run<T>(&self, f: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout(self.inner.timeout, f)
            .await
            .map_err(|_| Error::Timeout(self.inner.timeout))?
    }

    async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<tokio_postgres::Row> {
        self.run(async {
            let conn = self.conn().await?;
            let stmt = prepare(&conn, sql).await?;
            conn.query_one(&stmt, params).await.map_err(pg_error)
        })
        .await
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        self.run(async {
            let conn = self.conn().await?;
            let stmt = prepare(&conn, sql).await?;
            conn.query(&stmt, params).await.map_err(pg_error)
        })
        .await
    }

    /// Starts the expired-row sweeper, once, holding only a weak reference:
    /// it stops when the last clone of the store is dropped.
    fn start_cleanup(&self) {
        let Some((every, batch)) = self.inner.cleanup else {
            return;
        };
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let store = PostgresStore { inner };
                match store.delete_expired(batch).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(deleted = n, "expired sessions deleted"),
                    Err(e) => tracing::warn!(error = %e, "deleting expired sessions failed"),
                }
            }
        });
    }
}

/// The size of each current-thread runtime thread's pool.
fn per_thread_size(pool_size: usize, cpus: usize) -> usize {
    (pool_size / cpus.max(1)).max(2)
}

/// Plain TCP: TLS needs the `tls` feature.
#[cfg(not(feature = "tls"))]
fn connector(config: &PostgresConfig) -> Result<tokio_postgres::NoTls> {
    if config.tls_ca.is_some()
        || config.pg.get_ssl_mode() == tokio_postgres::config::SslMode::Require
    {
        return Err(Error::Config(
            "TLS to PostgreSQL needs cloakroom-postgres's `tls` feature (for the cloakroom \
             binary, build it with --features tls)"
                .to_owned(),
        ));
    }
    Ok(tokio_postgres::NoTls)
}

/// rustls with ring, trusting the configured CA or the system's roots.
/// Whenever TLS is used (`sslmode=prefer`, the default, when the server
/// offers it; `require`), the server's certificate must check out.
#[cfg(feature = "tls")]
fn connector(config: &PostgresConfig) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &config.tls_ca {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| Error::Config(format!("postgres TLS CA: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| Error::Config(format!("postgres TLS CA: {e}")))?;
            }
            if roots.is_empty() {
                return Err(Error::Config(
                    "postgres TLS CA: no certificate in the PEM".to_owned(),
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("postgres TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
}

async fn prepare(conn: &Object, sql: &str) -> Result<tokio_postgres::Statement> {
    conn.prepare_cached(sql).await.map_err(pg_error)
}

fn ms(t: Timestamp) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

/// `d` in milliseconds, cut so that the SQL's `now + d` stays within a
/// `bigint`: a lifetime of `Duration::MAX` ("no absolute limit") is the
/// latest deadline there is, not an overflow on every create.
fn span(expiry: &Expiry, d: Duration) -> i64 {
    let d = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    d.min(i64::MAX - ms(expiry.now))
}

fn timestamp(row: &tokio_postgres::Row, i: usize) -> Result<Timestamp> {
    let v: i64 = row
        .try_get(i)
        .map_err(|e| Error::Corrupt(format!("a session row: {e}")))?;
    Ok(Timestamp(u64::try_from(v).unwrap_or(0)))
}

fn session_id(bytes: &[u8]) -> Result<SessionId> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| Error::Corrupt(format!("a session id of {} bytes", bytes.len())))?;
    Ok(SessionId::from(array))
}

/// A name → JSON text map as the jsonb text the schema stores.
fn json_object<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let map: serde_json::Map<String, serde_json::Value> = pairs
        .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v.to_owned())))
        .collect();
    serde_json::Value::Object(map).to_string()
}

impl Store for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn load(&self, id: &SessionId, expiry: &Expiry) -> Result<Option<Record>> {
        let now = ms(expiry.now);
        let rows = self
            .query(&self.inner.sql.load, &[&id.as_bytes().as_slice(), &now])
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let data: &str = row
            .try_get(0)
            .map_err(|e| Error::Corrupt(format!("a session row: {e}")))?;
        let values: BTreeMap<String, String> = serde_json::from_str(data).map_err(|e| {
            Error::Corrupt(format!("a session's data is not a map of JSON texts: {e}"))
        })?;
        let record = Record {
            values,
            created: timestamp(row, 1)?,
            deadline: timestamp(row, 2)?,
        };
        let expires_at = timestamp(row, 3)?;
        if expiry.refresh_due(expires_at, record.deadline) {
            let to = ms(expiry.expires_at(record.deadline));
            self.query(
                &self.inner.sql.refresh,
                &[&id.as_bytes().as_slice(), &now, &to],
            )
            .await?;
        }
        Ok(Some(record))
    }

    async fn apply(&self, id: &SessionId, patch: &Patch, expiry: &Expiry) -> Result<Applied> {
        let set = json_object(patch.changes().filter_map(|(k, c)| match c {
            Change::Set(json) => Some((k, json)),
            Change::Remove => None,
        }));
        let remove: Vec<&str> = patch
            .changes()
            .filter(|(_, c)| *c == Change::Remove)
            .map(|(k, _)| k)
            .collect();
        let notes = json_object(patch.notifications());
        let rename = patch.renames_to().map(|to| to.as_bytes().as_slice());
        let limits = patch.size_limits();
        let max_names = limits.map(|l| i64::try_from(l.max_names).unwrap_or(i64::MAX));
        let max_bytes = limits.map(|l| i64::try_from(l.max_bytes).unwrap_or(i64::MAX));
        let plain_change = !patch.creates() && rename.is_none() && !patch.ends_if_empty();
        if plain_change {
            let changed = self
                .run(async {
                    let conn = self.conn().await?;
                    let stmt = prepare(&conn, &self.inner.sql.change).await?;
                    conn.execute(
                        &stmt,
                        &[
                            &id.as_bytes().as_slice(),
                            &ms(expiry.now),
                            &patch.clears(),
                            &remove,
                            &set,
                            &notes,
                            &patch.restarts_lifetime(),
                            &span(expiry, expiry.idle),
                            &span(expiry, expiry.absolute),
                            &max_names,
                            &max_bytes,
                        ],
                    )
                    .await
                    .map_err(pg_error)
                })
                .await?;
            if changed == 1 {
                return Ok(Applied::Done);
            }
            // Gone, or over the limits: the function below tells which
            // (or applies the patch, if the session changed meanwhile).
        }
        let result = self
            .query_one(
                &self.inner.sql.apply,
                &[
                    &id.as_bytes().as_slice(),
                    &ms(expiry.now),
                    &span(expiry, expiry.idle),
                    &span(expiry, expiry.absolute),
                    &patch.creates(),
                    &patch.clears(),
                    &set,
                    &remove,
                    &notes,
                    &rename,
                    &patch.restarts_lifetime(),
                    &patch.ends_if_empty(),
                    &max_names,
                    &max_bytes,
                ],
            )
            .await;
        let row = match result {
            Ok(row) => row,
            // A rename raced with a create of the same id: nothing written.
            Err(Error::Unavailable(e))
                if e.downcast_ref::<PgError>().and_then(PgError::code)
                    == Some(&SqlState::UNIQUE_VIOLATION) =>
            {
                return Ok(Applied::Gone);
            }
            Err(e) => return Err(e),
        };
        let outcome: i16 = row
            .try_get(0)
            .map_err(|e| Error::Corrupt(format!("apply: {e}")))?;
        match outcome {
            0 => Ok(Applied::Done),
            1 => Ok(Applied::Gone),
            2 => Ok(Applied::Ended),
            3 => {
                let names: i64 = row.try_get(1).unwrap_or(0);
                let bytes: i64 = row.try_get(2).unwrap_or(0);
                let limits = limits.ok_or_else(|| {
                    Error::Corrupt("apply refused a patch that set no limits".to_owned())
                })?;
                limits.check_totals(
                    usize::try_from(names).unwrap_or(usize::MAX),
                    usize::try_from(bytes).unwrap_or(usize::MAX),
                )?;
                Err(Error::Corrupt(
                    "apply refused a patch within its limits".to_owned(),
                ))
            }
            other => Err(Error::Corrupt(format!("apply answered {other}"))),
        }
    }

    async fn take_notification(
        &self,
        id: &SessionId,
        name: &str,
        expiry: &Expiry,
    ) -> Result<Option<String>> {
        let row = self
            .query_one(
                &self.inner.sql.take,
                &[&id.as_bytes().as_slice(), &name, &ms(expiry.now)],
            )
            .await?;
        row.try_get(0)
            .map_err(|e| Error::Corrupt(format!("take_notification: {e}")))
    }

    async fn increment(
        &self,
        id: &SessionId,
        name: &str,
        by: i64,
        expiry: &Expiry,
    ) -> Result<Option<i64>> {
        let row = self
            .query_one(
                &self.inner.sql.increment,
                &[
                    &id.as_bytes().as_slice(),
                    &name,
                    &by,
                    &ms(expiry.now),
                    &span(expiry, expiry.idle),
                ],
            )
            .await?;
        let corrupt = |e: tokio_postgres::Error| Error::Corrupt(format!("increment: {e}"));
        let live: bool = row.try_get(0).map_err(corrupt)?;
        if !live {
            return Ok(None);
        }
        let not_integer: Option<String> = row.try_get(2).map_err(corrupt)?;
        if let Some(text) = not_integer {
            // The same error the other stores give for a value that is not
            // an integer.
            cloakroom::store::add_to(Some(&text), name, by)?;
            return Err(Error::Corrupt(format!(
                "increment: {name:?} holds {text:?}, which is not a 64-bit integer"
            )));
        }
        row.try_get(1).map(Some).map_err(corrupt)
    }

    async fn delete(&self, id: &SessionId) -> Result<()> {
        self.query(&self.inner.sql.delete, &[&id.as_bytes().as_slice()])
            .await
            .map(drop)
    }

    async fn admit(
        &self,
        user: &str,
        id: &SessionId,
        cap: Option<SessionCap>,
        expiry: &Expiry,
        check_only: bool,
    ) -> Result<Admission> {
        let max = cap.map(|c| i64::try_from(c.max).unwrap_or(i64::MAX));
        let refuse = cap.is_some_and(|c| c.on_max == OnMaxSessions::Refuse);
        let row = self
            .query_one(
                &self.inner.sql.admit,
                &[
                    &user,
                    &USER_NAME,
                    &user_json(user),
                    &id.as_bytes().as_slice(),
                    &ms(expiry.now),
                    &max,
                    &refuse,
                    &check_only,
                ],
            )
            .await?;
        let corrupt = |e: tokio_postgres::Error| Error::Corrupt(format!("admit: {e}"));
        if row.try_get::<_, bool>(0).map_err(corrupt)? {
            return Ok(Admission::Refused);
        }
        let ended: Vec<Vec<u8>> = row.try_get(1).map_err(corrupt)?;
        let ended = ended
            .iter()
            .map(|bytes| session_id(bytes))
            .collect::<Result<Vec<_>>>()?;
        Ok(Admission::Admitted { ended })
    }

    async fn sessions_of(&self, user: &str, expiry: &Expiry) -> Result<Vec<SessionInfo>> {
        let rows = self
            .query(
                &self.inner.sql.sessions_of,
                &[
                    &user,
                    &user_json(user),
                    &CLIENT_NAME,
                    &USER_NAME,
                    &ms(expiry.now),
                ],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let id: &[u8] = row
                    .try_get(0)
                    .map_err(|e| Error::Corrupt(format!("a session row: {e}")))?;
                let client: Option<&str> = row
                    .try_get(4)
                    .map_err(|e| Error::Corrupt(format!("a session row: {e}")))?;
                Ok(SessionInfo::from_parts(
                    session_id(id)?,
                    timestamp(row, 1)?,
                    timestamp(row, 2)?,
                    timestamp(row, 3)?,
                    expiry.idle,
                    client,
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
        // An id no session has stands for "no exception".
        let except = except.map(|id| id.as_bytes().as_slice()).unwrap_or(&[]);
        let row = self
            .query_one(
                &self.inner.sql.end_sessions_of,
                &[
                    &user,
                    &user_json(user),
                    &USER_NAME,
                    &except,
                    &ms(expiry.now),
                ],
            )
            .await?;
        count(&row)
    }

    async fn end_all(&self, expiry: &Expiry) -> Result<usize> {
        let row = self
            .query_one(&self.inner.sql.end_all, &[&ms(expiry.now)])
            .await?;
        count(&row)
    }

    async fn count(&self, expiry: &Expiry) -> Result<usize> {
        let row = self
            .query_one(&self.inner.sql.count, &[&ms(expiry.now)])
            .await?;
        count(&row)
    }
}

fn count(row: &tokio_postgres::Row) -> Result<usize> {
    let n: i64 = row
        .try_get(0)
        .map_err(|e| Error::Corrupt(format!("a count: {e}")))?;
    Ok(usize::try_from(n).unwrap_or(0))
}

#[cfg(all(test, not(feature = "tls")))]
mod tests {
    use super::*;

    #[test]
    fn without_the_tls_feature_a_url_that_requires_tls_is_a_config_error() {
        let config = PostgresConfig::from_url("postgres://u@h/db?sslmode=require").unwrap();
        assert!(matches!(PostgresStore::new(config), Err(Error::Config(_))));
        let config = PostgresConfig::from_url("postgres://u@h/db")
            .unwrap()
            .tls_ca_pem(b"a CA".to_vec());
        assert!(matches!(PostgresStore::new(config), Err(Error::Config(_))));
        let plain = PostgresConfig::from_url("postgres://u@h/db").unwrap();
        assert!(PostgresStore::new(plain).is_ok());
    }
}
