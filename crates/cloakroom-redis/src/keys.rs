//! Where a session lives in Redis, and how names map to hash fields.
//!
//! - `PREFIX:{ID}`: a hash with one field per session name (JSON values)
//!   and one meta field, `@m`: `CREATED,DEADLINE,UNTIL` in ms: when the
//!   session was created (Unix time), then its absolute deadline and the
//!   idle deadline last written to the key's TTL, both counted from
//!   CREATED. One field rather than three keeps the read reply short;
//!   UNTIL lets a read tell whether the TTL needs pushing without asking
//!   Redis; the offsets keep the hash as small as the two plain numbers
//!   it replaced (136 bytes of `MEMORY USAGE` for the seed session).
//! - `PREFIX:{ID}:n`: a hash of the unread notifications.
//! - `PREFIX:{ID}:new`: where a new session is built before it is moved
//!   to `PREFIX:{ID}` (never seen outside one `MULTI`).
//!
//! `{ID}` is a Redis Cluster hash tag: both keys of a session share a slot.
//! A name starting with `@` is stored with one more `@` in front, so no
//! name can collide with a meta field.

use cloakroom::SessionId;

/// The meta field.
pub(crate) const META: &str = "@m";

/// What the meta field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    /// When the session was created (ms).
    pub(crate) created: u64,
    /// The absolute deadline (ms).
    pub(crate) deadline: u64,
    /// The idle deadline last given to the key's TTL (ms).
    pub(crate) until: u64,
}

impl Meta {
    pub(crate) fn encode(&self) -> String {
        // Three numbers of at most 20 digits: no growth while writing.
        // itoa, not `write!`: this runs on every create.
        let mut out = String::with_capacity(62);
        let mut digits = itoa::Buffer::new();
        out.push_str(digits.format(self.created));
        out.push(',');
        out.push_str(digits.format(self.deadline.saturating_sub(self.created)));
        out.push(',');
        out.push_str(digits.format(self.until.saturating_sub(self.created)));
        out
    }

    /// `None` unless it is exactly three decimal numbers whose sums fit.
    pub(crate) fn parse(text: &str) -> Option<Meta> {
        let mut parts = text.split(',');
        let mut next = || -> Option<u64> {
            let part = parts.next()?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let created = next()?;
        let meta = Meta {
            created,
            deadline: created.checked_add(next()?)?,
            until: created.checked_add(next()?)?,
        };
        parts.next().is_none().then_some(meta)
    }
}

/// The keys of one session. Only the data key is built up front: most
/// calls (every read, create and change) need no other.
pub(crate) struct SessionKeys {
    pub(crate) data: String,
}

impl SessionKeys {
    /// The notifications hash.
    pub(crate) fn notes(&self) -> String {
        self.suffixed(":n")
    }

    /// Where a new session is built before it is moved into place.
    pub(crate) fn staging(&self) -> String {
        self.suffixed(":new")
    }

    fn suffixed(&self, suffix: &str) -> String {
        let mut key = String::with_capacity(self.data.len() + suffix.len());
        key.push_str(&self.data);
        key.push_str(suffix);
        key
    }
}

pub(crate) fn session_keys(prefix: &str, id: &SessionId) -> SessionKeys {
    // Built by hand: this runs on every store call, and `format!` costs
    // several times more.
    let mut data = String::with_capacity(prefix.len() + 22 + 3);
    data.push_str(prefix);
    data.push_str(":{");
    id.encode_into(&mut data);
    data.push('}');
    SessionKeys { data }
}

/// The index of `user`'s sessions: `PREFIX:u:{USER}`, a sorted set of
/// session ids in a slot of its own.
pub(crate) fn user_index(prefix: &str, user: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + user.len() + 5);
    key.push_str(prefix);
    key.push_str(":u:{");
    key.push_str(user);
    key.push('}');
    key
}

/// The hash field for a session name.
pub(crate) fn field(name: &str) -> std::borrow::Cow<'_, str> {
    if name.starts_with('@') {
        format!("@{name}").into()
    } else {
        name.into()
    }
}

/// What a hash field holds.
pub(crate) enum Field<'a> {
    Name(&'a str),
    Meta,
    Unknown,
}

pub(crate) fn parse_field(field: &str) -> Field<'_> {
    match field {
        META => Field::Meta,
        f if f.starts_with("@@") => Field::Name(&f[1..]),
        f if f.starts_with('@') => Field::Unknown,
        f => Field::Name(f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_never_collide_with_meta_fields() {
        for name in ["@m", "@c", "@@x", "@", "plain", ""] {
            match parse_field(&field(name)) {
                Field::Name(back) => assert_eq!(back, name),
                _ => panic!("{name:?} did not round-trip"),
            }
        }
        assert!(matches!(parse_field("@m"), Field::Meta));
        assert!(matches!(parse_field("@z"), Field::Unknown));
    }

    #[test]
    fn meta_round_trips_and_refuses_anything_else() {
        let meta = Meta {
            created: 1,
            deadline: 1_800_000_000_000,
            until: 42,
        };
        assert_eq!(Meta::parse(&meta.encode()), Some(meta));
        assert_eq!(meta.encode(), "1,1799999999999,41");
        for bad in [
            "", "1,2", "1,2,3,4", "1,,3", "1,2,x", "-1,2,3", "+1,2,3", " 1,2,3",
        ] {
            assert_eq!(Meta::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Meta::parse("1,2,99999999999999999999999"), None);
        assert_eq!(Meta::parse("18446744073709551615,1,0"), None, "overflow");
    }

    #[test]
    fn keys_share_a_hash_tag() {
        let id = SessionId::from([7u8; 16]);
        let k = session_keys("cr", &id);
        assert_eq!(k.data, format!("cr:{{{id}}}"));
        // The form keys already in Redis have: changing it loses them.
        assert_eq!(k.data, "cr:{BwcHBwcHBwcHBwcHBwcHBw}");
        assert_eq!(k.notes(), format!("cr:{{{id}}}:n"));
        assert_eq!(k.staging(), format!("cr:{{{id}}}:new"));
    }
}
