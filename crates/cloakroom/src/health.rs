//! The store's health, as the logs tell it: while the store is down, every
//! session call fails, and a log line per call would bury everything
//! else. Each distinct failure is logged once, the same one again at most
//! once a minute (with how many were left out), and the recovery once.

use crate::error::{Error, Result};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The same failure is logged again after this long.
const REPEAT_AFTER: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(crate) struct Health {
    /// Checked on every successful call, so it must be cheap.
    failing: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The failure last logged, and when.
    last: Option<(String, Instant)>,
    /// Failed calls since the last log line.
    unlogged: u64,
    /// Failed calls since the store was last healthy.
    failed: u64,
}

impl Health {
    /// Notes the outcome of a store call `op`, and passes it on.
    pub(crate) fn observe<T>(&self, op: &'static str, result: Result<T>) -> Result<T> {
        match &result {
            Ok(_) => {
                if self.failing.load(Ordering::Relaxed) {
                    self.recovered();
                }
            }
            Err(e) if e.is_unavailable() => self.failed(op, e),
            Err(_) => {}
        }
        result
    }

    fn failed(&self, op: &'static str, e: &Error) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.failing.store(true, Ordering::Relaxed);
        st.failed += 1;
        let message = e.to_string();
        let repeat = match &st.last {
            Some((last, at)) => *last != message || at.elapsed() >= REPEAT_AFTER,
            None => true,
        };
        if !repeat {
            st.unlogged += 1;
            return;
        }
        tracing::error!(
            op,
            error = %message,
            calls_failed_since_last_report = st.unlogged,
            "session store call failed"
        );
        st.last = Some((message, Instant::now()));
        st.unlogged = 0;
    }

    fn recovered(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !self.failing.swap(false, Ordering::Relaxed) {
            return;
        }
        tracing::info!(failed_calls = st.failed, "session store recovered");
        *st = State::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_once_and_recovery_resets() {
        let health = Health::default();
        let down = || Err::<(), _>(Error::Timeout(Duration::from_millis(5)));
        for _ in 0..5 {
            assert!(health.observe("load", down()).is_err());
        }
        {
            let st = health.state.lock().unwrap();
            assert_eq!((st.failed, st.unlogged), (5, 4), "one line, four left out");
        }
        // A different failure is logged at once.
        let refused = Err::<(), _>(Error::unavailable("connection refused"));
        assert!(health.observe("apply", refused).is_err());
        assert_eq!(health.state.lock().unwrap().unlogged, 0);
        // Errors that are not the store's do not count.
        let serde = serde_json::from_str::<u8>("x").unwrap_err();
        let _ = health.observe(
            "load",
            Err::<(), _>(Error::Serde {
                name: "n".into(),
                source: serde,
            }),
        );
        assert_eq!(health.state.lock().unwrap().failed, 6);
        assert!(health.observe("load", Ok(())).is_ok());
        assert!(!health.failing.load(Ordering::Relaxed));
        assert_eq!(health.state.lock().unwrap().failed, 0);
    }
}
