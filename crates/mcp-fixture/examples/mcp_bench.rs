//! Load client for `bench/mcp/run.sh`: `tools/call` of `echo` against two Streamable HTTP MCP
//! endpoints (the fixture directly, and Portcullis fronting it), in one run. Never run from CI.
//!
//! Usage: mcp_bench --direct URL --direct-tool NAME --gateway URL --gateway-tool NAME
//!                  --token TOKEN [--sequential N] [--concurrency C] [--secs S]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

const PROTOCOL: &str = "2025-11-25";

#[derive(Clone)]
struct Target {
    url: String,
    tool: String,
    token: Option<String>,
}

/// One MCP session over Streamable HTTP with raw JSON-RPC (no SDK overhead in the client).
struct Session {
    http: reqwest::Client,
    target: Target,
    session_id: Option<String>,
    next_id: u64,
}

impl Session {
    async fn open(target: Target) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(4)
            .build()
            .unwrap();
        let mut session = Self {
            http,
            target,
            session_id: None,
            next_id: 0,
        };
        let (headers, body) = session
            .post(json!({
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {
                    "protocolVersion": PROTOCOL,
                    "capabilities": {},
                    "clientInfo": { "name": "mcp-bench", "version": "0" }
                }
            }))
            .await;
        assert!(body.contains("\"result\""), "initialize failed: {body}");
        session.session_id = headers
            .get("mcp-session-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        session
            .post(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await;
        session
    }

    async fn post(&self, message: Value) -> (reqwest::header::HeaderMap, String) {
        let mut request = self
            .http
            .post(&self.target.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", PROTOCOL)
            .body(message.to_string());
        if let Some(token) = &self.target.token {
            request = request.bearer_auth(token);
        }
        if let Some(id) = &self.session_id {
            request = request.header("mcp-session-id", id);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        assert!(status.is_success(), "{status}: {body}");
        (headers, body)
    }

    /// One `tools/call` of echo; panics unless the answer is a successful result.
    async fn echo(&mut self) {
        self.next_id += 1;
        let (_, body) = self
            .post(json!({
                "jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
                "params": { "name": self.target.tool, "arguments": { "message": "hello, bench" } }
            }))
            .await;
        assert!(
            body.contains("hello, bench") && !body.contains("\"isError\":true"),
            "bad answer: {body}"
        );
    }
}

fn args() -> HashMap<String, String> {
    let mut it = std::env::args().skip(1);
    let mut flags = HashMap::new();
    while let Some(key) = it.next() {
        flags.insert(
            key.trim_start_matches('-').to_owned(),
            it.next().unwrap_or_default(),
        );
    }
    flags
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Alternates calls to both targets so that drift on the machine hits both alike.
async fn sequential(direct: Target, gateway: Target, n: usize) -> (Vec<Duration>, Vec<Duration>) {
    let mut a = Session::open(direct).await;
    let mut b = Session::open(gateway).await;
    for _ in 0..200 {
        a.echo().await;
        b.echo().await;
    }
    let (mut da, mut db) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let started = Instant::now();
        a.echo().await;
        da.push(started.elapsed());
        let started = Instant::now();
        b.echo().await;
        db.push(started.elapsed());
    }
    da.sort();
    db.sort();
    (da, db)
}

async fn throughput(target: Target, clients: usize, secs: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let mut sessions = Vec::with_capacity(clients);
    for _ in 0..clients {
        sessions.push(Session::open(target.clone()).await);
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut tasks = Vec::with_capacity(clients);
    for mut session in sessions {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                session.echo().await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let flags = args();
    let flag = |key: &str| {
        flags
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("--{key} is required"))
    };
    let number = |key: &str, default: u64| flags.get(key).map_or(default, |v| v.parse().unwrap());
    let direct = Target {
        url: flag("direct"),
        tool: flags
            .get("direct-tool")
            .cloned()
            .unwrap_or_else(|| "echo".to_owned()),
        token: None,
    };
    let gateway = Target {
        url: flag("gateway"),
        tool: flag("gateway-tool"),
        token: Some(flag("token")),
    };
    let n = number("sequential", 5000) as usize;
    let clients = number("concurrency", 64) as usize;
    let secs = number("secs", 10);

    let (da, db) = sequential(direct.clone(), gateway.clone(), n).await;
    let (med_a, med_b) = (percentile(&da, 0.5), percentile(&db, 0.5));
    let (p99_a, p99_b) = (percentile(&da, 0.99), percentile(&db, 0.99));
    println!("sequential tools/call echo, {n} calls each (ms):");
    println!("  direct   median {:.3}  p99 {:.3}", ms(med_a), ms(p99_a));
    println!("  gateway  median {:.3}  p99 {:.3}", ms(med_b), ms(p99_b));
    println!(
        "  added    median {:.3}  p99 {:.3}",
        ms(med_b) - ms(med_a),
        ms(p99_b) - ms(p99_a)
    );
    let rate_a = throughput(direct, clients, secs).await;
    let rate_b = throughput(gateway, clients, secs).await;
    println!("throughput with {clients} concurrent clients, {secs} s each (calls/s):");
    println!("  direct   {rate_a:.0}");
    println!(
        "  gateway  {rate_b:.0}  ({:.1}% of direct)",
        100.0 * rate_b / rate_a
    );
    let line = json!({
        "sequential_calls": n,
        "direct_median_ms": ms(med_a), "direct_p99_ms": ms(p99_a),
        "gateway_median_ms": ms(med_b), "gateway_p99_ms": ms(p99_b),
        "added_median_ms": ms(med_b) - ms(med_a), "added_p99_ms": ms(p99_b) - ms(p99_a),
        "clients": clients, "direct_calls_per_s": rate_a, "gateway_calls_per_s": rate_b
    });
    println!("{line}");
}
