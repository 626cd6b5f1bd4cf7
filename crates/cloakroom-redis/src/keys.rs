//! Where a session lives in Redis, and how names map to hash fields.
//!
//! - `PREFIX:{ID}`: a hash with one field per session name (JSON values)
//!   and two meta fields, `@c` (created, ms) and `@d` (absolute deadline,
//!   ms). Its TTL is the idle timeout.
//! - `PREFIX:{ID}:n`: a hash of the unread notifications.
//! - `PREFIX:{ID}:new`: where a new session is built before it is moved
//!   to `PREFIX:{ID}` (never seen outside one `MULTI`).
//!
//! `{ID}` is a Redis Cluster hash tag: both keys of a session share a slot.
//! A name starting with `@` is stored with one more `@` in front, so no
//! name can collide with a meta field.

use cloakroom::SessionId;

/// Field holding the creation time.
pub(crate) const CREATED: &str = "@c";
/// Field holding the absolute deadline.
pub(crate) const DEADLINE: &str = "@d";

/// The keys of one session.
pub(crate) struct SessionKeys {
    pub(crate) data: String,
    pub(crate) notes: String,
}

impl SessionKeys {
    /// Where a new session is built before it is moved into place.
    pub(crate) fn staging(&self) -> String {
        format!("{}:new", self.data)
    }
}

pub(crate) fn session_keys(prefix: &str, id: &SessionId) -> SessionKeys {
    // Built by hand: this runs on every store call, and `format!` costs
    // several times more.
    let id = id.encode();
    let mut data = String::with_capacity(prefix.len() + id.len() + 5);
    data.push_str(prefix);
    data.push_str(":{");
    data.push_str(&id);
    data.push('}');
    let mut notes = String::with_capacity(data.len() + 2);
    notes.push_str(&data);
    notes.push_str(":n");
    SessionKeys { data, notes }
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
    Created,
    Deadline,
    Unknown,
}

pub(crate) fn parse_field(field: &str) -> Field<'_> {
    match field {
        CREATED => Field::Created,
        DEADLINE => Field::Deadline,
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
        for name in ["@c", "@d", "@@x", "@", "plain", ""] {
            match parse_field(&field(name)) {
                Field::Name(back) => assert_eq!(back, name),
                _ => panic!("{name:?} did not round-trip"),
            }
        }
        assert!(matches!(parse_field("@c"), Field::Created));
        assert!(matches!(parse_field("@d"), Field::Deadline));
        assert!(matches!(parse_field("@z"), Field::Unknown));
    }

    #[test]
    fn keys_share_a_hash_tag() {
        let id = SessionId::from([7u8; 16]);
        let k = session_keys("cr", &id);
        assert_eq!(k.data, format!("cr:{{{id}}}"));
        assert_eq!(k.notes, format!("cr:{{{id}}}:n"));
    }
}
