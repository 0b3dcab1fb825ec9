//! Classification of IP addresses into the classes egress never dials, embedded IPv4 included.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::reason::Reason;

/// Why an address may not be dialed, or `Public` when it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddrClass {
    Public,
    Loopback,
    Private,
    LinkLocal,
    Metadata,
    Cgnat,
    Multicast,
    Broadcast,
    Unspecified,
    Documentation,
    Reserved,
}

impl AddrClass {
    /// The deny reason for this class; `None` for `Public`.
    pub const fn deny_reason(self) -> Option<Reason> {
        match self {
            AddrClass::Public => None,
            AddrClass::Loopback => Some(Reason::LoopbackAddress),
            AddrClass::Private => Some(Reason::PrivateAddress),
            AddrClass::LinkLocal => Some(Reason::LinkLocalAddress),
            AddrClass::Metadata => Some(Reason::MetadataAddress),
            AddrClass::Cgnat => Some(Reason::CgnatAddress),
            AddrClass::Multicast => Some(Reason::MulticastAddress),
            AddrClass::Broadcast => Some(Reason::BroadcastAddress),
            AddrClass::Unspecified => Some(Reason::UnspecifiedAddress),
            AddrClass::Documentation => Some(Reason::DocumentationAddress),
            AddrClass::Reserved => Some(Reason::ReservedAddress),
        }
    }

    /// Classes that `allow_cidrs` may never admit: dialing them is never what a test server needs.
    pub const fn never_admitted(self) -> bool {
        matches!(
            self,
            AddrClass::Metadata
                | AddrClass::Multicast
                | AddrClass::Broadcast
                | AddrClass::Unspecified
        )
    }
}

/// Classifies an address. An IPv6 address that embeds an IPv4 address (mapped, compatible,
/// SIIT, NAT64, 6to4, Teredo) gets the class of the embedded address when that is not public.
pub fn classify(addr: IpAddr) -> AddrClass {
    match addr {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// The IPv4 addresses an IPv6 address carries inside it, per the transition mechanisms.
pub fn embedded_v4(addr: Ipv6Addr) -> Vec<Ipv4Addr> {
    let bits = addr.to_bits();
    let low32 = Ipv4Addr::from_bits((bits & 0xffff_ffff) as u32);
    let mut res = Vec::new();
    let in_net = |net: &Ipv6Net| net.contains(&addr);
    if EMBED_LOW32.iter().any(in_net) {
        res.push(low32);
    }
    if SIX_TO_FOUR.contains(&addr) {
        res.push(Ipv4Addr::from_bits(((bits >> 80) & 0xffff_ffff) as u32));
    }
    if TEREDO.contains(&addr) {
        // Server in bits 32..64, client obfuscated (inverted) in the low 32 bits.
        res.push(Ipv4Addr::from_bits(((bits >> 64) & 0xffff_ffff) as u32));
        res.push(Ipv4Addr::from_bits(!((bits & 0xffff_ffff) as u32)));
    }
    res
}

// The tables are checked in order; the first match wins, so narrower ranges come first.
const V4_TABLE: &[(Ipv4Net, AddrClass)] = &[
    (v4(169, 254, 169, 254, 32), AddrClass::Metadata),
    (v4(255, 255, 255, 255, 32), AddrClass::Broadcast),
    (v4(0, 0, 0, 0, 8), AddrClass::Unspecified),
    (v4(127, 0, 0, 0, 8), AddrClass::Loopback),
    (v4(10, 0, 0, 0, 8), AddrClass::Private),
    (v4(172, 16, 0, 0, 12), AddrClass::Private),
    (v4(192, 168, 0, 0, 16), AddrClass::Private),
    (v4(169, 254, 0, 0, 16), AddrClass::LinkLocal),
    (v4(100, 64, 0, 0, 10), AddrClass::Cgnat),
    (v4(224, 0, 0, 0, 4), AddrClass::Multicast),
    (v4(192, 0, 2, 0, 24), AddrClass::Documentation),
    (v4(198, 51, 100, 0, 24), AddrClass::Documentation),
    (v4(203, 0, 113, 0, 24), AddrClass::Documentation),
    (v4(198, 18, 0, 0, 15), AddrClass::Reserved),
    (v4(192, 0, 0, 0, 24), AddrClass::Reserved),
    (v4(192, 88, 99, 0, 24), AddrClass::Reserved),
    (v4(240, 0, 0, 0, 4), AddrClass::Reserved),
];

const V6_TABLE: &[(Ipv6Net, AddrClass)] = &[
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), AddrClass::Unspecified),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), AddrClass::Loopback),
    (
        v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128),
        AddrClass::Metadata,
    ),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), AddrClass::Private),
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), AddrClass::Private),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), AddrClass::LinkLocal),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), AddrClass::Multicast),
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        AddrClass::Documentation,
    ),
    (
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        AddrClass::Documentation,
    ),
    (v6([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48), AddrClass::Reserved),
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), AddrClass::Reserved),
];

/// Ranges whose low 32 bits are an IPv4 address: v4-mapped, SIIT (v4-translated),
/// v4-compatible (deprecated), NAT64 well-known and local-use prefixes.
const EMBED_LOW32: &[Ipv6Net] = &[
    v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),
    v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
    v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96),
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
];
const SIX_TO_FOUR: Ipv6Net = v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);
const TEREDO: Ipv6Net = v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32);
const GLOBAL_UNICAST: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

const fn v6(s: [u16; 8], prefix: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = s;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), prefix)
}

fn classify_v4(addr: Ipv4Addr) -> AddrClass {
    V4_TABLE
        .iter()
        .find(|(net, _)| net.contains(&addr))
        .map_or(AddrClass::Public, |(_, class)| *class)
}

fn classify_v6(addr: Ipv6Addr) -> AddrClass {
    if let Some((_, class)) = V6_TABLE.iter().find(|(net, _)| net.contains(&addr)) {
        return *class;
    }
    let embedded = embedded_v4(addr);
    // INVARIANT (embedded-first-deny): the first non-public embedded address decides, so an
    // IPv6 spelling of a blocked IPv4 address is blocked with the IPv4 address's reason.
    if let Some(class) = embedded
        .iter()
        .map(|inner| classify_v4(*inner))
        .find(|class| *class != AddrClass::Public)
    {
        return class;
    }
    if !embedded.is_empty() {
        return AddrClass::Public;
    }
    if GLOBAL_UNICAST.contains(&addr) {
        AddrClass::Public
    } else {
        AddrClass::Reserved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(addr: &str, expected: AddrClass) {
        let parsed: IpAddr = addr.parse().unwrap();
        assert_eq!(classify(parsed), expected, "{addr}");
    }

    #[test]
    fn v4_classes() {
        check("8.8.4.4", AddrClass::Public);
        check("93.184.215.14", AddrClass::Public);
        check("127.0.0.1", AddrClass::Loopback);
        check("127.255.255.254", AddrClass::Loopback);
        check("10.1.2.3", AddrClass::Private);
        check("172.31.255.255", AddrClass::Private);
        check("172.32.0.1", AddrClass::Public);
        check("192.168.1.1", AddrClass::Private);
        check("169.254.169.254", AddrClass::Metadata);
        check("169.254.1.1", AddrClass::LinkLocal);
        check("100.64.0.1", AddrClass::Cgnat);
        check("100.100.100.200", AddrClass::Cgnat);
        check("100.128.0.1", AddrClass::Public);
        check("224.0.0.1", AddrClass::Multicast);
        check("239.255.255.250", AddrClass::Multicast);
        check("255.255.255.255", AddrClass::Broadcast);
        check("0.0.0.0", AddrClass::Unspecified);
        check("0.1.2.3", AddrClass::Unspecified);
        check("192.0.2.1", AddrClass::Documentation);
        check("198.51.100.7", AddrClass::Documentation);
        check("203.0.113.9", AddrClass::Documentation);
        check("198.18.0.1", AddrClass::Reserved);
        check("198.19.255.255", AddrClass::Reserved);
        check("240.0.0.1", AddrClass::Reserved);
        check("192.0.0.170", AddrClass::Reserved);
    }

    #[test]
    fn v6_classes() {
        check("2606:4700::1", AddrClass::Public);
        check("::", AddrClass::Unspecified);
        check("::1", AddrClass::Loopback);
        check("fd00:ec2::254", AddrClass::Metadata);
        check("fd12:3456::1", AddrClass::Private);
        check("fe80::1", AddrClass::LinkLocal);
        check("ff02::1", AddrClass::Multicast);
        check("2001:db8::1", AddrClass::Documentation);
        check("3fff::1", AddrClass::Documentation);
        check("4000::1", AddrClass::Reserved);
    }

    #[test]
    fn embedded_forms() {
        check("::ffff:127.0.0.1", AddrClass::Loopback);
        check("::ffff:169.254.169.254", AddrClass::Metadata);
        check("::ffff:8.8.8.8", AddrClass::Public);
        check("::ffff:0:10.0.0.1", AddrClass::Private);
        check("::127.0.0.1", AddrClass::Loopback);
        check("::10.0.0.1", AddrClass::Private);
        check("64:ff9b::7f00:1", AddrClass::Loopback);
        check("64:ff9b::a9fe:a9fe", AddrClass::Metadata);
        check("64:ff9b:1::c0a8:1", AddrClass::Private);
        check("2002:7f00:1::", AddrClass::Loopback);
        check("2002:a00:1::1", AddrClass::Private);
        check("2002:808:808::1", AddrClass::Public);
        // Teredo: server 65.54.227.120, client 127.0.0.1 obfuscated as 80ff:fffe.
        check("2001:0:4136:e378:8000:63bf:80ff:fffe", AddrClass::Loopback);
        // Teredo with a private server.
        check("2001:0:a00:1::", AddrClass::Private);
    }
}
