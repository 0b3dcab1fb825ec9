//! Network leases (`net:host:<h>`, `net:domain:<d>`, `net:port:<p>`): data the caller passes in.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;

use crate::host::{Host, Name, parse_host};

/// Longest lease key accepted, in bytes.
pub const MAX_LEASE_KEY_LEN: usize = 300;

/// A time-limited widening of the posture for one agent or one project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: String,
    pub key: LeaseKey,
    pub subject: LeaseSubject,
    pub expires_at: Timestamp,
}

/// What a lease grants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LeaseKey {
    /// `net:host:<h>`: this host exactly (a name, a dotted-quad IPv4, or a bracketed IPv6).
    Host(Host),
    /// `net:domain:<d>`: every host whose registrable domain is `d`. A `d` that is not a
    /// registrable domain (a public suffix, say) matches nothing.
    Domain(Name),
    /// `net:port:<p>`: port `p` for hosts the posture or another lease already allows.
    Port(u16),
}

/// Who a lease is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LeaseSubject {
    Agent(String),
    Project(String),
}

/// Who is asking: the authenticated agent and its project, either of which may be unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caller<'a> {
    pub agent: Option<&'a str>,
    pub project: Option<&'a str>,
}

/// Why a lease key was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaseKeyError {
    #[error("lease key is longer than {MAX_LEASE_KEY_LEN} bytes")]
    TooLong,
    #[error("lease key must be `net:host:<h>`, `net:domain:<d>` or `net:port:<p>`")]
    UnknownKind,
    #[error("lease host is not a valid name or IP literal")]
    BadHost,
    #[error("lease domain is not a valid name")]
    BadDomain,
    #[error("lease port must be 1-65535")]
    BadPort,
}

impl Lease {
    /// A lease is active while `now < expires_at`; an expired lease does nothing.
    pub fn is_active(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }

    /// True when the lease is for this caller.
    pub fn is_for(&self, caller: &Caller<'_>) -> bool {
        match &self.subject {
            LeaseSubject::Agent(agent) => caller.agent == Some(agent.as_str()),
            LeaseSubject::Project(project) => caller.project == Some(project.as_str()),
        }
    }
}

impl LeaseKey {
    pub fn parse(raw: &str) -> Result<Self, LeaseKeyError> {
        if raw.len() > MAX_LEASE_KEY_LEN {
            return Err(LeaseKeyError::TooLong);
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) || raw.contains(['%', '\\', '@', '*']) {
            return Err(LeaseKeyError::UnknownKind);
        }
        if let Some(host) = raw.strip_prefix("net:host:") {
            return parse_host(host)
                .map(LeaseKey::Host)
                .map_err(|_| LeaseKeyError::BadHost);
        }
        if let Some(domain) = raw.strip_prefix("net:domain:") {
            return Name::parse(domain)
                .map(LeaseKey::Domain)
                .map_err(|_| LeaseKeyError::BadDomain);
        }
        if let Some(port) = raw.strip_prefix("net:port:") {
            if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(LeaseKeyError::BadPort);
            }
            return match port.parse::<u16>() {
                Ok(0) | Err(_) => Err(LeaseKeyError::BadPort),
                Ok(port) => Ok(LeaseKey::Port(port)),
            };
        }
        Err(LeaseKeyError::UnknownKind)
    }
}

impl FromStr for LeaseKey {
    type Err = LeaseKeyError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::parse(raw)
    }
}

impl fmt::Display for LeaseKey {
    /// The canonical gate-key form (`net:host:[2001:db8::1]`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseKey::Host(host) => write!(f, "net:host:{host}"),
            LeaseKey::Domain(name) => write!(f, "net:domain:{name}"),
            LeaseKey::Port(port) => write!(f, "net:port:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(raw: &str, expected: Result<&str, LeaseKeyError>) {
        let got = LeaseKey::parse(raw).map(|key| key.to_string());
        assert_eq!(got.as_deref().map_err(|e| *e), expected, "{raw}");
    }

    #[test]
    fn keys() {
        check(
            "net:host:Internal.Example.com",
            Ok("net:host:internal.example.com"),
        );
        check("net:host:[2001:DB8::1]", Ok("net:host:[2001:db8::1]"));
        check("net:host:0x7f.1", Ok("net:host:127.0.0.1"));
        check("net:domain:example.co.uk", Ok("net:domain:example.co.uk"));
        check("net:port:8443", Ok("net:port:8443"));
        check("net:port:0", Err(LeaseKeyError::BadPort));
        check("net:port:65536", Err(LeaseKeyError::BadPort));
        check("net:port:", Err(LeaseKeyError::BadPort));
        check("net:host:", Err(LeaseKeyError::BadHost));
        check("net:host:a_b", Err(LeaseKeyError::BadHost));
        check("net:domain:1.2.3.4", Err(LeaseKeyError::BadDomain));
        check("net:host:*.example.com", Err(LeaseKeyError::UnknownKind));
        check("tools:call", Err(LeaseKeyError::UnknownKind));
    }

    #[test]
    fn canonical_keys_are_gate_keys() {
        for raw in [
            "net:host:a.example.com",
            "net:host:[2001:db8::1]",
            "net:domain:example.co.uk",
            "net:port:8443",
        ] {
            let key = LeaseKey::parse(raw).unwrap().to_string();
            assert!(portcullis_core::GateKey::parse(&key).is_ok(), "{key}");
        }
    }
}
