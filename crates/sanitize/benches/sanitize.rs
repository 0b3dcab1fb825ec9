//! Scan + redact throughput on 4 KiB messages, beside a bare email regex over the same text, and
//! whole chat bodies through `apply_value` (typical, and one holding 2,000 distinct addresses).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_sanitize::{
    PiiConfig, ProtocolPaths, Sanitizer, Scope, Strategy, StrategyTable, Vault, restore,
};

const PROSE: &str = "The deployment finished without errors, but the dashboard still shows stale \
numbers. Could you check whether the nightly job picked up the new configuration? request_id=\
3f2b8c1e-9d4a-4f6b-8e2c-7a1d5b9c0e3f at 2024-03-15T10:22:31Z version 1.4.2 order #48213377 total \
$1,299.00 commit 9fceb02d0ae598e95dc970b74767f19372d61af8 listening on localhost:8080. ";

const PII: &[&str] = &[
    "Contact me at jane.doe@example.com thanks. ",
    "call me at +1 415-555-0132 after 5pm. ",
    "card 4111 1111 1111 1111 exp 04/27. ",
    "SSN 123-45-6789 on file. ",
    "IBAN: DE89 3704 0044 0532 0130 00 (EUR). ",
    "client ip=203.0.113.7 and 2001:db8::8a2e:370:7334 ",
    "token ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ in prod. ",
    "API_TOKEN=Zx8kQ2mN7pLr4TvW9yB3\n",
];

/// A message of about 4 KiB: prose and hard negatives, with `n_pii` sensitive values.
fn message(n_pii: usize) -> String {
    let mut text = String::new();
    let mut idx = 0;
    while text.len() < 4096 {
        text.push_str(PROSE);
        if idx < n_pii {
            text.push_str(PII[idx % PII.len()]);
            idx += 1;
        }
    }
    text
}

fn bench(c: &mut Criterion) {
    let key = b"bench-key-0123456789abcdef012345";
    let redact = Sanitizer::new(PiiConfig::default(), key).unwrap();
    let synthetic = Sanitizer::new(
        PiiConfig {
            strategies: StrategyTable::uniform(Strategy::Synthetic),
            ..PiiConfig::default()
        },
        key,
    )
    .unwrap();
    let email_only = regex::Regex::new(r"[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}").unwrap();
    let scope = Scope::new("bench");
    for (name, n_pii) in [("clean", 0), ("typical", 8)] {
        let text = message(n_pii);
        let mut group = c.benchmark_group(format!("4k_{name}"));
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function("baseline_email_regex_only", |b| {
            b.iter(|| black_box(email_only.find_iter(black_box(&text)).count()));
        });
        group.bench_function("scan", |b| {
            b.iter(|| black_box(redact.scan(black_box(&text)).unwrap()))
        });
        group.bench_function("scan_redact", |b| {
            b.iter(|| {
                let mut vault = Vault::new();
                black_box(redact.apply(black_box(&text), &scope, &mut vault).unwrap())
            });
        });
        group.bench_function("scan_synthetic_restore", |b| {
            b.iter(|| {
                let mut vault = Vault::new();
                let out = synthetic
                    .apply(black_box(&text), &scope, &mut vault)
                    .unwrap();
                black_box(restore(&vault, &out.text))
            });
        });
        group.finish();
    }
    let paths =
        ProtocolPaths::new(["model", "messages/*/role", "messages/*/content/*/type"]).unwrap();
    let typical: Vec<serde_json::Value> = (0..16)
        .map(|idx| serde_json::json!({"role": if idx % 2 == 0 { "user" } else { "assistant" }, "content": message(8)}))
        .collect();
    let typical = serde_json::json!({"model": "m", "messages": typical, "metadata": {"id": "kim.lee@example.net"}});
    let many: String = (0..2000)
        .map(|idx| format!("mail u{idx}@example.net, "))
        .collect();
    let many = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": many}]});
    for (name, body) in [("chat_16x4k", typical), ("chat_2000_addresses", many)] {
        let mut group = c.benchmark_group(format!("json_{name}"));
        group.throughput(Throughput::Bytes(body.to_string().len() as u64));
        group.bench_function("apply_value_synthetic", |b| {
            b.iter(|| {
                let mut value = body.clone();
                let mut vault = Vault::new();
                black_box(
                    synthetic
                        .apply_value(&mut value, &paths, &scope, &mut vault)
                        .unwrap(),
                )
            });
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
