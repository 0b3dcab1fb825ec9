//! The compiled policy: every rule validated once from [`EgressConfig`], then reused.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::config::{EgressConfig, Posture};
use crate::host::Name;
use crate::rules::{RuleError, RuleSet, parse_rule};

/// Most rules in one list.
pub const MAX_RULES: usize = 4096;
/// Most projects.
pub const MAX_PROJECTS: usize = 1024;
/// Most CIDRs in one `allow_cidrs`.
pub const MAX_CIDRS: usize = 256;
/// Longest project name in `egress.dns_clients`.
const MAX_PROJECT_NAME: usize = 128;
/// Most multi-label suffixes.
pub const MAX_SUFFIXES: usize = 256;

/// The built-in list of the `public` posture: public package registries and code hosts.
pub const PUBLIC_HOSTS: &[&str] = &[
    "github.com",
    "*.github.com",
    "*.githubusercontent.com",
    "ghcr.io",
    "pkg-containers.githubusercontent.com",
    "gitlab.com",
    "registry.gitlab.com",
    "bitbucket.org",
    "codeberg.org",
    "crates.io",
    "index.crates.io",
    "static.crates.io",
    "static.rust-lang.org",
    "pypi.org",
    "files.pythonhosted.org",
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    "huggingface.co",
    "*.huggingface.co",
    "*.hf.co",
    "registry-1.docker.io",
    "auth.docker.io",
    "production.cloudflare.docker.com",
    "quay.io",
    "cdn.quay.io",
    "gcr.io",
    "mcr.microsoft.com",
    "proxy.golang.org",
    "sum.golang.org",
    "repo.maven.apache.org",
    "repo1.maven.org",
    "rubygems.org",
    "index.rubygems.org",
    "deb.debian.org",
    "security.debian.org",
];

/// Well-known DNS-over-HTTPS hosts, always refused so agents cannot resolve around the guard.
pub const DOH_HOSTS: &[&str] = &[
    "dns.google",
    "dns.google.com",
    "dns64.dns.google",
    "cloudflare-dns.com",
    "*.cloudflare-dns.com",
    "one.one.one.one",
    "dns.quad9.net",
    "dns9.quad9.net",
    "dns10.quad9.net",
    "dns11.quad9.net",
    "doh.opendns.com",
    "doh.familyshield.opendns.com",
    "dns.adguard.com",
    "dns.adguard-dns.com",
    "*.dns.adguard-dns.com",
    "dns.nextdns.io",
    "*.dns.nextdns.io",
    "doh.cleanbrowsing.org",
    "dns.mullvad.net",
    "*.dns.mullvad.net",
    "doh.mullvad.net",
    "dns.controld.com",
    "freedns.controld.com",
    "doh.dns.sb",
    "dns.alidns.com",
    "doh.pub",
    "dns.twnic.tw",
];

/// Addresses of well-known public resolvers that serve DNS-over-HTTPS on the bare IP.
pub const DOH_ADDRS: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)),
    IpAddr::V4(Ipv4Addr::new(1, 0, 0, 1)),
    IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
    IpAddr::V4(Ipv4Addr::new(8, 8, 4, 4)),
    IpAddr::V4(Ipv4Addr::new(9, 9, 9, 9)),
    IpAddr::V4(Ipv4Addr::new(149, 112, 112, 112)),
    IpAddr::V4(Ipv4Addr::new(208, 67, 222, 222)),
    IpAddr::V4(Ipv4Addr::new(208, 67, 220, 220)),
    IpAddr::V6(Ipv6Addr::new(0x2606, 0x4700, 0x4700, 0, 0, 0, 0, 0x1111)),
    IpAddr::V6(Ipv6Addr::new(0x2606, 0x4700, 0x4700, 0, 0, 0, 0, 0x1001)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8844)),
    IpAddr::V6(Ipv6Addr::new(0x2620, 0xfe, 0, 0, 0, 0, 0, 0xfe)),
];

/// The compiled egress policy. Build it once per configuration with [`EgressPolicy::from_config`].
#[derive(Clone, Debug)]
pub struct EgressPolicy {
    // INVARIANT (profile-zero-default): `profiles[0]` is the global profile; `projects` maps a
    // project name to an index into `profiles`. Kept by `from_config`, the only constructor.
    pub(crate) profiles: Vec<Profile>,
    pub(crate) projects: HashMap<String, usize>,
    pub(crate) suffixes: Vec<Name>,
    pub(crate) builtin: RuleSet,
    pub(crate) doh: RuleSet,
    // INVARIANT (longest-prefix-first): sorted by prefix length, longest first.
    pub(crate) dns_clients: Vec<(IpNet, String)>,
}

/// The effective settings for one project (or the global default).
#[derive(Clone, Debug)]
pub(crate) struct Profile {
    pub(crate) posture: Posture,
    pub(crate) allow: RuleSet,
    pub(crate) deny: RuleSet,
    pub(crate) block_ip_literals: bool,
    pub(crate) allow_cidrs: Vec<IpNet>,
}

/// Why a configuration was refused. Each variant names where the bad entry is and quotes it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("bad rule `{rule}` in `{location}`: {problem}")]
    Rule {
        location: String,
        rule: String,
        problem: RuleError,
    },
    #[error("bad cidr `{cidr}` in `{location}`: {problem}")]
    Cidr {
        location: String,
        cidr: String,
        problem: CidrError,
    },
    #[error("bad multi-label suffix `{suffix}` in `egress.multi_label_suffixes`")]
    Suffix { suffix: String },
    #[error("`{location}` has more than {max} entries")]
    TooMany { location: String, max: usize },
    #[error(
        "bad project `{project}` for `{cidr}` in `egress.dns_clients`: 1-128 printable ASCII characters"
    )]
    DnsClientProject { cidr: String, project: String },
    #[error(transparent)]
    ProxyLimit(#[from] crate::config::ProxyLimitError),
}

/// Why an `allow_cidrs` entry was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("not a CIDR such as `127.0.0.0/8` or `fd00::/8`")]
    Syntax,
    #[error("prefix is too broad (at least /8 for IPv4 and /16 for IPv6)")]
    TooBroad,
}

impl EgressPolicy {
    /// Validates every rule, CIDR and suffix, and builds the indexes.
    pub fn from_config(config: &EgressConfig) -> Result<Self, ConfigError> {
        let suffixes = compile_suffixes(&config.multi_label_suffixes)?;
        let global = compile_profile(
            ProfileInput {
                posture: config.posture,
                allow: &config.allow,
                deny: &config.deny,
                extra_deny: &[],
                block_ip_literals: config.block_ip_literals,
                allow_cidrs: &config.allow_cidrs,
            },
            "egress",
            &suffixes,
        )?;
        check_count("egress.projects", config.projects.len(), MAX_PROJECTS)?;
        let mut profiles = vec![global];
        let mut projects = HashMap::new();
        for (name, project) in &config.projects {
            let location = format!("egress.projects.{name}");
            let profile = compile_profile(
                ProfileInput {
                    posture: project.posture.unwrap_or(config.posture),
                    allow: project.allow.as_deref().unwrap_or(&config.allow),
                    deny: &config.deny,
                    extra_deny: &project.deny,
                    block_ip_literals: project.block_ip_literals.or(config.block_ip_literals),
                    allow_cidrs: project
                        .allow_cidrs
                        .as_deref()
                        .unwrap_or(&config.allow_cidrs),
                },
                &location,
                &suffixes,
            )?;
            projects.insert(name.clone(), profiles.len());
            profiles.push(profile);
        }
        let builtin = compile_rules(PUBLIC_HOSTS.iter().copied(), "builtin", &suffixes)?;
        let doh = compile_rules(DOH_HOSTS.iter().copied(), "builtin doh", &suffixes)?;
        let dns_clients = compile_dns_clients(&config.dns_clients)?;
        config.proxy_limits()?;
        // INVARIANT (profile-zero-default): the global profile was pushed first.
        Ok(Self {
            profiles,
            projects,
            suffixes,
            builtin,
            doh,
            dns_clients,
        })
    }

    /// The effective posture for a project (the global one for unknown or absent projects).
    pub fn posture(&self, project: Option<&str>) -> Posture {
        self.profile(self.profile_index(project))
            .map_or(Posture::Allowlist, |profile| profile.posture)
    }

    pub(crate) fn profile_index(&self, project: Option<&str>) -> usize {
        project
            .and_then(|name| self.projects.get(name))
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn profile(&self, index: usize) -> Option<&Profile> {
        self.profiles.get(index)
    }
}

struct ProfileInput<'a> {
    posture: Posture,
    allow: &'a [String],
    deny: &'a [String],
    extra_deny: &'a [String],
    block_ip_literals: Option<bool>,
    allow_cidrs: &'a [String],
}

fn compile_profile(
    input: ProfileInput<'_>,
    location: &str,
    suffixes: &[Name],
) -> Result<Profile, ConfigError> {
    let allow_location = format!("{location}.allow");
    check_count(&allow_location, input.allow.len(), MAX_RULES)?;
    let allow = compile_rules(
        input.allow.iter().map(String::as_str),
        &allow_location,
        suffixes,
    )?;
    let deny_location = format!("{location}.deny");
    check_count(
        &deny_location,
        input.deny.len() + input.extra_deny.len(),
        MAX_RULES,
    )?;
    let deny = compile_rules(
        input
            .deny
            .iter()
            .chain(input.extra_deny)
            .map(String::as_str),
        &deny_location,
        suffixes,
    )?;
    let cidr_location = format!("{location}.allow_cidrs");
    check_count(&cidr_location, input.allow_cidrs.len(), MAX_CIDRS)?;
    let allow_cidrs = input
        .allow_cidrs
        .iter()
        .map(|text| {
            parse_cidr(text).map_err(|problem| ConfigError::Cidr {
                location: cidr_location.clone(),
                cidr: text.clone(),
                problem,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Profile {
        posture: input.posture,
        allow,
        deny,
        block_ip_literals: input
            .block_ip_literals
            .unwrap_or(input.posture != Posture::Off),
        allow_cidrs,
    })
}

fn compile_rules<'a>(
    texts: impl Iterator<Item = &'a str>,
    location: &str,
    suffixes: &[Name],
) -> Result<RuleSet, ConfigError> {
    let rules = texts
        .map(|text| {
            parse_rule(text, suffixes).map_err(|problem| ConfigError::Rule {
                location: location.to_owned(),
                rule: text.to_owned(),
                problem,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RuleSet::new(rules))
}

fn compile_suffixes(texts: &[String]) -> Result<Vec<Name>, ConfigError> {
    check_count("egress.multi_label_suffixes", texts.len(), MAX_SUFFIXES)?;
    let mut res = texts
        .iter()
        .map(|text| {
            Name::parse(text).map_err(|_| ConfigError::Suffix {
                suffix: text.clone(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // INVARIANT (longest-suffix-first): `rules::registrable` takes the first suffix that
    // matches, so longer suffixes must come first.
    res.sort_by(|a, b| {
        b.as_str()
            .len()
            .cmp(&a.as_str().len())
            .then_with(|| a.cmp(b))
    });
    res.dedup();
    Ok(res)
}

/// `egress.dns_clients`: any prefix length is fine here (it selects a project, it admits nothing).
fn compile_dns_clients(
    map: &BTreeMap<String, String>,
) -> Result<Vec<(IpNet, String)>, ConfigError> {
    check_count("egress.dns_clients", map.len(), MAX_CIDRS)?;
    let mut res = Vec::with_capacity(map.len());
    for (cidr, project) in map {
        let net: IpNet = cidr.parse().map_err(|_| ConfigError::Cidr {
            location: "egress.dns_clients".to_owned(),
            cidr: cidr.clone(),
            problem: CidrError::Syntax,
        })?;
        if project.is_empty()
            || project.len() > MAX_PROJECT_NAME
            || !project.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ConfigError::DnsClientProject {
                cidr: cidr.clone(),
                project: project.clone(),
            });
        }
        res.push((net.trunc(), project.clone()));
    }
    // INVARIANT (longest-prefix-first): `dns_project` takes the first match.
    res.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
    Ok(res)
}

fn parse_cidr(text: &str) -> Result<IpNet, CidrError> {
    let net: IpNet = text.parse().map_err(|_| CidrError::Syntax)?;
    let too_broad = match net {
        IpNet::V4(v4) => v4.prefix_len() < 8,
        IpNet::V6(v6) => v6.prefix_len() < 16,
    };
    if too_broad {
        return Err(CidrError::TooBroad);
    }
    Ok(net.trunc())
}

fn check_count(location: &str, count: usize, max: usize) -> Result<(), ConfigError> {
    if count > max {
        return Err(ConfigError::TooMany {
            location: location.to_owned(),
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(config: EgressConfig, expected: Result<(), &str>) {
        let got = EgressPolicy::from_config(&config)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(
            got.as_ref().map_err(String::as_str),
            expected.as_ref().map_err(|e| *e)
        );
    }

    #[test]
    fn builtin_lists_compile() {
        check(EgressConfig::default(), Ok(()));
    }

    #[test]
    fn errors_name_the_rule_and_place() {
        let mut config = EgressConfig {
            allow: vec!["ok.com".into(), "bad_host.com".into()],
            ..EgressConfig::default()
        };
        check(
            config.clone(),
            Err(
                "bad rule `bad_host.com` in `egress.allow`: rule host is not a valid name or IP literal (`egress_bad_host`)",
            ),
        );
        config.allow = vec![];
        config.projects.insert(
            "web".into(),
            crate::config::ProjectEgressConfig {
                deny: vec!["domain:co.uk".into()],
                ..Default::default()
            },
        );
        check(
            config.clone(),
            Err(
                "bad rule `domain:co.uk` in `egress.projects.web.deny`: `domain:` needs a registrable domain (one label above a public suffix)",
            ),
        );
        config.projects.clear();
        config.allow_cidrs = vec!["0.0.0.0/0".into()];
        check(
            config.clone(),
            Err(
                "bad cidr `0.0.0.0/0` in `egress.allow_cidrs`: prefix is too broad (at least /8 for IPv4 and /16 for IPv6)",
            ),
        );
        config.allow_cidrs = vec!["127.0.0.2".into()];
        check(
            config.clone(),
            Err(
                "bad cidr `127.0.0.2` in `egress.allow_cidrs`: not a CIDR such as `127.0.0.0/8` or `fd00::/8`",
            ),
        );
        config.allow_cidrs = vec![];
        config.multi_label_suffixes = vec!["bad..suffix".into()];
        check(
            config,
            Err("bad multi-label suffix `bad..suffix` in `egress.multi_label_suffixes`"),
        );
    }

    #[test]
    fn project_inheritance() {
        let mut config = EgressConfig {
            posture: Posture::Off,
            ..EgressConfig::default()
        };
        config.projects.insert(
            "strict".into(),
            crate::config::ProjectEgressConfig {
                posture: Some(Posture::Allowlist),
                ..Default::default()
            },
        );
        let policy = EgressPolicy::from_config(&config).unwrap();
        assert_eq!(policy.posture(None), Posture::Off);
        assert_eq!(policy.posture(Some("unknown")), Posture::Off);
        assert_eq!(policy.posture(Some("strict")), Posture::Allowlist);
        assert!(!policy.profiles[0].block_ip_literals);
        assert!(policy.profiles[1].block_ip_literals);
    }
}
