//! End-to-end: the forward proxy's listener limits from `[egress]` (issue 17 item 3): connection
//! caps in all and per client address, and the header-read timeout that closes silent clients.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::Gateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A connection to the proxy from `source` (a loopback address).
async fn connect_from(source: &str, proxy: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(proxy).await.unwrap()
}

/// Everything until the proxy closes the connection (bounded, so a failure cannot hang CI).
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut text = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut text)).await;
    assert!(read.is_ok(), "the proxy did not close the connection");
    String::from_utf8_lossy(&text).to_ascii_lowercase()
}

/// A request without credentials answered 407 proves the connection is served.
async fn served(stream: &mut TcpStream) {
    stream
        .write_all(b"GET http://svc.test/ HTTP/1.1\r\nHost: svc.test\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 407");
}

#[tokio::test]
async fn proxy_caps_connections_and_closes_silent_clients() {
    let config = "[egress]\nproxy_max_connections = 3\nproxy_max_connections_per_ip = 2\nproxy_header_read_timeout = \"5s\"\n";
    let gateway = Gateway::start_with(
        config,
        &[],
        &[
            ("PORTCULLIS_EGRESS_PROXY_BIND", "127.0.0.1:0"),
            ("PORTCULLIS_EGRESS_DNS_BIND", ""),
        ],
    )
    .await;
    let proxy: SocketAddr = gateway.proxy.clone().unwrap().parse().unwrap();

    // Two from 127.0.0.1 fill its share; a third is refused with the stable code and closed.
    let mut silent = connect_from("127.0.0.1", proxy).await;
    let mut second = connect_from("127.0.0.1", proxy).await;
    served(&mut second).await;
    let mut third = connect_from("127.0.0.1", proxy).await;
    let refused = until_closed(&mut third).await;
    assert!(refused.starts_with("http/1.1 429"), "{refused}");
    assert!(
        refused.contains("x-portcullis-error: egress_connection_limit"),
        "{refused}"
    );

    // Another address still gets in, up to the listener's cap of three.
    let mut other = connect_from("127.0.0.3", proxy).await;
    served(&mut other).await;
    let mut over = connect_from("127.0.0.4", proxy).await;
    let refused = until_closed(&mut over).await;
    assert!(
        refused.contains("x-portcullis-error: egress_connection_limit"),
        "{refused}"
    );

    // A client that never sends a request head is closed after the header-read timeout, and so
    // is a kept-alive connection idle since its last answer.
    let nothing = until_closed(&mut silent).await;
    assert_eq!(nothing, "");
    let rest = until_closed(&mut second).await;
    assert!(rest.contains("egress_proxy_auth_required"), "{rest}");

    // The limits cannot change at run time through the settings API.
    let client = reqwest::Client::new();
    let mut settings: serde_json::Value = client
        .get(gateway.url("/admin/egress/settings"))
        .bearer_auth(&gateway.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    settings["proxy_max_connections"] = 100_000.into();
    let answer = client
        .post(gateway.url("/admin/egress/settings"))
        .bearer_auth(&gateway.admin_token)
        .json(&settings)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 409);

    // Out-of-range limits are configuration errors that name the key.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[egress]\nproxy_max_connections_per_ip = 0\n").unwrap();
    let check = support::portcullis()
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!check.status.success());
    let text = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(text.contains("proxy_max_connections_per_ip"), "{text}");
}
