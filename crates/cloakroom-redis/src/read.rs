//! Reads: a session hash as `HGETALL` returns it, parsed without trusting
//! it (a malformed reply is an error, never a panic).

use crate::keys::{Field, Meta, parse_field};
use cloakroom::{Error, Record, Result, Timestamp};
use redis::Value;

pub(crate) fn text(value: Value, what: &str) -> Result<String> {
    match value {
        Value::BulkString(bytes) => {
            String::from_utf8(bytes).map_err(|_| Error::Corrupt(format!("{what} is not UTF-8")))
        }
        Value::SimpleString(s) => Ok(s),
        other => Err(Error::Corrupt(format!(
            "{what}: expected a string, got {other:?}"
        ))),
    }
}

/// A session hash as `HGETALL` returned it.
pub(crate) struct Hash {
    /// The meta field; `None` for a hash without one, which no live
    /// session is (see `RedisStore::change`).
    pub(crate) meta: Option<Meta>,
    /// Every other field, names still escaped.
    pub(crate) fields: Vec<(String, String)>,
}

/// Parses an `HGETALL` reply; `None` for an empty one.
pub(crate) fn hash_from(reply: Value) -> Result<Option<Hash>> {
    let items = match reply {
        Value::Array(items) => items,
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        Value::Nil => return Ok(None),
        other => {
            return Err(Error::Corrupt(format!(
                "session load: expected an array, got {other:?}"
            )));
        }
    };
    if items.is_empty() {
        return Ok(None);
    }
    if items.len() % 2 != 0 {
        return Err(Error::Corrupt("session hash has an odd reply".to_owned()));
    }
    let mut hash = Hash {
        meta: None,
        fields: Vec::with_capacity(items.len() / 2 - 1),
    };
    let mut items = items.into_iter();
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        let k = text(k, "a session field name")?;
        let v = text(v, "a session value")?;
        if let Field::Meta = parse_field(&k) {
            hash.meta = Some(meta_from(&v)?);
        } else {
            hash.fields.push((k, v));
        }
    }
    Ok(Some(hash))
}

pub(crate) fn meta_from(text: &str) -> Result<Meta> {
    Meta::parse(text)
        .ok_or_else(|| Error::Corrupt(format!("session meta field is not valid: {text:?}")))
}

/// Turns an `HGETALL` reply into a record and the idle deadline its TTL
/// was last given; `None` for no session.
pub(crate) fn record_from(reply: Value) -> Result<Option<(Record, Timestamp)>> {
    let Some(Hash {
        meta: Some(meta),
        fields,
    }) = hash_from(reply)?
    else {
        return Ok(None);
    };
    let mut record = Record {
        created: Timestamp(meta.created),
        deadline: Timestamp(meta.deadline),
        ..Record::default()
    };
    for (k, v) in fields {
        if let Field::Name(name) = parse_field(&k) {
            let name = if name.len() == k.len() {
                k
            } else {
                name.to_owned()
            };
            record.values.insert(name, v);
        }
    }
    Ok(Some((record, Timestamp(meta.until))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloakroom::Timestamp;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        let cases = [
            Value::Int(3),
            Value::Array(vec![bulk("a")]),
            Value::Array(vec![bulk("@m"), bulk("soon")]),
            Value::Array(vec![bulk("@m"), bulk("1,2")]),
            Value::Array(vec![
                Value::BulkString(vec![0xff]),
                bulk("1"),
                bulk("@m"),
                bulk("1,5,5"),
            ]),
            Value::Array(vec![bulk("@m"), Value::Int(5)]),
        ];
        for case in cases {
            assert!(matches!(record_from(case), Err(Error::Corrupt(_))));
        }
        assert_eq!(record_from(Value::Array(vec![])).unwrap(), None);
        // A hash without the meta field is what a write to a session that
        // had just gone leaves for a moment: no session.
        assert_eq!(
            record_from(Value::Array(vec![bulk("a"), bulk("1")])).unwrap(),
            None
        );
        let (ok, until) = record_from(Value::Array(vec![
            bulk("@m"),
            bulk("1,9,7"),
            bulk("@@x"),
            bulk("2"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(ok.values["@x"], "2");
        // The deadline and UNTIL are counted from the creation time.
        assert_eq!(ok.created, Timestamp(1));
        assert_eq!(ok.deadline, Timestamp(10));
        assert_eq!(until, Timestamp(8));
    }
}
