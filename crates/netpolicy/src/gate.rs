//! What the gateway's policy engine decides about a target the posture allowed: its
//! `net:host:`, `net:domain:` and `net:port:` gate keys, and which project a DNS client is.

use std::net::IpAddr;

use crate::host::Host;
use crate::policy::EgressPolicy;
use crate::rules::registrable;

/// The gate keys of one target, in the order they are decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateKeys {
    /// The canonical host (IPv6 bracketed): the policy request's resource.
    pub host: String,
    /// `net:host:<host>`, then `net:domain:<registrable>` when the host is a name with a
    /// registrable domain, then `net:port:<port>` when there is a port (not for DNS).
    pub keys: Vec<String>,
}

impl EgressPolicy {
    /// The gate keys of `host` (and `port`, absent for a DNS question). An IP literal, or a name
    /// that is itself a public suffix, has no registrable domain and so no `net:domain:` key;
    /// its `net:host:` key still has to allow.
    pub fn gate_keys(&self, host: &Host, port: Option<u16>) -> GateKeys {
        let canonical = host.to_string();
        let mut keys = vec![format!("net:host:{canonical}")];
        if let Host::Name(name) = host
            && let Some(domain) = registrable(name, &self.suffixes)
        {
            keys.push(format!("net:domain:{domain}"));
        }
        if let Some(port) = port {
            keys.push(format!("net:port:{port}"));
        }
        GateKeys {
            host: canonical,
            keys,
        }
    }

    /// The project of a DNS client at `peer` (`egress.dns_clients`, longest prefix first), or
    /// `None` for the global posture. An IPv4-mapped IPv6 peer is matched as IPv4.
    pub fn dns_project(&self, peer: IpAddr) -> Option<&str> {
        let peer = peer.to_canonical();
        // INVARIANT (longest-prefix-first): kept by `compile_dns_clients`.
        self.dns_clients
            .iter()
            .find(|(net, _)| net.contains(&peer))
            .map(|(_, project)| project.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::EgressConfig;
    use crate::host::parse_host;

    #[track_caller]
    fn check(host: &str, port: Option<u16>, expected: &[&str]) {
        let config = EgressConfig {
            multi_label_suffixes: vec!["internal.test".to_owned()],
            ..EgressConfig::default()
        };
        let policy = EgressPolicy::from_config(&config).unwrap();
        let host = parse_host(host).unwrap();
        assert_eq!(policy.gate_keys(&host, port).keys, expected);
    }

    #[test]
    fn keys_of_names_literals_and_suffixes() {
        check(
            "api.github.com",
            Some(443),
            &[
                "net:host:api.github.com",
                "net:domain:github.com",
                "net:port:443",
            ],
        );
        check(
            "a.b.example.co.uk",
            None,
            &["net:host:a.b.example.co.uk", "net:domain:example.co.uk"],
        );
        check(
            "svc.team.internal.test",
            Some(8080),
            &[
                "net:host:svc.team.internal.test",
                "net:domain:team.internal.test",
                "net:port:8080",
            ],
        );
        check(
            "203.0.113.7",
            Some(80),
            &["net:host:203.0.113.7", "net:port:80"],
        );
        check(
            "[2001:db8::1]",
            Some(443),
            &["net:host:[2001:db8::1]", "net:port:443"],
        );
        check("co.uk", Some(443), &["net:host:co.uk", "net:port:443"]);
    }

    #[test]
    fn dns_clients_pick_the_longest_prefix() {
        let mut config = EgressConfig {
            dns_clients: BTreeMap::new(),
            ..EgressConfig::default()
        };
        config.dns_clients = [
            ("127.0.0.0/8".to_owned(), "wide".to_owned()),
            ("127.0.0.2/32".to_owned(), "web".to_owned()),
        ]
        .into_iter()
        .collect();
        let policy = EgressPolicy::from_config(&config).unwrap();
        let project = |ip: &str| policy.dns_project(ip.parse().unwrap()).map(str::to_owned);
        assert_eq!(project("127.0.0.2").as_deref(), Some("web"));
        assert_eq!(project("::ffff:127.0.0.2").as_deref(), Some("web"));
        assert_eq!(project("127.0.0.3").as_deref(), Some("wide"));
        assert_eq!(project("10.0.0.1"), None);
        config.dns_clients = [("nope".to_owned(), "web".to_owned())]
            .into_iter()
            .collect();
        assert!(EgressPolicy::from_config(&config).is_err());
        config.dns_clients = [("10.0.0.0/8".to_owned(), String::new())]
            .into_iter()
            .collect();
        assert!(EgressPolicy::from_config(&config).is_err());
    }
}
