//! Host rules (`host`, `*.suffix`, `domain:reg`, each with an optional `:port`) and their index.

use std::collections::HashMap;
use std::sync::Arc;

use crate::host::{Host, Name, parse_host};
use crate::reason::Reason;

/// Longest rule text accepted, in bytes.
pub const MAX_RULE_LEN: usize = 300;

/// Why a rule's text was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("rule is empty")]
    Empty,
    #[error("rule is longer than {MAX_RULE_LEN} bytes")]
    TooLong,
    #[error("rule host is not a valid name or IP literal (`{0}`)")]
    BadHost(Reason),
    #[error("rule port must be 1-65535")]
    BadPort,
    #[error("`*` is allowed only as a whole first label (`*.example.com`)")]
    MisplacedWildcard,
    #[error("a wildcard or `domain:` rule needs a name, not an IP address")]
    NotAName,
    #[error("`domain:` needs a registrable domain (one label above a public suffix)")]
    NotRegistrable,
}

/// What a rule matches on the host side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleHost {
    /// This host exactly (a name or an IP address).
    Exact(Host),
    /// Strict subdomains of this name, on a label boundary; never the name itself.
    Subdomains(Name),
    /// Every host whose registrable domain is this name.
    Domain(Name),
}

/// One compiled rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub host: RuleHost,
    pub port: Option<u16>,
    pub text: Arc<str>,
}

/// A matched rule as the index hands it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleEntry {
    pub port: Option<u16>,
    pub text: Arc<str>,
}

/// Rules indexed for lookups in time independent of the rule count.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    exact: HashMap<Host, Vec<RuleEntry>>,
    subdomains: HashMap<String, Vec<RuleEntry>>,
    domains: HashMap<String, Vec<RuleEntry>>,
    len: usize,
}

/// Parses one rule. `suffixes` are the configured multi-label suffixes, longest first.
pub fn parse_rule(text: &str, suffixes: &[Name]) -> Result<Rule, RuleError> {
    if text.is_empty() {
        return Err(RuleError::Empty);
    }
    if text.len() > MAX_RULE_LEN {
        return Err(RuleError::TooLong);
    }
    let (is_domain, body) = match text.strip_prefix("domain:") {
        Some(body) => (true, body),
        None => (false, text),
    };
    let (host_text, port) = split_rule_port(body)?;
    let (is_wildcard, host_text) = match host_text.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host_text),
    };
    if host_text.contains('*') || (is_wildcard && is_domain) {
        return Err(RuleError::MisplacedWildcard);
    }
    if !host_text.is_ascii()
        || host_text
            .bytes()
            .any(|b| !b.is_ascii_graphic() || b == b'%')
    {
        return Err(RuleError::BadHost(Reason::BadEncoding));
    }
    let host = parse_host(host_text).map_err(RuleError::BadHost)?;
    let rule_host = match (host, is_wildcard, is_domain) {
        (host, false, false) => RuleHost::Exact(host),
        (Host::Name(name), true, _) => RuleHost::Subdomains(name),
        (Host::Name(name), _, true) => {
            if registrable(&name, suffixes) != Some(name.as_str()) {
                return Err(RuleError::NotRegistrable);
            }
            RuleHost::Domain(name)
        }
        (Host::Ip(_), _, _) => return Err(RuleError::NotAName),
    };
    Ok(Rule {
        host: rule_host,
        port,
        text: Arc::from(text),
    })
}

/// The registrable domain of `name`: the configured multi-label suffixes first (longest
/// first), then the public suffix list. `None` when `name` is itself a suffix.
pub fn registrable<'a>(name: &'a Name, suffixes: &[Name]) -> Option<&'a str> {
    let text = name.as_str();
    for suffix in suffixes {
        if text == suffix.as_str() {
            return None;
        }
        if let Some(head) = text
            .strip_suffix(suffix.as_str())
            .and_then(|head| head.strip_suffix('.'))
        {
            let owner_start = head.rfind('.').map_or(0, |dot| dot + 1);
            return text.get(owner_start..);
        }
    }
    psl::domain_str(text)
}

impl RuleSet {
    /// Builds the index. Rules keep their order within each bucket.
    pub fn new(rules: impl IntoIterator<Item = Rule>) -> Self {
        let mut res = Self::default();
        for rule in rules {
            let entry = RuleEntry {
                port: rule.port,
                text: rule.text,
            };
            let bucket = match rule.host {
                RuleHost::Exact(host) => res.exact.entry(host).or_default(),
                RuleHost::Subdomains(name) => {
                    res.subdomains.entry(name.as_str().to_owned()).or_default()
                }
                RuleHost::Domain(name) => res.domains.entry(name.as_str().to_owned()).or_default(),
            };
            bucket.push(entry);
            res.len += 1;
        }
        res
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when some rule needs the registrable domain of the host.
    pub fn has_domain_rules(&self) -> bool {
        !self.domains.is_empty()
    }

    /// Every rule whose host side matches, in the order: exact, subdomain (nearest parent
    /// first), registrable domain. `reg` is the host's registrable domain when known.
    pub fn matching<'a>(
        &'a self,
        host: &'a Host,
        reg: Option<&'a str>,
    ) -> impl Iterator<Item = &'a RuleEntry> + 'a {
        let exact = self.exact.get(host).into_iter().flatten();
        let parents = match host {
            Host::Name(name) => Some(parent_suffixes(name.as_str())),
            Host::Ip(_) => None,
        };
        let subdomains = parents
            .into_iter()
            .flatten()
            .filter_map(|parent| self.subdomains.get(parent))
            .flatten();
        let domains = match host {
            Host::Name(_) => reg.and_then(|reg| self.domains.get(reg)),
            Host::Ip(_) => None,
        }
        .into_iter()
        .flatten();
        exact.chain(subdomains).chain(domains)
    }
}

/// `a.b.c` yields `b.c`, then `c`: the strict parents on label boundaries.
fn parent_suffixes(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('.')
        .filter_map(move |(idx, _)| name.get(idx + 1..))
}

/// Splits an optional `:port` off a rule. IPv6 hosts are bracketed.
fn split_rule_port(body: &str) -> Result<(&str, Option<u16>), RuleError> {
    let (host, port_text) = if body.starts_with('[') {
        match body.rsplit_once("]:") {
            Some((host, port)) => (host.len() + 1, Some(port)),
            None => (body.len(), None),
        }
    } else {
        match body.rsplit_once(':') {
            Some((host, port)) => (host.len(), Some(port)),
            None => (body.len(), None),
        }
    };
    let host_text = body.get(..host).ok_or(RuleError::BadPort)?;
    let port = match port_text {
        None => None,
        Some(text) => {
            if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(RuleError::BadPort);
            }
            match text.parse::<u16>() {
                Ok(0) | Err(_) => return Err(RuleError::BadPort),
                Ok(port) => Some(port),
            }
        }
    };
    Ok((host_text, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suffixes() -> Vec<Name> {
        vec![Name::parse("internal.test").unwrap()]
    }

    #[track_caller]
    fn check(rules: &[&str], host: &str, expected: &[&str]) {
        let suffixes = suffixes();
        let set = RuleSet::new(rules.iter().map(|r| parse_rule(r, &suffixes).unwrap()));
        let host = parse_host(host).unwrap();
        let reg = match &host {
            Host::Name(name) => registrable(name, &suffixes),
            Host::Ip(_) => None,
        };
        let got: Vec<&str> = set.matching(&host, reg).map(|e| &*e.text).collect();
        assert_eq!(got, expected, "{host}");
    }

    #[test]
    fn matching() {
        let rules = [
            "example.com",
            "*.example.com",
            "api.example.com:8443",
            "domain:example.co.uk",
            "[2001:db8::1]",
            "203.0.113.7:8080",
        ];
        check(&rules, "example.com", &["example.com"]);
        check(&rules, "a.example.com", &["*.example.com"]);
        check(
            &rules,
            "api.example.com",
            &["api.example.com:8443", "*.example.com"],
        );
        check(&rules, "a.b.example.com", &["*.example.com"]);
        check(&rules, "evilexample.com", &[]);
        check(&rules, "example.com.evil.com", &[]);
        check(&rules, "example.co.uk", &["domain:example.co.uk"]);
        check(&rules, "www.example.co.uk", &["domain:example.co.uk"]);
        check(&rules, "other.co.uk", &[]);
        check(&rules, "[2001:db8::1]", &["[2001:db8::1]"]);
        check(&rules, "203.0.113.7", &["203.0.113.7:8080"]);
        check(
            &["domain:corp.internal.test"],
            "a.b.corp.internal.test",
            &["domain:corp.internal.test"],
        );
    }

    #[track_caller]
    fn check_err(rule: &str, expected: RuleError) {
        assert_eq!(parse_rule(rule, &suffixes()), Err(expected), "{rule}");
    }

    #[test]
    fn refused_rules() {
        check_err("", RuleError::Empty);
        check_err("*", RuleError::MisplacedWildcard);
        check_err("*.*.example.com", RuleError::MisplacedWildcard);
        check_err("a*.example.com", RuleError::MisplacedWildcard);
        check_err("example.com:0", RuleError::BadPort);
        check_err("example.com:", RuleError::BadPort);
        check_err("example.com:+1", RuleError::BadPort);
        check_err("domain:co.uk", RuleError::NotRegistrable);
        check_err("domain:www.example.com", RuleError::NotRegistrable);
        check_err("domain:internal.test", RuleError::NotRegistrable);
        check_err("*.10.0.0.1", RuleError::NotAName);
        check_err("exa%6dple.com", RuleError::BadHost(Reason::BadEncoding));
        check_err("user@example.com", RuleError::BadHost(Reason::BadHost));
    }
}
