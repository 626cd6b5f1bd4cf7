//! A new session's hash in Redis's `DUMP` format, so a create is one
//! `RESTORE key ttl payload`: it sets the hash and its TTL in one command,
//! and refuses an existing key (`BUSYKEY`), which is exactly "create only
//! under an unused id". Measured against the `MULTI` it replaces (`HSET`
//! into a staging key, `PEXPIRE`, `RENAMENX`): one command and one reply
//! instead of five commands and eight replies (BENCHMARKS.md).
//!
//! The payload is the RDB encoding of a plain hash (type 4): the number of
//! pairs, then each field and value as a length-prefixed string; then the
//! RDB version and a CRC-64 (Jones, as Redis computes it) of everything
//! before. Redis turns a small hash into a listpack on load, as `HSET`
//! would, so the session takes the same memory.

use crc::{CRC_64_REDIS, Crc};

/// RDB type of a hash stored as field/value string pairs.
const RDB_TYPE_HASH: u8 = 4;
/// The RDB version written: Redis 6.0's, which every later Redis (and the
/// servers that follow its format) accepts in a `RESTORE`.
const RDB_VERSION: u16 = 9;

const CRC64: Crc<u64> = Crc::<u64>::new(&CRC_64_REDIS);

/// The `DUMP` payload of a hash holding `pairs`, which must not repeat a
/// field (Redis refuses a payload that does).
pub(crate) fn hash_payload<'a>(
    pairs: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + pairs.len() * 32);
    out.push(RDB_TYPE_HASH);
    push_len(&mut out, pairs.len() as u64);
    for (field, value) in pairs {
        push_len(&mut out, field.len() as u64);
        out.extend_from_slice(field);
        push_len(&mut out, value.len() as u64);
        out.extend_from_slice(value);
    }
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = CRC64.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// RDB's length encoding: 6 bits, 14 bits, then 32 or 64 bits big-endian.
fn push_len(out: &mut Vec<u8>, len: u64) {
    if len < 1 << 6 {
        out.push(len as u8);
    } else if len < 1 << 14 {
        out.push(0x40 | (len >> 8) as u8);
        out.push(len as u8);
    } else if len <= u64::from(u32::MAX) {
        out.push(0x80);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_the_smallest_rdb_form() {
        let encode = |n: u64| {
            let mut v = Vec::new();
            push_len(&mut v, n);
            v
        };
        assert_eq!(encode(0), [0x00]);
        assert_eq!(encode(63), [0x3f]);
        assert_eq!(encode(64), [0x40, 0x40]);
        assert_eq!(encode(16383), [0x7f, 0xff]);
        assert_eq!(encode(16384), [0x80, 0x00, 0x00, 0x40, 0x00]);
        assert_eq!(encode(1 << 32), [0x81, 0, 0, 0, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn the_checksum_is_redis_crc64() {
        // Redis's own test vector (src/crc64.c): "123456789".
        assert_eq!(CRC64.checksum(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        let payload = hash_payload([(b"a".as_slice(), b"1".as_slice())].into_iter());
        assert_eq!(&payload[..6], &[4, 1, 1, b'a', 1, b'1']);
        assert_eq!(&payload[6..8], &9u16.to_le_bytes());
        let crc = u64::from_le_bytes(payload[8..].try_into().unwrap());
        assert_eq!(crc, CRC64.checksum(&payload[..8]));
    }
}
