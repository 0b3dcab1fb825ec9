//! Capsule verification latency beside the bare signature check of the same bytes, the oversized
//! rejection beside a naive decode-first approach, and the re-adoption cache hit beside a full
//! re-verification. Run: `cargo bench -p portcullis-capsule --bench verify`.
// Benchmarks are test code: a broken fixture should stop them loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use serde_json::json;

use portcullis_capsule::fuzzing::{FIXTURE_NOW, fixture_key, fixture_trust_store};
use portcullis_capsule::{
    Algorithm, CAPSULE_CONTEXT, CapsuleLimits, MAX_TOKEN_BYTES, decode_b64, sign_capsule,
    token_digest, verify,
};

/// A signed capsule of about 1.5 KB (token length), with 9 denies and 4 contracts.
fn capsule(kid: &str, alg: Algorithm, seed: u8) -> String {
    let denies: Vec<String> = (0..9)
        .map(|idx| format!("tools:call:server{idx}.dangerous_tool_*"))
        .collect();
    let contracts: Vec<_> = (0..4)
        .map(|idx| {
            json!({"id": format!("k{idx}"), "patterns": [format!("llm:model:gpt-{idx}*")],
                   "subject": {"roles": ["intern"], "tags": ["batch"]}, "immutable": idx == 0,
                   "quota": {"limit": 100, "window_secs": 3600}})
        })
        .collect();
    let body = json!({
        "v": 1, "id": "bench-capsule", "iss": "fuzz", "kid": kid, "iat": FIXTURE_NOW - 60,
        "ttl": 3600, "max_hops": 2, "scope": "peers", "denies": denies, "contracts": contracts,
        "ext": {"ticket": "OPS-1234"}
    });
    let key = fixture_key(alg, seed).unwrap();
    sign_capsule(body.to_string().as_bytes(), kid, &key).unwrap()
}

fn bench_verify(c: &mut Criterion) {
    let trust = fixture_trust_store().unwrap();
    let limits = CapsuleLimits::default();
    let now = Timestamp::from_second(FIXTURE_NOW).unwrap();
    for (name, kid, alg, seed) in [
        ("ed25519", "fuzz-ed", Algorithm::Ed25519, 1),
        ("secp256k1", "fuzz-k1", Algorithm::Secp256k1, 2),
    ] {
        let token = capsule(kid, alg, seed);
        assert!(verify(token.as_bytes(), &trust, &limits, now).is_ok());
        let mut segments = token.split('.').skip(1);
        let body = segments.next().and_then(decode_b64).unwrap_or_default();
        let sig: [u8; 64] = segments
            .next()
            .and_then(decode_b64)
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; 64]);
        let message = [CAPSULE_CONTEXT, &body].concat();
        let key = &trust.issuer(kid).unwrap().key;
        let mut group = c.benchmark_group(format!("verify_{}b/{name}", token.len()));
        group.bench_function("capsule", |b| {
            b.iter(|| verify(black_box(token.as_bytes()), &trust, &limits, now))
        });
        group.bench_function("bare_signature", |b| {
            b.iter(|| key.verify(black_box(&message), &sig))
        });
        group.finish();
    }

    let payload = "A".repeat(MAX_TOKEN_BYTES);
    let oversized = format!("v1.{payload}");
    let mut group = c.benchmark_group("oversized_4099b");
    group.bench_function("reject", |b| {
        b.iter(|| verify(black_box(oversized.as_bytes()), &trust, &limits, now))
    });
    group.bench_function("naive_decode_first", |b| {
        b.iter(|| decode_b64(black_box(&payload)))
    });
    group.finish();

    let token = capsule("fuzz-ed", Algorithm::Ed25519, 1);
    let mut adopted = HashMap::new();
    adopted.insert(token_digest(token.as_bytes()), "bench-capsule");
    let mut group = c.benchmark_group("readopt_ed25519");
    group.bench_function("cache_hit", |b| {
        b.iter(|| {
            let token = black_box(token.as_bytes());
            token.len() <= MAX_TOKEN_BYTES && adopted.contains_key(&token_digest(token))
        })
    });
    group.bench_function("full_verify", |b| {
        b.iter(|| verify(black_box(token.as_bytes()), &trust, &limits, now))
    });
    group.finish();
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
