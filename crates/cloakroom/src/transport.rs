//! How the signed token travels: in a cookie (the default), or in a request
//! and response header for API clients, like Spring Session's
//! `X-Auth-Token`.

use crate::cookie::{CookieConfig, SIGNED_LEN, STAMPED_LEN};
use crate::manager::ResponseHeaders;
use http::header::{COOKIE, HeaderName, HeaderValue, SET_COOKIE};
use std::time::Duration;

/// At most this many candidate tokens are considered per request.
const MAX_CANDIDATES: usize = 4;

/// What the response must do with the token.
pub(crate) enum TokenAction {
    Keep,
    /// Send this signed value, with this cookie `Max-Age` (`None`: a
    /// browser-session cookie; ignored in header mode).
    Set(String, Option<Duration>),
    Clear,
}

/// The tokens a request offers, unverified: at most [`MAX_CANDIDATES`],
/// borrowed from the request's headers. A value of the wrong length is
/// kept as an empty one, so it still counts as a rejected token.
#[derive(Default)]
pub(crate) struct Candidates<'a> {
    values: [&'a [u8]; MAX_CANDIDATES],
    len: usize,
}

impl<'a> Candidates<'a> {
    fn push(&mut self, value: &'a [u8]) {
        if let Some(slot) = self.values.get_mut(self.len) {
            *slot = if value.len() == SIGNED_LEN || value.len() == STAMPED_LEN {
                value
            } else {
                &[]
            };
            self.len += 1;
        }
    }

    fn is_full(&self) -> bool {
        self.len >= MAX_CANDIDATES
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Each value in arrival order; the empty slice for a wrong-sized one.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.values[..self.len].iter().copied()
    }
}

/// The request headers that may carry the token, not yet parsed.
#[derive(Default)]
pub(crate) struct TokenHeaders {
    first: [Option<HeaderValue>; MAX_CANDIDATES],
    /// Beyond the first few; empty (no allocation) for any real client.
    more: Vec<HeaderValue>,
}

impl TokenHeaders {
    pub(crate) fn is_empty(&self) -> bool {
        self.first[0].is_none()
    }

    fn iter(&self) -> impl Iterator<Item = &HeaderValue> {
        self.first.iter().flatten().chain(&self.more)
    }
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

    /// The request header the token arrives in.
    pub(crate) fn request_header(&self) -> &HeaderName {
        match self {
            Transport::Cookie(_) => &COOKIE,
            Transport::Header(name) => name,
        }
    }

    /// The values of a request's token header, kept as they are: cloning
    /// a header value only counts a reference, so a request that never
    /// uses its session never parses its cookies.
    pub(crate) fn token_headers(
        &self,
        values: impl IntoIterator<Item = HeaderValue>,
    ) -> TokenHeaders {
        let mut out = TokenHeaders::default();
        for (i, value) in values.into_iter().enumerate() {
            match out.first.get_mut(i) {
                Some(slot) => *slot = Some(value),
                None => out.more.push(value),
            }
        }
        out
    }

    /// The candidate token values in `headers`, unverified. Values of the
    /// wrong size are kept as empty candidates, so they count as rejected.
    /// Headers longer than `max_header` are not scanned at all.
    pub(crate) fn candidates<'h>(
        &self,
        headers: &'h TokenHeaders,
        max_header: usize,
    ) -> Candidates<'h> {
        let mut out = Candidates::default();
        let cookie = match self {
            Transport::Cookie(cookie) => Some(cookie),
            Transport::Header(_) => None,
        };
        for header in headers.iter() {
            let bytes = header.as_bytes();
            if bytes.len() > max_header {
                out.push(b"");
            } else {
                match cookie {
                    Some(cookie) => cookie
                        .find_values(bytes, MAX_CANDIDATES)
                        .for_each(|v| out.push(v)),
                    None => out.push(bytes.trim_ascii()),
                }
            }
            if out.is_full() {
                break;
            }
        }
        out
    }

    /// The response headers `action` needs. Any response that sets or
    /// clears the token is marked `Cache-Control: no-store`.
    pub(crate) fn response_headers(&self, action: TokenAction) -> ResponseHeaders {
        let (name, line) = match (self, action) {
            (_, TokenAction::Keep) => return ResponseHeaders::default(),
            (Transport::Cookie(c), TokenAction::Set(value, max_age)) => {
                (&SET_COOKIE, c.set_cookie(&value, max_age))
            }
            (Transport::Cookie(c), TokenAction::Clear) => (&SET_COOKIE, c.clear_cookie()),
            (Transport::Header(name), TokenAction::Set(value, _)) => (name, value),
            (Transport::Header(name), TokenAction::Clear) => (name, String::new()),
        };
        // Names and attributes were validated to be visible ASCII, and
        // signed values are base64url.
        match HeaderValue::try_from(line) {
            Ok(value) => ResponseHeaders::token(name.clone(), value),
            Err(_) => {
                tracing::error!("session token is not a valid header value");
                ResponseHeaders::default()
            }
        }
    }
}
