//! The one error type of the crate.

use std::time::Duration;

/// A boxed error from a store's client library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong with a session.
///
/// Store failures are [`Error::Unavailable`] or [`Error::Timeout`]. With the
/// `axum` feature `Error` implements `IntoResponse`, and with the `actix`
/// feature actix-web's `ResponseError`, so a handler can use `?` and a
/// store outage becomes a `503 Service Unavailable`
/// ([`status_and_body`](Error::status_and_body) says what each variant
/// becomes).
///
/// No variant ever carries a session token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store could not be reached or refused the command.
    #[error("session store unavailable: {0}")]
    Unavailable(#[source] BoxError),

    /// The store did not answer within the configured timeout.
    #[error("session store timed out after {0:?}")]
    Timeout(Duration),

    /// The store answered with something that is not a valid session record.
    #[error("session store returned a malformed reply: {0}")]
    Corrupt(String),

    /// A value, a name or the whole session is over a configured limit.
    /// Nothing was stored.
    #[error("{what} is too large: {size} bytes, the limit is {limit}")]
    TooLarge {
        /// What was too large, for example `value of "cart"`.
        what: String,
        /// Its size in bytes (or entries, for a count).
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// A value could not be serialized to JSON, or a stored value could not
    /// be deserialized into the requested type.
    #[error("session value {name:?} could not be (de)serialized: {source}")]
    Serde {
        /// The session name whose value failed.
        name: String,
        /// The underlying serde_json error.
        #[source]
        source: serde_json::Error,
    },

    /// Invalid configuration: the message names the offending key.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The user already has the most live sessions the cap allows, and
    /// the cap refuses new ones (`on_max_sessions = "refuse"`). The
    /// session was not bound.
    #[error("too many sessions: this user already has {limit}, the most allowed")]
    TooManySessions {
        /// The configured `max_sessions_per_user`.
        limit: usize,
    },

    /// The session this request had found alive ended before the
    /// request's values or notifications were written: signed out or
    /// ended in another request, renamed by a sign-in in another request,
    /// or expired. Nothing was written, and the response sets no cookie,
    /// so the cookie another request set (a sign-in's new id) stays in the
    /// browser. The client may try again. (A request that binds a user
    /// gets a new session instead.)
    #[error("the session ended while this request ran; its changes were not written")]
    EndedMeanwhile,
    /// The store cannot do this (Memcached cannot list its keys, say).
    #[error("not supported by this store: {0}")]
    Unsupported(String),
}

impl Error {
    /// True for errors caused by the store being down or slow, which should
    /// become `503 Service Unavailable`.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Timeout(_))
    }

    /// Logs this error as a handler returned it, at the level its cause
    /// deserves: a store outage is logged once elsewhere (debug here), a
    /// session ended by another request is no fault (debug), what the
    /// request asked for (a `4xx`) is a warning, and the rest an error.
    #[cfg(any(feature = "axum", feature = "actix"))]
    pub(crate) fn log_returned(&self) {
        const WHAT: &str = "session error returned by handler";
        if self.is_unavailable() || matches!(self, Error::EndedMeanwhile) {
            tracing::debug!(error = %self, "{WHAT}");
        } else if self.status_and_body().0.is_client_error() {
            tracing::warn!(error = %self, "{WHAT}");
        } else {
            tracing::error!(error = %self, "{WHAT}");
        }
    }

    /// Wraps any client error as [`Error::Unavailable`].
    pub fn unavailable(err: impl Into<BoxError>) -> Self {
        Error::Unavailable(err.into())
    }

    pub(crate) fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }

    /// The status and short text body this error becomes in a response.
    pub fn status_and_body(&self) -> (http::StatusCode, &'static str) {
        use http::StatusCode;
        match self {
            Error::Unavailable(_) | Error::Timeout(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "session store unavailable\n",
            ),
            // Which limit, without echoing the name (it may come from the
            // client).
            Error::TooLarge { what, .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                match what.as_str() {
                    "session name" => "session name too long (max_name_bytes)\n",
                    "session (number of names)" => "too many names in the session (max_names)\n",
                    "session" => "session data too large (max_session_bytes)\n",
                    "session (store item)" => "session too large for the store (max_item_bytes)\n",
                    _ => "session value too large (max_value_bytes)\n",
                },
            ),
            Error::TooManySessions { .. } => (
                StatusCode::CONFLICT,
                "too many sessions for this user: sign out elsewhere first\n",
            ),
            Error::EndedMeanwhile => (
                StatusCode::CONFLICT,
                "the session ended while this request ran; try again\n",
            ),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "session error\n"),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
