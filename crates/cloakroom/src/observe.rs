//! What operators see: metrics through the [`metrics`] facade (any
//! exporter; none installed costs next to nothing), lifecycle events for
//! an app's own audit log, and one tracing span per store call.
//!
//! | metric | kind | labels |
//! | --- | --- | --- |
//! | `cloakroom_sessions_created_total` | counter | |
//! | `cloakroom_sessions_cycled_total` | counter | |
//! | `cloakroom_sessions_destroyed_total` | counter | |
//! | `cloakroom_sessions_ended_total` | counter | `reason`: `user`, `admin`, `cap`, `empty` |
//! | `cloakroom_rejected_tokens_total` | counter | |
//! | `cloakroom_store_errors_total` | counter | `op` |
//! | `cloakroom_store_call_duration_seconds` | histogram | `op`: `load`, `apply`, `take_notification`, `increment`, `delete`, `admit`, … |
//!
//! No label carries a session id or a user id, so the number of series
//! stays bounded. Destroys and single ends count what was asked of the
//! store (a logout after the session had already expired still counts):
//! `Store::delete` does not say whether anything was there.

use crate::error::Error;
use crate::token::SessionId;
use std::sync::Arc;
use std::time::Duration;

/// Who ended sessions that were not the request's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// A handler, for the signed-in user ("sign out everywhere else"),
    /// through [`Session::admin`](crate::Session::admin).
    User,
    /// An operator or a back office, through
    /// [`SessionManager::admin`](crate::SessionManager::admin).
    Admin,
    /// The per-user cap evicted the least recently used.
    Cap,
    /// The session's last name was removed (see
    /// [`Session::clear`](crate::Session::clear)).
    Empty,
}

impl EndReason {
    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::User => "user",
            EndReason::Admin => "admin",
            EndReason::Cap => "cap",
            EndReason::Empty => "empty",
        }
    }
}

/// Something that happened to sessions, for an audit log. Ids are
/// [`SessionId`]s (hashes of the tokens): safe to log.
///
/// Subscribe with
/// [`SessionManagerBuilder::on_event`](crate::SessionManagerBuilder::on_event).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A session was created.
    Created {
        /// Its id.
        id: SessionId,
    },
    /// A session got a new id (`cycle_id`, or a new expiry).
    Cycled {
        /// The id it had.
        old: SessionId,
        /// The id it has now.
        new: SessionId,
    },
    /// A request destroyed its own session (a logout).
    Destroyed {
        /// Its id.
        id: SessionId,
    },
    /// One session was ended by someone else, or because it was empty.
    Ended {
        /// Its id.
        id: SessionId,
        /// Why.
        reason: EndReason,
    },
    /// Sessions of one user were ended at once.
    UserEnded {
        /// The user.
        user: String,
        /// How many sessions ended.
        count: usize,
        /// Why.
        reason: EndReason,
    },
    /// Every session was ended.
    AllEnded {
        /// How many sessions ended.
        count: usize,
        /// Why.
        reason: EndReason,
    },
}

/// The subscriber of one manager.
pub(crate) type Listener = Arc<dyn Fn(&SessionEvent) + Send + Sync>;

/// Describes the metrics to whatever recorder is installed, once.
pub(crate) fn describe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        metrics::describe_counter!("cloakroom_sessions_created_total", "Sessions created.");
        metrics::describe_counter!(
            "cloakroom_sessions_cycled_total",
            "Sessions given a new id (cycle_id, a new expiry)."
        );
        metrics::describe_counter!(
            "cloakroom_sessions_destroyed_total",
            "Sessions destroyed by their own request (logouts)."
        );
        metrics::describe_counter!(
            "cloakroom_sessions_ended_total",
            "Sessions ended by the user elsewhere, an admin, the per-user cap, or emptied."
        );
        metrics::describe_counter!(
            "cloakroom_rejected_tokens_total",
            "Session cookies that failed verification."
        );
        metrics::describe_counter!(
            "cloakroom_store_errors_total",
            "Store calls that failed because of the store."
        );
        metrics::describe_histogram!(
            "cloakroom_store_call_duration_seconds",
            metrics::Unit::Seconds,
            "Duration of store calls."
        );
        // Every series a dashboard graphs exists from the start, at zero.
        for name in [
            "cloakroom_sessions_created_total",
            "cloakroom_sessions_cycled_total",
            "cloakroom_sessions_destroyed_total",
            "cloakroom_rejected_tokens_total",
        ] {
            metrics::counter!(name).absolute(0);
        }
        for reason in [
            EndReason::User,
            EndReason::Admin,
            EndReason::Cap,
            EndReason::Empty,
        ] {
            metrics::counter!("cloakroom_sessions_ended_total", "reason" => reason.as_str())
                .absolute(0);
        }
        for op in [
            "load",
            "apply",
            "take_notification",
            "increment",
            "delete",
            "admit",
        ] {
            metrics::counter!("cloakroom_store_errors_total", "op" => op).absolute(0);
        }
    });
}

pub(crate) fn created() {
    metrics::counter!("cloakroom_sessions_created_total").increment(1);
}

pub(crate) fn cycled() {
    metrics::counter!("cloakroom_sessions_cycled_total").increment(1);
}

pub(crate) fn destroyed() {
    metrics::counter!("cloakroom_sessions_destroyed_total").increment(1);
}

pub(crate) fn ended(reason: EndReason, count: usize) {
    if count > 0 {
        metrics::counter!("cloakroom_sessions_ended_total", "reason" => reason.as_str())
            .increment(count as u64);
    }
}

pub(crate) fn rejected() {
    metrics::counter!("cloakroom_rejected_tokens_total").increment(1);
}

/// Records a store call's duration, and counts it if it failed because of
/// the store (not because of a limit or the caller's data).
pub(crate) fn store_call(op: &'static str, took: Duration, error: Option<&Error>) {
    let secs = took.as_secs_f64();
    // A literal label makes a static key; a variable one allocates the
    // key on every call, recorder or not.
    match op {
        "load" => metrics::histogram!("cloakroom_store_call_duration_seconds", "op" => "load")
            .record(secs),
        "apply" => metrics::histogram!("cloakroom_store_call_duration_seconds", "op" => "apply")
            .record(secs),
        other => {
            metrics::histogram!("cloakroom_store_call_duration_seconds", "op" => other).record(secs)
        }
    }
    if let Some(e) = error
        && store_fault(e)
    {
        metrics::counter!("cloakroom_store_errors_total", "op" => op).increment(1);
    }
}

/// Whether `e` is the store's fault.
pub(crate) fn store_fault(e: &Error) -> bool {
    matches!(
        e,
        Error::Unavailable(_) | Error::Timeout(_) | Error::Corrupt(_)
    )
}
