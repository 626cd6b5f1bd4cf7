//! A reader of RESP2 replies, for [`crate::direct`].
//!
//! redis-rs's reader is built from parser combinators that can resume in
//! the middle of a reply. Measured under callgrind, it took about a
//! quarter of the instructions of a whole session write on actix-web
//! (about 2,000 per value; a write's `MULTI` answers with 12 values).
//! This one starts over from the reply's first byte when a reply arrives
//! in pieces, which session replies (a few hundred bytes) almost never
//! do, and builds the same [`Value`]s redis-rs's reader builds.

use redis::{ErrorKind, RedisError, RedisResult, Value};

/// How deep arrays may nest, as in redis-rs's reader.
const MAX_DEPTH: usize = 100;

/// The largest bulk string Redis sends (its `proto-max-bulk-len`).
const MAX_BULK: usize = 512 * 1024 * 1024;

/// Reads one reply from the start of `buf`: the value and how many bytes
/// it took, or `None` while the reply is not all there.
///
/// An error means the bytes are not RESP2: the connection is out of step
/// and must be dropped.
pub(crate) fn reply(buf: &[u8]) -> RedisResult<Option<(Value, usize)>> {
    // A large reply arrives in pieces, and is read again from its start
    // as each piece arrives: first only check that it is all there, so
    // its strings are copied once.
    if buf.len() > CHECK_FIRST && value(buf, &mut 0, 0, false)?.is_none() {
        return Ok(None);
    }
    let mut pos = 0;
    Ok(value(buf, &mut pos, 0, true)?.map(|v| (v, pos)))
}

/// Past this many bytes, a reply is checked whole before it is built.
const CHECK_FIRST: usize = 64 * 1024;

/// The value at `pos`, or `None` while it is not all there. Without
/// `build`, only checks it: what it returns then stands for the value.
fn value(buf: &[u8], pos: &mut usize, depth: usize, build: bool) -> RedisResult<Option<Value>> {
    let start = *pos;
    let Some(&kind) = buf.get(start) else {
        return Ok(None);
    };
    *pos += 1;
    let Some(line) = line(buf, pos) else {
        return Ok(None);
    };
    Ok(Some(match kind {
        b'+' => match line {
            b"OK" => Value::Okay,
            _ => Value::SimpleString(utf8(line)?.to_owned()),
        },
        // Error replies are rare: redis-rs's own reader makes the same
        // `ServerError` from them, with its code and detail split.
        b'-' => redis::parse_redis_value(&buf[start..*pos])?,
        b':' => Value::Int(int(line)?),
        b'$' => {
            let len = int(line)?;
            let Ok(len) = usize::try_from(len) else {
                return Ok(Some(Value::Nil));
            };
            if len > MAX_BULK {
                return Err(malformed("a bulk string longer than Redis sends"));
            }
            let end = *pos + len;
            let Some(tail) = buf.get(end..end + 2) else {
                return Ok(None);
            };
            if tail != b"\r\n" {
                return Err(malformed("a bulk string without its CRLF"));
            }
            let bytes = if build {
                buf[*pos..end].to_vec()
            } else {
                Vec::new()
            };
            *pos = end + 2;
            Value::BulkString(bytes)
        }
        b'*' => {
            let Ok(count) = usize::try_from(int(line)?) else {
                return Ok(Some(Value::Nil));
            };
            if depth >= MAX_DEPTH {
                return Err(malformed("arrays nested too deep"));
            }
            // Each element takes at least 3 bytes; the count alone must
            // not size an allocation.
            let mut items = Vec::with_capacity(if build { count.min(buf.len() / 3) } else { 0 });
            for _ in 0..count {
                match value(buf, pos, depth + 1, build)? {
                    Some(item) if build => items.push(item),
                    Some(_) => {}
                    None => return Ok(None),
                }
            }
            Value::Array(items)
        }
        _ => return Err(malformed("a reply of a kind RESP2 does not have")),
    }))
}

/// The line at `pos`, without its CRLF; `pos` moves past the CRLF.
fn line<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let rest = buf.get(*pos..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    *pos += end + 2;
    Some(&rest[..end])
}

fn int(line: &[u8]) -> RedisResult<i64> {
    utf8(line)?
        .trim()
        .parse()
        .map_err(|_| malformed("an integer that does not parse"))
}

fn utf8(bytes: &[u8]) -> RedisResult<&str> {
    std::str::from_utf8(bytes).map_err(|_| malformed("a line that is not UTF-8"))
}

fn malformed(what: &'static str) -> RedisError {
    RedisError::from((
        ErrorKind::Parse,
        "malformed reply from Redis",
        what.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reply read here reads as redis-rs's reader reads it.
    #[test]
    fn reads_as_redis_rs_does() {
        let replies: &[&[u8]] = &[
            b"+OK\r\n",
            b"+QUEUED\r\n",
            b"+\r\n",
            b":0\r\n",
            b":-42\r\n",
            b":9223372036854775807\r\n",
            b"$0\r\n\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"$5\r\nhe\r\nl\r\n",
            b"-ERR unknown command 'X'\r\n",
            b"-WRONGPASS invalid username-password pair\r\n",
            b"-EXECABORT Transaction discarded because of previous errors.\r\n",
            b"-NOSCRIPT No matching script.\r\n",
            b"*3\r\n$4\r\nmeta\r\n:7\r\n*2\r\n+OK\r\n$-1\r\n",
            b"*2\r\n-ERR a\r\n:1\r\n",
        ];
        for bytes in replies {
            let ours = reply(bytes).unwrap().unwrap();
            let theirs = redis::parse_redis_value(bytes).unwrap();
            assert_eq!(ours.0, theirs, "{}", String::from_utf8_lossy(bytes));
            assert_eq!(ours.1, bytes.len());
        }
    }

    #[test]
    fn a_reply_in_pieces_is_not_there_yet() {
        let whole = b"*2\r\n$4\r\nmeta\r\n:12\r\n";
        for end in 0..whole.len() {
            assert_eq!(reply(&whole[..end]).unwrap(), None, "{end} bytes");
        }
        assert!(reply(whole).unwrap().is_some());
    }

    #[test]
    fn a_large_reply_in_pieces_is_not_there_yet() {
        let mut whole = b"*40\r\n".to_vec();
        for i in 0..40 {
            let item = format!("{i:04}").repeat(1000);
            whole.extend_from_slice(format!("${}\r\n{item}\r\n", item.len()).as_bytes());
        }
        assert!(whole.len() > CHECK_FIRST);
        for end in [CHECK_FIRST + 1, whole.len() - 1] {
            assert_eq!(reply(&whole[..end]).unwrap(), None, "{end} bytes");
        }
        let (ours, used) = reply(&whole).unwrap().unwrap();
        assert_eq!(used, whole.len());
        assert_eq!(ours, redis::parse_redis_value(&whole).unwrap());
    }

    #[test]
    fn only_the_first_reply_is_taken() {
        let (value, used) = reply(b":1\r\n+OK\r\n").unwrap().unwrap();
        assert_eq!((value, used), (Value::Int(1), 4));
    }

    #[test]
    fn bytes_that_are_not_resp2_are_an_error() {
        for bytes in [
            &b"?what\r\n"[..],
            b":x\r\n",
            b"$3\r\nabcde\r\n",
            b"+\xff\r\n",
            b"$600000000\r\n",
            b"%1\r\n",
        ] {
            let e = reply(bytes).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Parse, "{bytes:?}");
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1);
        assert!(reply(deep.as_bytes()).is_err());
    }

    #[test]
    fn a_huge_count_does_not_allocate_for_it() {
        assert_eq!(reply(b"*9223372036854775807\r\n:1\r\n").unwrap(), None);
    }
}
