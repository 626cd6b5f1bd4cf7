//! The versioned schema: one table and two indexes, with a one-row table
//! holding the version.

use cloakroom::{Error, Result};
use rusqlite::{Connection, TransactionBehavior};

/// The schema version this build writes and needs.
pub const SCHEMA_VERSION: i64 = 1;

/// Each version's SQL, in order: `MIGRATIONS[n - 1]` takes a database from
/// version `n - 1` to `n`.
const MIGRATIONS: [&str; 1] = [include_str!("sql/v1.sql")];

const PREAMBLE: &str =
    "CREATE TABLE IF NOT EXISTS cloakroom_schema_version (version INTEGER NOT NULL);\n";

/// The whole schema at [`SCHEMA_VERSION`] as one SQL script. `cloakroom
/// sql schema --engine sqlite` prints it.
///
/// ```
/// let sql = cloakroom_sqlite::schema_sql();
/// assert!(sql.contains("CREATE TABLE IF NOT EXISTS cloakroom_sessions"));
/// ```
pub fn schema_sql() -> String {
    let mut sql = PREAMBLE.to_owned();
    for migration in MIGRATIONS {
        sql.push('\n');
        sql.push_str(migration);
    }
    sql.push_str(&format!(
        "\nDELETE FROM cloakroom_schema_version;\n\
         INSERT INTO cloakroom_schema_version (version) VALUES ({SCHEMA_VERSION});\n"
    ));
    sql
}

/// Brings the database to [`SCHEMA_VERSION`] in one write transaction.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(crate::store::sqlite_error)?;
    tx.execute_batch(PREAMBLE)
        .map_err(crate::store::sqlite_error)?;
    let found: i64 = tx
        .query_row(
            "SELECT coalesce(max(version), 0) FROM cloakroom_schema_version",
            [],
            |row| row.get(0),
        )
        .map_err(crate::store::sqlite_error)?;
    if found > SCHEMA_VERSION {
        return Err(Error::Config(format!(
            "the SQLite session schema is at version {found}, newer than this build of \
             cloakroom-sqlite knows ({SCHEMA_VERSION}): upgrade the application"
        )));
    }
    let from = usize::try_from(found).unwrap_or(0);
    for migration in &MIGRATIONS[from..] {
        tx.execute_batch(migration)
            .map_err(crate::store::sqlite_error)?;
    }
    if found < SCHEMA_VERSION {
        tx.execute_batch(&format!(
            "DELETE FROM cloakroom_schema_version;\n\
             INSERT INTO cloakroom_schema_version (version) VALUES ({SCHEMA_VERSION});"
        ))
        .map_err(crate::store::sqlite_error)?;
    }
    tx.commit().map_err(crate::store::sqlite_error)
}
