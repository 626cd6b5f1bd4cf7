//! The session as one memcached item: a JSON object.
//!
//! ```json
//! {"c":1764150000000,"d":1764193200000,"e":1764151800000,
//!  "v":{"login":"alice"},"n":{"welcome":"hi"}}
//! ```
//!
//! `c` created, `d` absolute deadline, `e` idle deadline (all ms), `v` the
//! values and `n` the unread notifications. Values are embedded as JSON, not
//! as strings holding JSON, so nothing is encoded twice.

use cloakroom::{Change, Error, Expiry, Patch, Record, Result, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Item {
    c: u64,
    d: u64,
    e: u64,
    v: BTreeMap<String, Box<RawValue>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    n: BTreeMap<String, Box<RawValue>>,
}

fn raw(json: &str) -> Result<Box<RawValue>> {
    RawValue::from_string(json.to_owned())
        .map_err(|e| Error::Corrupt(format!("a session value is not JSON: {e}")))
}

impl Item {
    pub(crate) fn new(expiry: &Expiry) -> Item {
        let deadline = expiry.new_deadline();
        Item {
            c: expiry.now.0,
            d: deadline.0,
            e: expiry.expires_at(deadline).0,
            v: BTreeMap::new(),
            n: BTreeMap::new(),
        }
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Item> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::Corrupt(format!("a session item is not valid: {e}")))
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self)
            .map_err(|e| Error::Corrupt(format!("a session item could not be encoded: {e}")))
    }

    pub(crate) fn live(&self, now: Timestamp) -> bool {
        now.0 < self.e && now.0 < self.d
    }

    /// When the session was created.
    pub(crate) fn created(&self) -> Timestamp {
        Timestamp(self.c)
    }

    /// The stored JSON of `name`.
    pub(crate) fn value(&self, name: &str) -> Option<&str> {
        self.v.get(name).map(|v| v.get())
    }

    pub(crate) fn deadline(&self) -> Timestamp {
        Timestamp(self.d)
    }

    pub(crate) fn expires_at(&self) -> Timestamp {
        Timestamp(self.e)
    }

    /// Pushes the idle deadline to `now + idle`, capped by the deadline.
    pub(crate) fn touch(&mut self, expiry: &Expiry) {
        self.e = expiry.expires_at(Timestamp(self.d)).0;
    }

    /// Applies the data half of a patch (clear, changes, notifications)
    /// and touches.
    pub(crate) fn apply(&mut self, patch: &Patch, expiry: &Expiry) -> Result<()> {
        if patch.clears() {
            self.v.clear();
        }
        for (name, change) in patch.changes() {
            match change {
                Change::Set(json) => {
                    self.v.insert(name.to_owned(), raw(json)?);
                }
                Change::Remove => {
                    self.v.remove(name);
                }
            }
        }
        for (name, json) in patch.notifications() {
            self.n.insert(name.to_owned(), raw(json)?);
        }
        if patch.restarts_lifetime() {
            self.d = expiry.new_deadline().0;
        }
        self.touch(expiry);
        Ok(())
    }

    /// Adds `by` to the integer under `name` and returns the new value.
    pub(crate) fn increment(&mut self, name: &str, by: i64) -> Result<i64> {
        let value = cloakroom::store::add_to(self.v.get(name).map(|v| v.get()), name, by)?;
        self.v.insert(name.to_owned(), raw(&value.to_string())?);
        Ok(value)
    }

    pub(crate) fn take(&mut self, name: &str) -> Option<String> {
        self.n.remove(name).map(|v| v.get().to_owned())
    }

    /// No names and no notifications.
    pub(crate) fn is_empty(&self) -> bool {
        self.v.is_empty() && self.n.is_empty()
    }

    /// Each name and its JSON value.
    pub(crate) fn values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.v.iter().map(|(k, v)| (k.as_str(), v.get()))
    }

    pub(crate) fn record(&self) -> Record {
        Record {
            values: self
                .v
                .iter()
                .map(|(k, v)| (k.clone(), v.get().to_owned()))
                .collect(),
            created: Timestamp(self.c),
            deadline: Timestamp(self.d),
        }
    }
}

/// Seconds memcached treats as relative; larger values are Unix times.
const RELATIVE_LIMIT_SECS: u64 = 30 * 24 * 3600;

/// The latest absolute expiration memcached reads: it parses the time as
/// a signed 32-bit number, and takes anything larger as already past.
const LATEST_UNIX_SECS: u64 = i32::MAX as u64;

/// The memcached expiration for an item that must live until `until`:
/// relative seconds when short enough, else an absolute Unix time, at
/// most early 2038 (memcached's own limit: an item meant to live longer
/// is cut there). One extra second covers memcached's whole-second clock;
/// the item's own deadlines are what decide.
pub(crate) fn exptime(now: Timestamp, until: Timestamp) -> u64 {
    let secs = now.millis_until(until).div_ceil(1000) + 1;
    if secs <= RELATIVE_LIMIT_SECS {
        secs
    } else {
        (until.0.div_ceil(1000) + 1).min(LATEST_UNIX_SECS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloakroom::ExpiryPolicy;
    use std::time::Duration;

    #[test]
    fn expirations_beyond_thirty_days_are_absolute() {
        let now = Timestamp(1_764_150_000_000);
        assert_eq!(exptime(now, Timestamp(now.0 + 1_500)), 3);
        let day = 24 * 3600 * 1000;
        assert_eq!(exptime(now, Timestamp(now.0 + 29 * day)), 29 * 86_400 + 1);
        let far = Timestamp(now.0 + 45 * day);
        assert_eq!(exptime(now, far), far.0 / 1000 + 1);
        assert!(exptime(now, far) > RELATIVE_LIMIT_SECS);
        // Past what memcached reads (2038): cut to its latest.
        let beyond = Timestamp(now.0 + 100 * 365 * day);
        assert_eq!(exptime(now, beyond), i32::MAX as u64);
        assert_eq!(exptime(now, Timestamp(u64::MAX)), i32::MAX as u64);
    }

    #[test]
    fn values_are_embedded_not_double_encoded() {
        let e = ExpiryPolicy::default().at(Timestamp(1_000));
        let mut item = Item::new(&e);
        let mut p = Patch::default();
        p.set("login", "\"alice\"".into());
        item.apply(&p, &e).unwrap();
        let text = String::from_utf8(item.encode().unwrap()).unwrap();
        assert!(text.contains(r#""v":{"login":"alice"}"#), "{text}");
        let back = Item::decode(text.as_bytes()).unwrap();
        assert_eq!(back.record().values["login"], "\"alice\"");
        assert_eq!(back.expires_at(), Timestamp(1_000 + 30 * 60 * 1000));
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        for bad in [&b""[..], b"{", b"null", b"{\"c\":1}", b"\xff\xfe", b"[1,2]"] {
            assert!(matches!(Item::decode(bad), Err(Error::Corrupt(_))));
        }
        let e = ExpiryPolicy::default()
            .idle(Duration::from_secs(60))
            .at(Timestamp(0));
        let mut item = Item::new(&e);
        let mut p = Patch::default();
        p.set("x", "not json".into());
        assert!(item.apply(&p, &e).is_err());
    }
}
