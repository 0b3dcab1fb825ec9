//! The DNS guard's name check and answer filter share the proxy's rules.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::IpAddr;

use jiff::Timestamp;
use portcullis_netpolicy::{
    Caller, DnsCheck, EgressConfig, EgressPolicy, Lease, LeaseKey, LeaseSubject, check_dns_name,
    filter_answers,
};

fn policy() -> EgressPolicy {
    let config: EgressConfig = toml::from_str(
        r#"
allow = ["allowed.com", "*.wild.com", "api.port.com:8443", "dns.google"]
deny = ["blocked.wild.com", "allowed.com:25"]
allow_cidrs = ["127.0.0.2/32"]
"#,
    )
    .unwrap();
    EgressPolicy::from_config(&config).unwrap()
}

#[track_caller]
fn check(name: &str, leases: &[Lease], expected: Result<&str, &str>) {
    let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let caller = Caller {
        agent: Some("agent-1"),
        project: None,
    };
    let got = match check_dns_name(&policy(), name, &caller, leases, now) {
        DnsCheck::Allow(allowed) => Ok(allowed.grant.reason.as_str()),
        DnsCheck::Deny(reason) => Err(reason.as_str()),
    };
    assert_eq!(got, expected, "{name}");
}

#[test]
fn names() {
    check("allowed.com", &[], Ok("egress_allowed_rule"));
    check("ALLOWED.com.", &[], Ok("egress_allowed_rule"));
    check("a.wild.com", &[], Ok("egress_allowed_rule"));
    check("api.port.com", &[], Ok("egress_allowed_rule"));
    check("wild.com", &[], Err("egress_not_allowed"));
    check("blocked.wild.com", &[], Err("egress_denied_rule"));
    check("dns.google", &[], Err("egress_doh_refused"));
    check(
        "exfil-0123abcd.attacker.example",
        &[],
        Err("egress_not_allowed"),
    );
    check("a_b.allowed.com", &[], Err("egress_bad_host"));
    check("127.0.0.1", &[], Err("egress_bad_host"));
    check("allowed.com\0", &[], Err("egress_bad_encoding"));
    let lease = Lease {
        id: "l1".into(),
        key: LeaseKey::parse("net:host:leased.example").unwrap(),
        subject: LeaseSubject::Agent("agent-1".into()),
        expires_at: "2026-01-01T00:00:01Z".parse().unwrap(),
    };
    check(
        "leased.example",
        std::slice::from_ref(&lease),
        Ok("egress_allowed_lease"),
    );
    let expired = Lease {
        expires_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        ..lease
    };
    check("leased.example", &[expired], Err("egress_not_allowed"));
}

#[test]
fn answers_are_filtered() {
    let policy = policy();
    let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let DnsCheck::Allow(allowed) =
        check_dns_name(&policy, "allowed.com", &Caller::default(), &[], now)
    else {
        panic!("allowed.com should be allowed");
    };
    let answers: Vec<IpAddr> = [
        "10.0.0.1",
        "93.184.215.14",
        "127.0.0.2",
        "::1",
        "169.254.169.254",
        "2606:4700:10::1",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    let kept: Vec<String> = filter_answers(&policy, &allowed, &answers)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(kept, ["93.184.215.14", "127.0.0.2", "2606:4700:10::1"]);
}
