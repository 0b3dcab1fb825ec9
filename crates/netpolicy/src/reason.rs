//! Stable reason codes for every egress decision, allowed or denied, and their registry table.

use portcullis_core::error::{ErrorCode, ReasonInfo};

/// Why a target was allowed or denied. The strings are an API: never renamed or reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    // Allowed.
    AllowedRule,
    AllowedBuiltin,
    AllowedLease,
    PostureOff,
    // Malformed targets (the caller sent something we refuse to interpret).
    BadTarget,
    BadScheme,
    Userinfo,
    BadEncoding,
    BadHost,
    ZoneId,
    BadPort,
    PortRequired,
    // Denied before any lookup.
    IpLiteral,
    DeniedRule,
    DohRefused,
    NotAllowed,
    PortNotAllowed,
    // Denied after resolution (or for an IP literal, by its address class).
    LoopbackAddress,
    PrivateAddress,
    LinkLocalAddress,
    MetadataAddress,
    CgnatAddress,
    MulticastAddress,
    BroadcastAddress,
    UnspecifiedAddress,
    DocumentationAddress,
    ReservedAddress,
    DnsFailed,
    // Denied by the gateway's policy engine after the posture allowed the target.
    PolicyDenied,
}

/// Every reason this crate emits, for `docs/ERROR_CODES.md`.
pub const REASONS: &[ReasonInfo] = &[
    info(Reason::AllowedRule),
    info(Reason::AllowedBuiltin),
    info(Reason::AllowedLease),
    info(Reason::PostureOff),
    info(Reason::BadTarget),
    info(Reason::BadScheme),
    info(Reason::Userinfo),
    info(Reason::BadEncoding),
    info(Reason::BadHost),
    info(Reason::ZoneId),
    info(Reason::BadPort),
    info(Reason::PortRequired),
    info(Reason::IpLiteral),
    info(Reason::DeniedRule),
    info(Reason::DohRefused),
    info(Reason::NotAllowed),
    info(Reason::PortNotAllowed),
    info(Reason::LoopbackAddress),
    info(Reason::PrivateAddress),
    info(Reason::LinkLocalAddress),
    info(Reason::MetadataAddress),
    info(Reason::CgnatAddress),
    info(Reason::MulticastAddress),
    info(Reason::BroadcastAddress),
    info(Reason::UnspecifiedAddress),
    info(Reason::DocumentationAddress),
    info(Reason::ReservedAddress),
    info(Reason::DnsFailed),
    info(Reason::PolicyDenied),
];

const fn info(reason: Reason) -> ReasonInfo {
    ReasonInfo {
        code: reason.as_str(),
        maps_to: reason.error_code(),
        summary: reason.summary(),
    }
}

impl Reason {
    /// The stable snake_case code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::AllowedRule => "egress_allowed_rule",
            Reason::AllowedBuiltin => "egress_allowed_builtin",
            Reason::AllowedLease => "egress_allowed_lease",
            Reason::PostureOff => "egress_posture_off",
            Reason::BadTarget => "egress_bad_target",
            Reason::BadScheme => "egress_bad_scheme",
            Reason::Userinfo => "egress_userinfo",
            Reason::BadEncoding => "egress_bad_encoding",
            Reason::BadHost => "egress_bad_host",
            Reason::ZoneId => "egress_zone_id",
            Reason::BadPort => "egress_bad_port",
            Reason::PortRequired => "egress_port_required",
            Reason::IpLiteral => "egress_ip_literal",
            Reason::DeniedRule => "egress_denied_rule",
            Reason::DohRefused => "egress_doh_refused",
            Reason::NotAllowed => "egress_not_allowed",
            Reason::PortNotAllowed => "egress_port_not_allowed",
            Reason::LoopbackAddress => "egress_loopback_address",
            Reason::PrivateAddress => "egress_private_address",
            Reason::LinkLocalAddress => "egress_link_local_address",
            Reason::MetadataAddress => "egress_metadata_address",
            Reason::CgnatAddress => "egress_cgnat_address",
            Reason::MulticastAddress => "egress_multicast_address",
            Reason::BroadcastAddress => "egress_broadcast_address",
            Reason::UnspecifiedAddress => "egress_unspecified_address",
            Reason::DocumentationAddress => "egress_documentation_address",
            Reason::ReservedAddress => "egress_reserved_address",
            Reason::DnsFailed => "egress_dns_failed",
            Reason::PolicyDenied => "egress_policy_denied",
        }
    }

    /// True for the reasons an allowed decision carries.
    pub const fn is_allow(self) -> bool {
        matches!(
            self,
            Reason::AllowedRule
                | Reason::AllowedBuiltin
                | Reason::AllowedLease
                | Reason::PostureOff
        )
    }

    /// The registry code a front answers with when this reason denies. Allowed reasons map to
    /// `EgressDenied` only so that the table is total; a front never sends them as errors.
    pub const fn error_code(self) -> ErrorCode {
        match self {
            Reason::BadTarget
            | Reason::BadScheme
            | Reason::Userinfo
            | Reason::BadEncoding
            | Reason::BadHost
            | Reason::ZoneId
            | Reason::BadPort
            | Reason::PortRequired => ErrorCode::BadRequest,
            Reason::DnsFailed => ErrorCode::UpstreamFailed,
            Reason::PolicyDenied => ErrorCode::PolicyDenied,
            Reason::AllowedRule
            | Reason::AllowedBuiltin
            | Reason::AllowedLease
            | Reason::PostureOff
            | Reason::IpLiteral
            | Reason::DeniedRule
            | Reason::DohRefused
            | Reason::NotAllowed
            | Reason::PortNotAllowed
            | Reason::LoopbackAddress
            | Reason::PrivateAddress
            | Reason::LinkLocalAddress
            | Reason::MetadataAddress
            | Reason::CgnatAddress
            | Reason::MulticastAddress
            | Reason::BroadcastAddress
            | Reason::UnspecifiedAddress
            | Reason::DocumentationAddress
            | Reason::ReservedAddress => ErrorCode::EgressDenied,
        }
    }

    /// One line for the generated error-code table.
    pub const fn summary(self) -> &'static str {
        match self {
            Reason::AllowedRule => "allowed: an `allow` rule matched host and port",
            Reason::AllowedBuiltin => "allowed: the `public` posture's built-in list matched",
            Reason::AllowedLease => "allowed: an unexpired `net:` lease widened the posture",
            Reason::PostureOff => "allowed: the project's posture is `off` (no host enforcement)",
            Reason::BadTarget => {
                "the target is not an absolute http(s) URL or a CONNECT `host:port`"
            }
            Reason::BadScheme => "the URL scheme is not `http` or `https`",
            Reason::Userinfo => "the target carries userinfo (`user@host`)",
            Reason::BadEncoding => {
                "the target has percent-escapes in the host, a backslash, non-ASCII or control bytes"
            }
            Reason::BadHost => "the host is not a valid name or IP literal",
            Reason::ZoneId => "the IPv6 literal carries a zone id",
            Reason::BadPort => "the port is empty, signed, not a number or out of range",
            Reason::PortRequired => "a CONNECT target has no port",
            Reason::IpLiteral => "the host is an IP literal and `block_ip_literals` is on",
            Reason::DeniedRule => "a `deny` rule matched (deny beats every allow and lease)",
            Reason::DohRefused => "DNS-over-HTTPS endpoints and port 853 are always refused",
            Reason::NotAllowed => "no rule or lease allows this host under the posture",
            Reason::PortNotAllowed => {
                "the host is allowed but not on this port (80/443 only without a port rule or lease)"
            }
            Reason::LoopbackAddress => "the address is loopback (or embeds one)",
            Reason::PrivateAddress => {
                "the address is private: RFC 1918 or IPv6 ULA (or embeds one)"
            }
            Reason::LinkLocalAddress => "the address is link-local (or embeds one)",
            Reason::MetadataAddress => "the address is a cloud metadata endpoint",
            Reason::CgnatAddress => "the address is carrier-grade NAT space 100.64.0.0/10",
            Reason::MulticastAddress => "the address is multicast",
            Reason::BroadcastAddress => "the address is the IPv4 broadcast address",
            Reason::UnspecifiedAddress => "the address is unspecified (0.0.0.0/8 or ::)",
            Reason::DocumentationAddress => "the address is in a documentation range",
            Reason::ReservedAddress => {
                "the address is reserved, benchmarking or otherwise not globally routable"
            }
            Reason::DnsFailed => "the name did not resolve to any address",
            Reason::PolicyDenied => {
                "the policy engine denied a `net:host`, `net:domain` or `net:port` key of the target"
            }
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_unique_and_prefixed() {
        let mut seen = std::collections::BTreeSet::new();
        for info in REASONS {
            assert!(info.code.starts_with("egress_"), "{}", info.code);
            assert!(
                info.code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                info.code
            );
            assert!(seen.insert(info.code), "duplicate {}", info.code);
            assert!(!info.summary.is_empty());
        }
    }
}
