//! The `[egress]` configuration section as the gateway deserializes it, with its defaults.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default address of the forward proxy listener.
pub const DEFAULT_PROXY_BIND: &str = "127.0.0.1:8091";
/// Default address of the DNS guard listener.
pub const DEFAULT_DNS_BIND: &str = "127.0.0.1:8053";

/// How much of the network a project may reach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Posture {
    /// No host enforcement (development only). Deny rules, DNS-over-HTTPS refusal and address
    /// vetting still apply.
    #[serde(alias = "relaxed")]
    Off,
    /// The built-in list of public registries and code hosts, plus the `allow` rules.
    #[serde(alias = "standard")]
    Public,
    /// The `allow` rules only. The default: nothing is reachable until listed.
    #[default]
    #[serde(alias = "strict", alias = "custom")]
    Allowlist,
}

/// `[egress]`. Every field has a default, so an empty section is valid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Default `allowlist`.
    pub posture: Posture,
    /// Allow rules (`host`, `*.example.com`, `host:port`, `domain:example.co.uk`). Default empty.
    pub allow: Vec<String>,
    /// Deny rules, same syntax; they beat every allow rule and lease. Default empty.
    pub deny: Vec<String>,
    /// Refuse targets whose host is an IP literal. Default: on unless the posture is `off`.
    pub block_ip_literals: Option<bool>,
    /// DANGER: CIDRs whose addresses are dialed even though they are private, loopback and so
    /// on, when an allowed name resolves into them. Never admits IP literals while
    /// `block_ip_literals` is on, and never metadata, multicast, broadcast or unspecified
    /// addresses. Default empty.
    pub allow_cidrs: Vec<String>,
    /// Extra suffixes treated as public suffixes for `domain:` rules and leases
    /// (`internal.test`, `gov.bc.ca`). Default empty.
    pub multi_label_suffixes: Vec<String>,
    /// Forward proxy listener, read by the gateway; empty disables it. Default `127.0.0.1:8091`.
    pub proxy_bind: String,
    /// DNS guard listener, read by the gateway; empty disables it. Default `127.0.0.1:8053`.
    pub dns_bind: String,
    /// Per-project overrides, `[egress.projects.<name>]`.
    pub projects: BTreeMap<String, ProjectEgressConfig>,
    /// The DNS guard's clients by source address: CIDR -> project, `[egress.dns_clients]`
    /// (`"10.1.0.0/24" = "web"`). A query from a listed address is decided with that project's
    /// posture, leases and kill switch; the longest matching prefix wins; other clients get the
    /// global posture. Default empty.
    pub dns_clients: BTreeMap<String, String>,
}

/// `[egress.projects.<name>]`. An absent field inherits the global value, except `deny`, which
/// is always added to the global deny rules (a project can never drop a global deny).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectEgressConfig {
    pub posture: Option<Posture>,
    /// Replaces the global `allow` when present.
    pub allow: Option<Vec<String>>,
    /// Added to the global `deny`.
    pub deny: Vec<String>,
    pub block_ip_literals: Option<bool>,
    /// Replaces the global `allow_cidrs` when present.
    pub allow_cidrs: Option<Vec<String>>,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            posture: Posture::default(),
            allow: Vec::new(),
            deny: Vec::new(),
            block_ip_literals: None,
            allow_cidrs: Vec::new(),
            multi_label_suffixes: Vec::new(),
            proxy_bind: DEFAULT_PROXY_BIND.to_owned(),
            dns_bind: DEFAULT_DNS_BIND.to_owned(),
            projects: BTreeMap::new(),
            dns_clients: BTreeMap::new(),
        }
    }
}

impl Posture {
    pub const fn as_str(self) -> &'static str {
        match self {
            Posture::Off => "off",
            Posture::Public => "public",
            Posture::Allowlist => "allowlist",
        }
    }
}

impl fmt::Display for Posture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Root {
        egress: EgressConfig,
    }

    #[track_caller]
    fn check(text: &str) -> Result<EgressConfig, String> {
        toml::from_str::<Root>(text)
            .map(|root| root.egress)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_aliases() {
        let config = check("[egress]\n").unwrap();
        assert_eq!(config, EgressConfig::default());
        assert_eq!(config.posture, Posture::Allowlist);
        assert_eq!(config.proxy_bind, "127.0.0.1:8091");
        assert_eq!(config.dns_bind, "127.0.0.1:8053");
        for (alias, posture) in [
            ("off", Posture::Off),
            ("relaxed", Posture::Off),
            ("public", Posture::Public),
            ("standard", Posture::Public),
            ("allowlist", Posture::Allowlist),
            ("strict", Posture::Allowlist),
            ("custom", Posture::Allowlist),
        ] {
            let config = check(&format!("[egress]\nposture = \"{alias}\"\n")).unwrap();
            assert_eq!(config.posture, posture, "{alias}");
        }
    }

    #[test]
    fn projects_and_unknown_fields() {
        let config = check(
            "[egress]\nallow = [\"a.com\"]\n[egress.projects.web]\nposture = \"public\"\ndeny = [\"b.com\"]\n",
        )
        .unwrap();
        let web = config.projects.get("web").unwrap();
        assert_eq!(web.posture, Some(Posture::Public));
        assert_eq!(web.allow, None);
        assert!(check("[egress]\nbogus = 1\n").is_err());
        assert!(check("[egress]\nposture = \"open\"\n").is_err());
        assert!(check("[egress.projects.web]\nproxy_bind = \"x\"\n").is_err());
    }

    #[test]
    fn json_schema_lists_every_key() {
        let schema = serde_json::to_value(schemars::schema_for!(EgressConfig)).unwrap();
        let properties = schema.get("properties").unwrap().as_object().unwrap();
        for key in [
            "posture",
            "allow",
            "deny",
            "block_ip_literals",
            "allow_cidrs",
            "multi_label_suffixes",
            "proxy_bind",
            "dns_bind",
            "projects",
        ] {
            assert!(properties.contains_key(key), "{key}");
        }
    }
}
