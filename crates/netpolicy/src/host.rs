//! Hosts: IP literals in every spelling a WHATWG URL parser accepts, and canonical DNS names.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use idna::AsciiDenyList;

use crate::reason::Reason;

/// Longest DNS name accepted, without the trailing dot.
pub const MAX_NAME_LEN: usize = 253;
/// Longest DNS label.
pub const MAX_LABEL_LEN: usize = 63;

/// A host as egress sees it: an IP address, or a canonical DNS name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Name(Name),
}

/// A canonical DNS name: lower-case ASCII, no trailing dot, labels of 1-63 letters, digits and
/// inner hyphens, at most 253 bytes, and unchanged by the IDNA (UTS 46) to-ASCII mapping.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(
    // INVARIANT (canonical-name): kept by `Name::parse`, the only constructor.
    String,
);

impl Name {
    /// Canonicalizes a name: lower case, one trailing dot removed, labels checked, IDNA
    /// round-trip checked. The caller has already refused non-ASCII and control bytes; this
    /// refuses them again so the function is safe on its own.
    pub fn parse(raw: &str) -> Result<Self, Reason> {
        let trimmed = raw.strip_suffix('.').unwrap_or(raw);
        if trimmed.is_empty() || trimmed.len() > MAX_NAME_LEN {
            return Err(Reason::BadHost);
        }
        if !trimmed.is_ascii() {
            return Err(Reason::BadEncoding);
        }
        let lower = trimmed.to_ascii_lowercase();
        let mut has_a_label = false;
        for label in lower.split('.') {
            check_label(label)?;
            has_a_label |= label.starts_with("xn--");
        }
        if looks_numeric(&lower) {
            // A name whose last label is numeric is an IPv4 literal to a URL parser; refuse it as
            // a name so the two can never be confused.
            return Err(Reason::BadHost);
        }
        // INVARIANT (idna-identity): a name of LDH labels without an `xn--` label is already the
        // output of UTS 46 to-ASCII (lower case, no mapping applies), so the library call is
        // needed only for A-labels; `ldh_names_are_idna_identity` checks this claim.
        if has_a_label && !idna_identity(&lower) {
            return Err(Reason::BadHost);
        }
        Ok(Self(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `self` is `base` or a subdomain of it, on a label boundary.
    pub fn is_within(&self, base: &str) -> bool {
        self.is_strict_subdomain_of(base) || self.0 == base
    }

    /// True when `self` is a subdomain of `base`, on a label boundary, and not `base` itself.
    pub fn is_strict_subdomain_of(&self, base: &str) -> bool {
        self.0
            .strip_suffix(base)
            .and_then(|head| head.strip_suffix('.'))
            .is_some_and(|head| !head.is_empty())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V4(v4)) => write!(f, "{v4}"),
            Host::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            Host::Name(name) => f.write_str(name.as_str()),
        }
    }
}

/// Parses the host part of an authority (brackets included for IPv6). Percent-escapes, non-ASCII
/// and control bytes have been refused by the caller.
pub fn parse_host(raw: &str) -> Result<Host, Reason> {
    if let Some(inner) = raw.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(Reason::BadHost)?;
        if inner.contains('%') {
            return Err(Reason::ZoneId);
        }
        let addr: Ipv6Addr = inner.parse().map_err(|_| Reason::BadHost)?;
        return Ok(Host::Ip(IpAddr::V6(addr)));
    }
    if raw.contains(['[', ']']) {
        return Err(Reason::BadHost);
    }
    if looks_numeric(raw) {
        return parse_whatwg_ipv4(raw)
            .map(|v4| Host::Ip(IpAddr::V4(v4)))
            .ok_or(Reason::BadHost);
    }
    Name::parse(raw).map(Host::Name)
}

/// The WHATWG "ends in a number" check: the last label (ignoring one trailing empty label) is
/// all decimal digits, or `0x`/`0X` followed by hex digits. Such a host must parse as IPv4.
pub fn looks_numeric(host: &str) -> bool {
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    let last = trimmed.rsplit('.').next().unwrap_or(trimmed);
    if last.is_empty() {
        return false;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    last.strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The WHATWG IPv4 parser: 1 to 4 dot-separated parts (one trailing dot allowed), each decimal,
/// octal (leading `0`) or hex (`0x`); every part but the last at most 255, the last filling the
/// remaining bytes. Hand-written because `std` accepts only dotted-quad decimal and the point is
/// to agree with the parsers downstream clients use.
pub fn parse_whatwg_ipv4(host: &str) -> Option<Ipv4Addr> {
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    let mut parts = [0u64; 4];
    let mut n_parts = 0usize;
    for part in trimmed.split('.') {
        let slot = parts.get_mut(n_parts)?;
        *slot = parse_ipv4_number(part)?;
        n_parts += 1;
    }
    let (last, init) = parts.get(..n_parts)?.split_last()?;
    if init.iter().any(|part| *part > 255) {
        return None;
    }
    let last_bits = 8 * (5 - n_parts as u32);
    if *last >= 1u64 << last_bits {
        return None;
    }
    let mut value = *last;
    for (idx, part) in init.iter().enumerate() {
        value += part << (8 * (3 - idx as u32));
    }
    u32::try_from(value).ok().map(Ipv4Addr::from_bits)
}

fn parse_ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 {
            match part.strip_prefix('0') {
                Some(octal) => (octal, 8),
                None => (part, 10),
            }
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        return Some(0);
    }
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // Values past u64 are far past 2^32 and fail anyway.
    u64::from_str_radix(digits, radix).ok()
}

fn check_label(label: &str) -> Result<(), Reason> {
    if label.is_empty() || label.len() > MAX_LABEL_LEN {
        return Err(Reason::BadHost);
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(Reason::BadHost);
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(Reason::BadHost);
    }
    Ok(())
}

fn idna_identity(name: &str) -> bool {
    match idna::domain_to_ascii_cow(name.as_bytes(), AsciiDenyList::URL) {
        Ok(ascii) => ascii == name,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[track_caller]
    fn check(raw: &str, expected: Result<&str, Reason>) {
        let got = parse_host(raw).map(|host| host.to_string());
        assert_eq!(got.as_deref().map_err(|r| *r), expected, "{raw:?}");
    }

    #[test]
    fn whatwg_ipv4_spellings() {
        check("127.0.0.1", Ok("127.0.0.1"));
        check("2130706433", Ok("127.0.0.1"));
        check("0177.0.0.1", Ok("127.0.0.1"));
        check("0x7f.1", Ok("127.0.0.1"));
        check("0x7F000001", Ok("127.0.0.1"));
        check("127.1", Ok("127.0.0.1"));
        check("127.0.1", Ok("127.0.0.1"));
        check("0x7f.0.0.0x1", Ok("127.0.0.1"));
        check("017700000001", Ok("127.0.0.1"));
        check("0", Ok("0.0.0.0"));
        check("0x", Ok("0.0.0.0"));
        check("1.2.3.4.", Ok("1.2.3.4"));
        check("169.254.43518", Ok("169.254.169.254"));
        check("0xa9.0xfe.0xa9.0xfe", Ok("169.254.169.254"));
        check("4294967295", Ok("255.255.255.255"));
        check("4294967296", Err(Reason::BadHost));
        check("256.0.0.1", Err(Reason::BadHost));
        check("1.2.3.4.5", Err(Reason::BadHost));
        check("1..2", Err(Reason::BadHost));
        check("08.0.0.1", Err(Reason::BadHost));
        check("0x1g.0.0.1", Err(Reason::BadHost));
        check("example.123", Err(Reason::BadHost));
        check("99999999999999999999999", Err(Reason::BadHost));
    }

    #[test]
    fn ipv6_literals() {
        check("[::1]", Ok("[::1]"));
        check("[0:0:0:0:0:0:0:1]", Ok("[::1]"));
        check("[::ffff:127.0.0.1]", Ok("[::ffff:127.0.0.1]"));
        check("[fe80::1%eth0]", Err(Reason::ZoneId));
        check("[fe80::1%25eth0]", Err(Reason::ZoneId));
        check("[::1", Err(Reason::BadHost));
        check("::1", Err(Reason::BadHost));
        check("[1.2.3.4]", Err(Reason::BadHost));
        check("a[b]", Err(Reason::BadHost));
    }

    #[test]
    fn names() {
        check("Example.COM", Ok("example.com"));
        check("example.com.", Ok("example.com"));
        check("example.com..", Err(Reason::BadHost));
        check("a..b", Err(Reason::BadHost));
        check(".example.com", Err(Reason::BadHost));
        check("-a.com", Err(Reason::BadHost));
        check("a-.com", Err(Reason::BadHost));
        check("a_b.com", Err(Reason::BadHost));
        check("a;b.com", Err(Reason::BadHost));
        check("localhost", Ok("localhost"));
        check(&"a".repeat(64), Err(Reason::BadHost));
        check(&"a".repeat(63), Ok(&"a".repeat(63)));
        let long = ["a".repeat(63).as_str(); 4].join(".");
        check(&long, Err(Reason::BadHost));
        check("ex\u{0430}mple.com", Err(Reason::BadEncoding));
        check("xn--pple-43d.com", Ok("xn--pple-43d.com"));
        check("XN--PPLE-43D.com", Ok("xn--pple-43d.com"));
        check("xn--example.com", Err(Reason::BadHost));
        check("xn--.com", Err(Reason::BadHost));
        check("xn--a.com", Err(Reason::BadHost));
        check("1.example", Ok("1.example"));
    }

    proptest! {
        #[test]
        fn ldh_names_are_idna_identity(name in "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z]([a-z0-9-]{0,10}[a-z0-9])?){0,3}") {
            prop_assume!(!name.split('.').any(|l| l.starts_with("xn--")));
            prop_assume!(!looks_numeric(&name));
            prop_assert!(idna_identity(&name), "{}", name);
        }

        #[test]
        fn dotted_quad_agrees_with_std(a: u8, b: u8, c: u8, d: u8) {
            let text = format!("{a}.{b}.{c}.{d}");
            prop_assert_eq!(parse_whatwg_ipv4(&text), Some(Ipv4Addr::new(a, b, c, d)));
        }

        #[test]
        fn decimal_form_agrees(value: u32) {
            prop_assert_eq!(parse_whatwg_ipv4(&value.to_string()), Some(Ipv4Addr::from_bits(value)));
            prop_assert_eq!(parse_whatwg_ipv4(&format!("0x{value:x}")), Some(Ipv4Addr::from_bits(value)));
            prop_assert_eq!(parse_whatwg_ipv4(&format!("0{value:o}")), Some(Ipv4Addr::from_bits(value)));
        }
    }
}
