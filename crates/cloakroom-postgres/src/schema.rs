//! The versioned schema: a table, its indexes and four functions, in a
//! schema of their own, with a one-row table holding the version.

use crate::error::pg_error;
use cloakroom::{Error, Result};

/// The schema version this build writes and needs.
pub const SCHEMA_VERSION: i32 = 1;

/// Each version's SQL, in order: `MIGRATIONS[n - 1]` takes a database from
/// version `n - 1` to `n`. Every statement in them may run again safely.
const MIGRATIONS: [&str; 1] = [include_str!("sql/v1.sql")];

/// `schema` as SQL names it: quoted, so that a valid name that is also a
/// keyword (`user`, `order`) works. A valid name (see
/// `PostgresConfig::schema`) is lower-case and holds no quote, so quoted
/// it is the same schema as unquoted.
pub(crate) fn quoted(schema: &str) -> String {
    format!("\"{schema}\"")
}

/// The SQL of `migration`, with its objects in `schema`.
fn in_schema(migration: &str, schema: &str) -> String {
    // The files say `cloakroom.`.
    migration.replace("cloakroom.", &format!("{}.", quoted(schema)))
}

fn preamble(schema: &str) -> String {
    let schema = quoted(schema);
    format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};\n\
         CREATE TABLE IF NOT EXISTS {schema}.schema_version (version integer NOT NULL);\n"
    )
}

/// The whole schema at [`SCHEMA_VERSION`], objects in `schema`, as one SQL
/// script: for teams that apply migrations with their own tools (then set
/// [`PostgresConfig::create_schema`](crate::PostgresConfig::create_schema)
/// to `false`). `cloakroom sql schema` prints it.
///
/// ```
/// let sql = cloakroom_postgres::schema_sql("cloakroom");
/// assert!(sql.contains(r#"CREATE TABLE IF NOT EXISTS "cloakroom".sessions"#));
/// assert!(sql.contains(r#"INSERT INTO "cloakroom".schema_version"#));
/// ```
pub fn schema_sql(schema: &str) -> String {
    let mut sql = preamble(schema);
    for migration in MIGRATIONS {
        sql.push('\n');
        sql.push_str(&in_schema(migration, schema));
    }
    let schema = quoted(schema);
    sql.push_str(&format!(
        "\nDELETE FROM {schema}.schema_version;\n\
         INSERT INTO {schema}.schema_version (version) VALUES ({SCHEMA_VERSION});\n"
    ));
    sql
}

/// Brings `schema` to [`SCHEMA_VERSION`] (or, without `create`, checks that
/// it is there), in one transaction under an advisory lock, so app nodes
/// starting together migrate once.
pub(crate) async fn migrate(
    client: &mut tokio_postgres::Client,
    schema: &str,
    create: bool,
) -> Result<()> {
    let tx = client.transaction().await.map_err(pg_error)?;
    let found = if create {
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('cloakroom schema ' || $1, 0))",
            &[&schema],
        )
        .await
        .map_err(pg_error)?;
        tx.batch_execute(&preamble(schema))
            .await
            .map_err(pg_error)?;
        current_version(&tx, schema).await?
    } else {
        let exists: bool = tx
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&format!("{}.schema_version", quoted(schema))],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        if exists {
            current_version(&tx, schema).await?
        } else {
            0
        }
    };
    if found > SCHEMA_VERSION {
        return Err(Error::Config(format!(
            "the PostgreSQL schema {schema:?} is at version {found}, newer than this build \
             of cloakroom-postgres knows ({SCHEMA_VERSION}): upgrade the application"
        )));
    }
    if found == SCHEMA_VERSION {
        return tx.commit().await.map_err(pg_error);
    }
    if !create {
        return Err(Error::Config(format!(
            "the PostgreSQL schema {schema:?} is at version {found}, and this build needs \
             {SCHEMA_VERSION}: apply `cloakroom sql schema`, or let the store create it"
        )));
    }
    let from = usize::try_from(found).unwrap_or(0);
    for migration in &MIGRATIONS[from..] {
        tx.batch_execute(&in_schema(migration, schema))
            .await
            .map_err(pg_error)?;
    }
    let name = quoted(schema);
    tx.batch_execute(&format!(
        "DELETE FROM {name}.schema_version;\n\
         INSERT INTO {name}.schema_version (version) VALUES ({SCHEMA_VERSION});"
    ))
    .await
    .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)?;
    tracing::info!(
        schema,
        from = found,
        to = SCHEMA_VERSION,
        "PostgreSQL session schema ready"
    );
    Ok(())
}

async fn current_version(tx: &tokio_postgres::Transaction<'_>, schema: &str) -> Result<i32> {
    let row = tx
        .query_one(
            &format!(
                "SELECT coalesce(max(version), 0) FROM {}.schema_version",
                quoted(schema)
            ),
            &[],
        )
        .await
        .map_err(pg_error)?;
    row.try_get(0)
        .map_err(|e| Error::Corrupt(format!("schema_version: {e}")))
}
