//! Size limits on what a session may hold.

use crate::error::{Error, Result};
use crate::inventory::{OnMaxSessions, SessionCap};

/// Limits checked when a handler writes to a session. A write over a limit
/// fails with [`Error::TooLarge`] and records nothing.
///
/// ```
/// use cloakroom::Limits;
/// let limits = Limits::default().max_value_bytes(4096);
/// assert_eq!(limits.value_bytes(), 4096);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    max_name_bytes: usize,
    max_value_bytes: usize,
    max_names: usize,
    max_session_bytes: usize,
    max_cookie_header_bytes: usize,
    max_sessions_per_user: Option<usize>,
    on_max_sessions: OnMaxSessions,
}

impl Default for Limits {
    /// Names up to 256 bytes, values up to 64 KiB of JSON, at most 256
    /// names and 256 KiB per session; `Cookie` headers over 8 KiB are not
    /// read.
    fn default() -> Self {
        Limits {
            max_name_bytes: 256,
            max_value_bytes: 64 * 1024,
            max_names: 256,
            max_session_bytes: 256 * 1024,
            max_cookie_header_bytes: 8 * 1024,
            max_sessions_per_user: None,
            on_max_sessions: OnMaxSessions::EvictOldest,
        }
    }
}

impl Limits {
    /// The longest name, in bytes.
    pub fn max_name_bytes(mut self, n: usize) -> Self {
        self.max_name_bytes = n;
        self
    }

    /// The largest value, in bytes of JSON.
    pub fn max_value_bytes(mut self, n: usize) -> Self {
        self.max_value_bytes = n;
        self
    }

    /// The most names one session may hold. Checked atomically by the store
    /// when a write would go over it.
    pub fn max_names(mut self, n: usize) -> Self {
        self.max_names = n;
        self
    }

    /// The most bytes (names plus JSON values) one session may hold.
    /// Checked atomically by the store when a write would go over it.
    pub fn max_session_bytes(mut self, n: usize) -> Self {
        self.max_session_bytes = n;
        self
    }

    /// The longest `Cookie` (or token) header that is read at all; a longer
    /// one counts as no session.
    pub fn max_cookie_header_bytes(mut self, n: usize) -> Self {
        self.max_cookie_header_bytes = n;
        self
    }

    /// The most live sessions one user may have (`None`, the default:
    /// no cap; 0 counts as 1). Checked when a session is bound with
    /// [`Session::bind_user`](crate::Session::bind_user), atomically in
    /// the store, so concurrent sign-ins cannot go over it.
    ///
    /// ```
    /// use cloakroom::{Limits, OnMaxSessions};
    /// let limits = Limits::default()
    ///     .max_sessions_per_user(Some(3))
    ///     .on_max_sessions(OnMaxSessions::Refuse);
    /// assert_eq!(limits.session_cap().map(|c| c.max), Some(3));
    /// ```
    pub fn max_sessions_per_user(mut self, n: Option<usize>) -> Self {
        self.max_sessions_per_user = n.map(|n| n.max(1));
        self
    }

    /// What a sign-in at the cap does: end the least recently used
    /// session (the default), or fail.
    pub fn on_max_sessions(mut self, on_max: OnMaxSessions) -> Self {
        self.on_max_sessions = on_max;
        self
    }

    /// The cap per user, if one is set.
    pub fn session_cap(&self) -> Option<SessionCap> {
        self.max_sessions_per_user.map(|max| SessionCap {
            max,
            on_max: self.on_max_sessions,
        })
    }

    /// The configured longest token header.
    pub fn cookie_header_bytes(&self) -> usize {
        self.max_cookie_header_bytes
    }

    /// The whole-session bounds the store checks.
    pub fn session(&self) -> SizeLimits {
        SizeLimits {
            max_names: self.max_names,
            max_bytes: self.max_session_bytes,
        }
    }

    /// The configured longest name.
    pub fn name_bytes(&self) -> usize {
        self.max_name_bytes
    }

    /// The configured largest value.
    pub fn value_bytes(&self) -> usize {
        self.max_value_bytes
    }

    pub(crate) fn check(&self, name: &str, json: &str) -> Result<()> {
        if crate::inventory::is_reserved(name) {
            return Err(Error::Config(format!(
                "session name {name:?}: names starting with U+0001 are reserved"
            )));
        }
        if name.len() > self.max_name_bytes {
            return Err(Error::TooLarge {
                what: "session name".to_owned(),
                size: name.len(),
                limit: self.max_name_bytes,
            });
        }
        if json.len() > self.max_value_bytes {
            return Err(Error::TooLarge {
                what: format!("value of {name:?}"),
                size: json.len(),
                limit: self.max_value_bytes,
            });
        }
        Ok(())
    }
}

/// The bounds on a whole session, carried by a [`Patch`](crate::Patch) so
/// the store can check them in the same atomic step as the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    /// The most names.
    pub max_names: usize,
    /// The most bytes of names plus JSON values.
    pub max_bytes: usize,
}

impl SizeLimits {
    /// Checks a session's projected contents, given as `(name, json)`.
    /// Stores call this before writing, so nothing is stored partially.
    pub fn check<'a>(&self, values: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<()> {
        let (names, bytes) = values
            .into_iter()
            .fold((0, 0), |(n, b), (k, v)| (n + 1, b + k.len() + v.len()));
        self.check_totals(names, bytes)
    }

    /// As [`check`](Self::check), with the totals already counted.
    pub fn check_totals(&self, names: usize, bytes: usize) -> Result<()> {
        if names > self.max_names {
            return Err(Error::TooLarge {
                what: "session (number of names)".to_owned(),
                size: names,
                limit: self.max_names,
            });
        }
        if bytes > self.max_bytes {
            return Err(Error::TooLarge {
                what: "session".to_owned(),
                size: bytes,
                limit: self.max_bytes,
            });
        }
        Ok(())
    }
}
