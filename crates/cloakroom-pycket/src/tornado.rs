//! Tornado's signed values (`set_secure_cookie` / `get_secure_cookie`),
//! as `tornado/web.py` writes and checks them.
//!
//! - Version 2: `2|LEN:KEYVERSION|LEN:TIMESTAMP|LEN:NAME|LEN:BASE64VALUE|HEXSIG`,
//!   each field length-prefixed; the signature is HMAC-SHA256 over
//!   everything before it, the last `|` included.
//! - Version 1: `BASE64VALUE|TIMESTAMP|HEXSIG`, with HMAC-SHA1 over the
//!   cookie name, the value and the timestamp, concatenated.
//!
//! Both are checked as Tornado checks them: the signature (compared in
//! constant time), the name, and the age (31 days by default), plus
//! version 1's guards against a timestamp in the future or with a leading
//! zero. Only one secret is supported (not Tornado's dict of key versions).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// Tornado's default `max_age_days` for `get_secure_cookie`.
pub const DEFAULT_MAX_AGE_DAYS: u64 = 31;
/// Longest signed value looked at; Tornado's cookies are far shorter.
const MAX_LEN: usize = 4096;

/// A Tornado app's `cookie_secret`.
#[derive(Clone)]
pub struct TornadoSecret {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TornadoSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TornadoSecret(..)")
    }
}

/// What a valid signed value carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedValue {
    /// The value, base64-decoded (pycket's session id).
    pub value: Vec<u8>,
    /// When it was signed, in seconds since the epoch.
    pub timestamp: u64,
    /// 1 or 2.
    pub version: u8,
}

impl TornadoSecret {
    /// The app's `cookie_secret`, as Tornado takes it (its UTF-8 bytes).
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        TornadoSecret {
            secret: secret.as_ref().to_vec(),
        }
    }

    /// The key of the Cloakroom session prepared for the pycket session
    /// `pycket_id` (by [`BulkImport`](crate::BulkImport)): derived from
    /// this secret, which only the servers hold.
    #[cfg(feature = "migrate")]
    pub fn handover(&self, pycket_id: &[u8]) -> cloakroom::Handover {
        cloakroom::Handover::derive(&self.secret, pycket_id)
    }

    fn sha256(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC accepts any key length")
    }

    fn sha1(&self) -> Hmac<Sha1> {
        Hmac::<Sha1>::new_from_slice(&self.secret).expect("HMAC accepts any key length")
    }

    /// Checks a signed value as `get_secure_cookie(name, max_age_days)`
    /// would at `now` (seconds since the epoch). `None` for anything
    /// Tornado would refuse: a bad signature, another name, too old, or
    /// malformed.
    ///
    /// ```
    /// use cloakroom_pycket::TornadoSecret;
    /// let secret = TornadoSecret::new("the seed's cookie secret");
    /// let value = secret.sign("PYCKET_ID", b"7d1c1d02-2f1e-4c4d-9c49-5e0b8e1a3f10", 1_800_000_000);
    /// let checked = secret.verify("PYCKET_ID", value.as_bytes(), 31, 1_800_000_100).unwrap();
    /// assert_eq!(checked.value, b"7d1c1d02-2f1e-4c4d-9c49-5e0b8e1a3f10");
    /// assert!(secret.verify("OTHER", value.as_bytes(), 31, 1_800_000_100).is_none());
    /// assert!(secret.verify("PYCKET_ID", value.as_bytes(), 31, 1_800_000_000 + 32 * 86_400).is_none());
    /// ```
    pub fn verify(
        &self,
        name: &str,
        value: &[u8],
        max_age_days: u64,
        now: u64,
    ) -> Option<SignedValue> {
        if value.is_empty() || value.len() > MAX_LEN {
            return None;
        }
        let oldest = now.saturating_sub(max_age_days.saturating_mul(86_400));
        match version(value) {
            2 => self.verify_v2(name, value, oldest),
            1 => self.verify_v1(name, value, oldest, now),
            _ => None,
        }
    }

    fn verify_v2(&self, name: &str, value: &[u8], oldest: u64) -> Option<SignedValue> {
        let rest = value.get(2..)?;
        let (key_version, rest) = field(rest)?;
        let (timestamp, rest) = field(rest)?;
        let (name_field, rest) = field(rest)?;
        let (value_field, passed) = field(rest)?;
        parse_decimal(key_version)?;
        let signed = &value[..value.len() - passed.len()];
        let mut mac = self.sha256();
        mac.update(signed);
        // The signature is lowercase hex, as Python's hexdigest writes it.
        mac.verify_slice(&hex_decode(passed)?).ok()?;
        if name_field != name.as_bytes() {
            return None;
        }
        let timestamp = parse_decimal(timestamp)?;
        if timestamp < oldest {
            return None;
        }
        Some(SignedValue {
            value: STANDARD.decode(value_field).ok()?,
            timestamp,
            version: 2,
        })
    }

    fn verify_v1(&self, name: &str, value: &[u8], oldest: u64, now: u64) -> Option<SignedValue> {
        let mut parts = value.split(|b| *b == b'|');
        let (payload, timestamp, passed) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let mut mac = self.sha1();
        mac.update(name.as_bytes());
        mac.update(payload);
        mac.update(timestamp);
        mac.verify_slice(&hex_decode(passed)?).ok()?;
        let signed_at = parse_decimal(timestamp)?;
        if signed_at < oldest
            || signed_at > now.saturating_add(31 * 86_400)
            || timestamp.starts_with(b"0")
        {
            return None;
        }
        Some(SignedValue {
            value: STANDARD.decode(payload).ok()?,
            timestamp: signed_at,
            version: 1,
        })
    }

    /// A version 2 signed value of `value` for cookie `name`, signed at
    /// `now`, as `set_secure_cookie` writes it (key version 0).
    pub fn sign(&self, name: &str, value: &[u8], now: u64) -> String {
        let encoded = STANDARD.encode(value);
        let timestamp = now.to_string();
        let mut signed = String::from("2|");
        for f in ["0", timestamp.as_str(), name, encoded.as_str()] {
            signed.push_str(&format!("{}:{}|", f.len(), f));
        }
        let mut mac = self.sha256();
        mac.update(signed.as_bytes());
        for b in mac.finalize().into_bytes() {
            signed.push_str(&format!("{b:02x}"));
        }
        signed
    }
}

/// The version a signed value claims, as Tornado's `_get_version` decides
/// it: a leading `N|` with N from 1 to 999, else 1.
fn version(value: &[u8]) -> u32 {
    let Some(bar) = value.iter().position(|b| *b == b'|') else {
        return 1;
    };
    let digits = &value[..bar];
    let valid = !digits.is_empty()
        && digits[0] != b'0'
        && digits.iter().all(u8::is_ascii_digit)
        && digits.len() <= 3;
    if !valid {
        return 1;
    }
    digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'))
}

/// One `LEN:VALUE|` field of a version 2 value, and the rest.
fn field(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = s.iter().position(|b| *b == b':')?;
    let n = usize::try_from(parse_decimal(&s[..colon])?).ok()?;
    let rest = &s[colon + 1..];
    let value = rest.get(..n)?;
    if rest.get(n) != Some(&b'|') {
        return None;
    }
    Some((value, &rest[n + 1..]))
}

/// A non-negative decimal, as Python's `int()` reads one (ASCII digits
/// only here; no sign, no spaces).
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn hex_decode(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    s.chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

/// Warns, at most once a minute, that a request carried a `PYCKET_ID`
/// no key verifies: forged, expired, or signed with another secret. A
/// steady stream of them after a deploy means the configured Tornado
/// `cookie_secret` is not the Tornado app's, and every Tornado user looks
/// signed out here.
#[cfg(feature = "migrate")]
pub(crate) fn warn_rejected_pycket_id() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};
    static REJECTED: AtomicU64 = AtomicU64::new(0);
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let total = REJECTED.fetch_add(1, Ordering::Relaxed) + 1;
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
        *last = Some(Instant::now());
        tracing::warn!(
            rejected_total = total,
            "a PYCKET_ID failed verification (forged, expired, or signed with another \
             secret: check that pycket.cookie_secret is the Tornado app's cookie_secret)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn every_changed_character_is_refused() {
        let secret = TornadoSecret::new("secret");
        let value = secret.sign("PYCKET_ID", b"an id", NOW).into_bytes();
        assert!(secret.verify("PYCKET_ID", &value, 31, NOW).is_some());
        for i in 0..value.len() {
            let mut forged = value.clone();
            forged[i] = if forged[i] == b'1' { b'2' } else { b'1' };
            assert!(
                secret.verify("PYCKET_ID", &forged, 31, NOW).is_none(),
                "position {i}"
            );
        }
        assert!(
            TornadoSecret::new("other")
                .verify("PYCKET_ID", &value, 31, NOW)
                .is_none()
        );
    }

    #[test]
    fn versions_as_tornado_tells_them() {
        assert_eq!(version(b"2|1:0|..."), 2);
        assert_eq!(version(b"1234|..."), 1);
        assert_eq!(version(b"YWJj|123|abc"), 1);
        assert_eq!(version(b"02|x"), 1);
        assert_eq!(version(b"3|x"), 3);
    }

    #[test]
    fn malformed_values_are_refused_without_panicking() {
        let secret = TornadoSecret::new("secret");
        for case in [
            &b""[..],
            b"2|",
            b"2|1:0",
            b"2|99999999999999999999:0|",
            b"2|1:0|10:1800000000|9:PYCKET_ID|4:YWJj|",
            b"a|b|c",
            b"a|b|c|d",
            b"|||",
        ] {
            assert!(secret.verify("PYCKET_ID", case, 31, NOW).is_none());
        }
    }
}
