//! The adapter's own reason codes (the decision's codes live in `portcullis_netpolicy::REASONS`).

use portcullis_core::error::{ErrorCode, ReasonInfo};

/// Why the proxy or the DNS guard answered as it did, beyond the decision function's reasons.
/// The strings are an API: never renamed or reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyReason {
    /// No `Proxy-Authorization`, or one the gateway does not accept: 407.
    AuthRequired,
    /// The agent already has `tunnels_per_agent` open tunnels: 429.
    TunnelLimit,
    /// Dialing the vetted address took longer than `connect_timeout`: 504.
    ConnectTimeout,
    /// Dialing the vetted address failed: 502.
    ConnectFailed,
    /// The target closed or broke the connection before a response head, or did not send
    /// one within `idle_timeout`: 502 or 504.
    UpstreamFailed,
    UpstreamTimeout,
    /// An absolute-form `https://` request: the proxy forwards only `http://`; use CONNECT.
    HttpsForward,
    /// A request in origin-form or with a method the proxy does not forward.
    NotAProxyRequest,
    /// A connection ended normally (close records only).
    Closed,
    /// A tunnel moved no byte for `idle_timeout` and was closed (close records only).
    IdleTimeout,
    /// The DNS guard got a query type other than A/AAAA, or a class other than IN: REFUSED.
    DnsTypeRefused,
    /// The DNS guard got a message that is not a single-question standard query.
    DnsBadQuery,
    /// A kill switch covering the caller engaged: its open tunnel or in-flight request was cut
    /// (close records only).
    KillSwitchClosed,
    /// The caller's agent was revoked or deleted: its open tunnel or in-flight request was cut
    /// (close records only).
    AgentRevoked,
    /// The proxy already holds `max_connections` client connections, or `max_connections_per_ip`
    /// from this address: 429, and the connection is closed.
    ConnectionLimit,
}

/// Every adapter reason code, for `docs/ERROR_CODES.md`.
pub const REASONS: &[ReasonInfo] = &[
    info(ProxyReason::AuthRequired),
    info(ProxyReason::TunnelLimit),
    info(ProxyReason::ConnectTimeout),
    info(ProxyReason::ConnectFailed),
    info(ProxyReason::UpstreamFailed),
    info(ProxyReason::UpstreamTimeout),
    info(ProxyReason::HttpsForward),
    info(ProxyReason::NotAProxyRequest),
    info(ProxyReason::Closed),
    info(ProxyReason::IdleTimeout),
    info(ProxyReason::DnsTypeRefused),
    info(ProxyReason::DnsBadQuery),
    info(ProxyReason::KillSwitchClosed),
    info(ProxyReason::AgentRevoked),
    info(ProxyReason::ConnectionLimit),
];

const fn info(reason: ProxyReason) -> ReasonInfo {
    ReasonInfo {
        code: reason.as_str(),
        maps_to: reason.error_code(),
        summary: reason.summary(),
    }
}

impl ProxyReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            ProxyReason::AuthRequired => "egress_proxy_auth_required",
            ProxyReason::TunnelLimit => "egress_tunnel_limit",
            ProxyReason::ConnectTimeout => "egress_connect_timeout",
            ProxyReason::ConnectFailed => "egress_connect_failed",
            ProxyReason::UpstreamFailed => "egress_upstream_failed",
            ProxyReason::UpstreamTimeout => "egress_upstream_timeout",
            ProxyReason::HttpsForward => "egress_https_forward",
            ProxyReason::NotAProxyRequest => "egress_not_a_proxy_request",
            ProxyReason::Closed => "egress_closed",
            ProxyReason::IdleTimeout => "egress_idle_timeout",
            ProxyReason::DnsTypeRefused => "egress_dns_type_refused",
            ProxyReason::DnsBadQuery => "egress_dns_bad_query",
            ProxyReason::KillSwitchClosed => "egress_killswitch_closed",
            ProxyReason::AgentRevoked => "egress_agent_revoked",
            ProxyReason::ConnectionLimit => "egress_connection_limit",
        }
    }

    /// The registry code. `Closed` and `IdleTimeout` only appear in close records; they map to
    /// the nearest code so that the table is total.
    pub const fn error_code(self) -> ErrorCode {
        match self {
            ProxyReason::AuthRequired => ErrorCode::Unauthorized,
            ProxyReason::TunnelLimit | ProxyReason::ConnectionLimit => ErrorCode::RateLimited,
            ProxyReason::ConnectTimeout
            | ProxyReason::UpstreamTimeout
            | ProxyReason::IdleTimeout => ErrorCode::UpstreamTimeout,
            ProxyReason::ConnectFailed | ProxyReason::UpstreamFailed | ProxyReason::Closed => {
                ErrorCode::UpstreamFailed
            }
            ProxyReason::HttpsForward
            | ProxyReason::NotAProxyRequest
            | ProxyReason::DnsBadQuery => ErrorCode::BadRequest,
            ProxyReason::DnsTypeRefused => ErrorCode::EgressDenied,
            ProxyReason::KillSwitchClosed => ErrorCode::KillswitchEngaged,
            ProxyReason::AgentRevoked => ErrorCode::Unauthorized,
        }
    }

    /// The HTTP status the proxy answers with (407 for auth, as proxies must).
    pub const fn http_status(self) -> u16 {
        match self {
            ProxyReason::AuthRequired => 407,
            other => other.error_code().http_status(),
        }
    }

    pub const fn summary(self) -> &'static str {
        match self {
            ProxyReason::AuthRequired => "proxy: no or bad `Proxy-Authorization` (407)",
            ProxyReason::TunnelLimit => "proxy: too many open tunnels for this agent",
            ProxyReason::ConnectTimeout => "proxy: dialing the vetted address timed out",
            ProxyReason::ConnectFailed => "proxy: dialing the vetted address failed",
            ProxyReason::UpstreamFailed => "proxy: the target broke the connection",
            ProxyReason::UpstreamTimeout => "proxy: the target sent no response head in time",
            ProxyReason::HttpsForward => "proxy: absolute-form https is not forwarded; use CONNECT",
            ProxyReason::NotAProxyRequest => "proxy: not an absolute-form or CONNECT request",
            ProxyReason::Closed => "close record: the connection ended normally",
            ProxyReason::IdleTimeout => "close record: the tunnel was idle too long",
            ProxyReason::DnsTypeRefused => "dns guard: only A and AAAA in class IN are answered",
            ProxyReason::DnsBadQuery => "dns guard: not a single-question standard query",
            ProxyReason::KillSwitchClosed => {
                "close record: a kill switch engaged and the connection was cut"
            }
            ProxyReason::AgentRevoked => {
                "close record: the agent was revoked and the connection was cut"
            }
            ProxyReason::ConnectionLimit => {
                "proxy: too many client connections, in all or from this address"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_egress_prefixed() {
        let mut seen = std::collections::HashSet::new();
        for info in REASONS {
            assert!(info.code.starts_with("egress_"), "{}", info.code);
            assert!(
                info.code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                info.code
            );
            assert!(seen.insert(info.code), "{}", info.code);
            assert!(
                portcullis_netpolicy::REASONS
                    .iter()
                    .all(|other| other.code != info.code),
                "{} clashes with netpolicy",
                info.code
            );
        }
    }

    #[test]
    fn docs_list_every_code() {
        let docs = include_str!("../../../docs/EGRESS.md");
        for info in REASONS {
            assert!(
                docs.contains(&format!("| `{}` |", info.code)),
                "docs/EGRESS.md lacks {}",
                info.code
            );
        }
    }
}
