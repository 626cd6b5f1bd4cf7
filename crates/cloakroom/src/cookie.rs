//! The cookie: its signing key ring, its attributes, and the codec between a
//! token and a cookie value.
//!
//! A cookie value is `TOKEN.SIGNATURE`: 43 base64url characters of token, a
//! dot, and 43 of HMAC-SHA256 over the cookie name and the token. A session
//! with its own expiry, or with a persistent cookie, carries a [`Stamp`]
//! too, signed with the rest: `TOKEN.STAMP.SIGNATURE`, 41 characters more.
//! The value is checked for length, alphabet and signature before anything
//! else sees it, so a forged cookie never costs a store round trip.

use crate::error::{Error, Result};
use crate::token::{TOKEN_B64_LEN, Token, push_base64url};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::time::Duration;

/// The most days a browser keeps a cookie (RFC 6265bis caps `Max-Age` at
/// 400 days).
const MAX_AGE_DAYS: f64 = 400.0;

type HmacSha256 = Hmac<Sha256>;

/// Shortest secret accepted, in bytes. HMAC-SHA256 is only as strong as its
/// key; 32 bytes gives the full 256 bits when they are random.
pub const MIN_SECRET_BYTES: usize = 32;
/// Length of an encoded signed value: token, dot, signature.
pub(crate) const SIGNED_LEN: usize = TOKEN_B64_LEN + 1 + 43;
/// Bytes of an encoded [`Stamp`].
const STAMP_BYTES: usize = 30;
/// Length of a [`Stamp`] in base64url.
const STAMP_B64_LEN: usize = 40;
/// Length of a signed value with a stamp: token, dot, stamp, dot, signature.
pub(crate) const STAMPED_LEN: usize = SIGNED_LEN + STAMP_B64_LEN + 1;

/// What a signed cookie value says besides its token, for a session with
/// its own expiry or a persistent cookie. It is signed, so a client can
/// neither lengthen its session nor forge the times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// The session's own idle timeout, absolute lifetime and cookie
    /// `Max-Age` (0: a browser session cookie), in seconds; `None` for the
    /// manager's defaults.
    pub(crate) own: Option<(u32, u32, u32)>,
    /// The session's absolute deadline, in seconds since the epoch.
    pub(crate) deadline: u64,
    /// When this value was issued, in seconds since the epoch.
    pub(crate) issued: u64,
}

impl Stamp {
    const VERSION: u8 = 1;

    fn encode(&self) -> [u8; STAMP_BYTES] {
        let mut out = [0u8; STAMP_BYTES];
        out[0] = Self::VERSION;
        let (idle, absolute, max_age) = self.own.unwrap_or((0, 0, 0));
        out[1] = u8::from(self.own.is_some());
        out[2..6].copy_from_slice(&idle.to_be_bytes());
        out[6..10].copy_from_slice(&absolute.to_be_bytes());
        out[10..14].copy_from_slice(&max_age.to_be_bytes());
        out[14..22].copy_from_slice(&self.deadline.to_be_bytes());
        out[22..30].copy_from_slice(&self.issued.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8; STAMP_BYTES]) -> Option<Stamp> {
        let u32_at = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[i..i + 4]);
            u32::from_be_bytes(b)
        };
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_be_bytes(b)
        };
        if bytes[0] != Self::VERSION || bytes[1] > 1 {
            return None;
        }
        Some(Stamp {
            own: (bytes[1] == 1).then(|| (u32_at(2), u32_at(6), u32_at(10))),
            deadline: u64_at(14),
            issued: u64_at(22),
        })
    }
}

/// The keys that sign and verify session cookies.
///
/// The first key signs; every key verifies. To rotate, put the new secret
/// first and keep the old one after it until the cookies it signed have
/// expired; a cookie signed by an old key is re-signed with the first key on
/// the next response that touches its session. Removing a key invalidates
/// every cookie it signed.
///
/// ```
/// use cloakroom::KeyRing;
/// let keys = KeyRing::new(["a new secret of at least 32 bytes!", "the old secret, 32 bytes or more.."])?;
/// assert_eq!(keys.len(), 2);
/// assert!(KeyRing::new(["too short"]).is_err());
/// # Ok::<(), cloakroom::Error>(())
/// ```
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<HmacSha256>,
}

impl KeyRing {
    /// Builds a key ring from secrets, newest first. Each must be at least
    /// [`MIN_SECRET_BYTES`] long, and there must be at least one.
    pub fn new<I, S>(secrets: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut keys = Vec::new();
        for (i, secret) in secrets.into_iter().enumerate() {
            let secret = secret.as_ref();
            if secret.len() < MIN_SECRET_BYTES {
                return Err(Error::config(format!(
                    "cookie secret #{} is {} bytes; at least {MIN_SECRET_BYTES} are required",
                    i + 1,
                    secret.len()
                )));
            }
            // HMAC accepts keys of any length, so this cannot fail.
            let mac = HmacSha256::new_from_slice(secret)
                .map_err(|e| Error::config(format!("cookie secret #{}: {e}", i + 1)))?;
            keys.push(mac);
        }
        if keys.is_empty() {
            return Err(Error::config("at least one cookie secret is required"));
        }
        Ok(KeyRing { keys })
    }

    /// A key ring with one fresh random secret. Sessions signed with it do
    /// not survive a restart of the process.
    pub fn random() -> Self {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the operating system's random source failed");
        Self::new([secret]).expect("32 bytes is a valid secret")
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a key ring holds at least one key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn mac(
        key: &HmacSha256,
        cookie_name: &str,
        token: &Token,
        stamp: Option<&[u8; STAMP_BYTES]>,
    ) -> HmacSha256 {
        let mut mac = key.clone();
        mac.update(cookie_name.as_bytes());
        mac.update(&[0]);
        mac.update(token.as_bytes());
        if let Some(stamp) = stamp {
            mac.update(&[0]);
            mac.update(stamp);
        }
        mac
    }

    /// The signed cookie value for `token`, without a stamp.
    #[cfg(any(test, feature = "internals"))]
    pub(crate) fn sign(&self, cookie_name: &str, token: &Token) -> String {
        self.sign_stamped(cookie_name, token, None)
    }

    /// The signed cookie value for `token`, carrying `stamp` if given.
    pub(crate) fn sign_stamped(
        &self,
        cookie_name: &str,
        token: &Token,
        stamp: Option<&Stamp>,
    ) -> String {
        let stamp = stamp.map(Stamp::encode);
        let tag = Self::mac(&self.keys[0], cookie_name, token, stamp.as_ref())
            .finalize()
            .into_bytes();
        let mut out = String::with_capacity(STAMPED_LEN);
        push_base64url(&mut out, token.as_bytes());
        out.push('.');
        if let Some(stamp) = &stamp {
            push_base64url(&mut out, stamp);
            out.push('.');
        }
        push_base64url(&mut out, &tag);
        out
    }

    /// Checks a cookie value. Returns the token, its stamp, and whether it
    /// was signed by an older key (and so should be re-signed), or `None`
    /// for anything that is not a value this ring signed.
    pub(crate) fn verify(&self, cookie_name: &str, value: &[u8]) -> Option<Verified> {
        let (stamp, tag) = match value.len() {
            SIGNED_LEN => (None, &value[TOKEN_B64_LEN + 1..]),
            STAMPED_LEN if value[TOKEN_B64_LEN + 1 + STAMP_B64_LEN] == b'.' => {
                let text = &value[TOKEN_B64_LEN + 1..TOKEN_B64_LEN + 1 + STAMP_B64_LEN];
                let mut stamp = [0u8; STAMP_BYTES];
                match URL_SAFE_NO_PAD.decode_slice(text, &mut stamp) {
                    Ok(STAMP_BYTES) => {}
                    _ => return None,
                }
                (Some(stamp), &value[STAMPED_LEN - 43..])
            }
            _ => return None,
        };
        if value[TOKEN_B64_LEN] != b'.' {
            return None;
        }
        let token = Token::decode(&value[..TOKEN_B64_LEN])?;
        let mut raw_tag = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(tag, &mut raw_tag) {
            Ok(32) => {}
            _ => return None,
        }
        let i = self.keys.iter().position(|key| {
            // verify_slice compares in constant time.
            Self::mac(key, cookie_name, &token, stamp.as_ref())
                .verify_slice(&raw_tag)
                .is_ok()
        })?;
        // Only a signed stamp is parsed.
        let stamp = match &stamp {
            Some(bytes) => Some(Stamp::decode(bytes)?),
            None => None,
        };
        Some(Verified {
            token,
            stamp,
            stale_key: i > 0,
        })
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyRing({} keys)", self.keys.len())
    }
}

/// A cookie value that passed [`KeyRing::verify`].
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub(crate) token: Token,
    pub(crate) stamp: Option<Stamp>,
    pub(crate) stale_key: bool,
}

/// The `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Sent on top-level navigations from other sites, not on their
    /// subrequests. The default: it stops most CSRF and keeps links working.
    #[default]
    Lax,
    /// Never sent on requests started by another site.
    Strict,
    /// Sent on every request. Browsers require `Secure` with it, so the
    /// builder turns `Secure` on.
    None,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        }
    }

    /// Parses `lax`, `strict` or `none`, in any case.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "lax" => Some(SameSite::Lax),
            "strict" => Some(SameSite::Strict),
            "none" => Some(SameSite::None),
            _ => None,
        }
    }
}

/// The session cookie's name and attributes.
///
/// The defaults follow the OWASP Session Management Cheat Sheet: a generic
/// name (`id`), `HttpOnly`, `Secure`, `SameSite=Lax`, `Path=/`, no `Domain`,
/// and no `Max-Age`, so the cookie ends with the browser session.
///
/// ```
/// use cloakroom::{CookieConfig, SameSite};
/// let cookie = CookieConfig::default()
///     .name("__Host-id")
///     .same_site(SameSite::Strict)
///     .expires_days(Some(7.0));
/// assert!(cookie.validate().is_ok());
/// assert!(CookieConfig::default().name("__Host-id").domain(Some("example.com")).validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CookieConfig {
    name: String,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    path: String,
    domain: Option<String>,
    max_age: Option<Duration>,
}

impl Default for CookieConfig {
    fn default() -> Self {
        CookieConfig {
            name: "id".to_owned(),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
            max_age: None,
        }
    }
}

impl CookieConfig {
    /// The cookie name. A name starting with `__Host-` requires `Secure`,
    /// `Path=/` and no `Domain`; one starting with `__Secure-` requires
    /// `Secure`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The `Secure` attribute (default on).
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// The `HttpOnly` attribute (default on). Turning it off lets page
    /// scripts read the cookie; there is rarely a reason to.
    pub fn http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// The `SameSite` attribute (default `Lax`). `SameSite::None` also
    /// turns `Secure` on, as browsers require.
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        if same_site == SameSite::None {
            self.secure = true;
        }
        self
    }

    /// The `Path` attribute (default `/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The `Domain` attribute (default none: the cookie goes only to the
    /// host that set it). A `String` passes with `.as_deref()`.
    ///
    /// ```
    /// use cloakroom::CookieConfig;
    /// let shared = CookieConfig::default().domain(Some("example.com"));
    /// let host_only = shared.domain(None);
    /// # assert!(host_only.validate().is_ok());
    /// ```
    pub fn domain(mut self, domain: Option<&str>) -> Self {
        self.domain = domain.map(str::to_owned);
        self
    }

    /// Make the cookie persistent for this many days, as pycket's
    /// `expires_days`. `None` (the default) gives a browser-session cookie.
    /// The server-side timeouts still decide how long the session lives.
    ///
    /// As [`max_age`](Self::max_age): a value that is not a positive
    /// number of days (0, negative, NaN) gives a browser-session cookie
    /// (the TOML loader refuses it instead, naming the key), and more than
    /// 400 days is cut to 400, the most browsers keep a cookie (RFC 6265bis).
    pub fn expires_days(self, days: Option<f64>) -> Self {
        self.max_age(
            days.filter(|d| d.is_finite() && *d > 0.0)
                .map(|d| Duration::from_secs_f64((d * 86_400.0).min(MAX_AGE_DAYS * 86_400.0))),
        )
    }

    /// Make the cookie persistent with this `Max-Age`; `None` (the
    /// default) gives a browser-session cookie. Whole seconds; more than
    /// 400 days is cut to 400, the most browsers keep a cookie; zero gives
    /// a browser-session cookie. The server-side timeouts still decide how
    /// long the session lives.
    ///
    /// ```
    /// use cloakroom::CookieConfig;
    /// use std::time::Duration;
    /// let remember_me = CookieConfig::default().max_age(Some(Duration::from_secs(30 * 86_400)));
    /// let for_this_browser_session = CookieConfig::default().max_age(None);
    /// # let _ = (remember_me, for_this_browser_session);
    /// ```
    pub fn max_age(mut self, max_age: Option<Duration>) -> Self {
        self.max_age = max_age
            .filter(|d| d.as_secs() > 0)
            .map(|d| d.min(Duration::from_secs((MAX_AGE_DAYS * 86_400.0) as u64)));
        self
    }

    /// The cookie name.
    pub fn cookie_name(&self) -> &str {
        &self.name
    }

    /// Whether `Secure` is set.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Checks that the attributes agree with each other and with RFC 6265.
    pub fn validate(&self) -> Result<()> {
        let token_char = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
        if self.name.is_empty() || !self.name.chars().all(token_char) {
            return Err(Error::config(format!(
                "cookies.name {:?} is not a valid cookie name",
                self.name
            )));
        }
        let attr_ok = |v: &str| v.chars().all(|c| c.is_ascii_graphic() && c != ';');
        if !self.path.starts_with('/') || !attr_ok(&self.path) {
            return Err(Error::config(format!(
                "cookies.path {:?} must start with '/' and contain no ';' or spaces",
                self.path
            )));
        }
        if let Some(domain) = &self.domain
            && (domain.is_empty() || !attr_ok(domain))
        {
            return Err(Error::config(format!(
                "cookies.domain {domain:?} is not a valid domain"
            )));
        }
        if self.name.starts_with("__Host-") {
            if !self.secure {
                return Err(Error::config(
                    "cookies.name has the __Host- prefix, which requires cookies.secure = true",
                ));
            }
            if self.path != "/" {
                return Err(Error::config(
                    "cookies.name has the __Host- prefix, which requires cookies.path = \"/\"",
                ));
            }
            if self.domain.is_some() {
                return Err(Error::config(
                    "cookies.name has the __Host- prefix, which forbids cookies.domain",
                ));
            }
        }
        if self.name.starts_with("__Secure-") && !self.secure {
            return Err(Error::config(
                "cookies.name has the __Secure- prefix, which requires cookies.secure = true",
            ));
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(Error::config(
                "cookies.same_site = \"none\" requires cookies.secure = true",
            ));
        }
        Ok(())
    }

    fn push_attributes(&self, out: &mut String) {
        out.push_str("; Path=");
        out.push_str(&self.path);
        if let Some(domain) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(domain);
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        out.push_str("; SameSite=");
        out.push_str(self.same_site.as_str());
        if self.secure {
            out.push_str("; Secure");
        }
    }

    /// The configured `Max-Age`, if the cookie is persistent.
    pub(crate) fn configured_max_age(&self) -> Option<Duration> {
        self.max_age
    }

    /// The `Set-Cookie` value that stores `value`, with `max_age` (`None`:
    /// a browser-session cookie).
    pub(crate) fn set_cookie(&self, value: &str, max_age: Option<Duration>) -> String {
        let mut out = String::with_capacity(200);
        out.push_str(&self.name);
        out.push('=');
        out.push_str(value);
        if let Some(max_age) = max_age {
            out.push_str("; Max-Age=");
            out.push_str(&max_age.as_secs().to_string());
        }
        self.push_attributes(&mut out);
        out
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub(crate) fn clear_cookie(&self) -> String {
        let mut out = String::with_capacity(160);
        out.push_str(&self.name);
        out.push_str("=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
        self.push_attributes(&mut out);
        out
    }

    /// The values of every cookie named like ours in a `Cookie` header,
    /// at most `limit` of them. Works on bytes, so a non-UTF-8 neighbour
    /// does not hide a good cookie.
    pub(crate) fn find_values<'a>(
        &self,
        header: &'a [u8],
        limit: usize,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, '_> {
        let name = self.name.as_bytes();
        header
            .split(|b| *b == b';')
            .filter_map(move |pair| {
                let pair = pair.trim_ascii();
                let eq = pair.iter().position(|b| *b == b'=')?;
                (pair[..eq].trim_ascii() == name).then(|| {
                    let v = pair[eq + 1..].trim_ascii();
                    v.strip_prefix(b"\"")
                        .and_then(|v| v.strip_suffix(b"\""))
                        .unwrap_or(v)
                })
            })
            .take(limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S1: &str = "first secret, at least thirty-two bytes";
    const S2: &str = "second secret, at least thirty-two bytes";

    #[test]
    fn sign_then_verify_round_trips() {
        let ring = KeyRing::new([S1]).unwrap();
        let t = Token::generate();
        let value = ring.sign("id", &t);
        assert_eq!(value.len(), SIGNED_LEN);
        let v = ring.verify("id", value.as_bytes()).unwrap();
        assert_eq!(v.token, t);
        assert!(!v.stale_key);
    }

    #[test]
    fn stamped_values_round_trip_and_every_character_is_signed() {
        let ring = KeyRing::new([S1]).unwrap();
        let t = Token::generate();
        let stamp = Stamp {
            own: Some((7 * 86_400, 30 * 86_400, 30 * 86_400)),
            deadline: 1_900_000_000,
            issued: 1_800_000_000,
        };
        let value = ring.sign_stamped("id", &t, Some(&stamp));
        assert_eq!(value.len(), STAMPED_LEN);
        let v = ring.verify("id", value.as_bytes()).unwrap();
        assert_eq!((v.token, v.stamp), (t.clone(), Some(stamp)));
        let defaults = Stamp { own: None, ..stamp };
        let value = ring.sign_stamped("id", &t, Some(&defaults));
        assert_eq!(
            ring.verify("id", value.as_bytes()).unwrap().stamp,
            Some(defaults)
        );
        let bytes = value.into_bytes();
        for i in 0..bytes.len() {
            let mut forged = bytes.clone();
            forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
            assert!(ring.verify("id", &forged).is_none(), "position {i}");
        }
        // A plain value's signature does not verify a stamp added to it.
        let plain = ring.sign("id", &t);
        let (token, tag) = plain.split_at(TOKEN_B64_LEN + 1);
        let stamp_text = URL_SAFE_NO_PAD.encode(stamp.encode());
        let grafted = format!("{token}{stamp_text}.{tag}");
        assert_eq!(grafted.len(), STAMPED_LEN);
        assert!(ring.verify("id", grafted.as_bytes()).is_none());
    }

    #[test]
    fn one_changed_character_is_rejected() {
        let ring = KeyRing::new([S1]).unwrap();
        let value = ring.sign("id", &Token::generate()).into_bytes();
        for i in 0..value.len() {
            let mut forged = value.clone();
            forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
            assert!(ring.verify("id", &forged).is_none(), "position {i}");
        }
    }

    #[test]
    fn signature_binds_the_cookie_name() {
        let ring = KeyRing::new([S1]).unwrap();
        let value = ring.sign("id", &Token::generate());
        assert!(ring.verify("other", value.as_bytes()).is_none());
    }

    #[test]
    fn old_keys_verify_and_are_flagged_for_resigning() {
        let old = KeyRing::new([S1]).unwrap();
        let rotated = KeyRing::new([S2, S1]).unwrap();
        let value = old.sign("id", &Token::generate());
        assert!(rotated.verify("id", value.as_bytes()).unwrap().stale_key);
        let removed = KeyRing::new([S2]).unwrap();
        assert!(removed.verify("id", value.as_bytes()).is_none());
    }

    #[test]
    fn key_ring_rejects_short_or_no_secrets() {
        assert!(KeyRing::new(["short"]).is_err());
        assert!(KeyRing::new(Vec::<String>::new()).is_err());
    }

    #[test]
    fn max_age_and_expires_days_agree_and_are_capped() {
        let days = |n: f64| {
            let c = CookieConfig::default().expires_days(Some(n));
            c.set_cookie("v", c.configured_max_age())
        };
        let secs = |n: u64| {
            let c = CookieConfig::default().max_age(Some(Duration::from_secs(n)));
            c.set_cookie("v", c.configured_max_age())
        };
        assert_eq!(days(1.0), secs(86_400));
        assert!(days(1.0).contains("Max-Age=86400"));
        assert!(
            days(1000.0).contains("Max-Age=34560000"),
            "400 days at most"
        );
        assert!(secs(10 * 34_560_000).contains("Max-Age=34560000"));
        for session_cookie in [days(0.0), days(-3.0), days(f64::NAN), secs(0)] {
            assert!(!session_cookie.contains("Max-Age"), "{session_cookie}");
        }
        let c = CookieConfig::default().max_age(None);
        let none = c.set_cookie("v", c.configured_max_age());
        assert!(!none.contains("Max-Age"));
    }

    #[test]
    fn default_attributes_are_secure() {
        let c = CookieConfig::default();
        assert_eq!(
            c.set_cookie("v", None),
            "id=v; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            c.clear_cookie(),
            "id=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        let persistent = c.expires_days(Some(2.0));
        let line = persistent.set_cookie("v", persistent.configured_max_age());
        assert!(line.contains("Max-Age=172800;"));
    }

    #[test]
    fn prefix_conflicts_are_rejected() {
        let host = CookieConfig::default().name("__Host-id");
        assert!(host.clone().validate().is_ok());
        assert!(host.clone().secure(false).validate().is_err());
        assert!(host.clone().path("/app").validate().is_err());
        assert!(host.domain(Some("a.example")).validate().is_err());
        assert!(
            CookieConfig::default()
                .name("__Secure-id")
                .secure(false)
                .validate()
                .is_err()
        );
        assert!(
            CookieConfig::default()
                .same_site(SameSite::None)
                .secure(false)
                .validate()
                .is_err()
        );
        assert!(CookieConfig::default().name("a b").validate().is_err());
        assert!(CookieConfig::default().path("x").validate().is_err());
    }

    #[test]
    fn finds_our_cookie_among_others() {
        let c = CookieConfig::default();
        let header = b"a=1; id=first;\xff\xfe=junk; id=\"second\";id";
        let found: Vec<&[u8]> = c.find_values(header, 8).collect();
        assert_eq!(found, vec![&b"first"[..], &b"second"[..]]);
        assert_eq!(c.find_values(header, 1).count(), 1);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn ring() -> KeyRing {
            KeyRing::new([S1, S2]).unwrap()
        }

        proptest! {
            #[test]
            fn verify_never_panics_and_rejects_arbitrary_bytes(value in proptest::collection::vec(any::<u8>(), 0..200)) {
                prop_assert!(ring().verify("id", &value).is_none());
            }

            #[test]
            fn verify_rejects_near_misses(prefix in "[A-Za-z0-9_-]{43}", sig in "[A-Za-z0-9_-]{43}") {
                let value = format!("{prefix}.{sig}");
                prop_assert!(ring().verify("id", value.as_bytes()).is_none());
            }

            #[test]
            fn sign_verify_round_trips(bytes in any::<[u8; 32]>(), name in "[a-z_]{1,12}") {
                let token = Token::from_bytes(bytes);
                let ring = ring();
                let value = ring.sign(&name, &token);
                let verified = ring.verify(&name, value.as_bytes()).unwrap();
                prop_assert_eq!(verified.token, token);
                prop_assert!(!verified.stale_key);
            }

            #[test]
            fn header_scan_never_panics(header in proptest::collection::vec(any::<u8>(), 0..300)) {
                let found = CookieConfig::default().find_values(&header, 4).count();
                prop_assert!(found <= 4);
            }
        }
    }
}
