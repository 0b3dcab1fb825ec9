//! End to end: the controls of the one road, through the real binary, on the egress fronts
//! (proxied HTTP, CONNECT tunnels, DNS-guard answers). Each row refuses at one stage (gate in:
//! an immutable `net:host` deny, before the posture; validate: the posture; execute: the dial)
//! with its stable code and its records, and the origin never sees a refused request (it counts
//! the connections it accepts). A store failing before the dial is covered in-process
//! (`portcullis-gateway`, `egress::tests`): the binary has no way to make its store fail.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use support::{Gateway, create_agent};

/// An HTTP server on 127.0.0.2 that counts the connections it accepts.
fn origin() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            );
        }
    });
    (port, accepted)
}

/// A port on 127.0.0.2 where nothing listens.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `curl` through the proxy (`tunnel`: CONNECT): the status of the proxy's answer and its
/// `X-Portcullis-Error`.
fn curl(proxy: &str, user: &str, url: &str, tunnel: bool) -> (u16, String) {
    let mut command = Command::new("curl");
    command.args(["-s", "-i", "--max-time", "20", "-x"]);
    command.arg(format!("http://{proxy}"));
    if tunnel {
        command.arg("-p");
    }
    let output = command.args(["--proxy-user", user, url]).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_ascii_lowercase();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let code = text
        .lines()
        .find_map(|line| line.strip_prefix("x-portcullis-error: "))
        .unwrap_or("")
        .trim()
        .to_owned();
    (status, code)
}

/// One A query to the DNS guard: its response code.
fn dns(guard: &str, name: &str) -> u8 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut packet = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        packet.push(u8::try_from(label.len()).unwrap());
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, 1, 0, 1]);
    socket.send_to(&packet, guard).unwrap();
    let mut reply = [0u8; 1500];
    let len = socket.recv(&mut reply).unwrap();
    assert!(len >= 12, "short DNS reply");
    reply[3] & 0x0f
}

const NOERROR: u8 = 0;
const NXDOMAIN: u8 = 3;
const REFUSED: u8 = 5;

/// The ledger once `done` holds for it (polled, with a deadline: close records and outcome
/// records may trail the answers).
async fn ledger_until(gateway: &Gateway, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = gateway.admin_get("/admin/ledger?limit=1000").await;
        let records = page["records"].as_array().unwrap().clone();
        if done(&records) {
            return records;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ledger never got there: {records:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The egress records of `kind` for `target` on `surface`: (decision, reason).
fn egress(records: &[Value], kind: &str, surface: &str, target: &str) -> Vec<(String, String)> {
    records
        .iter()
        .filter(|r| {
            r["kind"] == kind && r["data"]["surface"] == surface && r["data"]["target"] == target
        })
        .map(|r| {
            (
                r["decision"].as_str().unwrap().to_owned(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The layers of the `policy.decision` records of `subject` on `action` that decided `decision`.
fn decisions(records: &[Value], subject: &str, action: &str, decision: &str) -> Vec<String> {
    records
        .iter()
        .filter(|r| {
            r["kind"] == "policy.decision"
                && r["subject"] == subject
                && r["decision"] == decision
                && r["data"]["action"] == action
        })
        .map(|r| r["data"]["layer"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// One record's (decision, reason).
fn one(decision: &str, reason: &str) -> Vec<(String, String)> {
    vec![(decision.to_owned(), reason.to_owned())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_egress_stage_refuses_before_the_origin_sees_the_action() {
    let (port, accepted) = origin();
    let closed = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("dns.json");
    let names = [
        "svc.test",
        "blocked.test",
        "unlisted-blocked.test",
        "other.test",
    ];
    let mut fixture_json: serde_json::Map<String, Value> = names
        .iter()
        .map(|name| ((*name).to_owned(), serde_json::json!({"A": ["127.0.0.2"]})))
        .collect();
    fixture_json.insert(
        "gone.test".to_owned(),
        serde_json::json!({"rcode": "NXDOMAIN"}),
    );
    std::fs::write(&fixture, serde_json::to_string(&fixture_json).unwrap()).unwrap();
    let cedar = dir.path().join("dns.cedar");
    std::fs::write(
        &cedar,
        r#"
@id("dns-guard-clients")
permit (
  principal == Portcullis::Agent::"@anonymous",
  action in [Portcullis::Action::"net:host", Portcullis::Action::"net:domain"],
  resource
);
"#,
    )
    .unwrap();
    // blocked.test is allowed by the posture and denied by an immutable deny; unlisted-blocked.test
    // is denied by both; other.test only by the posture.
    let config = format!(
        r#"
[policy]
deny = ["net:host:blocked.test", "net:host:unlisted-blocked.test"]
cedar_files = [{cedar:?}]

[egress]
posture = "allowlist"
allow = ["svc.test:{port}", "svc.test:{closed}", "blocked.test:{port}", "gone.test:{port}"]
allow_cidrs = ["127.0.0.2/32"]
"#,
        cedar = cedar.to_str().unwrap(),
    );
    let gateway = Gateway::start_with(
        &config,
        &["--dns-fixture", fixture.to_str().unwrap()],
        &[
            ("PORTCULLIS_EGRESS_PROXY_BIND", "127.0.0.1:0"),
            ("PORTCULLIS_EGRESS_DNS_BIND", "127.0.0.1:0"),
        ],
    )
    .await;
    let proxy = gateway.proxy.clone().expect("the proxy listens");
    let guard = gateway.dns.clone().expect("the DNS guard listens");
    let user = format!(
        "fetcher:{}",
        create_agent(&gateway, "fetcher", &["net:*"]).await
    );

    // Proxy rows: (host, port, CONNECT, status, code). Only the last one reaches the origin.
    let rows: &[(&str, u16, bool, u16, &str)] = &[
        // Gate in: the immutable deny, though the posture allows the host.
        ("blocked.test", port, false, 403, "policy_denied"),
        ("blocked.test", port, true, 403, "policy_denied"),
        // Gate in comes before validate: a host both deny is refused by the policy engine.
        ("unlisted-blocked.test", port, false, 403, "policy_denied"),
        // Validate: the posture.
        ("other.test", port, false, 403, "egress_not_allowed"),
        ("other.test", port, true, 403, "egress_not_allowed"),
        // Execute: the dial of the vetted address fails.
        ("svc.test", closed, false, 502, "egress_connect_failed"),
        ("svc.test", closed, true, 502, "egress_connect_failed"),
        ("svc.test", port, false, 200, ""),
    ];
    for (host, at, tunnel, status, code) in rows {
        let url = format!("http://{host}:{at}/");
        let got = curl(&proxy, &user, &url, *tunnel);
        assert_eq!(got, (*status, (*code).to_owned()), "{url} CONNECT {tunnel}");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "only the allowed request"
    );

    // DNS rows: gate in, validate, execute (NXDOMAIN), and an answer.
    for (name, rcode) in [
        ("blocked.test", REFUSED),
        ("unlisted-blocked.test", REFUSED),
        ("other.test", REFUSED),
        ("gone.test", NXDOMAIN),
        ("svc.test", NOERROR),
    ] {
        assert_eq!(dns(&guard, name), rcode, "{name}");
    }

    let blocked = format!("blocked.test:{port}");
    let other = format!("other.test:{port}");
    let unreachable = format!("svc.test:{closed}");
    let records = ledger_until(&gateway, |records| {
        egress(records, "egress.close", "connect", &unreachable).len() == 1
            && egress(records, "egress.close", "http", &unreachable).len() == 1
            && egress(records, "egress.decision", "dns", "svc.test").len() == 1
    })
    .await;

    // Gate in: each refusal is the immutable layer's deny and the front's record of it.
    for surface in ["http", "connect"] {
        assert_eq!(
            egress(&records, "egress.decision", surface, &blocked),
            one("deny", "policy_denied"),
            "{surface}"
        );
    }
    assert_eq!(
        egress(&records, "egress.decision", "dns", "blocked.test"),
        one("deny", "policy_denied")
    );
    assert_eq!(
        decisions(&records, "fetcher", "net:host:blocked.test", "deny"),
        ["immutable", "immutable"]
    );
    assert_eq!(
        decisions(&records, "@anonymous", "net:host:blocked.test", "deny"),
        ["immutable"]
    );
    assert_eq!(
        egress(
            &records,
            "egress.decision",
            "http",
            &format!("unlisted-blocked.test:{port}")
        ),
        one("deny", "policy_denied")
    );
    assert_eq!(
        egress(&records, "egress.decision", "dns", "unlisted-blocked.test"),
        one("deny", "policy_denied")
    );

    // Validate: the posture refuses after the policy engine allowed the keys.
    for surface in ["http", "connect"] {
        assert_eq!(
            egress(&records, "egress.decision", surface, &other),
            one("deny", "egress_not_allowed"),
            "{surface}"
        );
    }
    assert_eq!(
        egress(&records, "egress.decision", "dns", "other.test"),
        one("deny", "egress_not_allowed")
    );
    assert_eq!(
        decisions(&records, "fetcher", "net:host:other.test", "allow").len(),
        2
    );
    assert_eq!(
        decisions(&records, "@anonymous", "net:host:other.test", "allow").len(),
        1
    );

    // Execute: the admission (the allow decision) was durable before the dial; the dial's
    // failure is the close record.
    for surface in ["http", "connect"] {
        assert_eq!(
            egress(&records, "egress.decision", surface, &unreachable),
            one("allow", "egress_allowed_rule"),
            "{surface}"
        );
        assert_eq!(
            egress(&records, "egress.close", surface, &unreachable),
            one("info", "egress_connect_failed"),
            "{surface}"
        );
    }
    assert_eq!(
        egress(&records, "egress.decision", "dns", "gone.test"),
        one("deny", "egress_dns_failed")
    );
    assert_eq!(
        egress(&records, "egress.decision", "dns", "svc.test"),
        one("allow", "egress_allowed_rule")
    );

    // One action, one correlation id: the gate's decisions and the front's records share it.
    let refusal = records
        .iter()
        .find(|r| r["kind"] == "egress.decision" && r["data"]["target"] == blocked.as_str())
        .unwrap();
    let correlation = refusal["correlation_id"]
        .as_str()
        .expect("a correlation id");
    assert!(records.iter().any(|r| r["kind"] == "policy.decision"
        && r["correlation_id"] == correlation
        && r["data"]["action"] == "net:host:blocked.test"));
}
