//! The adversarial table: SSRF and URL-parser tricks against the one decision function.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::Cell;

use jiff::Timestamp;
use portcullis_netpolicy::{
    Caller, DnsFixture, EgressConfig, EgressPolicy, Lease, LeaseKey, LeaseSubject, LookupAnswer,
    Reason, TargetRequest, preview,
};

const CONFIG: &str = r#"
posture = "allowlist"
allow = [
  "allowed.com", "*.wild.com", "api.port.com:8443", "domain:example.co.uk", "*.dns.test",
  "blocked.com", "dns.google",
]
deny = ["blocked.wild.com", "*.deny.wild.com", "blocked.com", "evil.dns.test:8080"]
allow_cidrs = ["127.0.0.2/32"]

[projects.off]
posture = "relaxed"

[projects.pub]
posture = "standard"

[projects.p1]
posture = "strict"
"#;

const FIXTURE: &str = r#"{
  "allowed.com": {"A": ["93.184.215.14"]},
  "a.wild.com": {"A": ["93.184.215.14"]},
  "a.b.wild.com": {"A": ["93.184.215.14"]},
  "x.blocked.wild.com": {"A": ["93.184.215.14"]},
  "example.co.uk": {"A": ["93.184.215.14"]},
  "www.example.co.uk": {"A": ["93.184.215.14"]},
  "api.port.com": {"A": ["93.184.215.14"]},
  "leased.com": {"A": ["93.184.215.14"]},
  "proj.com": {"A": ["93.184.215.14"]},
  "www.leasedomain.co.uk": {"A": ["93.184.215.14"]},
  "github.com": {"A": ["140.82.112.3"]},
  "raw.githubusercontent.com": {"A": ["185.199.108.133"]},
  "crates.io": {"A": ["18.155.68.90"], "AAAA": ["2600:9000:2000::1"]},
  "anything.test": {"A": ["93.184.215.14"]},
  "public.dns.test": {"A": ["93.184.215.14"]},
  "v6.dns.test": {"AAAA": ["2606:4700:10::6814:1"]},
  "loop.dns.test": {"A": ["127.0.0.1"]},
  "loop2.dns.test": {"A": ["127.0.0.2"]},
  "ten.dns.test": {"A": ["10.0.0.1"]},
  "rfc1918b.dns.test": {"A": ["172.16.5.4"]},
  "rfc1918c.dns.test": {"A": ["192.168.1.1"]},
  "ula.dns.test": {"AAAA": ["fd00::1"]},
  "ll.dns.test": {"A": ["169.254.1.1"]},
  "ll6.dns.test": {"AAAA": ["fe80::1"]},
  "meta.dns.test": {"A": ["169.254.169.254"]},
  "meta6.dns.test": {"AAAA": ["fd00:ec2::254"]},
  "cgnat.dns.test": {"A": ["100.64.0.1"]},
  "mcast.dns.test": {"A": ["224.0.0.1"]},
  "mcast6.dns.test": {"AAAA": ["ff02::1"]},
  "bcast.dns.test": {"A": ["255.255.255.255"]},
  "zero.dns.test": {"A": ["0.0.0.0"]},
  "zero6.dns.test": {"AAAA": ["::"]},
  "loop6.dns.test": {"AAAA": ["::1"]},
  "doc.dns.test": {"A": ["192.0.2.1"]},
  "doc6.dns.test": {"AAAA": ["2001:db8::1"]},
  "bench.dns.test": {"A": ["198.18.0.1"]},
  "resv.dns.test": {"A": ["240.0.0.1"]},
  "mapped.dns.test": {"AAAA": ["::ffff:10.0.0.1"]},
  "mappedmeta.dns.test": {"AAAA": ["::ffff:169.254.169.254"]},
  "nat64.dns.test": {"AAAA": ["64:ff9b::7f00:1"]},
  "sixtofour.dns.test": {"AAAA": ["2002:a9fe:a9fe::"]},
  "teredo.dns.test": {"AAAA": ["2001:0:4136:e378:8000:63bf:80ff:fffe"]},
  "mixed.dns.test": {"A": ["10.0.0.1", "93.184.215.14"]},
  "allbad.dns.test": {"A": ["10.0.0.1"], "AAAA": ["::1"]},
  "dohip.dns.test": {"A": ["1.1.1.1"]},
  "evil.dns.test": {"A": ["93.184.215.14"]},
  "nx.dns.test": {"rcode": "NXDOMAIN"},
  "fail.dns.test": {"rcode": "SERVFAIL"},
  "empty.dns.test": {}
}"#;

fn policy() -> EgressPolicy {
    let config: EgressConfig = toml::from_str(CONFIG).unwrap();
    EgressPolicy::from_config(&config).unwrap()
}

fn now() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn lease(id: &str, key: &str, subject: LeaseSubject, expires_at: &str) -> Lease {
    Lease {
        id: id.into(),
        key: LeaseKey::parse(key).unwrap(),
        subject,
        expires_at: expires_at.parse().unwrap(),
    }
}

fn leases() -> Vec<Lease> {
    let agent = || LeaseSubject::Agent("agent-1".into());
    let later = "2026-01-01T01:00:00Z";
    vec![
        lease("l-host", "net:host:leased.com", agent(), later),
        lease(
            "l-expired",
            "net:host:expired.com",
            agent(),
            "2025-12-31T23:59:59Z",
        ),
        lease("l-port", "net:port:8080", agent(), later),
        lease("l-blocked", "net:host:blocked.com", agent(), later),
        lease(
            "l-other",
            "net:host:other-agent.com",
            LeaseSubject::Agent("agent-2".into()),
            later,
        ),
        lease(
            "l-proj",
            "net:host:proj.com",
            LeaseSubject::Project("p1".into()),
            later,
        ),
        lease("l-domain", "net:domain:leasedomain.co.uk", agent(), later),
        lease("l-suffix", "net:domain:co.uk", agent(), later),
    ]
}

/// Reasons given after a lookup; every other reason must come with zero lookups.
/// `egress_doh_refused` comes after a lookup only when an answer was a DoH resolver's address.
fn is_post_lookup(reason: Reason, host_is_name: bool, resolved_any: bool) -> bool {
    host_is_name
        && (reason == Reason::DohRefused && resolved_any
            || matches!(
                reason,
                Reason::AllowedRule
                    | Reason::AllowedBuiltin
                    | Reason::AllowedLease
                    | Reason::PostureOff
                    | Reason::LoopbackAddress
                    | Reason::PrivateAddress
                    | Reason::LinkLocalAddress
                    | Reason::MetadataAddress
                    | Reason::CgnatAddress
                    | Reason::MulticastAddress
                    | Reason::BroadcastAddress
                    | Reason::UnspecifiedAddress
                    | Reason::DocumentationAddress
                    | Reason::ReservedAddress
                    | Reason::DnsFailed
            ))
}

/// `project` is `-` for none. `form` is `U` (absolute URL) or `C` (CONNECT authority).
type Row = (&'static str, &'static str, char, bool, &'static str);

#[track_caller]
fn check(policy: &EgressPolicy, fixture: &DnsFixture, row: Row) {
    let (project, target, form, allow, reason) = row;
    let request = match form {
        'U' => TargetRequest::url(target),
        'C' => TargetRequest::connect(target),
        _ => panic!("bad form {form}"),
    };
    let caller = Caller {
        agent: Some("agent-1"),
        project: (project != "-").then_some(project),
    };
    let n_lookups = Cell::new(0u32);
    let mut lookup = |name: &str| {
        n_lookups.set(n_lookups.get() + 1);
        fixture.lookup(name)
    };
    let shown = preview(policy, request, &caller, &leases(), now(), &mut lookup);
    let row_text = format!("{row:?} -> {}", serde_json::to_string(&shown).unwrap());
    assert_eq!(shown.reason.as_str(), reason, "{row_text}");
    assert_eq!(shown.allow, allow, "{row_text}");
    assert_eq!(shown.lookups, n_lookups.get(), "{row_text}");
    let host_is_name = shown
        .host
        .as_deref()
        .is_some_and(|host| !host.starts_with('[') && host.parse::<std::net::Ipv4Addr>().is_err());
    let expected_lookups = u32::from(is_post_lookup(
        shown.reason,
        host_is_name,
        !shown.resolved.is_empty(),
    ));
    assert_eq!(
        n_lookups.get(),
        expected_lookups,
        "lookup count: {row_text}"
    );
    assert_eq!(shown.dialed.is_some(), allow, "{row_text}");
}

#[rustfmt::skip]
const ROWS: &[Row] = &[
    // IPv4 literals in every WHATWG spelling are IP literals, blocked by default.
    ("-", "http://127.0.0.1/", 'U', false, "egress_ip_literal"),
    ("-", "http://2130706433/", 'U', false, "egress_ip_literal"),
    ("-", "http://0177.0.0.1/", 'U', false, "egress_ip_literal"),
    ("-", "http://0x7f.1/", 'U', false, "egress_ip_literal"),
    ("-", "http://127.1/", 'U', false, "egress_ip_literal"),
    ("-", "http://0x7f.0.0.1/", 'U', false, "egress_ip_literal"),
    ("-", "http://017700000001/", 'U', false, "egress_ip_literal"),
    ("-", "http://169.254.169.254/latest/meta-data/", 'U', false, "egress_ip_literal"),
    ("-", "http://0xA9FEA9FE/", 'U', false, "egress_ip_literal"),
    ("-", "http://0/", 'U', false, "egress_ip_literal"),
    ("-", "http://1.2.3.4./", 'U', false, "egress_ip_literal"),
    ("-", "93.184.215.14:443", 'C', false, "egress_ip_literal"),
    ("-", "http://256.0.0.1/", 'U', false, "egress_bad_host"),
    ("-", "http://1.2.3.4.5/", 'U', false, "egress_bad_host"),
    ("-", "http://08.0.0.1/", 'U', false, "egress_bad_host"),
    ("-", "http://allowed.123/", 'U', false, "egress_bad_host"),
    ("-", "http://4294967296/", 'U', false, "egress_bad_host"),
    // With literals allowed (posture off), the address class decides.
    ("off", "http://2130706433/", 'U', false, "egress_loopback_address"),
    ("off", "http://0x7f.1/", 'U', false, "egress_loopback_address"),
    ("off", "http://0xa9.0xfe.0xa9.0xfe/", 'U', false, "egress_metadata_address"),
    ("off", "http://169.254.43518/", 'U', false, "egress_metadata_address"),
    ("off", "http://[::ffff:127.0.0.1]/", 'U', false, "egress_loopback_address"),
    ("off", "http://[::ffff:7f00:1]/", 'U', false, "egress_loopback_address"),
    ("off", "http://[64:ff9b::a9fe:a9fe]/", 'U', false, "egress_metadata_address"),
    ("off", "http://[2002:7f00:1::]/", 'U', false, "egress_loopback_address"),
    ("off", "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", 'U', false, "egress_loopback_address"),
    ("off", "http://[::127.0.0.1]/", 'U', false, "egress_loopback_address"),
    ("off", "http://[fd00:ec2::254]/", 'U', false, "egress_metadata_address"),
    ("off", "http://[fe80::1]/", 'U', false, "egress_link_local_address"),
    ("off", "http://[::]/", 'U', false, "egress_unspecified_address"),
    ("off", "http://0.0.0.0:8080/", 'U', false, "egress_unspecified_address"),
    ("off", "http://[::1]/", 'U', false, "egress_loopback_address"),
    ("off", "http://10.0.0.1/", 'U', false, "egress_private_address"),
    ("off", "http://100.64.0.1/", 'U', false, "egress_cgnat_address"),
    ("off", "http://224.0.0.1/", 'U', false, "egress_multicast_address"),
    ("off", "http://255.255.255.255/", 'U', false, "egress_broadcast_address"),
    ("off", "http://192.0.2.1/", 'U', false, "egress_documentation_address"),
    ("off", "http://198.18.0.1/", 'U', false, "egress_reserved_address"),
    ("off", "http://240.0.0.1/", 'U', false, "egress_reserved_address"),
    ("off", "http://93.184.215.14/", 'U', true, "egress_posture_off"),
    ("off", "http://1.1.1.1/", 'U', false, "egress_doh_refused"),
    ("off", "https://anything.test:853/", 'U', false, "egress_doh_refused"),
    ("off", "http://anything.test:8080/", 'U', true, "egress_posture_off"),
    ("off", "http://blocked.com/", 'U', false, "egress_denied_rule"),
    // IPv6 forms and zone ids.
    ("-", "http://[::1]/", 'U', false, "egress_ip_literal"),
    ("-", "[2001:db8::1]:443", 'C', false, "egress_ip_literal"),
    ("-", "http://[fe80::1%25eth0]/", 'U', false, "egress_zone_id"),
    ("-", "http://[fe80::1%eth0]/", 'U', false, "egress_zone_id"),
    ("-", "http://[::1/", 'U', false, "egress_bad_host"),
    ("-", "http://::1/", 'U', false, "egress_bad_host"),
    ("-", "[::1]", 'C', false, "egress_port_required"),
    // Userinfo, backslash, percent-encoding, NUL and controls, `#` and `;`.
    ("-", "http://user@allowed.com/", 'U', false, "egress_userinfo"),
    ("-", "http://allowed.com@evil.com/", 'U', false, "egress_userinfo"),
    ("-", "http://allowed.com:80@evil.com/", 'U', false, "egress_userinfo"),
    ("-", "http://user:pass@allowed.com/", 'U', false, "egress_userinfo"),
    ("-", "user@allowed.com:443", 'C', false, "egress_userinfo"),
    ("-", "http://evil.com\\@allowed.com/", 'U', false, "egress_bad_encoding"),
    ("-", "http://evil.com\\.allowed.com/", 'U', false, "egress_bad_encoding"),
    ("-", "http://allowed.com/\\evil.com", 'U', false, "egress_bad_encoding"),
    ("-", "http://allowed%2ecom/", 'U', false, "egress_bad_encoding"),
    ("-", "http://%61llowed.com/", 'U', false, "egress_bad_encoding"),
    ("-", "http://allowed.com%00.evil.com/", 'U', false, "egress_bad_encoding"),
    ("-", "http://allowed.com\0.evil.com/", 'U', false, "egress_bad_encoding"),
    ("-", "http://allowed.com\t/", 'U', false, "egress_bad_encoding"),
    ("-", "http://allowed.com/\r\nHost: evil.com", 'U', false, "egress_bad_encoding"),
    ("-", " http://allowed.com/", 'U', false, "egress_bad_encoding"),
    ("-", "http://allowed.com#@evil.com/", 'U', true, "egress_allowed_rule"),
    ("-", "http://evil.com#@allowed.com/", 'U', false, "egress_not_allowed"),
    ("-", "http://allowed.com?@evil.com/", 'U', true, "egress_allowed_rule"),
    ("-", "http://allowed.com/@evil.com", 'U', true, "egress_allowed_rule"),
    ("-", "http://allowed.com;evil.com/", 'U', false, "egress_bad_host"),
    ("-", "http://evil.com;allowed.com/", 'U', false, "egress_bad_host"),
    ("-", "http://allowed.com&evil.com/", 'U', false, "egress_bad_host"),
    // IDN homographs and Unicode dots; A-labels must round-trip through IDNA.
    ("-", "http://\u{0430}llowed.com/", 'U', false, "egress_bad_encoding"),
    ("-", "http://allowed\u{3002}com/", 'U', false, "egress_bad_encoding"),
    ("-", "http://allowed\u{ff0e}com/", 'U', false, "egress_bad_encoding"),
    ("-", "http://xn--llowed-2nf.com/", 'U', false, "egress_not_allowed"),
    ("-", "http://xn--allowed.com/", 'U', false, "egress_bad_host"),
    ("-", "http://xn--.com/", 'U', false, "egress_bad_host"),
    // Trailing dots, empty labels, case.
    ("-", "http://ALLOWED.COM/", 'U', true, "egress_allowed_rule"),
    ("-", "http://allowed.com./", 'U', true, "egress_allowed_rule"),
    ("-", "http://allowed.com../", 'U', false, "egress_bad_host"),
    ("-", "http://.allowed.com/", 'U', false, "egress_bad_host"),
    ("-", "http://a..allowed.com/", 'U', false, "egress_bad_host"),
    ("-", "http://-allowed.com/", 'U', false, "egress_bad_host"),
    ("-", "http://allowed_.com/", 'U', false, "egress_bad_host"),
    // Suffix confusion and wildcard apex.
    ("-", "http://allowed.com.evil.com/", 'U', false, "egress_not_allowed"),
    ("-", "http://evilallowed.com/", 'U', false, "egress_not_allowed"),
    ("-", "http://allowed.com-evil.com/", 'U', false, "egress_not_allowed"),
    ("-", "http://sub.allowed.com/", 'U', false, "egress_not_allowed"),
    ("-", "http://wild.com/", 'U', false, "egress_not_allowed"),
    ("-", "http://awild.com/", 'U', false, "egress_not_allowed"),
    ("-", "http://a.wild.com/", 'U', true, "egress_allowed_rule"),
    ("-", "http://a.b.wild.com/", 'U', true, "egress_allowed_rule"),
    ("-", "http://blocked.wild.com/", 'U', false, "egress_denied_rule"),
    ("-", "http://x.blocked.wild.com/", 'U', true, "egress_allowed_rule"),
    ("-", "http://a.deny.wild.com/", 'U', false, "egress_denied_rule"),
    ("-", "http://example.co.uk/", 'U', true, "egress_allowed_rule"),
    ("-", "http://www.example.co.uk/", 'U', true, "egress_allowed_rule"),
    ("-", "http://co.uk/", 'U', false, "egress_not_allowed"),
    ("-", "http://example.co.uk.evil.com/", 'U', false, "egress_not_allowed"),
    ("-", "http://other.co.uk/", 'U', false, "egress_not_allowed"),
    // Ports: explicit, default, out of range, empty, signed.
    ("-", "http://allowed.com:80/", 'U', true, "egress_allowed_rule"),
    ("-", "https://allowed.com/", 'U', true, "egress_allowed_rule"),
    ("-", "http://allowed.com:443/", 'U', true, "egress_allowed_rule"),
    ("-", "http://allowed.com:8081/", 'U', false, "egress_port_not_allowed"),
    ("-", "http://allowed.com:22/", 'U', false, "egress_port_not_allowed"),
    ("-", "https://api.port.com:8443/", 'U', true, "egress_allowed_rule"),
    ("-", "https://api.port.com/", 'U', false, "egress_port_not_allowed"),
    ("-", "http://allowed.com:65536/", 'U', false, "egress_bad_port"),
    ("-", "http://allowed.com:0/", 'U', false, "egress_bad_port"),
    ("-", "http://allowed.com:/", 'U', false, "egress_bad_port"),
    ("-", "http://allowed.com:+80/", 'U', false, "egress_bad_port"),
    ("-", "http://allowed.com:-80/", 'U', false, "egress_bad_port"),
    ("-", "http://allowed.com:8o/", 'U', false, "egress_bad_port"),
    ("-", "http://allowed.com:99999999999999999999/", 'U', false, "egress_bad_port"),
    ("-", "http://allowed.com:80:80/", 'U', false, "egress_bad_host"),
    ("-", "allowed.com:443", 'C', true, "egress_allowed_rule"),
    ("-", "allowed.com", 'C', false, "egress_port_required"),
    ("-", "allowed.com:", 'C', false, "egress_bad_port"),
    ("-", "allowed.com:853", 'C', false, "egress_doh_refused"),
    ("-", "allowed.com:443/x", 'C', false, "egress_bad_target"),
    // Origin-form and other non-absolute targets; other schemes.
    ("-", "/index.html", 'U', false, "egress_bad_target"),
    ("-", "//allowed.com/", 'U', false, "egress_bad_target"),
    ("-", "*", 'U', false, "egress_bad_target"),
    ("-", "allowed.com/", 'U', false, "egress_bad_target"),
    ("-", "http:allowed.com", 'U', false, "egress_bad_target"),
    ("-", "http:/allowed.com", 'U', false, "egress_bad_target"),
    ("-", "", 'U', false, "egress_bad_target"),
    ("-", "javascript:alert(1)", 'U', false, "egress_bad_target"),
    ("-", "ftp://allowed.com/", 'U', false, "egress_bad_scheme"),
    ("-", "file:///etc/passwd", 'U', false, "egress_bad_scheme"),
    ("-", "gopher://allowed.com:70/", 'U', false, "egress_bad_scheme"),
    // DNS-over-HTTPS endpoints, even when listed in `allow`.
    ("-", "https://dns.google/dns-query", 'U', false, "egress_doh_refused"),
    ("-", "https://cloudflare-dns.com/dns-query", 'U', false, "egress_doh_refused"),
    ("-", "mozilla.cloudflare-dns.com:443", 'C', false, "egress_doh_refused"),
    // DNS answers in every blocked class.
    ("-", "http://public.dns.test/", 'U', true, "egress_allowed_rule"),
    ("-", "http://v6.dns.test/", 'U', true, "egress_allowed_rule"),
    ("-", "http://loop.dns.test/", 'U', false, "egress_loopback_address"),
    ("-", "http://loop6.dns.test/", 'U', false, "egress_loopback_address"),
    ("-", "http://loop2.dns.test/", 'U', true, "egress_allowed_rule"),
    ("-", "http://ten.dns.test/", 'U', false, "egress_private_address"),
    ("-", "http://rfc1918b.dns.test/", 'U', false, "egress_private_address"),
    ("-", "http://rfc1918c.dns.test/", 'U', false, "egress_private_address"),
    ("-", "http://ula.dns.test/", 'U', false, "egress_private_address"),
    ("-", "http://ll.dns.test/", 'U', false, "egress_link_local_address"),
    ("-", "http://ll6.dns.test/", 'U', false, "egress_link_local_address"),
    ("-", "http://meta.dns.test/", 'U', false, "egress_metadata_address"),
    ("-", "http://meta6.dns.test/", 'U', false, "egress_metadata_address"),
    ("-", "http://cgnat.dns.test/", 'U', false, "egress_cgnat_address"),
    ("-", "http://mcast.dns.test/", 'U', false, "egress_multicast_address"),
    ("-", "http://mcast6.dns.test/", 'U', false, "egress_multicast_address"),
    ("-", "http://bcast.dns.test/", 'U', false, "egress_broadcast_address"),
    ("-", "http://zero.dns.test/", 'U', false, "egress_unspecified_address"),
    ("-", "http://zero6.dns.test/", 'U', false, "egress_unspecified_address"),
    ("-", "http://doc.dns.test/", 'U', false, "egress_documentation_address"),
    ("-", "http://doc6.dns.test/", 'U', false, "egress_documentation_address"),
    ("-", "http://bench.dns.test/", 'U', false, "egress_reserved_address"),
    ("-", "http://resv.dns.test/", 'U', false, "egress_reserved_address"),
    ("-", "http://mapped.dns.test/", 'U', false, "egress_private_address"),
    ("-", "http://mappedmeta.dns.test/", 'U', false, "egress_metadata_address"),
    ("-", "http://nat64.dns.test/", 'U', false, "egress_loopback_address"),
    ("-", "http://sixtofour.dns.test/", 'U', false, "egress_metadata_address"),
    ("-", "http://teredo.dns.test/", 'U', false, "egress_loopback_address"),
    ("-", "http://mixed.dns.test/", 'U', true, "egress_allowed_rule"),
    ("-", "http://allbad.dns.test/", 'U', false, "egress_private_address"),
    ("-", "http://dohip.dns.test/", 'U', false, "egress_doh_refused"),
    ("-", "http://nx.dns.test/", 'U', false, "egress_dns_failed"),
    ("-", "http://fail.dns.test/", 'U', false, "egress_dns_failed"),
    ("-", "http://empty.dns.test/", 'U', false, "egress_dns_failed"),
    ("-", "http://unknown.dns.test/", 'U', false, "egress_dns_failed"),
    ("-", "http://evil.dns.test:8080/", 'U', false, "egress_denied_rule"),
    // Leases widen the posture, never beat a deny, expire, and belong to one subject.
    ("-", "http://leased.com/", 'U', true, "egress_allowed_lease"),
    ("-", "http://leased.com:8080/", 'U', true, "egress_allowed_lease"),
    ("-", "http://leased.com:8081/", 'U', false, "egress_port_not_allowed"),
    ("-", "http://allowed.com:8080/", 'U', true, "egress_allowed_lease"),
    ("-", "http://expired.com/", 'U', false, "egress_not_allowed"),
    ("-", "http://blocked.com/", 'U', false, "egress_denied_rule"),
    ("-", "http://other-agent.com/", 'U', false, "egress_not_allowed"),
    ("p1", "http://proj.com/", 'U', true, "egress_allowed_lease"),
    ("-", "http://proj.com/", 'U', false, "egress_not_allowed"),
    ("-", "http://www.leasedomain.co.uk/", 'U', true, "egress_allowed_lease"),
    ("-", "http://www.unrelated.co.uk/", 'U', false, "egress_not_allowed"),
    // The public posture's built-in list.
    ("pub", "https://github.com/rust-lang/rust", 'U', true, "egress_allowed_builtin"),
    ("pub", "https://raw.githubusercontent.com/a/b/c", 'U', true, "egress_allowed_builtin"),
    ("pub", "crates.io:443", 'C', true, "egress_allowed_builtin"),
    ("pub", "https://github.com.evil.com/", 'U', false, "egress_not_allowed"),
    ("pub", "https://github.com:22/", 'U', false, "egress_port_not_allowed"),
    ("pub", "https://allowed.com/", 'U', true, "egress_allowed_rule"),
    ("-", "https://github.com/", 'U', false, "egress_not_allowed"),
];

#[test]
fn adversarial_table() {
    let policy = policy();
    let fixture = DnsFixture::parse(FIXTURE).unwrap();
    assert!(ROWS.len() >= 80, "{} rows", ROWS.len());
    for row in ROWS {
        check(&policy, &fixture, *row);
    }
}

#[track_caller]
fn check_dialed(
    policy: &EgressPolicy,
    target: &str,
    answers: &[&[&str]],
    dialed: Option<&str>,
    lookups: u32,
) {
    let n_lookups = Cell::new(0usize);
    let mut lookup = |_: &str| {
        let idx = n_lookups.get();
        n_lookups.set(idx + 1);
        let answer = answers.get(idx).copied().unwrap_or(&[]);
        LookupAnswer::Addrs(answer.iter().map(|a| a.parse().unwrap()).collect())
    };
    let caller = Caller {
        agent: Some("agent-1"),
        project: None,
    };
    let shown = preview(
        policy,
        TargetRequest::url(target),
        &caller,
        &[],
        now(),
        &mut lookup,
    );
    assert_eq!(
        shown.dialed.map(|d| d.to_string()).as_deref(),
        dialed,
        "{target}"
    );
    assert_eq!(shown.lookups, lookups, "{target}");
    assert_eq!(n_lookups.get(), lookups as usize, "{target}");
}

#[test]
fn rebinding_gets_one_lookup_and_the_vetted_address() {
    let policy = policy();
    // A rebinding resolver: the allowed 127.0.0.2 first, then 127.0.0.1 on any later query.
    check_dialed(
        &policy,
        "http://rebind.dns.test:80/",
        &[&["127.0.0.2"], &["127.0.0.1"]],
        Some("127.0.0.2:80"),
        1,
    );
    // Within one answer, the first vetted address is dialed.
    check_dialed(
        &policy,
        "http://rebind.dns.test/",
        &[&["127.0.0.1", "127.0.0.2"]],
        Some("127.0.0.2:80"),
        1,
    );
    check_dialed(
        &policy,
        "https://rebind.dns.test/",
        &[&["93.184.215.14", "127.0.0.1"]],
        Some("93.184.215.14:443"),
        1,
    );
    check_dialed(
        &policy,
        "http://rebind.dns.test/",
        &[&["127.0.0.1"], &["127.0.0.2"]],
        None,
        1,
    );
    // Denied names never reach the resolver.
    check_dialed(
        &policy,
        "http://denied.example/",
        &[&["93.184.215.14"]],
        None,
        0,
    );
}

#[test]
fn lease_expiry_is_automatic() {
    let policy = policy();
    let fixture = DnsFixture::parse(FIXTURE).unwrap();
    let leases = [lease(
        "l1",
        "net:host:leased.com",
        LeaseSubject::Agent("agent-1".into()),
        "2026-01-01T00:10:00Z",
    )];
    let caller = Caller {
        agent: Some("agent-1"),
        project: None,
    };
    let at = |when: &str| {
        let mut lookup = |name: &str| fixture.lookup(name);
        let now: Timestamp = when.parse().unwrap();
        preview(
            &policy,
            TargetRequest::url("http://leased.com/"),
            &caller,
            &leases,
            now,
            &mut lookup,
        )
    };
    let before = at("2026-01-01T00:09:59Z");
    assert!(before.allow);
    assert_eq!(before.lease.as_deref(), Some("l1"));
    let after = at("2026-01-01T00:10:00Z");
    assert!(!after.allow);
    assert_eq!(after.reason, Reason::NotAllowed);
    assert_eq!(after.lookups, 0);
}

#[test]
fn preview_json_shape() {
    let policy = policy();
    let fixture = DnsFixture::parse(FIXTURE).unwrap();
    let caller = Caller::default();
    let mut lookup = |name: &str| fixture.lookup(name);
    let shown = preview(
        &policy,
        TargetRequest::url("https://allowed.com/x"),
        &caller,
        &[],
        now(),
        &mut lookup,
    );
    assert_eq!(
        serde_json::to_string(&shown).unwrap(),
        r#"{"allow":true,"reason":"egress_allowed_rule","host":"allowed.com","port":443,"rule":"allowed.com","lease":null,"lookups":1,"resolved":["93.184.215.14"],"dialed":"93.184.215.14:443"}"#
    );
    let shown = preview(
        &policy,
        TargetRequest::connect("[2001:db8::1]:443"),
        &caller,
        &[],
        now(),
        &mut lookup,
    );
    assert_eq!(
        serde_json::to_string(&shown).unwrap(),
        r#"{"allow":false,"reason":"egress_ip_literal","host":"[2001:db8::1]","port":443,"rule":null,"lease":null,"lookups":0,"resolved":[],"dialed":null}"#
    );
    let shown = preview(
        &policy,
        TargetRequest::url("http://blocked.wild.com/"),
        &caller,
        &[],
        now(),
        &mut lookup,
    );
    assert_eq!(shown.rule.as_deref(), Some("blocked.wild.com"));
}
