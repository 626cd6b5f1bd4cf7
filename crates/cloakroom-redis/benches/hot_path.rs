//! Micro-benchmarks of the per-request hot path: the cookie codec, the
//! encoding of a change of names, and the decoding of a loaded session.
//!
//! `cargo bench -p cloakroom-redis --bench hot_path`

use cloakroom::internals::CookieCodec;
use cloakroom::{ExpiryPolicy, Limits, Patch, SessionId, Timestamp};
use cloakroom_redis::internals::{decode_load, encode_change};
use criterion::{Criterion, criterion_group, criterion_main};
use redis::Value;
use std::hint::black_box;

fn cookie(c: &mut Criterion) {
    let codec = CookieCodec::new(&["benchmark secret, at least thirty-two bytes"]);
    let value = codec.sign([7; 32]);
    let header = format!("theme=dark; id={value}; lang=en");
    c.bench_function("cookie/sign", |b| b.iter(|| codec.sign(black_box([7; 32]))));
    c.bench_function("cookie/verify", |b| {
        b.iter(|| codec.verify(black_box(value.as_bytes())))
    });
    c.bench_function("cookie/scan_and_verify_header", |b| {
        b.iter(|| codec.verify_header(black_box(header.as_bytes())))
    });
    let mut forged = value.clone().into_bytes();
    forged[60] ^= 1;
    c.bench_function("cookie/reject_forged", |b| {
        b.iter(|| codec.verify(black_box(&forged)))
    });
}

fn patch(c: &mut Criterion) {
    let limits = Limits::default().session();
    let id = SessionId::from([3; 16]);
    let expiry = ExpiryPolicy::default().at(Timestamp(1_764_150_000_000));
    c.bench_function("patch/encode_seed_write", |b| {
        b.iter(|| {
            let mut p = Patch::default();
            p.set("login", "\"alice\"".to_owned());
            p.limit(limits);
            black_box(encode_change(black_box(&id), &p, &expiry))
        })
    });
    c.bench_function("patch/encode_ten_names", |b| {
        b.iter(|| {
            let mut p = Patch::default();
            for i in 0..10 {
                p.set(
                    format!("name{i}"),
                    format!("{{\"n\":{i},\"tags\":[\"a\",\"b\"]}}"),
                );
            }
            p.limit(limits);
            black_box(encode_change(black_box(&id), &p, &expiry))
        })
    });
}

fn load(c: &mut Criterion) {
    let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
    let seed = Value::Array(vec![
        bulk("@m"),
        bulk("1764150000000,43200000,1800000"),
        bulk("login"),
        bulk("\"alice\""),
    ]);
    assert!(matches!(decode_load(seed.clone()), Ok(Some(_))));
    c.bench_function("load/decode_seed_session", |b| {
        b.iter(|| decode_load(black_box(seed.clone())))
    });
    let mut fields = vec![bulk("@m"), bulk("1764150000000,43200000,1800000")];
    for i in 0..20 {
        fields.push(bulk(&format!("name{i}")));
        fields.push(bulk(&format!("{{\"n\":{i},\"tags\":[\"a\",\"b\"]}}")));
    }
    let big = Value::Array(fields);
    assert!(matches!(decode_load(big.clone()), Ok(Some(r)) if r.values.len() == 20));
    c.bench_function("load/decode_twenty_names", |b| {
        b.iter(|| decode_load(black_box(big.clone())))
    });
}

criterion_group!(benches, cookie, patch, load);
criterion_main!(benches);
