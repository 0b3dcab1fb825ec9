//! Decision latency: 10,000 immutable denies + 1,000 contracts + 50 Cedar policies against the
//! same with 100 denies, beside a naive linear scan over the same deny rules in the same run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use portcullis_core::{GateKey, GatePattern, Request, Subject};
use portcullis_policy::{Contract, PolicyConfig, PolicyEngine, PolicyState, SubjectFilter};

const N_CONTRACTS: usize = 1_000;
const N_CEDAR: usize = 50;

fn pattern(raw: &str) -> GatePattern {
    GatePattern::parse(raw).unwrap()
}

fn denies(n: usize) -> Vec<GatePattern> {
    (0..n)
        .map(|i| match i % 4 {
            0 => pattern(&format!("tools:call:up{i}.tool")),
            1 => pattern(&format!("tools:call:up{i}.*")),
            2 => pattern(&format!("net:host:h{i}.example.com")),
            _ => pattern(&format!("llm:model:m{i}*")),
        })
        .collect()
}

fn contracts() -> Vec<Contract> {
    (0..N_CONTRACTS)
        .map(|i| Contract {
            id: format!("c{i}"),
            patterns: vec![
                pattern(&format!("tools:call:cu{i}.*")),
                pattern(&format!("net:host:c{i}.org")),
            ],
            subject: SubjectFilter {
                agents: vec![format!("agent{i}")],
                ..SubjectFilter::default()
            },
            valid_from: Some("2026-01-01T00:00:00Z".parse().unwrap()),
            valid_to: Some("2026-02-01T00:00:00Z".parse().unwrap()),
            auto_renew_secs: Some(86_400),
            immutable: i % 2 == 0,
            quota: None,
        })
        .collect()
}

fn cedar() -> String {
    (0..N_CEDAR)
        .map(|i| match i % 3 {
            0 => format!(
                "permit (principal, action == Portcullis::Action::\"tools:call\", resource == Portcullis::Tool::\"t{i}.x\");\n"
            ),
            1 => format!(
                "forbid (principal == Portcullis::Agent::\"blocked{i}\", action == Portcullis::Action::\"tools:call\", resource);\n"
            ),
            _ => format!(
                "forbid (principal, action == Portcullis::Action::\"net:host\", resource) when {{ context.hour == {} }};\n",
                i % 24
            ),
        })
        .collect()
}

fn engine(n_denies: usize, with_cedar: bool) -> PolicyEngine {
    let mut config = PolicyConfig {
        deny: denies(n_denies),
        ..PolicyConfig::default()
    };
    let mut sources = Vec::new();
    if with_cedar {
        config.cedar_files.push("bench.cedar".into());
        sources.push(("bench.cedar".to_owned(), cedar()));
    }
    PolicyEngine::build(&config, &contracts(), &sources).unwrap()
}

fn request(key: &str) -> Request {
    Request {
        subject: Subject {
            agent: "coder".into(),
            roles: vec!["dev".into()],
            ..Subject::default()
        },
        action: GateKey::parse(key).unwrap(),
        resource: String::new(),
        context: Default::default(),
    }
}

/// The naive baseline: scan every deny pattern and every contract.
fn linear_scan(
    denies: &[GatePattern],
    contracts: &[Contract],
    request: &Request,
    now: Timestamp,
) -> bool {
    let key = request.action.as_str();
    denies.iter().any(|p| p.matches_str(key))
        || contracts.iter().any(|c| {
            c.patterns.iter().any(|p| p.matches_str(key))
                && c.subject.matches(&request.subject)
                && c.is_active(now)
        })
}

fn bench(c: &mut Criterion) {
    let now: Timestamp = "2026-01-15T12:00:00Z".parse().unwrap();
    let state = PolicyState::in_memory();
    let allow = vec![pattern("tools:*"), pattern("net:*")];
    // A key that passes every deny layer and is allowed: the whole path runs.
    let passing = request("tools:call:github.create_issue");
    let all_contracts = contracts();
    let mut group = c.benchmark_group("deny_layers");
    for n_denies in [100usize, 10_000] {
        let engine = engine(n_denies, false);
        let deny_list = denies(n_denies);
        group.bench_function(format!("indexed/{n_denies}"), |b| {
            b.iter(|| engine.decide(black_box(&passing), &allow, now, &state))
        });
        group.bench_function(format!("linear_scan/{n_denies}"), |b| {
            b.iter(|| linear_scan(&deny_list, &all_contracts, black_box(&passing), now))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("full_decision");
    for n_denies in [100usize, 10_000] {
        let engine = engine(n_denies, true);
        let denied = request(&format!("tools:call:up{}.tool", n_denies - 3));
        let cedar_permit = request("tools:call:t0.x");
        group.bench_function(format!("allowed/{n_denies}"), |b| {
            b.iter(|| engine.decide(black_box(&passing), &allow, now, &state))
        });
        group.bench_function(format!("immutable_deny/{n_denies}"), |b| {
            b.iter(|| engine.decide(black_box(&denied), &allow, now, &state))
        });
        group.bench_function(format!("cedar_permit/{n_denies}"), |b| {
            b.iter(|| engine.decide(black_box(&cedar_permit), &[], now, &state))
        });
        report_percentiles(&format!("full_decision/allowed/{n_denies}"), || {
            black_box(engine.decide(black_box(&passing), &allow, now, &state));
        });
    }
    group.finish();
}

/// p50 and p99 of single decisions (criterion reports means and medians of batches only).
#[expect(
    clippy::disallowed_methods,
    reason = "latency percentiles need a monotonic clock"
)]
#[expect(clippy::print_stderr, reason = "a benchmark reports its figures")]
fn report_percentiles(name: &str, mut decide: impl FnMut()) {
    let mut samples: Vec<u128> = (0..20_000)
        .map(|_| {
            let start = std::time::Instant::now();
            decide();
            start.elapsed().as_nanos()
        })
        .collect();
    samples.sort_unstable();
    let at = |q: usize| samples[samples.len() * q / 100];
    eprintln!("{name}: p50 {} ns, p99 {} ns", at(50), at(99));
}

criterion_group!(benches, bench);
criterion_main!(benches);
