//! PostgreSQL's errors, as the store reports them.

use cloakroom::Error;
use tokio_postgres::error::SqlState;

/// Refusals that retrying cannot mend: wrong credentials, a database that
/// does not exist, a missing privilege.
const FATAL: [SqlState; 4] = [
    SqlState::INVALID_PASSWORD,
    SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
    SqlState::INVALID_CATALOG_NAME,
    SqlState::INSUFFICIENT_PRIVILEGE,
];

/// A driver error, with PostgreSQL's own message (the driver's text alone
/// is "db error"), and whether only the operator can mend it. The driver's
/// error is its [`source`](std::error::Error::source), for callers that
/// look at its SQLSTATE.
#[derive(Debug)]
pub(crate) struct PgError {
    text: String,
    fatal: bool,
    driver: tokio_postgres::Error,
}

impl PgError {
    /// The SQLSTATE PostgreSQL answered with, if it answered.
    pub(crate) fn code(&self) -> Option<&SqlState> {
        self.driver.code()
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.driver)
    }
}

/// A driver error as a store error: the store is unavailable. A call
/// answers `503` and the outage is logged once, whatever the reason; at
/// start-up, [`refused_for_good`] tells the reasons that stop it.
pub(crate) fn pg_error(e: tokio_postgres::Error) -> Error {
    let text = describe(&e);
    let fatal = match e.code() {
        Some(code) => FATAL.contains(code),
        // The driver's own refusals before any query: a setting it cannot
        // use (a password the server asks for and was not given), an
        // authentication exchange that failed, or TLS that cannot work (a
        // server without it, a certificate that does not verify), unless
        // the connection merely broke during the handshake.
        None => {
            text.starts_with("invalid configuration")
                || text.starts_with("authentication")
                || (text.starts_with("error performing TLS handshake") && !broke(&e))
        }
    };
    Error::unavailable(PgError {
        text,
        fatal,
        driver: e,
    })
}

/// Whether an I/O error that means the connection broke is among the
/// causes of `e`.
fn broke(e: &tokio_postgres::Error) -> bool {
    use std::io::ErrorKind::*;
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | UnexpectedEof | BrokenPipe | TimedOut
            )
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// `err` as a configuration error if it is a refusal only the operator
/// can mend, so that start-up stops instead of serving `503` for good.
pub(crate) fn refused_for_good(err: Error) -> Error {
    let fatal = match &err {
        Error::Unavailable(source) => source
            .downcast_ref::<PgError>()
            .filter(|e| e.fatal)
            .map(|e| e.text.clone()),
        _ => None,
    };
    match fatal {
        Some(text) => Error::Config(format!("postgres: {text}")),
        None => err,
    }
}

/// The error with everything that caused it, on one line.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_without_a_server_message_keeps_its_cause() {
        // A URL the driver cannot use: its error names the reason.
        let err = "host=/nonexistent port=notanumber"
            .parse::<tokio_postgres::Config>()
            .unwrap_err();
        let text = describe(&err);
        assert!(text.starts_with("invalid connection string: "), "{text}");
        assert!(text.len() > "invalid connection string: ".len(), "{text}");
    }
}
