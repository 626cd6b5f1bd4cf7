//! `cloakroom sql schema`: the SQL stores' schema, for teams that apply
//! migrations with their own tools.

use clap::{Args, Subcommand, ValueEnum};
use cloakroom::Error;

/// `cloakroom sql …`
#[derive(Debug, Args)]
pub struct SqlArgs {
    #[command(subcommand)]
    command: SqlCommand,
}

#[derive(Debug, Subcommand)]
enum SqlCommand {
    /// Print the SQL that creates the session schema at the version this
    /// build needs. Apply it, then run the store with schema creation off
    /// (`storage.create_schema = false`, or
    /// `PostgresConfig::create_schema(false)`), or let the store create it
    /// on first use (the default).
    Schema {
        /// The database the SQL is for.
        #[arg(long, value_enum, default_value = "postgres")]
        engine: SqlEngine,
        /// PostgreSQL: the schema to hold the sessions table and functions
        /// (default `cloakroom`).
        #[arg(long)]
        schema: Option<String>,
    },
}

/// The SQL databases Cloakroom stores sessions in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SqlEngine {
    Postgres,
    Sqlite,
}

/// Runs `cloakroom sql …`, printing to stdout.
pub fn sql(args: SqlArgs) -> Result<(), Error> {
    match args.command {
        SqlCommand::Schema { engine, schema } => {
            let sql = match engine {
                SqlEngine::Postgres => {
                    // Validates the name the same way the store does.
                    let config =
                        cloakroom_postgres::PostgresConfig::from_url("postgres://localhost")?
                            .schema(
                                schema
                                    .as_deref()
                                    .unwrap_or(cloakroom_postgres::DEFAULT_SCHEMA),
                            )?;
                    cloakroom_postgres::schema_sql(config.schema_name())
                }
                SqlEngine::Sqlite if schema.is_some() => {
                    return Err(Error::Config(
                        "--schema is for PostgreSQL: SQLite has no schemas".to_owned(),
                    ));
                }
                SqlEngine::Sqlite => cloakroom_sqlite::schema_sql(),
            };
            print!("{sql}");
            Ok(())
        }
    }
}
