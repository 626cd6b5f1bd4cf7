//! How the signed token travels: in a cookie (the default), or in a request
//! and response header for API clients, like Spring Session's
//! `X-Auth-Token`.

use crate::cookie::{CookieConfig, SIGNED_LEN};
use http::HeaderMap;
use http::header::{CACHE_CONTROL, COOKIE, HeaderName, HeaderValue, SET_COOKIE};

/// At most this many candidate tokens are considered per request.
const MAX_CANDIDATES: usize = 4;

/// What the response must do with the token.
pub(crate) enum TokenAction {
    Keep,
    Set(String),
    Clear,
}

#[derive(Debug, Clone)]
pub(crate) enum Transport {
    Cookie(CookieConfig),
    Header(HeaderName),
}

impl Transport {
    /// The name the signature binds: the cookie's or the header's.
    pub(crate) fn name(&self) -> &str {
        match self {
            Transport::Cookie(cookie) => cookie.cookie_name(),
            Transport::Header(name) => name.as_str(),
        }
    }

    /// The candidate token values of a request, unverified. Values of the
    /// wrong size are kept as empty candidates, so they count as rejected
    /// when the session is first used. Headers longer than `max_header`
    /// are not scanned at all.
    pub(crate) fn candidates(&self, headers: &HeaderMap, max_header: usize) -> Vec<Box<[u8]>> {
        let sized = |v: &[u8]| -> Box<[u8]> {
            if v.len() == SIGNED_LEN {
                v.into()
            } else {
                Box::default()
            }
        };
        let mut out = Vec::new();
        let (header_name, cookie) = match self {
            Transport::Cookie(cookie) => (&COOKIE, Some(cookie)),
            Transport::Header(name) => (name, None),
        };
        for header in headers.get_all(header_name) {
            let bytes = header.as_bytes();
            if bytes.len() > max_header {
                out.push(Box::default());
                continue;
            }
            match cookie {
                Some(cookie) => out.extend(cookie.find_values(bytes, MAX_CANDIDATES).map(sized)),
                None => out.push(sized(bytes.trim_ascii())),
            }
            if out.len() >= MAX_CANDIDATES {
                out.truncate(MAX_CANDIDATES);
                break;
            }
        }
        out
    }

    /// Writes `action` into the response headers. Any response that sets
    /// or clears the token is marked `Cache-Control: no-store`.
    pub(crate) fn write(&self, action: TokenAction, headers: &mut HeaderMap) {
        let (name, line) = match (self, action) {
            (_, TokenAction::Keep) => return,
            (Transport::Cookie(c), TokenAction::Set(value)) => (&SET_COOKIE, c.set_cookie(&value)),
            (Transport::Cookie(c), TokenAction::Clear) => (&SET_COOKIE, c.clear_cookie()),
            (Transport::Header(name), TokenAction::Set(value)) => (name, value),
            (Transport::Header(name), TokenAction::Clear) => (name, String::new()),
        };
        // Names and attributes were validated to be visible ASCII, and
        // signed values are base64url.
        match HeaderValue::try_from(line) {
            Ok(value) => {
                headers.append(name, value);
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            Err(_) => tracing::error!("session token is not a valid header value"),
        }
    }
}
