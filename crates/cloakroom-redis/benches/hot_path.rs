//! Micro-benchmarks of the per-request hot path: the cookie codec, the
//! Redis apply call's encoding, and the decoding of a loaded session.
//!
//! `cargo bench -p cloakroom-redis --bench hot_path`

use cloakroom::internals::CookieCodec;
use cloakroom::{ExpiryPolicy, Patch, SessionId, Timestamp};
use cloakroom_redis::internals::{apply_script, decode_load, encode_apply};
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
    let script = apply_script();
    let id = SessionId::from([3; 16]);
    let expiry = ExpiryPolicy::default().at(Timestamp(1_764_150_000_000));
    c.bench_function("patch/encode_seed_write", |b| {
        b.iter(|| {
            let mut p = Patch::default();
            p.set("login", "\"alice\"".to_owned());
            let call = encode_apply(&script, black_box(&id), &p, &expiry);
            black_box(call);
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
            let call = encode_apply(&script, black_box(&id), &p, &expiry);
            black_box(call);
        })
    });
}

fn load(c: &mut Criterion) {
    let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
    let seed = Value::Array(vec![
        bulk("@c"),
        bulk("1764150000000"),
        bulk("@d"),
        bulk("1764193200000"),
        bulk("login"),
        bulk("\"alice\""),
    ]);
    c.bench_function("load/decode_seed_session", |b| {
        b.iter(|| decode_load(black_box(seed.clone())))
    });
    let mut fields = vec![bulk("@c"), bulk("1"), bulk("@d"), bulk("9999999999999")];
    for i in 0..20 {
        fields.push(bulk(&format!("name{i}")));
        fields.push(bulk(&format!("{{\"n\":{i},\"tags\":[\"a\",\"b\"]}}")));
    }
    let big = Value::Array(fields);
    c.bench_function("load/decode_twenty_names", |b| {
        b.iter(|| decode_load(black_box(big.clone())))
    });
}

criterion_group!(benches, cookie, patch, load);
criterion_main!(benches);
