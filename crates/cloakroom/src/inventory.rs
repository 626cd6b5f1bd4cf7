//! The session inventory: which sessions a user has, ending them, and a
//! cap per user.
//!
//! A session is bound to a user with
//! [`Session::bind_user`](crate::Session::bind_user) at sign-in. Like Spring Session's principal
//! index, the binding is session data under reserved names, so every store
//! keeps it through writes, renames and clears without a write path of its
//! own; the store keeps a per-user index of session ids next to it.

use crate::expiry::Timestamp;
use crate::token::SessionId;
use serde::{Deserialize, Serialize};

/// Session names that start with this character are reserved for
/// Cloakroom; a handler cannot read or write them.
pub const RESERVED_PREFIX: char = '\u{1}';

/// The reserved name under which a session keeps the user it is bound to
/// (a JSON string). Stores read it to list a user's sessions.
pub const USER_NAME: &str = "\u{1}user";

/// The reserved name under which a session keeps the [`ClientInfo`]
/// recorded at sign-in (a JSON object).
pub const CLIENT_NAME: &str = "\u{1}client";

/// The longest user id accepted, in bytes.
pub const MAX_USER_BYTES: usize = 256;

/// The stored value of [`USER_NAME`] for `user`: its JSON string.
pub fn user_json(user: &str) -> String {
    // Serializing a str cannot fail.
    serde_json::to_string(user).unwrap_or_default()
}

/// Whether `name` is reserved for Cloakroom.
pub(crate) fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

/// What the app recorded about the client at sign-in, shown when a user
/// lists their sessions ("Firefox on Linux, from 10.0.0.7").
///
/// ```
/// use cloakroom::ClientInfo;
/// let client = ClientInfo::default()
///     .user_agent("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0")
///     .ip("10.0.0.7");
/// assert_eq!(client.ip.as_deref(), Some("10.0.0.7"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClientInfo {
    /// The `User-Agent` header, or what the app made of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The client's address, as the app sees it (behind a proxy, the
    /// app decides which header to trust).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

impl ClientInfo {
    /// The most bytes kept of each field; longer values are cut.
    pub const MAX_FIELD_BYTES: usize = 512;

    /// Sets the user agent.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(truncate(user_agent.into()));
        self
    }

    /// Sets the client address.
    pub fn ip(mut self, ip: impl Into<String>) -> Self {
        self.ip = Some(truncate(ip.into()));
        self
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > ClientInfo::MAX_FIELD_BYTES {
        let mut end = ClientInfo::MAX_FIELD_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// One live session of a user, as
/// [`SessionAdmin::list`](crate::SessionAdmin::list) returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The session's id (a hash of its token: safe to show and log).
    pub id: SessionId,
    /// When it was created.
    pub created: Timestamp,
    /// When it was last used, as precisely as the idle refresh allows
    /// (within a tenth of the idle window), for a session on the default
    /// idle timeout. Stores keep a session's idle deadline, not its own
    /// timeout, so for one with a longer timeout of its own ("remember
    /// me") this is later than its last use ([`SessionAdmin::list`]
    /// caps it at the present); for one with a shorter timeout of its
    /// own, or near the absolute deadline (which caps the idle one), it
    /// is earlier.
    ///
    /// [`SessionAdmin::list`]: crate::SessionAdmin::list
    pub last_seen: Timestamp,
    /// When it ends if it is not used again.
    pub idle_deadline: Timestamp,
    /// When it ends however much it is used.
    pub absolute_deadline: Timestamp,
    /// What the app recorded at sign-in.
    pub client: ClientInfo,
}

impl SessionInfo {
    /// A session's info from its stored fields: `created`, the idle
    /// deadline last given to the store, the absolute deadline, the idle
    /// window, and the [`CLIENT_NAME`] value (JSON), if any. For stores.
    pub fn from_parts(
        id: SessionId,
        created: Timestamp,
        idle_deadline: Timestamp,
        absolute_deadline: Timestamp,
        idle: std::time::Duration,
        client_json: Option<&str>,
    ) -> Self {
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        SessionInfo {
            id,
            created,
            last_seen: Timestamp(idle_deadline.0.saturating_sub(idle_ms).max(created.0)),
            idle_deadline: Timestamp(idle_deadline.0.min(absolute_deadline.0)),
            absolute_deadline,
            client: client_json
                .and_then(|json| serde_json::from_str(json).ok())
                .unwrap_or_default(),
        }
    }
}

/// What happens when a user signs in with `max_sessions_per_user`
/// sessions already live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMaxSessions {
    /// The least recently used session is ended (the default).
    #[default]
    EvictOldest,
    /// The new sign-in fails with
    /// [`Error::TooManySessions`](crate::Error::TooManySessions).
    Refuse,
}

/// A cap on one user's live sessions, as a store enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCap {
    /// The most live sessions (at least 1).
    pub max: usize,
    /// What happens at the cap.
    pub on_max: OnMaxSessions,
}

/// What [`Store::admit`](crate::Store::admit) did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Admission {
    /// The session is in the user's index. `ended` lists the sessions the
    /// cap ended to make room (already deleted).
    Admitted {
        /// The sessions ended to make room.
        ended: Vec<SessionId>,
    },
    /// The cap refused the session; nothing was added.
    Refused,
}
