//! End-to-end kill switch: `portcullis killswitch on|off` against the real gateway refuses the
//! HTTP API, `/egress/preview` and the forward proxy, survives a restart, and lifts cleanly.

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

use support::Gateway;

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

fn curl(proxy: &str, user: &str, url: &str) -> String {
    let output = Command::new("curl")
        .args(["-s", "-i", "--max-time", "20", "-x"])
        .arg(format!("http://{proxy}"))
        .args(["--proxy-user", user, url])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn cli_ok(gateway: &Gateway, args: &[&str]) -> String {
    let output = gateway.cli().args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The status and error code of `/whoami`, `/egress/preview` and `/mcp` for `token`.
async fn agent_calls(gateway: &Gateway, token: &str, port: u16) -> Vec<(u16, String)> {
    let client = reqwest::Client::new();
    let whoami = client
        .get(gateway.url("/whoami"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let preview = client
        .post(gateway.url("/egress/preview"))
        .bearer_auth(token)
        .json(&serde_json::json!({"target": format!("http://svc.test:{port}/")}))
        .send()
        .await
        .unwrap();
    // The MCP front: an `initialize` POST (its 200 answer is an event stream, left unread).
    let mcp = client
        .post(gateway.url("/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(
            &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap();
    let mut res = Vec::new();
    for response in [whoami, preview, mcp] {
        let status = response.status().as_u16();
        if status == 200 {
            res.push((status, String::new()));
            continue;
        }
        let body: serde_json::Value = response.json().await.unwrap();
        res.push((
            status,
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
        ));
    }
    res
}

#[tokio::test]
async fn killswitch_refuses_every_front_survives_restart_and_lifts() {
    let (port, accepted) = origin();
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("dns.json");
    std::fs::write(&fixture, r#"{"svc.test":{"A":["127.0.0.2"]}}"#).unwrap();
    let config = format!(
        "[egress]\nposture = \"allowlist\"\nallow = [\"svc.test:{port}\"]\nallow_cidrs = [\"127.0.0.2/32\"]\n"
    );
    let args = ["--dns-fixture", fixture.to_str().unwrap()];
    let envs = [
        ("PORTCULLIS_EGRESS_PROXY_BIND", "127.0.0.1:0"),
        ("PORTCULLIS_EGRESS_DNS_BIND", ""),
    ];
    let gateway = Gateway::start_with(&config, &args, &envs).await;
    let token = cli_ok(
        &gateway,
        &["agent", "token", "create", "fetcher", "--allow", "net:*"],
    );
    let user = format!("fetcher:{token}");
    let url = format!("http://svc.test:{port}/");
    let open = vec![(200, String::new()); 3];
    let refused = vec![(503, "killswitch_engaged".to_owned()); 3];

    // Off: traffic flows.
    assert_eq!(agent_calls(&gateway, &token, port).await, open);
    let out = curl(gateway.proxy.as_deref().unwrap(), &user, &url);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // A scope that does not cover the agent changes nothing for it.
    cli_ok(
        &gateway,
        &["killswitch", "on", "--scope", "agent:someone-else"],
    );
    assert_eq!(agent_calls(&gateway, &token, port).await, open);

    // On: every front refuses, and the origin sees nothing.
    let answer: serde_json::Value =
        serde_json::from_str(&cli_ok(&gateway, &["killswitch", "on"])).unwrap();
    assert_eq!(answer["global"], true);
    assert_eq!(agent_calls(&gateway, &token, port).await, refused);
    let out = curl(gateway.proxy.as_deref().unwrap(), &user, &url);
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-portcullis-error: killswitch_engaged"),
        "{out}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // The state survives a restart.
    let gateway = gateway.restart(&config, &args, &envs).await;
    assert_eq!(agent_calls(&gateway, &token, port).await, refused);
    let out = curl(gateway.proxy.as_deref().unwrap(), &user, &url);
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    let status: serde_json::Value =
        serde_json::from_str(&cli_ok(&gateway, &["killswitch", "status"])).unwrap();
    let scopes: Vec<&str> = status["engaged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["scope"].as_str().unwrap())
        .collect();
    assert_eq!(scopes, ["global", "agent:someone-else"]);

    // Off: traffic resumes.
    cli_ok(&gateway, &["killswitch", "off"]);
    assert_eq!(agent_calls(&gateway, &token, port).await, open);
    let out = curl(gateway.proxy.as_deref().unwrap(), &user, &url);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    // Every toggle and refusal is in the ledger.
    let page = gateway.admin_get("/admin/ledger?limit=1000").await;
    let kinds: Vec<&str> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    let count = |kind: &str| kinds.iter().filter(|k| **k == kind).count();
    assert_eq!(count("killswitch.engaged"), 2);
    assert_eq!(count("killswitch.released"), 1);
    assert_eq!(count("killswitch.refused"), 6);
    let proxy_refusals = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "egress.decision" && r["reason"] == "killswitch_engaged")
        .count();
    assert_eq!(proxy_refusals, 2);

    // A bad scope is refused.
    let output = gateway
        .cli()
        .args(["killswitch", "on", "--scope", "room:x"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("bad_request"));
}
