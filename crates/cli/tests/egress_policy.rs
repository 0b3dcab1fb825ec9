//! End-to-end: egress asks the policy engine. `net:host:`, `net:domain:` and `net:port:` are
//! decided after the posture check for proxied HTTP, CONNECT, DNS-guard answers and preview; a
//! deny from any layer (immutable, contract, Cedar forbid, no allow) refuses with the stable
//! code and a `policy.decision` event, and the origin never sees the request.

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

use support::{Gateway, create_agent, portcullis};

/// A tiny HTTP server on 127.0.0.2 that counts the connections it accepts (the origin's log).
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

/// `curl` through the proxy; `tunnel` uses CONNECT. Answers (status of the proxy's answer, its
/// `X-Portcullis-Error`).
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

/// One A query to the DNS guard from `source`: (rcode, answer count).
fn dns(guard: &str, source: &str, name: &str) -> (u8, u16) {
    let socket = UdpSocket::bind(format!("{source}:0")).unwrap();
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
    (reply[3] & 0x0f, u16::from_be_bytes([reply[6], reply[7]]))
}

const NOERROR: u8 = 0;
const REFUSED: u8 = 5;

#[tokio::test]
async fn policy_denies_egress_on_every_surface_and_the_origin_sees_nothing() {
    let (port, accepted) = origin();
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("dns.json");
    let names = [
        "svc.test",
        "denied.test",
        "contracted.test",
        "forbidden.test",
        "webonly.test",
    ];
    let fixture_json: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .map(|name| ((*name).to_owned(), serde_json::json!({"A": ["127.0.0.2"]})))
        .collect();
    std::fs::write(&fixture, serde_json::to_string(&fixture_json).unwrap()).unwrap();
    let cedar = dir.path().join("egress.cedar");
    std::fs::write(
        &cedar,
        r#"
@id("no-forbidden-host")
forbid (principal, action == Portcullis::Action::"net:host", resource == Portcullis::Host::"forbidden.test");

@id("dns-guard-clients")
permit (
  principal == Portcullis::Agent::"@anonymous",
  action in [Portcullis::Action::"net:host", Portcullis::Action::"net:domain"],
  resource
);
"#,
    )
    .unwrap();
    // webonly.test is allowed only in project `web`.
    let allow: Vec<String> = names
        .iter()
        .filter(|name| **name != "webonly.test")
        .map(|name| format!("{name}:{port}"))
        .collect();
    let config = format!(
        r#"
[policy]
deny = ["net:host:denied.test"]
cedar_files = [{cedar:?}]

[[contracts]]
id = "no-contracted"
patterns = ["net:host:contracted.test"]
subject = {{ roles = [], tags = [], agents = ["fetcher"], nodes = [] }}
valid_from = "2020-01-01T00:00:00Z"
valid_to = "2099-01-01T00:00:00Z"

# Declared only for the offline preview's `--agent` (its token is never used).
[[agents]]
id = "declared"
token_sha256 = "{hash}"
allow = ["net:*"]

[egress]
posture = "allowlist"
allow = {allow:?}
allow_cidrs = ["127.0.0.2/32"]

[egress.projects.web]
allow = ["webonly.test"]

[egress.dns_clients]
"127.0.0.3/32" = "web"
"#,
        cedar = cedar.to_str().unwrap(),
        hash = "ab".repeat(32),
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
    let fetcher = format!(
        "fetcher:{}",
        create_agent(&gateway, "fetcher", &["net:*"]).await
    );
    let empty = format!("empty:{}", create_agent(&gateway, "empty", &[]).await);

    // Proxy rows: (user, host, CONNECT, status, code). The posture allows every host here.
    let rows: &[(&str, &str, bool, u16, &str)] = &[
        (&fetcher, "svc.test", false, 200, ""),
        (&fetcher, "svc.test", true, 200, ""),
        (&fetcher, "denied.test", false, 403, "policy_denied"),
        (&fetcher, "denied.test", true, 403, "policy_denied"),
        (&fetcher, "contracted.test", false, 403, "policy_denied"),
        (&fetcher, "contracted.test", true, 403, "policy_denied"),
        (&fetcher, "forbidden.test", false, 403, "policy_denied"),
        (&fetcher, "forbidden.test", true, 403, "policy_denied"),
        // An agent with an empty allowlist cannot use the proxy at all.
        (&empty, "svc.test", false, 403, "policy_denied"),
        (&empty, "svc.test", true, 403, "policy_denied"),
    ];
    let mut reached = 0;
    for (user, host, tunnel, status, code) in rows {
        let before = accepted.load(Ordering::SeqCst);
        let url = format!("http://{host}:{port}/");
        let got = curl(&proxy, user, &url, *tunnel);
        assert_eq!(got, (*status, (*code).to_owned()), "{user} {url} {tunnel}");
        let hits = accepted.load(Ordering::SeqCst) - before;
        assert_eq!(hits, usize::from(*status == 200), "origin hits for {url}");
        reached += hits;
    }
    assert_eq!(reached, 2);

    // DNS rows: (source address, name, rcode, answers). `@anonymous` needs the Cedar permit;
    // 127.0.0.3 is mapped to project `web`, whose posture allows only webonly.test.
    let dns_rows: &[(&str, &str, u8, u16)] = &[
        ("127.0.0.1", "svc.test", NOERROR, 1),
        ("127.0.0.1", "denied.test", REFUSED, 0),
        ("127.0.0.1", "forbidden.test", REFUSED, 0),
        ("127.0.0.1", "webonly.test", REFUSED, 0),
        ("127.0.0.3", "webonly.test", NOERROR, 1),
        ("127.0.0.3", "svc.test", REFUSED, 0),
    ];
    for (source, name, rcode, answers) in dns_rows {
        assert_eq!(
            dns(&guard, source, name),
            (*rcode, *answers),
            "{source} {name}"
        );
    }

    // Preview (agent token) refuses before any lookup, naming the deny rule.
    let client = reqwest::Client::new();
    let preview: serde_json::Value = client
        .post(gateway.url("/egress/preview"))
        .bearer_auth(fetcher.split_once(':').unwrap().1)
        .json(&serde_json::json!({"target": format!("http://denied.test:{port}/")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(preview["allow"], false, "{preview}");
    assert_eq!(preview["reason"], "egress_policy_denied");
    assert_eq!(preview["rule"], "net:host:denied.test");
    assert_eq!(preview["lookups"], 0);

    // The CLI preview decides offline with the same policy: the anonymous subject may reach
    // svc.test's host and domain but not its port (the Cedar permit leaves `net:port` out).
    let config_path = dir.path().join("portcullis.toml");
    std::fs::write(&config_path, &config).unwrap();
    let cli_as = |agent: Option<&str>, target: &str| -> serde_json::Value {
        let mut command = portcullis();
        command
            .args(["egress", "preview", "--config"])
            .arg(&config_path)
            .arg("--dns-fixture")
            .arg(&fixture);
        if let Some(agent) = agent {
            command.args(["--agent", agent]);
        }
        let output = command.arg(target).output().unwrap();
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let cli = |target: &str| cli_as(None, target);
    let denied = cli(&format!("http://denied.test:{port}/"));
    assert_eq!(denied["reason"], "egress_policy_denied", "{denied}");
    assert_eq!(denied["rule"], "net:host:denied.test");
    let port_key = cli(&format!("http://svc.test:{port}/"));
    assert_eq!(port_key["reason"], "egress_policy_denied", "{port_key}");
    assert_eq!(port_key["lookups"], 0);
    // For an agent declared in the configuration, its allowlist applies, and denies still win.
    let declared = cli_as(Some("declared"), &format!("http://svc.test:{port}/"));
    assert_eq!(declared["allow"], true, "{declared}");
    assert_eq!(declared["dialed"], format!("127.0.0.2:{port}"));
    let declared = cli_as(Some("declared"), &format!("http://denied.test:{port}/"));
    assert_eq!(declared["reason"], "egress_policy_denied", "{declared}");

    // The kill switch reaches the DNS guard.
    let on = gateway.cli().args(["killswitch", "on"]).output().unwrap();
    assert!(on.status.success());
    assert_eq!(dns(&guard, "127.0.0.1", "svc.test"), (REFUSED, 0));
    let off = gateway.cli().args(["killswitch", "off"]).output().unwrap();
    assert!(off.status.success());
    assert_eq!(dns(&guard, "127.0.0.1", "svc.test"), (NOERROR, 1));

    // Every refusal is a `policy.decision` deny naming the key, for the agent or `@anonymous`.
    let page = gateway.admin_get("/admin/ledger?limit=1000").await;
    let records = page["records"].as_array().unwrap();
    let denies = |subject: &str, action: &str| {
        records
            .iter()
            .filter(|r| {
                r["kind"] == "policy.decision"
                    && r["decision"] == "deny"
                    && r["subject"] == subject
                    && r["data"]["action"] == action
            })
            .count()
    };
    assert_eq!(
        denies("fetcher", "net:host:denied.test"),
        3,
        "http, connect, preview"
    );
    assert_eq!(denies("fetcher", "net:host:contracted.test"), 2);
    assert_eq!(denies("fetcher", "net:host:forbidden.test"), 2);
    assert_eq!(denies("empty", "net:host:svc.test"), 2);
    assert_eq!(denies("@anonymous", "net:host:denied.test"), 1);
    assert_eq!(denies("@anonymous", "net:host:forbidden.test"), 1);
    let layers: Vec<&str> = records
        .iter()
        .filter(|r| r["kind"] == "policy.decision" && r["decision"] == "deny")
        .map(|r| r["data"]["layer"].as_str().unwrap())
        .collect();
    for layer in ["immutable", "contract", "cedar", "default"] {
        assert!(layers.contains(&layer), "no {layer} deny in {layers:?}");
    }
    let allows = records
        .iter()
        .filter(|r| {
            r["kind"] == "policy.decision"
                && r["decision"] == "allow"
                && r["data"]["action"] == format!("net:port:{port}")
        })
        .count();
    assert_eq!(allows, 2, "the two admitted proxy requests");
    assert!(
        records
            .iter()
            .any(|r| r["kind"] == "killswitch.refused" && r["subject"] == "@anonymous")
    );
}
