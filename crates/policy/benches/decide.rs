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

/// `n_extra` more policies, each for one other resource: a sliced engine never evaluates them.
fn extra_cedar(n_extra: usize) -> String {
    (0..n_extra)
        .map(|i| {
            if i % 2 == 0 {
                format!("permit (principal, action == Portcullis::Action::\"tools:call\", resource == Portcullis::Tool::\"x{i}.y\");\n")
            } else {
                format!("permit (principal, action == Portcullis::Action::\"net:host\", resource == Portcullis::Host::\"h{i}.example.com\");\n")
            }
        })
        .collect()
}

fn engine(n_denies: usize, cedar_text: Option<String>) -> PolicyEngine {
    let mut config = PolicyConfig {
        deny: denies(n_denies),
        ..PolicyConfig::default()
    };
    let mut sources = Vec::new();
    if let Some(text) = cedar_text {
        config.cedar_files.push("bench.cedar".into());
        sources.push(("bench.cedar".to_owned(), text));
    }
    PolicyEngine::build(&config, &contracts(), &sources).unwrap()
}

/// The naive Cedar baseline: the same request against the whole policy set, unsliced.
fn unsliced_cedar(text: &str) -> impl Fn() -> bool {
    use cedar_policy::{
        Authorizer, Context, Entities, Entity, EntityUid, PolicySet, Request as CedarRequest,
        RestrictedExpression,
    };
    use std::str::FromStr;
    let policies = PolicySet::from_str(text).unwrap();
    let uid = |raw: &str| EntityUid::from_str(raw).unwrap();
    let string_set = |values: &[&str]| {
        RestrictedExpression::new_set(
            values
                .iter()
                .map(|v| RestrictedExpression::new_string((*v).to_owned())),
        )
    };
    let context = [
        (
            "key",
            RestrictedExpression::new_string("tools:call:t0.x".into()),
        ),
        ("target", RestrictedExpression::new_string("t0.x".into())),
        ("time", RestrictedExpression::new_long(1_768_478_400)),
        ("hour", RestrictedExpression::new_long(12)),
        ("weekday", RestrictedExpression::new_long(4)),
        ("risk", RestrictedExpression::new_string("low".into())),
        ("risk_level", RestrictedExpression::new_long(0)),
        (
            "arguments",
            RestrictedExpression::new_entity_uid(uid(r#"Portcullis::Arguments::"request""#)),
        ),
    ];
    move || {
        let agent = Entity::new(
            uid(r#"Portcullis::Agent::"coder""#),
            [
                ("roles".to_owned(), string_set(&["dev"])),
                ("tags".to_owned(), string_set(&[])),
            ]
            .into(),
            Default::default(),
        )
        .unwrap();
        let tool = Entity::new_no_attrs(
            uid(r#"Portcullis::Tool::"t0.x""#),
            [uid(r#"Portcullis::Upstream::"t0""#)].into(),
        );
        let entities = Entities::from_entities(
            [
                agent,
                tool,
                Entity::with_uid(uid(r#"Portcullis::Upstream::"t0""#)),
                Entity::with_uid(uid(r#"Portcullis::Arguments::"request""#)),
            ],
            None,
        )
        .unwrap();
        let context =
            Context::from_pairs(context.iter().map(|(k, v)| ((*k).to_owned(), v.clone()))).unwrap();
        let request = CedarRequest::new(
            uid(r#"Portcullis::Agent::"coder""#),
            uid(r#"Portcullis::Action::"tools:call""#),
            uid(r#"Portcullis::Tool::"t0.x""#),
            context,
            None,
        )
        .unwrap();
        Authorizer::new()
            .is_authorized(&request, &policies, &entities)
            .decision()
            == cedar_policy::Decision::Allow
    }
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
        let engine = engine(n_denies, None);
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
        let engine = engine(n_denies, Some(cedar()));
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

    // Cedar alone: 50 policies, then 5,000 (the extra ones for other resources), sliced by the
    // engine beside the whole set evaluated unsliced.
    let mut group = c.benchmark_group("cedar");
    let cedar_permit = request("tools:call:t0.x");
    for n_extra in [0usize, 4_950] {
        let text = format!("{}{}", cedar(), extra_cedar(n_extra));
        let n_policies = N_CEDAR + n_extra;
        let engine = engine(0, Some(text.clone()));
        assert!(engine.decide(&cedar_permit, &[], now, &state).is_allow());
        group.bench_function(format!("sliced/{n_policies}"), |b| {
            b.iter(|| engine.decide(black_box(&cedar_permit), &[], now, &state))
        });
        let naive = unsliced_cedar(&text);
        assert!(naive());
        group.bench_function(format!("unsliced/{n_policies}"), |b| b.iter(&naive));
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
