//! The one decision function: `decide` before any lookup, `vet` after it, and the DNS guard's
//! name check.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use jiff::Timestamp;

use crate::addr::classify;
use crate::config::Posture;
use crate::host::{Host, Name};
use crate::lease::{Caller, Lease, LeaseKey};
use crate::policy::{DOH_ADDRS, EgressPolicy, Profile};
use crate::reason::Reason;
use crate::rules::{RuleEntry, registrable};
use crate::target::{Target, TargetRequest, parse_target};

/// Most leases looked at per decision; more can only narrow access, never widen it.
pub const MAX_LEASES: usize = 4096;
/// Most resolved addresses looked at per decision.
pub const MAX_RESOLVED: usize = 64;
/// The port DNS-over-TLS uses; always refused.
pub const DNS_OVER_TLS_PORT: u16 = 853;

/// Why an allowed decision is allowed: the reason and what matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub reason: Reason,
    /// The allow rule (or built-in entry) that matched the host, if one did.
    pub rule: Option<Arc<str>>,
    /// The lease that made the decision: the host or domain lease, else the port lease.
    pub lease: Option<String>,
    /// The `net:port:` lease used to widen the port, when one was needed.
    pub port_lease: Option<String>,
}

/// A denial and what was known when it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub reason: Reason,
    /// The parsed target, when parsing got that far.
    pub target: Option<Target>,
    /// The deny rule that matched, for `egress_denied_rule`.
    pub rule: Option<Arc<str>>,
}

/// The outcome of the first phase, taken before any DNS lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase1 {
    Deny(Denial),
    /// The host is an allowed, vetted IP literal: dial exactly this address.
    DialLiteral {
        target: Target,
        addr: SocketAddr,
        grant: Grant,
    },
    /// The name is allowed: resolve it once, then call [`vet`] with the answers.
    Resolve(ResolvePlan),
}

/// An allowed name waiting for its addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvePlan {
    pub name: Name,
    pub port: u16,
    pub grant: Grant,
    profile: usize,
}

/// The outcome of the second phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase2 {
    Deny(Reason),
    /// Dial exactly this address; never look the name up again.
    Dial(SocketAddr),
}

/// The DNS guard's verdict on a queried name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsCheck {
    /// Forward the query upstream, then keep only [`filter_answers`]'s addresses.
    Allow(DnsAllowed),
    /// Answer REFUSED without any query leaving the machine.
    Deny(Reason),
}

/// A name the DNS guard may resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsAllowed {
    pub name: Name,
    pub grant: Grant,
    profile: usize,
}

/// Phase one: parse, classify, and match deny rules, DoH refusal, posture, allow rules and
/// leases. No lookup happens here, so a denied name never reaches a resolver.
pub fn decide(
    policy: &EgressPolicy,
    request: TargetRequest<'_>,
    caller: &Caller<'_>,
    leases: &[Lease],
    now: Timestamp,
) -> Phase1 {
    let target = match parse_target(request) {
        Ok(target) => target,
        Err(reason) => return deny(reason, None, None),
    };
    let profile_idx = policy.profile_index(caller.project);
    let Some(profile) = policy.profile(profile_idx) else {
        return deny(Reason::NotAllowed, Some(target), None);
    };
    if matches!(target.host, Host::Ip(_)) && profile.block_ip_literals {
        return deny(Reason::IpLiteral, Some(target), None);
    }
    let reg = host_registrable(policy, profile, &target.host, leases);
    if let Some(entry) = profile
        .deny
        .matching(&target.host, reg)
        .find(|entry| entry.port.is_none_or(|port| port == target.port))
    {
        let rule = entry.text.clone();
        return deny(Reason::DeniedRule, Some(target.clone()), Some(rule));
    }
    if target.port == DNS_OVER_TLS_PORT || is_doh_host(policy, &target.host) {
        return deny(Reason::DohRefused, Some(target.clone()), None);
    }
    let grant = if profile.posture == Posture::Off {
        Grant::new(Reason::PostureOff, None)
    } else {
        match admit(
            policy,
            profile,
            &target.host,
            reg,
            Some(target.port),
            caller,
            leases,
            now,
        ) {
            Ok(grant) => grant,
            Err(reason) => return deny(reason, Some(target.clone()), None),
        }
    };
    match &target.host {
        Host::Ip(addr) => match vet_address(profile, *addr) {
            Ok(()) => {
                let addr = SocketAddr::new(*addr, target.port);
                Phase1::DialLiteral {
                    target,
                    addr,
                    grant,
                }
            }
            Err(reason) => deny(reason, Some(target), None),
        },
        Host::Name(name) => Phase1::Resolve(ResolvePlan {
            name: name.clone(),
            port: target.port,
            grant,
            profile: profile_idx,
        }),
    }
}

/// Phase two: picks the first resolved address that passes vetting. Looks at no more than
/// [`MAX_RESOLVED`] addresses; with none passing, denies with the first one's reason.
pub fn vet(policy: &EgressPolicy, plan: &ResolvePlan, resolved: &[IpAddr]) -> Phase2 {
    let Some(profile) = policy.profile(plan.profile) else {
        return Phase2::Deny(Reason::NotAllowed);
    };
    let mut first_denial = None;
    for addr in resolved.iter().take(MAX_RESOLVED) {
        match vet_address(profile, *addr) {
            Ok(()) => return Phase2::Dial(SocketAddr::new(*addr, plan.port)),
            Err(reason) => {
                first_denial.get_or_insert(reason);
            }
        }
    }
    Phase2::Deny(first_denial.unwrap_or(Reason::DnsFailed))
}

/// The DNS guard's check of a queried name: the same rules as [`decide`], without a port
/// (port-specific deny rules do not refuse the name; a name allowed on any port resolves).
pub fn check_dns_name(
    policy: &EgressPolicy,
    name: &str,
    caller: &Caller<'_>,
    leases: &[Lease],
    now: Timestamp,
) -> DnsCheck {
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return DnsCheck::Deny(Reason::BadEncoding);
    }
    let name = match Name::parse(name) {
        Ok(name) => name,
        Err(reason) => return DnsCheck::Deny(reason),
    };
    let profile_idx = policy.profile_index(caller.project);
    let Some(profile) = policy.profile(profile_idx) else {
        return DnsCheck::Deny(Reason::NotAllowed);
    };
    let host = Host::Name(name);
    let reg = host_registrable(policy, profile, &host, leases);
    if profile
        .deny
        .matching(&host, reg)
        .any(|entry| entry.port.is_none())
    {
        return DnsCheck::Deny(Reason::DeniedRule);
    }
    if is_doh_host(policy, &host) {
        return DnsCheck::Deny(Reason::DohRefused);
    }
    let grant = if profile.posture == Posture::Off {
        Grant::new(Reason::PostureOff, None)
    } else {
        match admit(policy, profile, &host, reg, None, caller, leases, now) {
            Ok(grant) => grant,
            Err(reason) => return DnsCheck::Deny(reason),
        }
    };
    let Host::Name(name) = host else {
        return DnsCheck::Deny(Reason::BadHost);
    };
    DnsCheck::Allow(DnsAllowed {
        name,
        grant,
        profile: profile_idx,
    })
}

/// The answers the DNS guard may return for an allowed name: those that pass vetting, in order.
pub fn filter_answers(
    policy: &EgressPolicy,
    allowed: &DnsAllowed,
    answers: &[IpAddr],
) -> Vec<IpAddr> {
    let Some(profile) = policy.profile(allowed.profile) else {
        return Vec::new();
    };
    answers
        .iter()
        .take(MAX_RESOLVED)
        .copied()
        .filter(|addr| vet_address(profile, *addr).is_ok())
        .collect()
}

impl Grant {
    fn new(reason: Reason, rule: Option<Arc<str>>) -> Self {
        Self {
            reason,
            rule,
            lease: None,
            port_lease: None,
        }
    }
}

fn deny(reason: Reason, target: Option<Target>, rule: Option<Arc<str>>) -> Phase1 {
    Phase1::Deny(Denial {
        reason,
        target,
        rule,
    })
}

/// The registrable domain, computed only when a `domain:` rule or lease could use it.
fn host_registrable<'a>(
    policy: &EgressPolicy,
    profile: &Profile,
    host: &'a Host,
    leases: &[Lease],
) -> Option<&'a str> {
    let Host::Name(name) = host else {
        return None;
    };
    let needed = profile.allow.has_domain_rules()
        || profile.deny.has_domain_rules()
        || (profile.posture == Posture::Public && policy.builtin.has_domain_rules())
        || leases
            .iter()
            .take(MAX_LEASES)
            .any(|lease| matches!(lease.key, LeaseKey::Domain(_)));
    if needed {
        registrable(name, &policy.suffixes)
    } else {
        None
    }
}

fn is_doh_host(policy: &EgressPolicy, host: &Host) -> bool {
    match host {
        Host::Name(_) => policy.doh.matching(host, None).next().is_some(),
        Host::Ip(addr) => DOH_ADDRS.contains(&addr.to_canonical()),
    }
}

fn is_default_port(port: u16) -> bool {
    port == 80 || port == 443
}

/// Allow rules, the built-in list and leases. `port` is `None` for the DNS guard (any port).
#[expect(
    clippy::too_many_arguments,
    reason = "one private helper shared by decide and check_dns_name"
)]
fn admit(
    policy: &EgressPolicy,
    profile: &Profile,
    host: &Host,
    reg: Option<&str>,
    port: Option<u16>,
    caller: &Caller<'_>,
    leases: &[Lease],
    now: Timestamp,
) -> Result<Grant, Reason> {
    let port_ok = |entry: &RuleEntry| match (port, entry.port) {
        (None, _) => true,
        (Some(port), Some(rule_port)) => port == rule_port,
        (Some(port), None) => is_default_port(port),
    };
    let mut name_rule: Option<&Arc<str>> = None;
    for entry in profile.allow.matching(host, reg) {
        if port_ok(entry) {
            return Ok(Grant::new(Reason::AllowedRule, Some(entry.text.clone())));
        }
        name_rule.get_or_insert(&entry.text);
    }
    if profile.posture == Posture::Public {
        for entry in policy.builtin.matching(host, reg) {
            if port_ok(entry) {
                return Ok(Grant::new(Reason::AllowedBuiltin, Some(entry.text.clone())));
            }
            name_rule.get_or_insert(&entry.text);
        }
    }
    let mut name_lease = None;
    let mut port_lease = None;
    for lease in leases.iter().take(MAX_LEASES) {
        if !lease.is_active(now) || !lease.is_for(caller) {
            continue;
        }
        let slot = match &lease.key {
            LeaseKey::Host(leased) if leased == host => &mut name_lease,
            LeaseKey::Domain(domain) if reg == Some(domain.as_str()) => &mut name_lease,
            LeaseKey::Port(leased) if Some(*leased) == port => &mut port_lease,
            LeaseKey::Host(_) | LeaseKey::Domain(_) | LeaseKey::Port(_) => continue,
        };
        slot.get_or_insert(lease);
    }
    if name_rule.is_none() && name_lease.is_none() {
        return Err(Reason::NotAllowed);
    }
    if let Some(lease) = name_lease {
        if port.is_none_or(is_default_port) {
            return Ok(Grant {
                reason: Reason::AllowedLease,
                rule: None,
                lease: Some(lease.id.clone()),
                port_lease: None,
            });
        }
    }
    if let Some(lease) = port_lease {
        return Ok(Grant {
            reason: Reason::AllowedLease,
            rule: name_rule.cloned(),
            lease: Some(name_lease.map_or_else(|| lease.id.clone(), |named| named.id.clone())),
            port_lease: Some(lease.id.clone()),
        });
    }
    Err(Reason::PortNotAllowed)
}

/// Address vetting shared by IP literals, resolved answers and the DNS guard.
fn vet_address(profile: &Profile, addr: IpAddr) -> Result<(), Reason> {
    if DOH_ADDRS.contains(&addr.to_canonical()) {
        return Err(Reason::DohRefused);
    }
    let class = classify(addr);
    let Some(reason) = class.deny_reason() else {
        return Ok(());
    };
    // INVARIANT (cidr-not-for-literals): an IP literal only reaches this point when
    // `block_ip_literals` is off, so `allow_cidrs` never admits a literal while it is on.
    if !class.never_admitted() && profile.allow_cidrs.iter().any(|net| net.contains(&addr)) {
        return Ok(());
    }
    Err(reason)
}
