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
    /// Time a proxy client has to send a complete request head, from the accept or the end of
    /// its previous request; past it the connection is closed (1s to 1h). Also closes kept-alive
    /// connections idle that long. Default `30s`.
    pub proxy_header_read_timeout: String,
    /// A CONNECT tunnel with no byte moving for this long is closed; also the wait for a
    /// target's response head (1s to 24h). Default `5m`.
    pub proxy_idle_timeout: String,
    /// Most client connections the forward proxy keeps open; past it a new one is answered 429
    /// `egress_connection_limit` and closed (1 to 1000000). Default 1024.
    pub proxy_max_connections: usize,
    /// Most client connections one client address keeps open, with the same answer (1 to
    /// `proxy_max_connections`). Default 256.
    pub proxy_max_connections_per_ip: usize,
    /// Most open CONNECT tunnels per agent; past it 429 `egress_tunnel_limit` (1 to 1000000).
    /// Default 256.
    pub proxy_tunnels_per_agent: usize,
}

/// The forward proxy's connection limits, checked (see [`EgressConfig::proxy_limits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyLimitsConfig {
    pub header_read_timeout: std::time::Duration,
    pub idle_timeout: std::time::Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub tunnels_per_agent: usize,
}

/// A proxy limit out of its range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`egress.{key}` = `{value}` is out of range ({range})")]
pub struct ProxyLimitError {
    pub key: &'static str,
    pub value: String,
    pub range: &'static str,
}

impl EgressConfig {
    /// The proxy limits, each checked against its range.
    pub fn proxy_limits(&self) -> Result<ProxyLimitsConfig, ProxyLimitError> {
        let duration = |key: &'static str, raw: &str, max_secs: u64, range: &'static str| {
            let bad = || ProxyLimitError {
                key,
                value: raw.to_owned(),
                range,
            };
            let signed: jiff::SignedDuration = raw.trim().parse().map_err(|_| bad())?;
            let value = std::time::Duration::try_from(signed).map_err(|_| bad())?;
            if value < std::time::Duration::from_secs(1)
                || value > std::time::Duration::from_secs(max_secs)
            {
                return Err(bad());
            }
            Ok(value)
        };
        let count = |key: &'static str, value: usize, max: usize, range: &'static str| {
            if (1..=max).contains(&value) {
                Ok(value)
            } else {
                Err(ProxyLimitError {
                    key,
                    value: value.to_string(),
                    range,
                })
            }
        };
        let max_connections = count(
            "proxy_max_connections",
            self.proxy_max_connections,
            1_000_000,
            "1 to 1000000",
        )?;
        Ok(ProxyLimitsConfig {
            header_read_timeout: duration(
                "proxy_header_read_timeout",
                &self.proxy_header_read_timeout,
                3600,
                "1s to 1h",
            )?,
            idle_timeout: duration(
                "proxy_idle_timeout",
                &self.proxy_idle_timeout,
                86_400,
                "1s to 24h",
            )?,
            max_connections,
            max_connections_per_ip: count(
                "proxy_max_connections_per_ip",
                self.proxy_max_connections_per_ip,
                max_connections,
                "1 to proxy_max_connections",
            )?,
            tunnels_per_agent: count(
                "proxy_tunnels_per_agent",
                self.proxy_tunnels_per_agent,
                1_000_000,
                "1 to 1000000",
            )?,
        })
    }
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
            proxy_header_read_timeout: "30s".to_owned(),
            proxy_idle_timeout: "5m".to_owned(),
            proxy_max_connections: 1024,
            proxy_max_connections_per_ip: 256,
            proxy_tunnels_per_agent: 256,
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
