//! The real proxy, driven by `curl` and raw sockets, against loopback servers reached by name
//! through a DNS fixture and `allow_cidrs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use base64::Engine;
use common::*;
use jiff::SignedDuration;
use portcullis_core::Clock;
use portcullis_egress::{CutReason, FixtureResolver, ProxyLimits, Surface};
use portcullis_netpolicy::{DnsFixture, Lease, LeaseKey, LeaseSubject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn fixture() -> Arc<FixtureResolver> {
    Arc::new(FixtureResolver::new(
        DnsFixture::parse(
            r#"{
                "svc.test": {"A": ["127.0.0.2"]},
                "other.test": {"A": ["127.0.0.2"]},
                "leased.test": {"A": ["127.0.0.2"]},
                "banned.test": {"A": ["127.0.0.2"]},
                "loop.test": {"A": ["127.0.0.1"]},
                "gone.test": {"rcode": "NXDOMAIN"},
                "x.policy-denied.test": {"A": ["127.0.0.2"]},
                "x.unrecorded.test": {"A": ["127.0.0.2"]}
            }"#,
        )
        .unwrap(),
    ))
}

fn config(port: u16) -> String {
    format!(
        r#"
allow = ["svc.test:{port}", "loop.test:{port}", "gone.test:{port}", "*.policy-denied.test:{port}", "*.unrecorded.test:{port}"]
deny = ["banned.test"]
allow_cidrs = ["127.0.0.2/32"]
"#
    )
}

async fn start(port: u16, resolver: Arc<FixtureResolver>, leases: Vec<Lease>) -> Proxy {
    Proxy::start(
        policy(&config(port)),
        resolver,
        leases,
        ProxyLimits::default(),
    )
    .await
}

fn user() -> String {
    format!("{AGENT}:{TOKEN}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_forward_is_origin_form_and_records_bytes() {
    let server = http_server("127.0.0.2").await;
    let port = server.addr.port();
    let resolver = fixture();
    let mut proxy = start(port, resolver.clone(), vec![]).await;
    let url = format!("http://svc.test:{port}/hello?x=1");
    let out = curl(&[
        "-x",
        &proxy.url(),
        "-U",
        &user(),
        "-H",
        "X-Request-Id: req-42",
        "-H",
        "Proxy-Connection: keep-alive",
        &url,
    ])
    .await;
    assert_eq!(out.code, 200, "{out:?}");
    assert!(out.output.ends_with("hello from the target\n"), "{out:?}");

    let seen = server.seen.lock().await.recv().await.unwrap();
    let head = seen.head.to_ascii_lowercase();
    assert!(head.starts_with("get /hello?x=1 http/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("host: svc.test:{port}\r\n")),
        "{head}"
    );
    assert!(!head.contains("proxy-"), "{head}");
    assert!(head.contains("x-request-id: req-42"), "{head}");

    let decision = proxy.decision().await;
    assert!(decision.allow);
    assert_eq!(decision.reason, "egress_allowed_rule");
    assert_eq!(
        decision.rule.as_deref(),
        Some(format!("svc.test:{port}").as_str())
    );
    assert_eq!(decision.head.surface, Surface::Http);
    assert_eq!(decision.head.agent, AGENT);
    assert_eq!(decision.head.project.as_deref(), Some("proj"));
    assert_eq!(decision.head.correlation_id.as_deref(), Some("req-42"));
    assert_eq!(decision.head.target, format!("svc.test:{port}"));
    assert_eq!(
        decision.resolved,
        vec!["127.0.0.2".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(decision.dialed, Some(server.addr));

    let close = proxy.close().await;
    assert_eq!(close.head, decision.head);
    assert_eq!(close.reason, "egress_closed");
    assert_eq!(close.dialed, server.addr);
    assert_eq!(close.bytes_up, seen.bytes_read as u64);
    assert_eq!(close.bytes_down, response_bytes().len() as u64);
    assert_eq!(resolver.queries(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tunnel_carries_bytes_and_records_them() {
    let server = http_server("127.0.0.2").await;
    let port = server.addr.port();
    let resolver = fixture();
    let mut proxy = start(port, resolver.clone(), vec![]).await;
    let url = format!("http://svc.test:{port}/tunnelled");
    let out = curl(&["-p", "-x", &proxy.url(), "-U", &user(), &url]).await;
    assert_eq!((out.connect_code, out.code), (200, 200), "{out:?}");
    assert!(out.output.ends_with("hello from the target\n"), "{out:?}");

    let seen = server.seen.lock().await.recv().await.unwrap();
    // Through a tunnel the client's request arrives untouched, in origin-form from curl.
    assert!(
        seen.head.starts_with("GET /tunnelled HTTP/1.1\r\n"),
        "{}",
        seen.head
    );
    assert!(
        !seen
            .head
            .to_ascii_lowercase()
            .contains("proxy-authorization")
    );

    let decision = proxy.decision().await;
    assert!(decision.allow);
    assert_eq!(decision.head.surface, Surface::Connect);
    assert_eq!(decision.dialed, Some(server.addr));
    let close = proxy.close().await;
    assert_eq!(close.head.connection, decision.head.connection);
    assert_eq!(close.bytes_up, seen.bytes_read as u64);
    assert_eq!(close.bytes_down, response_bytes().len() as u64);
    assert_eq!(resolver.queries(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_get_their_code_and_the_server_sees_nothing() {
    let server = http_server("127.0.0.2").await;
    let port = server.addr.port();
    let resolver = fixture();
    let mut proxy = start(port, resolver.clone(), vec![]).await;

    // (url, use CONNECT, status, code, lookups made)
    let cases: &[(String, bool, u16, &str, u64)] = &[
        (
            format!("http://other.test:{port}/"),
            false,
            403,
            "egress_not_allowed",
            0,
        ),
        (
            format!("http://other.test:{port}/"),
            true,
            403,
            "egress_not_allowed",
            0,
        ),
        (
            format!("http://banned.test:{port}/"),
            false,
            403,
            "egress_denied_rule",
            0,
        ),
        (
            format!("http://svc.test:{}/", port.wrapping_add(1)),
            false,
            403,
            "egress_port_not_allowed",
            0,
        ),
        (
            format!("http://127.0.0.2:{port}/"),
            false,
            403,
            "egress_ip_literal",
            0,
        ),
        (
            format!("http://0x7f000002:{port}/"),
            true,
            403,
            "egress_ip_literal",
            0,
        ),
        (
            format!("http://loop.test:{port}/"),
            false,
            403,
            "egress_loopback_address",
            1,
        ),
        (
            format!("http://gone.test:{port}/"),
            false,
            502,
            "egress_dns_failed",
            1,
        ),
        // The posture allows it; the policy gate denies its `net:domain:` key before any lookup.
        (
            format!("http://x.policy-denied.test:{port}/"),
            false,
            403,
            "policy_denied",
            0,
        ),
        (
            format!("http://x.policy-denied.test:{port}/"),
            true,
            403,
            "policy_denied",
            0,
        ),
    ];
    for (url, connect, status, code, lookups) in cases {
        let before = resolver.queries();
        let mut args = vec!["-x", proxy.url().leak(), "-U", user().leak()];
        if *connect {
            args.push("-p");
        }
        args.push(url);
        let out = curl(&args).await;
        let got = if *connect { out.connect_code } else { out.code };
        assert_eq!(got, *status, "{url} {out:?}");
        assert_eq!(
            out.header("x-portcullis-error").as_deref(),
            Some(*code),
            "{url}"
        );
        let decision = proxy.decision().await;
        assert!(!decision.allow, "{url}");
        assert_eq!(decision.reason, *code, "{url}");
        assert_eq!(decision.dialed, None);
        assert_eq!(resolver.queries() - before, *lookups, "{url}");
    }

    // Requests curl will not send: absolute-form https, origin-form, CONNECT without a port.
    let credential = base64::engine::general_purpose::STANDARD.encode(user());
    for (line, code) in [
        (
            format!("GET https://svc.test:{port}/ HTTP/1.1"),
            "egress_https_forward",
        ),
        (
            "GET /direct HTTP/1.1".to_owned(),
            "egress_not_a_proxy_request",
        ),
        (
            "CONNECT svc.test HTTP/1.1".to_owned(),
            "egress_port_required",
        ),
    ] {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        let request = format!(
            "{line}\r\nHost: svc.test\r\nProxy-Authorization: Basic {credential}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let response = response.to_ascii_lowercase();
        assert!(response.starts_with("http/1.1 400"), "{line}: {response}");
        assert!(
            response.contains(&format!("x-portcullis-error: {code}")),
            "{line}: {response}"
        );
        assert_eq!(proxy.decision().await.reason, code, "{line}");
    }
    // Only loop.test and gone.test, allowed by name, were looked up.
    assert_eq!(resolver.queries(), 2);
    assert_eq!(server.accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_that_cannot_be_recorded_is_refused_and_nothing_is_dialed() {
    let server = http_server("127.0.0.2").await;
    let port = server.addr.port();
    let proxy = start(port, fixture(), vec![]).await;
    // The policy decisions of x.unrecorded.test cannot be written; then no egress record can.
    for (host, fail_egress_record) in [("x.unrecorded.test", false), ("svc.test", true)] {
        proxy
            .fail_records
            .store(fail_egress_record, Ordering::SeqCst);
        for connect in [false, true] {
            let mut args = vec!["-x", proxy.url().leak(), "-U", user().leak()];
            if connect {
                args.push("-p");
            }
            let url = format!("http://{host}:{port}/");
            args.push(&url);
            let out = curl(&args).await;
            let got = if connect { out.connect_code } else { out.code };
            assert_eq!(got, 503, "{out:?}");
            assert_eq!(
                out.header("x-portcullis-error").as_deref(),
                Some("store_unavailable")
            );
        }
    }
    assert_eq!(server.accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_bad_credentials_get_407() {
    let server = http_server("127.0.0.2").await;
    let port = server.addr.port();
    let proxy = start(port, fixture(), vec![]).await;
    let url = format!("http://svc.test:{port}/");
    let bad = format!("{AGENT}:wrong");
    for args in [
        vec!["-x", proxy.url().leak(), url.as_str()],
        vec!["-x", proxy.url().leak(), "-U", bad.as_str(), url.as_str()],
        vec!["-p", "-x", proxy.url().leak(), url.as_str()],
        vec![
            "-x",
            proxy.url().leak(),
            "--proxy-header",
            "Proxy-Authorization: Bearer nope",
            url.as_str(),
        ],
    ] {
        let out = curl(&args).await;
        let code = if args.contains(&"-p") {
            out.connect_code
        } else {
            out.code
        };
        assert_eq!(code, 407, "{args:?} {out:?}");
        assert_eq!(
            out.header("proxy-authenticate").as_deref(),
            Some("basic realm=\"portcullis\"")
        );
        assert_eq!(
            out.header("x-portcullis-error").as_deref(),
            Some("egress_proxy_auth_required")
        );
    }
    let bearer = format!("Proxy-Authorization: Bearer {BEARER}");
    let out = curl(&["-x", &proxy.url(), "--proxy-header", &bearer, &url]).await;
    assert_eq!(out.code, 200, "{out:?}");
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebinding_resolver_gets_the_first_vetted_address_dialed_after_one_lookup() {
    let server = http_server("127.0.0.2").await;
    let port = server.addr.port();
    let resolver = Arc::new(SequenceResolver::new(&[&["127.0.0.2"], &["127.0.0.1"]]));
    let mut proxy = Proxy::start(
        policy(&config(port)),
        resolver.clone(),
        vec![],
        ProxyLimits::default(),
    )
    .await;
    let url = format!("http://svc.test:{port}/");
    let out = curl(&["-x", &proxy.url(), "-U", &user(), &url]).await;
    assert_eq!(out.code, 200, "{out:?}");
    let decision = proxy.decision().await;
    assert_eq!(
        decision.dialed,
        Some(SocketAddr::new("127.0.0.2".parse().unwrap(), port))
    );
    assert_eq!(resolver.queries.load(Ordering::SeqCst), 1);
    let _ = proxy.close().await;

    // The next request gets the rebound answer, which vetting refuses.
    let out = curl(&["-x", &proxy.url(), "-U", &user(), &url]).await;
    assert_eq!(out.code, 403, "{out:?}");
    assert_eq!(proxy.decision().await.reason, "egress_loopback_address");
    assert_eq!(resolver.queries.load(Ordering::SeqCst), 2);
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_opens_a_host_until_it_expires_but_never_past_a_deny() {
    let server = http_server("127.0.0.2").await;
    let port = server.addr.port();
    let expires_at =
        portcullis_test_support::ManualClock::at_epoch_2026().now() + SignedDuration::from_secs(60);
    let lease = |id: &str, key: &str| Lease {
        id: id.into(),
        key: LeaseKey::parse(key).unwrap(),
        subject: LeaseSubject::Agent(AGENT.into()),
        expires_at,
    };
    let leases = vec![
        lease("lease-host", "net:host:leased.test"),
        lease("lease-banned", "net:host:banned.test"),
        lease("lease-port", &format!("net:port:{port}")),
    ];
    let mut proxy = start(port, fixture(), leases).await;
    let leased = format!("http://leased.test:{port}/");
    let out = curl(&["-x", &proxy.url(), "-U", &user(), &leased]).await;
    assert_eq!(out.code, 200, "{out:?}");
    let decision = proxy.decision().await;
    assert_eq!(decision.reason, "egress_allowed_lease");
    assert_eq!(decision.lease.as_deref(), Some("lease-host"));
    let _ = proxy.close().await;

    let banned = format!("http://banned.test:{port}/");
    let out = curl(&["-x", &proxy.url(), "-U", &user(), &banned]).await;
    assert_eq!(out.code, 403, "{out:?}");
    assert_eq!(proxy.decision().await.reason, "egress_denied_rule");

    proxy.clock.advance(SignedDuration::from_secs(60));
    let out = curl(&["-x", &proxy.url(), "-U", &user(), &leased]).await;
    assert_eq!(out.code, 403, "{out:?}");
    assert_eq!(proxy.decision().await.reason, "egress_not_allowed");
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}

async fn raw_connect(proxy: SocketAddr, authority: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let credential = base64::engine::general_purpose::STANDARD.encode(user());
    let request = format!(
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nProxy-Authorization: Basic {credential}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "{head:?}");
        head.push(byte[0]);
    }
    (stream, String::from_utf8(head).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_per_agent_are_limited_and_echo_works() {
    let echo = echo_server("127.0.0.2").await;
    let port = echo.port();
    // The user-space copy path; the other tunnel tests use splice(2).
    let limits = ProxyLimits {
        tunnels_per_agent: 1,
        splice_tunnels: false,
        ..ProxyLimits::default()
    };
    let mut proxy = Proxy::start(policy(&config(port)), fixture(), vec![], limits).await;
    let authority = format!("svc.test:{port}");
    let (mut first, head) = raw_connect(proxy.addr, &authority).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(proxy.decision().await.allow);

    let (_second, head) = raw_connect(proxy.addr, &authority).await;
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-portcullis-error: egress_tunnel_limit"),
        "{head}"
    );
    assert_eq!(proxy.decision().await.reason, "egress_tunnel_limit");

    first.write_all(b"ping!").await.unwrap();
    let mut buf = [0u8; 5];
    first.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping!");
    drop(first);
    let close = proxy.close().await;
    assert_eq!((close.bytes_up, close.bytes_down), (5, 5));

    // The slot came back.
    let (_third, head) = raw_connect(proxy.addr, &authority).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_policy_swaps_and_header_limits() {
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut proxy = start(closed_port, fixture(), vec![]).await;
    let url = format!("http://svc.test:{closed_port}/");
    let out = curl(&["-x", &proxy.url(), "-U", &user(), &url]).await;
    assert_eq!(out.code, 502, "{out:?}");
    assert_eq!(
        out.header("x-portcullis-error").as_deref(),
        Some("egress_connect_failed")
    );
    assert!(proxy.decision().await.allow);
    let close = proxy.close().await;
    assert_eq!(
        (close.reason, close.bytes_up, close.bytes_down),
        ("egress_connect_failed", 0, 0)
    );

    proxy.policy.replace(policy("allow = []\n"));
    let out = curl(&["-x", &proxy.url(), "-U", &user(), &url]).await;
    assert_eq!(out.code, 403, "{out:?}");
    assert_eq!(proxy.decision().await.reason, "egress_not_allowed");

    let big = format!("X-Big: {}", "a".repeat(20 * 1024));
    let out = curl(&["-x", &proxy.url(), "-U", &user(), "-H", &big, &url]).await;
    assert_eq!(out.code, 431, "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_never_accepts_gets_504() {
    // A listener that is never accepted from, with its backlog full, drops further SYNs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let dial = TcpStream::connect(addr);
        if let Ok(Ok(stream)) =
            tokio::time::timeout(std::time::Duration::from_millis(200), dial).await
        {
            fillers.push(stream);
        }
    }
    let limits = ProxyLimits {
        connect_timeout: std::time::Duration::from_millis(300),
        ..ProxyLimits::default()
    };
    let mut proxy = Proxy::start(policy(&config(addr.port())), fixture(), vec![], limits).await;
    let url = format!("http://svc.test:{}/", addr.port());
    let out = curl(&["-x", &proxy.url(), "-U", &user(), &url]).await;
    assert_eq!(out.code, 504, "{out:?}");
    assert_eq!(
        out.header("x-portcullis-error").as_deref(),
        Some("egress_connect_timeout")
    );
    assert!(proxy.decision().await.allow);
    assert_eq!(proxy.close().await.reason, "egress_connect_timeout");
    drop((listener, fillers));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_targets_are_reused_per_agent_and_host_with_bytes_per_request() {
    let (addr, accepted) = keepalive_server("127.0.0.2").await;
    let port = addr.port();
    let mut proxy = start(port, fixture(), vec![]).await;
    let url = format!("http://svc.test:{port}/again");
    let out = curl(&["-x", &proxy.url(), "-U", &user(), &url, &url, &url]).await;
    assert_eq!(out.code, 200, "{out:?}");
    assert_eq!(
        out.output.matches("hello from the target").count(),
        3,
        "{out:?}"
    );
    let mut closes = Vec::new();
    for _ in 0..6 {
        match proxy.record().await {
            common::Rec::Decision(record) => assert!(record.allow),
            common::Rec::Close(record) => closes.push(record),
        }
    }
    assert_eq!(closes.len(), 3);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    for close in &closes {
        assert_eq!(close.reason, "egress_closed");
        assert!(close.bytes_down > BODY.len() as u64, "{close:?}");
        assert_eq!(close.bytes_up, closes[0].bytes_up, "{close:?}");
    }
    // Another agent never reuses agent-1's connection.
    let bearer = format!("Proxy-Authorization: Bearer {BEARER}");
    let out = curl(&["-x", &proxy.url(), "--proxy-header", &bearer, &url]).await;
    assert_eq!(out.code, 200, "{out:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_closes_the_callers_tunnel_with_a_close_record() {
    let echo = echo_server("127.0.0.2").await;
    let port = echo.port();
    let mut proxy = Proxy::start(
        policy(&config(port)),
        fixture(),
        vec![],
        ProxyLimits::default(),
    )
    .await;
    let (mut tunnel, head) = raw_connect(proxy.addr, &format!("svc.test:{port}")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(proxy.decision().await.allow);
    tunnel.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tunnel.read_exact(&mut buf).await.unwrap();
    assert_eq!(proxy.live.callers().len(), 1);

    // Another agent's cut leaves it alone; its own ends it.
    assert_eq!(
        proxy
            .live
            .cut(|c| (c.agent == "someone-else").then_some(CutReason::KillSwitch)),
        0
    );
    assert_eq!(
        proxy
            .live
            .cut(|c| (c.agent == AGENT).then_some(CutReason::KillSwitch)),
        1
    );
    let mut rest = Vec::new();
    let _ = tunnel.read_to_end(&mut rest).await;
    let close = proxy.close().await;
    assert_eq!(close.reason, "egress_killswitch_closed");
    assert_eq!(close.bytes_up, 4);
    assert!(proxy.live.is_empty());
}
