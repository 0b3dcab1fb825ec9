//! The property the `egress_target` fuzz target checks, shared with the corpus replay test.

use std::net::IpAddr;
use std::sync::LazyLock;

use jiff::Timestamp;

use crate::addr::{AddrClass, classify};
use crate::config::{EgressConfig, Posture, ProjectEgressConfig};
use crate::decide::{Phase1, decide};
use crate::host::parse_host;
use crate::lease::{Caller, Lease, LeaseKey, LeaseSubject};
use crate::policy::EgressPolicy;
use crate::preview::{LookupAnswer, preview};
use crate::target::{TargetRequest, parse_target};

static POLICY: LazyLock<Option<EgressPolicy>> = LazyLock::new(|| {
    let mut config = EgressConfig {
        posture: Posture::Public,
        allow: vec![
            "example.com".into(),
            "*.example.com".into(),
            "api.example.org:8443".into(),
            "domain:example.co.uk".into(),
            "svc.test".into(),
        ],
        deny: vec!["secret.example.com".into(), "*.evil.example.com".into()],
        allow_cidrs: vec!["127.0.0.0/8".into()],
        ..EgressConfig::default()
    };
    config.projects.insert(
        "open".into(),
        ProjectEgressConfig {
            posture: Some(Posture::Off),
            block_ip_literals: Some(false),
            ..ProjectEgressConfig::default()
        },
    );
    EgressPolicy::from_config(&config).ok()
});

/// Checks one fuzz input. The first byte picks the form (bit 0: CONNECT) and the project
/// (bit 1: a posture-`off` project without `block_ip_literals`); the rest is the target.
/// Returns a description of the first violated property.
pub fn check_target(data: &[u8]) -> Result<(), String> {
    let Some((flags, rest)) = data.split_first() else {
        return Ok(());
    };
    let Ok(raw) = std::str::from_utf8(rest) else {
        return Ok(());
    };
    let Some(policy) = POLICY.as_ref() else {
        return Err("fixed fuzz policy does not compile".into());
    };
    let request = if flags & 1 == 1 {
        TargetRequest::connect(raw)
    } else {
        TargetRequest::url(raw)
    };
    let caller = Caller {
        agent: Some("fuzz-agent"),
        project: if flags & 2 == 2 { Some("open") } else { None },
    };
    let now = Timestamp::UNIX_EPOCH;
    let leases = [Lease {
        id: "lease-1".into(),
        key: LeaseKey::Port(8080),
        subject: LeaseSubject::Agent("fuzz-agent".into()),
        expires_at: Timestamp::MAX,
    }];
    let first = decide(policy, request, &caller, &leases, now);
    if first != decide(policy, request, &caller, &leases, now) {
        return Err("decide is not deterministic".into());
    }
    if let Ok(target) = parse_target(request) {
        let text = target.host.to_string();
        if parse_host(&text).as_ref() != Ok(&target.host) {
            return Err(format!(
                "canonical host `{text}` does not parse back to itself"
            ));
        }
        // The same host and port as a CONNECT authority must decide the same way.
        let authority = format!("{text}:{}", target.port);
        let again = decide(
            policy,
            TargetRequest::connect(&authority),
            &caller,
            &leases,
            now,
        );
        if !same_outcome(&first, &again) {
            return Err(format!("url and connect forms disagree for `{authority}`"));
        }
    }
    match &first {
        Phase1::DialLiteral { addr, .. } => {
            let class = classify(addr.ip());
            let loopback_ok = class == AddrClass::Loopback && addr.ip().is_loopback();
            if class != AddrClass::Public && !loopback_ok {
                return Err(format!("dialing a literal of class {class:?}"));
            }
        }
        Phase1::Resolve(plan) => {
            if parse_host(plan.name.as_str()).ok().as_ref()
                != Some(&crate::host::Host::Name(plan.name.clone()))
            {
                return Err("resolve plan name is not canonical".into());
            }
        }
        Phase1::Deny(_) => {}
    }
    let mut n_lookups = 0u32;
    let mut lookup = |_: &str| {
        n_lookups += 1;
        LookupAnswer::Addrs(vec![
            IpAddr::from([169, 254, 169, 254]),
            IpAddr::from([127, 0, 0, 2]),
            IpAddr::from([93, 184, 215, 14]),
        ])
    };
    let shown = preview(policy, request, &caller, &leases, now, &mut lookup);
    let denied_early = matches!(first, Phase1::Deny(_) | Phase1::DialLiteral { .. });
    if denied_early && n_lookups != 0 {
        return Err("a lookup happened without a resolve plan".into());
    }
    if shown.lookups != n_lookups || n_lookups > 1 {
        return Err(format!(
            "lookups reported {} but made {n_lookups}",
            shown.lookups
        ));
    }
    if shown.allow != shown.reason.is_allow() || shown.allow != shown.dialed.is_some() {
        return Err("allow, reason and dialed disagree".into());
    }
    if let Some(dialed) = shown.dialed {
        if classify(dialed.ip()) == AddrClass::Metadata {
            return Err("dialed a metadata address".into());
        }
    }
    serde_json::to_string(&shown).map_err(|e| format!("preview does not serialize: {e}"))?;
    Ok(())
}

fn same_outcome(a: &Phase1, b: &Phase1) -> bool {
    match (a, b) {
        (Phase1::Deny(x), Phase1::Deny(y)) => x.reason == y.reason,
        (
            Phase1::DialLiteral {
                addr: x, grant: gx, ..
            },
            Phase1::DialLiteral {
                addr: y, grant: gy, ..
            },
        ) => x == y && gx == gy,
        (Phase1::Resolve(x), Phase1::Resolve(y)) => x == y,
        _ => false,
    }
}
