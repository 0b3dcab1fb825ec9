//! The egress decision (parse + rules + vet) beside a naive baseline (`url::Url::parse` and a
//! linear scan over the same rules as strings), on the same typical targets in the same run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use portcullis_netpolicy::{
    Caller, EgressConfig, EgressPolicy, Phase1, Phase2, Posture, TargetRequest, decide, policy, vet,
};

const TARGETS: &[(&str, bool)] = &[
    (
        "https://api.github.com/repos/rust-lang/rust/issues?page=2",
        false,
    ),
    ("https://crates.io/api/v1/crates/serde", false),
    ("objects.githubusercontent.com:443", true),
    ("http://pkg.internal.example.com:8080/simple/", false),
    ("https://files.pythonhosted.org/packages/ab/cd/x.whl", false),
    ("https://evil.example.net/exfil?d=abc", false),
    ("http://169.254.169.254/latest/meta-data/", false),
];

fn rules() -> Vec<String> {
    let mut res: Vec<String> = (0..30)
        .map(|i| format!("svc{i}.corp.example.com"))
        .collect();
    res.extend((0..10).map(|i| format!("*.team{i}.example.org")));
    res.push("pkg.internal.example.com:8080".into());
    res.push("domain:example.co.uk".into());
    res
}

fn policy_under_test() -> EgressPolicy {
    let config = EgressConfig {
        posture: Posture::Public,
        allow: rules(),
        deny: vec!["secret.example.com".into()],
        ..EgressConfig::default()
    };
    EgressPolicy::from_config(&config).unwrap()
}

const ANSWER: &[IpAddr] = &[IpAddr::V4(Ipv4Addr::new(140, 82, 112, 3))];

fn netpolicy_once(policy: &EgressPolicy, now: Timestamp) -> usize {
    let caller = Caller {
        agent: Some("agent-1"),
        project: None,
    };
    let mut n_allowed = 0;
    for (target, connect) in TARGETS {
        let request = if *connect {
            TargetRequest::connect(target)
        } else {
            TargetRequest::url(target)
        };
        match decide(policy, request, &caller, &[], now) {
            Phase1::Resolve(plan) => {
                if let Phase2::Dial(addr) = vet(policy, &plan, ANSWER) {
                    black_box(addr);
                    n_allowed += 1;
                }
            }
            Phase1::DialLiteral { addr, .. } => {
                black_box(addr);
                n_allowed += 1;
            }
            Phase1::Deny(denial) => {
                black_box(denial);
            }
        }
    }
    n_allowed
}

/// The naive approach: a repairing URL parser and a linear scan over rule strings.
fn naive_once(rule_texts: &[String]) -> usize {
    let mut n_allowed = 0;
    for (target, connect) in TARGETS {
        let text = if *connect {
            format!("https://{target}/")
        } else {
            (*target).to_owned()
        };
        let Ok(url) = url::Url::parse(&text) else {
            continue;
        };
        let Some(host) = url.host_str() else {
            continue;
        };
        let host = host.to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or(0);
        let allowed = rule_texts.iter().any(|rule| {
            let (rule_host, rule_port) = match rule.rsplit_once(':') {
                Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h, p.parse::<u16>().ok()),
                _ => (rule.as_str(), None),
            };
            let rule_host = rule_host.strip_prefix("domain:").unwrap_or(rule_host);
            let host_ok = match rule_host.strip_prefix('*') {
                Some(suffix) => host.ends_with(suffix),
                None => host == rule_host || host.ends_with(&format!(".{rule_host}")),
            };
            let port_ok = match rule_port {
                Some(p) => p == port,
                None => port == 80 || port == 443,
            };
            host_ok && port_ok
        });
        if allowed {
            let addr = ANSWER[0];
            let public = match addr {
                IpAddr::V4(v4) => {
                    !(v4.is_loopback()
                        || v4.is_private()
                        || v4.is_link_local()
                        || v4.is_unspecified())
                }
                IpAddr::V6(v6) => !(v6.is_loopback() || v6.is_unspecified()),
            };
            if public {
                n_allowed += 1;
            }
        }
    }
    n_allowed
}

fn bench(c: &mut Criterion) {
    let policy = policy_under_test();
    let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let mut rule_texts = rules();
    rule_texts.extend(policy::PUBLIC_HOSTS.iter().map(|h| (*h).to_owned()));
    assert_eq!(netpolicy_once(&policy, now), 5);
    let mut group = c.benchmark_group("egress_decide_7_targets");
    group.bench_function("netpolicy_decide_vet", |b| {
        b.iter(|| netpolicy_once(black_box(&policy), now))
    });
    group.bench_function("baseline_url_parse_linear_scan", |b| {
        b.iter(|| naive_once(black_box(&rule_texts)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
