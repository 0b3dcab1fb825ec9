//! The dry-run preview (`/egress/preview`, `portcullis egress preview`) and its DNS fixture.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use jiff::Timestamp;
use serde::{Deserialize, Serialize, Serializer};

use crate::decide::{Phase1, Phase2, decide, vet};
use crate::host::Name;
use crate::lease::{Caller, Lease};
use crate::policy::EgressPolicy;
use crate::reason::Reason;
use crate::target::TargetRequest;

/// Largest fixture document accepted, in bytes.
pub const MAX_FIXTURE_BYTES: usize = 1 << 20;
/// Most names in a fixture.
pub const MAX_FIXTURE_NAMES: usize = 10_000;
/// Most addresses per name and record type.
pub const MAX_FIXTURE_ADDRS: usize = 64;

/// What one lookup answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupAnswer {
    /// Addresses in answer order (may be empty: the name exists but has no A/AAAA).
    Addrs(Vec<IpAddr>),
    NxDomain,
    /// SERVFAIL, REFUSED, timeout: no usable answer.
    Failed,
}

/// The preview's JSON: `{"allow","reason","host","port","rule","lease","lookups","resolved","dialed"}`.
/// Every key is always present; unknown values are `null`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Preview {
    pub allow: bool,
    #[serde(serialize_with = "serialize_reason")]
    pub reason: Reason,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub rule: Option<String>,
    pub lease: Option<String>,
    pub lookups: u32,
    pub resolved: Vec<IpAddr>,
    pub dialed: Option<SocketAddr>,
}

/// Runs the decision exactly as the proxy would, with `lookup` standing in for the resolver.
/// `lookup` is called at most once, and never for a denied name.
pub fn preview(
    policy: &EgressPolicy,
    request: TargetRequest<'_>,
    caller: &Caller<'_>,
    leases: &[Lease],
    now: Timestamp,
    lookup: &mut dyn FnMut(&str) -> LookupAnswer,
) -> Preview {
    match decide(policy, request, caller, leases, now) {
        Phase1::Deny(denial) => Preview {
            allow: false,
            reason: denial.reason,
            host: denial.target.as_ref().map(|t| t.host.to_string()),
            port: denial.target.as_ref().map(|t| t.port),
            rule: denial.rule.map(|rule| rule.to_string()),
            lease: None,
            lookups: 0,
            resolved: Vec::new(),
            dialed: None,
        },
        Phase1::DialLiteral {
            target,
            addr,
            grant,
        } => Preview {
            allow: true,
            reason: grant.reason,
            host: Some(target.host.to_string()),
            port: Some(target.port),
            rule: grant.rule.map(|rule| rule.to_string()),
            lease: grant.lease,
            lookups: 0,
            resolved: Vec::new(),
            dialed: Some(addr),
        },
        Phase1::Resolve(plan) => {
            // INVARIANT (one-lookup): the only call to `lookup`; the dialed address comes from
            // this answer and nothing looks the name up again.
            let answer = lookup(plan.name.as_str());
            let resolved = match answer {
                LookupAnswer::Addrs(addrs) => addrs,
                LookupAnswer::NxDomain | LookupAnswer::Failed => Vec::new(),
            };
            let (allow, reason, dialed) = match vet(policy, &plan, &resolved) {
                Phase2::Dial(addr) => (true, plan.grant.reason, Some(addr)),
                Phase2::Deny(reason) => (false, reason, None),
            };
            Preview {
                allow,
                reason,
                host: Some(plan.name.to_string()),
                port: Some(plan.port),
                rule: plan.grant.rule.map(|rule| rule.to_string()),
                lease: plan.grant.lease,
                lookups: 1,
                resolved,
                dialed,
            }
        }
    }
}

fn serialize_reason<S: Serializer>(reason: &Reason, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(reason.as_str())
}

/// A DNS fixture: `{"name": {"A": [...], "AAAA": [...]}, "other": {"rcode": "NXDOMAIN"}}`.
/// Names are canonicalized like targets; a name not in the fixture is NXDOMAIN. Lookups answer
/// the A records, then the AAAA records, each in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsFixture {
    entries: HashMap<String, LookupAnswer>,
}

/// Why a DNS fixture was refused.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("dns fixture is larger than {MAX_FIXTURE_BYTES} bytes")]
    TooLarge,
    #[error("dns fixture is not valid json of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("dns fixture name `{0}` is not a valid dns name")]
    BadName(String),
    #[error("dns fixture name `{0}` appears twice after canonicalization")]
    DuplicateName(String),
    #[error("dns fixture entry `{0}` has more than {MAX_FIXTURE_ADDRS} addresses of one type")]
    TooManyAddrs(String),
    #[error("dns fixture entry `{0}` mixes `rcode` with addresses")]
    RcodeWithAddrs(String),
    #[error(
        "dns fixture entry `{name}` has unknown rcode `{rcode}` (use NXDOMAIN, SERVFAIL or REFUSED)"
    )]
    BadRcode { name: String, rcode: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureEntry {
    #[serde(rename = "A", default)]
    a: Vec<Ipv4Addr>,
    #[serde(rename = "AAAA", default)]
    aaaa: Vec<Ipv6Addr>,
    #[serde(default)]
    rcode: Option<String>,
}

/// The fixture's entries in file order, kept as a list so that duplicate keys are seen (a map
/// would silently keep the last), refused past [`MAX_FIXTURE_NAMES`] while parsing.
struct FixtureEntries(Vec<(String, FixtureEntry)>);

impl<'de> Deserialize<'de> for FixtureEntries {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;

        impl<'de> serde::de::Visitor<'de> for EntriesVisitor {
            type Value = FixtureEntries;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object mapping names to {\"A\",\"AAAA\"} or {\"rcode\"}")
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut res = Vec::new();
                while let Some((name, entry)) = map.next_entry::<String, FixtureEntry>()? {
                    if res.len() == MAX_FIXTURE_NAMES {
                        return Err(serde::de::Error::custom(format_args!(
                            "more than {MAX_FIXTURE_NAMES} names"
                        )));
                    }
                    res.push((name, entry));
                }
                Ok(FixtureEntries(res))
            }
        }

        deserializer.deserialize_map(EntriesVisitor)
    }
}

impl DnsFixture {
    /// Parses the fixture JSON with bounded sizes.
    pub fn parse(text: &str) -> Result<Self, FixtureError> {
        if text.len() > MAX_FIXTURE_BYTES {
            return Err(FixtureError::TooLarge);
        }
        let raw: FixtureEntries = serde_json::from_str(text)?;
        let mut entries = HashMap::with_capacity(raw.0.len());
        for (raw_name, entry) in raw.0 {
            let name =
                Name::parse(&raw_name).map_err(|_| FixtureError::BadName(raw_name.clone()))?;
            if entry.a.len() > MAX_FIXTURE_ADDRS || entry.aaaa.len() > MAX_FIXTURE_ADDRS {
                return Err(FixtureError::TooManyAddrs(raw_name));
            }
            let answer = match entry.rcode {
                Some(_) if !entry.a.is_empty() || !entry.aaaa.is_empty() => {
                    return Err(FixtureError::RcodeWithAddrs(raw_name));
                }
                Some(rcode) => match rcode.as_str() {
                    "NXDOMAIN" => LookupAnswer::NxDomain,
                    "SERVFAIL" | "REFUSED" => LookupAnswer::Failed,
                    _ => {
                        return Err(FixtureError::BadRcode {
                            name: raw_name,
                            rcode,
                        });
                    }
                },
                None => LookupAnswer::Addrs(
                    entry
                        .a
                        .into_iter()
                        .map(IpAddr::V4)
                        .chain(entry.aaaa.into_iter().map(IpAddr::V6))
                        .collect(),
                ),
            };
            let key = name.as_str().to_owned();
            if entries.insert(key.clone(), answer).is_some() {
                return Err(FixtureError::DuplicateName(key));
            }
        }
        Ok(Self { entries })
    }

    /// Answers a lookup from the fixture; unknown names are NXDOMAIN.
    pub fn lookup(&self, name: &str) -> LookupAnswer {
        let key = Name::parse(name).map(|name| name.as_str().to_owned());
        key.ok()
            .and_then(|key| self.entries.get(&key).cloned())
            .unwrap_or(LookupAnswer::NxDomain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, name: &str, expected: Result<LookupAnswer, &str>) {
        let got = DnsFixture::parse(text)
            .map(|f| f.lookup(name))
            .map_err(|e| e.to_string());
        match (got, expected) {
            (Ok(got), Ok(expected)) => assert_eq!(got, expected),
            (Err(got), Err(expected)) => assert!(got.contains(expected), "{got}"),
            (got, expected) => panic!("{got:?} vs {expected:?}"),
        }
    }

    #[test]
    fn fixtures() {
        let v4 = |s: &str| IpAddr::V4(s.parse().unwrap());
        let v6 = |s: &str| IpAddr::V6(s.parse().unwrap());
        let doc = r#"{"Svc.Test.":{"AAAA":["::1"],"A":["127.0.0.2","127.0.0.3"]},"gone.test":{"rcode":"NXDOMAIN"},"bad.test":{"rcode":"SERVFAIL"},"empty.test":{}}"#;
        check(
            doc,
            "svc.test",
            Ok(LookupAnswer::Addrs(vec![
                v4("127.0.0.2"),
                v4("127.0.0.3"),
                v6("::1"),
            ])),
        );
        check(
            doc,
            "SVC.test.",
            Ok(LookupAnswer::Addrs(vec![
                v4("127.0.0.2"),
                v4("127.0.0.3"),
                v6("::1"),
            ])),
        );
        check(doc, "gone.test", Ok(LookupAnswer::NxDomain));
        check(doc, "bad.test", Ok(LookupAnswer::Failed));
        check(doc, "empty.test", Ok(LookupAnswer::Addrs(vec![])));
        check(doc, "unknown.test", Ok(LookupAnswer::NxDomain));
        check(
            r#"{"a.test":{"A":["::1"]}}"#,
            "a.test",
            Err("not valid json"),
        );
        check(r#"{"a.test":{"MX":[]}}"#, "a.test", Err("unknown field"));
        check(r#"{"a_b.test":{}}"#, "a.test", Err("not a valid dns name"));
        check(r#"{"a.test":{},"A.test":{}}"#, "a.test", Err("twice"));
        check(r#"{"a.test":{},"a.test":{}}"#, "a.test", Err("twice"));
        check(
            r#"{"a.test":{"rcode":"NOPE"}}"#,
            "a.test",
            Err("unknown rcode"),
        );
        check(
            r#"{"a.test":{"rcode":"NXDOMAIN","A":["1.2.3.4"]}}"#,
            "a.test",
            Err("mixes"),
        );
        check(r#"[]"#, "a.test", Err("not valid json"));
        let names: Vec<String> = (0..=MAX_FIXTURE_NAMES)
            .map(|i| format!(r#""n{i}.test":{{}}"#))
            .collect();
        check(
            &format!("{{{}}}", names.join(",")),
            "a.test",
            Err("more than 10000 names"),
        );
        let many = format!(
            r#"{{"a.test":{{"A":[{}]}}}}"#,
            vec!["\"1.2.3.4\""; 65].join(",")
        );
        check(&many, "a.test", Err("more than 64"));
    }
}
