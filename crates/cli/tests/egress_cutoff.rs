//! End-to-end: engaging the kill switch or deleting the agent closes that agent's open CONNECT
//! tunnels and in-flight proxied requests, each closure a close record (issue 17 item 9).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::time::Duration;

use support::llm::EventTap;
use support::{Gateway, create_agent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An echo server on 127.0.0.2.
fn echo_origin() -> u16 {
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// An HTTP server on 127.0.0.2 that sends a response head and one chunk, then holds the body
/// open until the client goes away.
fn slow_origin() -> u16 {
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                );
                // Held open: the next read ends only when the proxy closes its side.
                let _ = stream.read(&mut buf);
            });
        }
    });
    port
}

async fn send_head(proxy: &str, token: &str, line: &str, authority: &str) -> TcpStream {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let request =
        format!("{line}\r\nHost: {authority}\r\nProxy-Authorization: Bearer {token}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Reads until `marker` arrives.
async fn read_until(stream: &mut TcpStream, marker: &[u8]) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(marker.len()).any(|w| w == marker) {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before {marker:?}: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
}

/// A tunnel through the proxy to the echo origin, checked with one round trip.
async fn tunnel(proxy: &str, token: &str, authority: &str) -> TcpStream {
    let line = format!("CONNECT {authority} HTTP/1.1");
    let mut stream = send_head(proxy, token, &line, authority).await;
    read_until(&mut stream, b"\r\n\r\n").await;
    stream.write_all(b"ping").await.unwrap();
    read_until(&mut stream, b"ping").await;
    stream
}

/// Waits (bounded, so a failure cannot hang CI) until the proxy closes `stream`.
async fn closed(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the proxy did not close the connection");
}

#[tokio::test]
async fn killswitch_and_revocation_cut_open_tunnels_and_requests() {
    let echo = echo_origin();
    let slow = slow_origin();
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("dns.json");
    std::fs::write(&fixture, r#"{"svc.test":{"A":["127.0.0.2"]}}"#).unwrap();
    let config = format!(
        "[egress]\nallow = [\"svc.test:{echo}\", \"svc.test:{slow}\"]\nallow_cidrs = [\"127.0.0.2/32\"]\n"
    );
    let gateway = Gateway::start_with(
        &config,
        &["--dns-fixture", fixture.to_str().unwrap()],
        &[
            ("PORTCULLIS_EGRESS_PROXY_BIND", "127.0.0.1:0"),
            ("PORTCULLIS_EGRESS_DNS_BIND", ""),
        ],
    )
    .await;
    let proxy = gateway.proxy.clone().unwrap();
    let user = create_agent(&gateway, "a1", &["net:*"]).await;
    let bystander = create_agent(&gateway, "a2", &["net:*"]).await;
    let echo_at = format!("svc.test:{echo}");

    // The kill switch: a1's tunnel and its in-flight request are cut; a2's is not (agent scope).
    let mut open_tunnel = tunnel(&proxy, &user, &echo_at).await;
    let mut other_tunnel = tunnel(&proxy, &bystander, &echo_at).await;
    let line = format!("GET http://svc.test:{slow}/ HTTP/1.1");
    let mut request = send_head(&proxy, &user, &line, &format!("svc.test:{slow}")).await;
    read_until(&mut request, b"hello").await;
    let mut tap = EventTap::open(&gateway).await;
    let on = gateway
        .cli()
        .args(["killswitch", "on", "--scope", "agent:a1"])
        .output()
        .unwrap();
    assert!(on.status.success());
    closed(&mut open_tunnel).await;
    closed(&mut request).await;
    let closes = tap.take("egress.close", 2).await;
    for close in &closes {
        assert_eq!(close["reason"], "egress_killswitch_closed", "{close}");
        assert_eq!(close["subject"], "a1");
    }
    let mut surfaces: Vec<&str> = closes
        .iter()
        .map(|c| c["data"]["surface"].as_str().unwrap())
        .collect();
    surfaces.sort_unstable();
    assert_eq!(surfaces, ["connect", "http"]);
    other_tunnel.write_all(b"ping").await.unwrap();
    read_until(&mut other_tunnel, b"ping").await;
    let off = gateway
        .cli()
        .args(["killswitch", "off", "--scope", "agent:a1"])
        .output()
        .unwrap();
    assert!(off.status.success());

    // Revocation: deleting a2 cuts its tunnel.
    let response = reqwest::Client::new()
        .delete(gateway.url("/admin/agents/a2"))
        .bearer_auth(&gateway.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    closed(&mut other_tunnel).await;
    let close = tap.take("egress.close", 1).await.remove(0);
    assert_eq!(close["reason"], "egress_agent_revoked", "{close}");
    assert_eq!(close["subject"], "a2");
}
