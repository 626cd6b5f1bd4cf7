//! A new session's hash in Redis's `DUMP` format, so a create is one
//! `RESTORE key ttl payload`: it sets the hash and its TTL in one command,
//! and refuses an existing key (`BUSYKEY`), which is exactly "create only
//! under an unused id". Measured against the `MULTI` it replaces (`HSET`
//! into a staging key, `PEXPIRE`, `RENAMENX`): one command and one reply
//! instead of five commands and eight replies (BENCHMARKS.md).
//!
//! Two forms, each followed by the RDB version and a CRC-64 (Jones, as
//! Redis computes it) of everything before:
//!
//! - [`hash_listpack_payload`]: the hash as one listpack (type 16, RDB
//!   10), the form Redis 7.0 and later keep small hashes in, so loading
//!   it is a copy. `RESTORE` of it cost Redis 2.5 µs against 3.4 µs for
//!   the plain form (200,000 calls, Redis 7.0.15, `INFO commandstats`).
//!   Fields and values are all written as strings; Redis would write a
//!   number-like one as an integer, and reads both alike.
//! - [`hash_payload`]: a plain hash (type 4, RDB 9): the number of pairs,
//!   then each field and value as a length-prefixed string. Redis 6
//!   reads it, and turns a small hash into a compact one on load.

use crc::{CRC_64_REDIS, Crc, Table};

/// RDB type of a hash stored as field/value string pairs.
const RDB_TYPE_HASH: u8 = 4;
/// The RDB version written with it: Redis 6.0's, which every later Redis
/// (and the servers that follow its format) accepts in a `RESTORE`.
const RDB_VERSION: u16 = 9;
/// RDB type of a hash stored as one listpack.
const RDB_TYPE_HASH_LISTPACK: u8 = 16;
/// The first RDB version with listpack hashes: Redis 7.0's.
const RDB_VERSION_LISTPACK: u16 = 10;
/// A listpack's header (total bytes, element count) and end mark.
const LISTPACK_OVERHEAD: usize = 4 + 2 + 1;

/// Sliced by 16 bytes: over a seed session's payload (about 100 bytes)
/// the byte-at-a-time table cost a create 0.25 µs of CPU under load, this
/// 0.10 µs (perf, BENCHMARKS.md). A `static`, not a `const`: the tables
/// are 32 KiB.
static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

/// The `DUMP` payload of a hash holding `pairs` as a listpack, for Redis
/// 7.0 and later. `pairs` must not repeat a field.
pub(crate) fn hash_listpack_payload<'a>(
    pairs: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])> + Clone,
) -> Vec<u8> {
    let elements = pairs.len() * 2;
    let listpack_len = LISTPACK_OVERHEAD
        + pairs
            .clone()
            .map(|(f, v)| listpack_entry_len(f.len()) + listpack_entry_len(v.len()))
            .sum::<usize>();
    let mut out = Vec::with_capacity(1 + 9 + listpack_len + 2 + 8);
    out.push(RDB_TYPE_HASH_LISTPACK);
    // The listpack is stored as one RDB string.
    push_len(&mut out, listpack_len as u64);
    let start = out.len();
    out.extend_from_slice(&(listpack_len as u32).to_le_bytes());
    // More than 65534 elements are counted as "unknown", as Redis does.
    out.extend_from_slice(&(elements.min(65_535) as u16).to_le_bytes());
    for (field, value) in pairs {
        push_listpack_string(&mut out, field);
        push_listpack_string(&mut out, value);
    }
    out.push(0xFF);
    debug_assert_eq!(out.len() - start, listpack_len);
    out.extend_from_slice(&RDB_VERSION_LISTPACK.to_le_bytes());
    let crc = CRC64.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The bytes a string of `len` bytes takes in a listpack: its encoding
/// header, itself, and the back-length of the two.
fn listpack_entry_len(len: usize) -> usize {
    let entry = listpack_header_len(len) + len;
    entry + backlen_len(entry)
}

fn listpack_header_len(len: usize) -> usize {
    match len {
        0..64 => 1,
        64..4096 => 2,
        _ => 5,
    }
}

/// Bytes of the back-length of an entry of `len` bytes (listpack.c's
/// `lpEncodeBacklen`, bounds included).
fn backlen_len(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..16383 => 2,
        16383..2_097_151 => 3,
        2_097_151..268_435_455 => 4,
        _ => 5,
    }
}

/// One string entry: a 6-bit, 12-bit or 32-bit length header, the bytes,
/// then the entry's length written backwards, 7 bits per byte.
fn push_listpack_string(out: &mut Vec<u8>, s: &[u8]) {
    let len = s.len();
    let header = listpack_header_len(len);
    match header {
        1 => out.push(0x80 | len as u8),
        2 => out.extend_from_slice(&[0xE0 | (len >> 8) as u8, len as u8]),
        _ => {
            out.push(0xF0);
            out.extend_from_slice(&(len as u32).to_le_bytes());
        }
    }
    out.extend_from_slice(s);
    let entry = header + len;
    let n = backlen_len(entry);
    // The most significant 7 bits first; every byte but the first has its
    // top bit set.
    for i in (0..n).rev() {
        let bits = ((entry >> (7 * i)) & 127) as u8;
        out.push(if i == n - 1 { bits } else { bits | 128 });
    }
}

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

    /// listpack.c's `lpEncodeBacklen`, transcribed.
    fn reference_backlen(l: u64) -> Vec<u8> {
        if l <= 127 {
            vec![l as u8]
        } else if l < 16383 {
            vec![(l >> 7) as u8, ((l & 127) | 128) as u8]
        } else if l < 2097151 {
            vec![
                (l >> 14) as u8,
                (((l >> 7) & 127) | 128) as u8,
                ((l & 127) | 128) as u8,
            ]
        } else if l < 268435455 {
            vec![
                (l >> 21) as u8,
                (((l >> 14) & 127) | 128) as u8,
                (((l >> 7) & 127) | 128) as u8,
                ((l & 127) | 128) as u8,
            ]
        } else {
            vec![
                (l >> 28) as u8,
                (((l >> 21) & 127) | 128) as u8,
                (((l >> 14) & 127) | 128) as u8,
                (((l >> 7) & 127) | 128) as u8,
                ((l & 127) | 128) as u8,
            ]
        }
    }

    #[test]
    fn listpack_entries_match_redis_encoding() {
        for len in [
            0, 1, 63, 64, 125, 126, 127, 128, 4095, 4096, 16377, 16378, 16383, 20000,
        ] {
            let s = vec![b'x'; len];
            let mut out = Vec::new();
            push_listpack_string(&mut out, &s);
            let header = match len {
                0..64 => vec![0x80 | len as u8],
                64..4096 => vec![0xE0 | (len >> 8) as u8, len as u8],
                _ => [vec![0xF0], (len as u32).to_le_bytes().to_vec()].concat(),
            };
            let entry = header.len() + len;
            let expected = [header, s, reference_backlen(entry as u64)].concat();
            assert_eq!(out, expected, "a string of {len} bytes");
            assert_eq!(out.len(), listpack_entry_len(len), "{len}");
        }
        for l in [
            1u64, 127, 128, 16382, 16383, 2097150, 2097151, 268435454, 268435455,
        ] {
            assert_eq!(backlen_len(l as usize), reference_backlen(l).len(), "{l}");
        }
    }

    #[test]
    fn a_listpack_payload_has_its_header_count_and_end() {
        let payload = hash_listpack_payload([(b"a".as_slice(), b"1".as_slice())].into_iter());
        // Type, RDB string length 13, then the listpack: 13 bytes in all,
        // 2 elements, "a" and "1" (header, byte, back-length), the end.
        let listpack = [13, 0, 0, 0, 2, 0, 0x81, b'a', 2, 0x81, b'1', 2, 0xFF];
        assert_eq!(payload[0], 16);
        assert_eq!(payload[1], 13);
        assert_eq!(&payload[2..15], &listpack);
        assert_eq!(&payload[15..17], &10u16.to_le_bytes());
        let crc = u64::from_le_bytes(payload[17..].try_into().unwrap());
        assert_eq!(crc, CRC64.checksum(&payload[..17]));
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
