//! End to end: the attacks of the adversarial review (issue 17), each reproduced through the real
//! binary, one test per finding, named after the attack. SECURITY.md lists them under the threat
//! they cover.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use support::{Gateway, portcullis};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A bound against hanging on a broken build, never a timing assertion.
const HANG: Duration = Duration::from_secs(60);

/// The value of the Prometheus series `line_prefix` (name and labels), summed over matches.
fn series(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(line_prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Reads until the peer closes (or resets) the connection; answers what was read.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut res = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(HANG, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return res,
            Ok(Ok(n)) => res.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the gateway never closed the connection"),
        }
    }
}

/// 17.3: 300 connections that never send a byte and 100 that stall inside their request head,
/// all from the probe's own address, against caps of 32 per address and 64 in all: `/healthz`
/// still answers, because a new connection closes the stalest waiting one. The header-read and
/// idle timeouts close stalled and idle connections on their own, never a quiet event stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_and_half_open_flood_leave_healthz_answering() {
    let gateway = Gateway::start(
        "[server]\nmax_connections = 64\nmax_connections_per_ip = 32\n\
         header_read_timeout = \"1s\"\nidle_timeout = \"2s\"\n",
    )
    .await;
    let addr: SocketAddr = gateway.http.parse().unwrap();
    let mut held = Vec::new();
    for n in 0..400 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        if n % 4 == 0 {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap();
        }
        held.push(stream);
    }
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let health = client.get(gateway.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
    }
    let metrics = client
        .get(gateway.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let evicted = series(
        &metrics,
        "portcullis_http_connections_closed_total{reason=\"evicted\"}",
    );
    assert!(
        evicted >= 300.0,
        "the flood was evicted, not queued: {evicted}\n{metrics}"
    );
    assert!(series(&metrics, "portcullis_http_connections_open") <= 64.0);
    drop(held);

    // A quiet event stream is busy, not idle: it outlives the idle timeout below.
    let mut events = client
        .get(gateway.url("/admin/events"))
        .bearer_auth(&gateway.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    // A sender that stalls inside its request head is closed (header-read timeout)...
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    assert!(read_until_closed(&mut slow).await.is_empty());
    // ...and so is a kept-alive connection left idle after its answer (idle timeout).
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8(read_until_closed(&mut idle).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    support::create_agent(&gateway, "after-idle", &[]).await;
    let created = next_event(&mut events, &mut String::new(), "agent.created").await;
    assert_eq!(created["data"]["agent"], "after-idle");
    let metrics = client
        .get(gateway.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in ["header_timeout", "idle_timeout"] {
        assert!(
            series(
                &metrics,
                &format!("portcullis_http_connections_closed_total{{reason=\"{reason}\"}}")
            ) >= 1.0,
            "{reason}\n{metrics}"
        );
    }
}

/// 17.3: `doctor` reports the listener's limits and the open-file limit start-up raises to.
#[test]
fn doctor_reports_slow_client_limits_and_the_open_file_limit() {
    let data = tempfile::tempdir().unwrap();
    let output = portcullis()
        .args(["doctor", "--json", "--data-dir"])
        .arg(data.path().join("fresh"))
        .output()
        .unwrap();
    let checks: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    for id in [
        "slow_clients",
        "fd_limit",
        "auth_failure_limit",
        "metrics_access",
    ] {
        assert!(
            checks.iter().any(|check| check["id"] == id),
            "missing {id}: {checks:?}"
        );
    }
}

/// 17.6: `/metrics` served `account="user:alice.smith@example.com"`; it carries budget ids and
/// scope kinds only, and with `observability.metrics_token` it answers only that token.
#[tokio::test]
async fn metrics_identity_disclosure() {
    let token = "m".repeat(8) + "etrics-token-for-the-scraper-0123456789";
    let config = format!(
        "[observability]\nmetrics_token = \"{token}\"\n\n\
         [[budgets.budgets]]\nid = \"alice-daily\"\nscope = \"user\"\n\
         subject = \"alice.smith@example.com\"\nunit = \"usd\"\nwindow = \"day\"\nlimit = \"1.00\"\n"
    );
    let gateway = Gateway::start(&config).await;
    let client = reqwest::Client::new();
    let open = client.get(gateway.url("/metrics")).send().await.unwrap();
    assert_eq!(open.status(), 401);
    let wrong = client
        .get(gateway.url("/metrics"))
        .bearer_auth("not-the-metrics-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let scraped = client
        .get(gateway.url("/metrics"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    let text = scraped.text().await.unwrap();
    assert!(
        text.contains(
            "portcullis_budget_limit{budget=\"alice-daily\",scope=\"user\",unit=\"usd\"}"
        ),
        "{text}"
    );
    assert!(!text.contains("alice.smith"), "{text}");
    assert!(!text.contains("account="), "{text}");
    // The budget line itself is still in the admin view, behind the admin token.
    let budgets = gateway.admin_get("/admin/budgets").await;
    assert!(budgets.to_string().contains("user:alice.smith@example.com"));
}

/// Ledger records of `kind` (the whole ledger: these tests write a few hundred at most).
async fn ledger(gateway: &Gateway, kind: &str) -> Vec<Value> {
    let page = gateway.admin_get("/admin/ledger?after=0&limit=1000").await;
    page["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| record["kind"] == kind)
        .cloned()
        .collect()
}

/// A client whose connections come from `ip` (any 127.0.0.0/8 address reaches loopback).
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(ip))
        .build()
        .unwrap()
}

/// Waits on the live event stream for the first event of `kind`.
async fn next_event(stream: &mut reqwest::Response, buffer: &mut String, kind: &str) -> Value {
    let wait = async {
        loop {
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                for line in frame.lines() {
                    let Some(data) = line.strip_prefix("data:") else {
                        continue;
                    };
                    let Ok(event) = serde_json::from_str::<Value>(data.trim()) else {
                        continue;
                    };
                    if event["kind"] == kind {
                        return event;
                    }
                }
            }
            let chunk = stream.chunk().await.unwrap().expect("stream open");
            buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(HANG, wait).await.expect("event")
}

/// 17.8: 40 bad tokens from one client were 40 durable ledger appends. Now 5 failures per window
/// are answered 401 (and recorded one by one); the rest get 429 before any handler runs and are
/// recorded as one `auth.refused` event with the count, at the end of the window. A valid agent
/// token from the same address is not limited.
#[tokio::test]
async fn bad_token_flood_fills_the_ledger() {
    let gateway = Gateway::start(
        "[server]\nauth_failures_per_peer = 5\nauth_failures_global = 1000\n\
         auth_failure_window = \"5s\"\n",
    )
    .await;
    let token = support::create_agent(&gateway, "coder", &["tools:*"]).await;
    let mut events = reqwest::Client::new()
        .get(gateway.url("/admin/events"))
        .bearer_auth(&gateway.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let client = client_from([127, 0, 0, 7]);
    let mut statuses = Vec::new();
    for n in 0..40 {
        let path = ["/whoami", "/mcp", "/v1/models", "/admin/ledger"][n % 4];
        let request = if path == "/mcp" {
            client.post(gateway.url(path)).body("{}")
        } else {
            client.get(gateway.url(path))
        };
        let response = request
            .bearer_auth(format!("pcl_agent_guess{n}"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        35,
        "{statuses:?}"
    );
    let whoami = client
        .get(gateway.url("/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 200, "a valid token is never limited");

    let aggregate = next_event(&mut events, &mut String::new(), "auth.refused").await;
    assert_eq!(aggregate["data"]["peer"], "127.0.0.7");
    assert_eq!(aggregate["data"]["refused"], 35);
    let individual =
        ledger(&gateway, "agent.auth").await.len() + ledger(&gateway, "admin.auth").await.len();
    assert_eq!(
        individual, 5,
        "only the failures under the limit are single records"
    );
}

/// 17.10: 60 failed attempts from 127.0.0.1 locked out the correct admin token, and rotating
/// source addresses got 300 guesses without a 429. Failures are limited per address and
/// globally; the valid token is never limited by them; a limit that rounds to zero is refused.
#[tokio::test]
async fn admin_lockout_and_rotating_address_guessing() {
    let gateway = Gateway::start(
        "[admin]\nrate_limit = \"60/60\"\n\n[server]\nauth_failures_per_peer = 5\n\
         auth_failures_global = 20\nauth_failure_window = \"1h\"\n",
    )
    .await;
    let guess = |client: reqwest::Client, n: u32| {
        let url = gateway.url("/admin/agents");
        async move {
            client
                .get(url)
                .bearer_auth(format!("pcl_admin_guess{n}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // One address: 5 guesses answered, then 429 for it alone.
    let local = client_from([127, 0, 0, 1]);
    for n in 0..5 {
        assert_eq!(guess(local.clone(), n).await, 401);
    }
    assert_eq!(guess(local.clone(), 5).await, 429);
    let other = client_from([127, 0, 0, 2]);
    assert_eq!(
        guess(other.clone(), 6).await,
        401,
        "other addresses are not limited"
    );
    let admin = |client: reqwest::Client| {
        let url = gateway.url("/admin/agents");
        let token = gateway.admin_token.clone();
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        admin(local.clone()).await,
        200,
        "the valid token still works"
    );
    // Rotating addresses meet the global limit: 20 failures in all, then 429 for everyone...
    let mut answered = 0;
    for last in 10..40u8 {
        let client = client_from([127, 0, 1, last]);
        if guess(client, u32::from(last)).await == 401 {
            answered += 1;
        }
    }
    assert_eq!(
        answered,
        20 - 6,
        "the global limit caps guesses from every address"
    );
    assert_eq!(guess(client_from([127, 0, 2, 1]), 99).await, 429);
    // ...except the valid token, from any address.
    assert_eq!(admin(client_from([127, 0, 2, 1])).await, 200);
    assert_eq!(admin(local).await, 200);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.toml");
    std::fs::write(&file, "[admin]\nrate_limit = \"4000000000/1\"\n").unwrap();
    let check = portcullis()
        .args(["config", "check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!check.status.success());
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("admin.rate_limit"),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// 17.11 and 17.18: debug mode opened the admin routes to loopback (behind a same-host proxy,
/// everyone); a wrong method or path on an admin route answered before authentication, so the
/// routes could be enumerated. Debug mode now opens nothing, and every `/admin/*` answer but 401
/// needs the token.
#[tokio::test]
async fn debug_loopback_trust_and_admin_route_enumeration() {
    let gateway = Gateway::start_with(
        "",
        &[],
        &[
            ("PORTCULLIS_EGRESS_PROXY_BIND", ""),
            ("PORTCULLIS_EGRESS_DNS_BIND", ""),
            ("PORTCULLIS_DEBUG", "1"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    for (method, path, with_token) in [
        (reqwest::Method::GET, "/admin/agents", 200),
        (reqwest::Method::DELETE, "/admin/ledger", 405),
        (reqwest::Method::PUT, "/admin/agents", 405),
        (reqwest::Method::GET, "/admin/no-such-route", 404),
        (reqwest::Method::POST, "/admin/killswitch/nope", 404),
    ] {
        let anonymous = client
            .request(method.clone(), gateway.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401, "{method} {path} without a token");
        let authed = client
            .request(method.clone(), gateway.url(path))
            .bearer_auth(&gateway.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            authed.status(),
            with_token,
            "{method} {path} with the token"
        );
    }
}
