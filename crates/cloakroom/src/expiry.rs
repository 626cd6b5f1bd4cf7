//! Time: the clock, the expiry policy, and the deadlines handed to stores.
//!
//! A session has two server-side deadlines:
//! - the **idle deadline** slides: every use pushes it to `now + idle`;
//! - the **absolute deadline** is fixed at creation (`created + absolute`)
//!   and survives [`Session::cycle_id`](crate::Session::cycle_id).
//!
//! The session ends at whichever comes first. The cookie's own lifetime
//! (browser session, or `expires_days`) never extends either.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// This timestamp plus `d`, saturating.
    pub fn plus(self, d: Duration) -> Timestamp {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// Milliseconds from `self` until `later`, or 0 if `later` is not later.
    pub fn millis_until(self, later: Timestamp) -> u64 {
        later.0.saturating_sub(self.0)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({}ms)", self.0)
    }
}

/// Where the session layer gets the current time. Tests inject a
/// [`ManualClock`] to check timeouts without sleeping.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told to.
///
/// ```
/// use cloakroom::{Clock, ManualClock};
/// use std::time::Duration;
/// let clock = ManualClock::starting_now();
/// let t0 = clock.now();
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(clock.now().0 - t0.0, 60_000);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A manual clock set to the current system time.
    pub fn starting_now() -> Self {
        ManualClock(Arc::new(AtomicU64::new(SystemClock.now().0)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// How long sessions live on the server.
///
/// The defaults are the NIST SP 800-63B (AAL2) reauthentication bounds,
/// which sit inside the OWASP Session Management Cheat Sheet's ranges for
/// ordinary applications:
/// - idle timeout **30 minutes** (OWASP: 15–30 min for low-risk
///   applications, 2–5 min for high-value ones; NIST AAL2: 30 min);
/// - absolute lifetime **12 hours** (NIST AAL2: 12 h; OWASP: 4–8 h for
///   office-hours applications).
///
/// High-value applications should shorten both.
///
/// ```
/// use cloakroom::ExpiryPolicy;
/// use std::time::Duration;
/// let policy = ExpiryPolicy::default()
///     .idle(Duration::from_secs(5 * 60))
///     .absolute(Duration::from_secs(4 * 3600));
/// assert_eq!(policy.idle_timeout(), Duration::from_secs(300));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryPolicy {
    idle: Duration,
    absolute: Duration,
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        ExpiryPolicy {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(12 * 3600),
        }
    }
}

impl ExpiryPolicy {
    /// Sets the idle timeout (the sliding window).
    pub fn idle(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// Sets the absolute lifetime, counted from the session's creation.
    pub fn absolute(mut self, absolute: Duration) -> Self {
        self.absolute = absolute;
        self
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        self.idle
    }

    /// The absolute lifetime.
    pub fn absolute_lifetime(&self) -> Duration {
        self.absolute
    }

    /// Rejects zero durations, sub-second idle timeouts, and an idle timeout
    /// longer than the absolute lifetime.
    pub fn validate(&self) -> crate::Result<()> {
        if self.idle < Duration::from_secs(1) {
            return Err(crate::Error::config(
                "expiry.idle_timeout_secs must be at least 1 second",
            ));
        }
        if self.absolute < self.idle {
            return Err(crate::Error::config(
                "expiry.absolute_timeout_secs must not be shorter than expiry.idle_timeout_secs",
            ));
        }
        Ok(())
    }

    /// The deadlines for an operation happening at `now`.
    pub fn at(&self, now: Timestamp) -> Expiry {
        Expiry {
            now,
            idle: self.idle,
            absolute: self.absolute,
        }
    }
}

/// One session's own lifetime, for "remember me": its idle timeout, its
/// absolute lifetime, and whether its cookie outlives the browser session.
///
/// Set it with [`Session::set_expiry`](crate::Session::set_expiry), within
/// the maximums set with
/// [`SessionManagerBuilder::max_session_expiry`](crate::SessionManagerBuilder::max_session_expiry);
/// other sessions keep the manager's defaults. Durations are whole
/// seconds (anything finer is dropped).
///
/// ```
/// use cloakroom::SessionExpiry;
/// use std::time::Duration;
/// const DAY: Duration = Duration::from_secs(86_400);
/// let remember_me = SessionExpiry::new(7 * DAY, 30 * DAY).persistent(30 * DAY);
/// assert_eq!(remember_me.cookie_max_age(), Some(30 * DAY));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpiry {
    idle: Duration,
    absolute: Duration,
    cookie_max_age: Option<Duration>,
}

/// Whole seconds of `d`, at most `u32::MAX` (136 years).
fn whole_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs().min(u64::from(u32::MAX)))
}

impl SessionExpiry {
    /// An idle timeout and an absolute lifetime (counted from when the
    /// setting is written), with a cookie that ends with the browser
    /// session.
    pub fn new(idle: Duration, absolute: Duration) -> Self {
        SessionExpiry {
            idle: whole_secs(idle),
            absolute: whole_secs(absolute),
            cookie_max_age: None,
        }
    }

    /// The manager's defaults as a `SessionExpiry`.
    pub fn from_policy(policy: &ExpiryPolicy, cookie_max_age: Option<Duration>) -> Self {
        SessionExpiry {
            idle: whole_secs(policy.idle),
            absolute: whole_secs(policy.absolute),
            cookie_max_age: cookie_max_age.map(whole_secs).filter(|d| !d.is_zero()),
        }
    }

    /// Makes the cookie persistent: the browser keeps it for `max_age`
    /// (but never past the session's absolute deadline), and it is sent
    /// again with a fresh `Max-Age` as the session is used. Zero gives a
    /// browser-session cookie again; more than 400 days is cut to 400, the
    /// most browsers keep a cookie.
    pub fn persistent(mut self, max_age: Duration) -> Self {
        let most = Duration::from_secs(400 * 86_400);
        self.cookie_max_age = Some(whole_secs(max_age.min(most))).filter(|d| !d.is_zero());
        self
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        self.idle
    }

    /// The absolute lifetime.
    pub fn absolute_lifetime(&self) -> Duration {
        self.absolute
    }

    /// The persistent cookie's `Max-Age`, or `None` for a browser-session
    /// cookie.
    pub fn cookie_max_age(&self) -> Option<Duration> {
        self.cookie_max_age
    }

    /// Checks the setting against itself and against `max`, naming what
    /// is wrong.
    pub(crate) fn check_within(&self, max: &SessionExpiry) -> crate::Result<()> {
        let too_long = |what: &str, got: Duration, most: Duration| {
            crate::Error::config(format!(
                "session expiry: {what} of {}s is over the maximum of {}s \
                 (SessionManagerBuilder::max_session_expiry)",
                got.as_secs(),
                most.as_secs()
            ))
        };
        if self.idle < Duration::from_secs(1) {
            return Err(crate::Error::config(
                "session expiry: the idle timeout must be at least 1 second",
            ));
        }
        if self.absolute < self.idle {
            return Err(crate::Error::config(
                "session expiry: the absolute lifetime must not be shorter than the idle timeout",
            ));
        }
        if self.idle > max.idle {
            return Err(too_long("the idle timeout", self.idle, max.idle));
        }
        if self.absolute > max.absolute {
            return Err(too_long(
                "the absolute lifetime",
                self.absolute,
                max.absolute,
            ));
        }
        match (self.cookie_max_age, max.cookie_max_age) {
            (Some(_), None) => Err(crate::Error::config(
                "session expiry: a persistent cookie is not allowed \
                 (the maximum has none; see SessionManagerBuilder::max_session_expiry)",
            )),
            (Some(age), Some(most)) if age > most => Err(too_long("the cookie Max-Age", age, most)),
            _ => Ok(()),
        }
    }

    /// The deadlines of a store operation at `now` under this setting.
    pub(crate) fn at(&self, now: Timestamp) -> Expiry {
        Expiry {
            now,
            idle: self.idle,
            absolute: self.absolute,
        }
    }
}

/// The expiry inputs of one store operation: the current time and the
/// policy. Stores compute deadlines with its methods, so every store
/// agrees on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// The time of the operation.
    pub now: Timestamp,
    /// The idle timeout.
    pub idle: Duration,
    /// The absolute lifetime.
    pub absolute: Duration,
}

impl Expiry {
    /// The absolute deadline of a session created now.
    pub fn new_deadline(&self) -> Timestamp {
        self.now.plus(self.absolute)
    }

    /// When a session with absolute deadline `deadline`, used now, expires:
    /// `min(now + idle, deadline)`.
    pub fn expires_at(&self, deadline: Timestamp) -> Timestamp {
        self.now.plus(self.idle).min(deadline)
    }

    /// Milliseconds a store should keep a session used now (its TTL).
    pub fn ttl_millis(&self, deadline: Timestamp) -> u64 {
        self.now.millis_until(self.expires_at(deadline))
    }

    /// Whether a session expiring at `expires_at` should have its idle
    /// deadline pushed forward by a read. True once a tenth of the idle
    /// window has passed since the last push, so a busy session is
    /// refreshed at most ten times per window, not on every read.
    pub fn refresh_due(&self, expires_at: Timestamp, deadline: Timestamp) -> bool {
        let target = self.expires_at(deadline);
        let slice = u64::try_from(self.idle.as_millis() / 10).unwrap_or(u64::MAX);
        expires_at.0.saturating_add(slice) < target.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expiry(now: u64) -> Expiry {
        ExpiryPolicy::default()
            .idle(Duration::from_secs(100))
            .absolute(Duration::from_secs(1000))
            .at(Timestamp(now))
    }

    #[test]
    fn idle_deadline_is_capped_by_absolute() {
        let e = expiry(0);
        assert_eq!(e.new_deadline(), Timestamp(1_000_000));
        assert_eq!(e.expires_at(Timestamp(1_000_000)), Timestamp(100_000));
        let late = expiry(950_000);
        assert_eq!(late.expires_at(Timestamp(1_000_000)), Timestamp(1_000_000));
        assert_eq!(late.ttl_millis(Timestamp(1_000_000)), 50_000);
        assert_eq!(expiry(2_000_000).ttl_millis(Timestamp(1_000_000)), 0);
    }

    #[test]
    fn refresh_happens_once_per_tenth_of_the_window() {
        let deadline = Timestamp(1_000_000);
        // Last pushed at t=0, so it expires at 100s.
        let expires = Timestamp(100_000);
        assert!(!expiry(5_000).refresh_due(expires, deadline));
        assert!(!expiry(10_000).refresh_due(expires, deadline));
        assert!(expiry(10_001).refresh_due(expires, deadline));
        // Near the absolute deadline there is nothing left to push.
        assert!(!expiry(990_000).refresh_due(deadline, deadline));
    }

    #[test]
    fn policy_validation() {
        assert!(ExpiryPolicy::default().validate().is_ok());
        assert!(
            ExpiryPolicy::default()
                .idle(Duration::ZERO)
                .validate()
                .is_err()
        );
        assert!(
            ExpiryPolicy::default()
                .idle(Duration::from_secs(10))
                .absolute(Duration::from_secs(5))
                .validate()
                .is_err()
        );
    }
}
