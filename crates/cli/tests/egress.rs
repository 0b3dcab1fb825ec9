//! End-to-end egress: the real gateway's forward proxy, driven by `curl`, against a local server
//! reached by name through a DNS fixture; preview over HTTP and the CLI; leases.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::{Gateway, portcullis};

/// A tiny HTTP server on 127.0.0.2 that counts the connections it accepts.
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

/// `POST /egress/preview` with an agent token.
async fn preview(
    client: &reqwest::Client,
    gateway: &Gateway,
    token: &str,
    target: impl serde::Serialize,
) -> serde_json::Value {
    client
        .post(gateway.url("/egress/preview"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "target": target }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn curl(proxy: &str, user: &str, url: &str) -> (String, String) {
    let output = Command::new("curl")
        .args(["-s", "-i", "--max-time", "20", "-x"])
        .arg(format!("http://{proxy}"))
        .args(["--proxy-user", user, url])
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[tokio::test]
async fn proxy_preview_and_leases_through_the_real_gateway() {
    let (port, accepted) = origin();
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("dns.json");
    std::fs::write(
        &fixture,
        r#"{"svc.test":{"A":["127.0.0.2"]},"other.test":{"A":["127.0.0.2"]}}"#,
    )
    .unwrap();
    // The CLI's offline preview decides for the anonymous subject: this Cedar policy lets it
    // reach every `net:*` key, so its answer equals the agent's.
    let cedar = dir.path().join("anonymous.cedar");
    std::fs::write(
        &cedar,
        "permit (principal == Portcullis::Agent::\"@anonymous\", action, resource);\n",
    )
    .unwrap();
    let config = format!(
        "[policy]\ncedar_files = [{cedar:?}]\n\n[egress]\nposture = \"allowlist\"\nallow = [\"svc.test:{port}\"]\nallow_cidrs = [\"127.0.0.2/32\"]\n",
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
    assert!(gateway.dns.is_some(), "the DNS guard listens");

    let token = {
        let output = gateway
            .cli()
            .args(["agent", "token", "create", "fetcher", "--allow", "net:*"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let user = format!("fetcher:{token}");

    // Allowed: the origin answers through the proxy.
    let (out, err) = curl(&proxy, &user, &format!("http://svc.test:{port}/hello"));
    assert!(out.starts_with("HTTP/1.1 200"), "{out}{err}");
    assert!(out.ends_with("hello"), "{out}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // Denied: 403 with the reason header, and the origin sees nothing.
    let (out, _) = curl(&proxy, &user, &format!("http://other.test:{port}/"));
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-portcullis-error: egress_"),
        "{out}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // No credentials: 407.
    let (out, _) = curl(&proxy, "fetcher:wrong", &format!("http://svc.test:{port}/"));
    assert!(out.starts_with("HTTP/1.1 407"), "{out}");

    // The ledger has the decision and the close record with byte counts.
    let page = gateway.admin_get("/admin/ledger?limit=1000").await;
    let records = page["records"].as_array().unwrap();
    let allowed = records
        .iter()
        .find(|r| r["kind"] == "egress.decision" && r["decision"] == "allow")
        .expect("an allow decision record");
    assert_eq!(allowed["subject"], "fetcher");
    assert_eq!(allowed["data"]["dialed"], format!("127.0.0.2:{port}"));
    let closed = records
        .iter()
        .find(|r| r["kind"] == "egress.close")
        .expect("a close record");
    assert!(closed["data"]["bytes_down"].as_u64().unwrap() > 0);
    assert!(
        records
            .iter()
            .any(|r| r["kind"] == "egress.decision" && r["decision"] == "deny")
    );
    assert!(
        !page.to_string().contains(&token),
        "the token reached the ledger"
    );

    // Preview over HTTP (agent token) answers like the CLI for the same target.
    let client = reqwest::Client::new();
    let target = format!("http://svc.test:{port}/");
    let http: serde_json::Value = preview(&client, &gateway, &token, &target).await;
    assert_eq!(http["allow"], true, "{http}");
    assert_eq!(http["dialed"], format!("127.0.0.2:{port}"));
    assert_eq!(http["lookups"], 1);
    let config_path = dir.path().join("portcullis.toml");
    std::fs::write(&config_path, &config).unwrap();
    let cli = portcullis()
        .args(["egress", "preview", "--config"])
        .arg(&config_path)
        .arg("--dns-fixture")
        .arg(&fixture)
        .arg(&target)
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let cli: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(cli, http);

    // A denied name is never looked up.
    let denied: serde_json::Value = preview(&client, &gateway, &token, "http://other.test/").await;
    assert_eq!(denied["allow"], false);
    assert_eq!(denied["lookups"], 0);

    // A lease for the agent opens other.test until it is revoked.
    let grant = gateway
        .cli()
        .args([
            "lease",
            "grant",
            "net:host:other.test",
            "--ttl",
            "15m",
            "--agent",
            "fetcher",
        ])
        .output()
        .unwrap();
    assert!(
        grant.status.success(),
        "{}",
        String::from_utf8_lossy(&grant.stderr)
    );
    let granted: serde_json::Value = serde_json::from_slice(&grant.stdout).unwrap();
    let leased: serde_json::Value = preview(&client, &gateway, &token, "http://other.test/").await;
    assert_eq!(leased["allow"], true, "{leased}");
    assert_eq!(leased["lease"], granted["id"]);
    let revoke = gateway
        .cli()
        .args(["lease", "revoke", granted["id"].as_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    let after: serde_json::Value = preview(&client, &gateway, &token, "http://other.test/").await;
    assert_eq!(after["allow"], false);
}
