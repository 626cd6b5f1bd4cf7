//! `cloakroom pycket import`: every pycket session moved into the
//! configured Cloakroom store ahead of its user's visit.

use crate::sessions::{StoreArgs, admin, load};
use clap::{Args, Subcommand};
use cloakroom::Error;
use cloakroom_pycket::{BulkImport, PycketRedis, TornadoSecret};

/// `cloakroom pycket …`
#[derive(Debug, Args)]
pub struct PycketArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: PycketCommand,
}

#[derive(Debug, Subcommand)]
enum PycketCommand {
    /// Import every pycket session in `pycket.db_sessions` into the store
    /// (`--store`, or the configuration's), prepared for its user's first
    /// visit: the request that brings `PYCKET_ID` to `cloakroom serve` (or
    /// any app with `MigrateLayer`) takes it over. Needs
    /// `pycket.cookie_secret`; reads pycket's Redis at `pycket.url`
    /// (default: the store's URL). Run it again after a stop: what it
    /// imported is skipped.
    Import {
        /// pycket's Redis, overriding `pycket.url`.
        #[arg(long)]
        pycket_url: Option<String>,
        /// Delete each pycket session once imported (default: keep it,
        /// while Tornado still serves some routes).
        #[arg(long)]
        delete: bool,
        /// Keys per SCAN step.
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
}

/// Runs `cloakroom pycket …`: a progress bar on stderr (at a terminal),
/// the counts on stdout.
pub async fn pycket(args: PycketArgs) -> Result<(), Error> {
    let PycketCommand::Import {
        pycket_url,
        delete,
        batch,
    } = args.command;
    let config = load(&args.store)?;
    let pycket = &config.pycket;
    let secret = pycket.cookie_secret.as_deref().ok_or_else(|| {
        Error::Config(
            "cloakroom pycket import needs pycket.cookie_secret \
             (or CLOAKROOM_PYCKET_COOKIE_SECRET): the Tornado app's cookie_secret"
                .to_owned(),
        )
    })?;
    let url = pycket_url
        .or_else(|| pycket.url.clone())
        .or_else(|| config.storage.url.clone())
        .filter(|u| u.starts_with("redis://") || u.starts_with("rediss://"))
        .ok_or_else(|| {
            Error::Config(
                "pycket's Redis: give --pycket-url, set pycket.url, or use a redis:// store"
                    .to_owned(),
            )
        })?;
    let (db_sessions, db_notifications) = pycket_dbs(pycket, &url);
    let source = PycketRedis::connect(&url, db_sessions, db_notifications)
        .await
        .map_err(|e| Error::Config(format!("pycket's Redis: {e}")))?;
    let import = BulkImport::new(source, TornadoSecret::new(secret), admin(&config).await?)
        .delete_after_import(delete)
        .batch(batch);
    let total = import.total().await.map_err(failed)?;
    // Drawn only when stderr is a terminal.
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} keys, {msg} ({elapsed}, about {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let counts = import
        .run(|c| {
            bar.set_position(c.scanned.min(total));
            bar.set_message(format!(
                "{} imported, {} skipped, {} unreadable",
                c.imported, c.skipped, c.unreadable
            ));
        })
        .await
        .map_err(failed);
    bar.finish_and_clear();
    let counts = counts?;
    if counts.imported + counts.skipped + counts.unreadable == 0 {
        tracing::warn!(
            db_sessions,
            "no pycket session found in pycket's sessions database: if pycket keeps \
             them in another, set pycket.db_sessions (CLOAKROOM_PYCKET_DB_SESSIONS)"
        );
    }
    println!(
        "imported {}, skipped {}, unreadable {}",
        counts.imported, counts.skipped, counts.unreadable
    );
    Ok(())
}

/// pycket's sessions and notifications databases: `pycket.db_sessions`
/// (else the database in pycket's Redis URL, else 0) and
/// `pycket.db_notifications` (else 1), as pycket's own defaults are.
pub(crate) fn pycket_dbs(pycket: &cloakroom_config::PycketConfig, url: &str) -> (i64, i64) {
    let sessions = pycket
        .db_sessions
        .map(i64::from)
        .or_else(|| url_db(url))
        .unwrap_or(0);
    (sessions, i64::from(pycket.db_notifications.unwrap_or(1)))
}

/// The database a `redis://HOST:PORT/DB` URL names, if any.
fn url_db(url: &str) -> Option<i64> {
    let rest = url.split_once("://")?.1;
    let path = rest.split_once('/')?.1;
    path.split(['?', '#']).next()?.parse().ok()
}

fn failed(e: cloakroom_pycket::MigrateError) -> Error {
    match e {
        cloakroom_pycket::MigrateError::Session(e) => e,
        other => Error::unavailable(format!(
            "the import stopped (run it again to go on): {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sessions_db_defaults_to_the_urls_then_0() {
        assert_eq!(url_db("redis://127.0.0.1:6379/10"), Some(10));
        assert_eq!(url_db("redis://:pw@host:6379/3?protocol=resp3"), Some(3));
        assert_eq!(url_db("redis://127.0.0.1:6379"), None);
        assert_eq!(url_db("redis://127.0.0.1:6379/"), None);
        assert_eq!(url_db("redis://h/x"), None);
        let mut pycket = cloakroom_config::PycketConfig::default();
        assert_eq!(pycket_dbs(&pycket, "redis://h:1/10"), (10, 1));
        assert_eq!(pycket_dbs(&pycket, "redis://h:1"), (0, 1));
        pycket.db_sessions = Some(4);
        pycket.db_notifications = Some(5);
        assert_eq!(pycket_dbs(&pycket, "redis://h:1/10"), (4, 5));
    }
}
