//! Load client for `bench/llm/run.sh`: non-streamed chat completions against several
//! OpenAI-compatible endpoints in one run (the fake provider directly, then gateways in front of
//! it). Never run from CI.
//!
//! Usage: llm_bench --targets NAME=URL=KEY,NAME=URL=KEY,... [--model M] [--sequential N]
//!                  [--concurrency C] [--secs S]
//! The first target is the baseline; added latency is measured against it.
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

/// A prompt with the kinds of values the sanitizer acts on, about 600 bytes.
const PROMPT: &str = "Hello, please draft a short reply to our customer. Their email is \
    alice.smith@example.com and their phone is +1 415-555-0132; the order was paid with card \
    4111 1111 1111 1111. Mention that the refund takes five to seven business days, that the \
    tracking number will follow by email, and that our support desk is open Monday to Friday. \
    Keep it friendly and under one hundred words. Do not repeat the card number in full. Thank \
    them for their patience and sign as the support team.";

#[derive(Clone)]
struct Target {
    name: String,
    url: String,
    key: String,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .unwrap()
}

async fn call(http: &reqwest::Client, target: &Target, model: &str) {
    let response = http
        .post(format!("{}/chat/completions", target.url))
        .bearer_auth(&target.key)
        .json(&json!({
            "model": model,
            "max_tokens": 128,
            "messages": [{"role": "user", "content": PROMPT}]
        }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{}: {status} {body}", target.name);
    let content = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or("");
    assert!(
        content.contains("alice.smith@example.com"),
        "{}: {body}",
        target.name
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Alternates the targets call by call so that drift on the machine hits all alike.
async fn sequential(targets: &[Target], model: &str, n: usize) -> Vec<Vec<Duration>> {
    let clients: Vec<reqwest::Client> = targets.iter().map(|_| client()).collect();
    for _ in 0..(n / 10).max(20) {
        for (target, http) in targets.iter().zip(&clients) {
            call(http, target, model).await;
        }
    }
    let mut times = vec![Vec::with_capacity(n); targets.len()];
    for _ in 0..n {
        for (idx, (target, http)) in targets.iter().zip(&clients).enumerate() {
            let started = Instant::now();
            call(http, target, model).await;
            times[idx].push(started.elapsed());
        }
    }
    for list in &mut times {
        list.sort();
    }
    times
}

async fn throughput(target: &Target, model: &str, clients: usize, secs: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let http = client();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (done, http, target, model) =
            (done.clone(), http.clone(), target.clone(), model.to_owned());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                call(&http, &target, &model).await;
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
    let mut flags = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(key) = it.next() {
        flags.insert(
            key.trim_start_matches('-').to_owned(),
            it.next().unwrap_or_default(),
        );
    }
    let targets: Vec<Target> = flags["targets"]
        .split(',')
        .map(|spec| {
            let mut parts = spec.splitn(3, '=');
            Target {
                name: parts.next().unwrap().to_owned(),
                url: parts.next().unwrap().to_owned(),
                key: parts.next().unwrap_or("none").to_owned(),
            }
        })
        .collect();
    let number = |key: &str, default: u64| flags.get(key).map_or(default, |v| v.parse().unwrap());
    let model = flags
        .get("model")
        .cloned()
        .unwrap_or_else(|| "gpt-4o-mini".to_owned());
    let n = number("sequential", 2000) as usize;
    let clients = number("concurrency", 64) as usize;
    let secs = number("secs", 10);

    let times = sequential(&targets, &model, n).await;
    let base_median = percentile(&times[0], 0.5);
    let base_p99 = percentile(&times[0], 0.99);
    println!("sequential non-streamed chat, {n} calls each (ms):");
    let mut rows = Vec::new();
    for (target, list) in targets.iter().zip(&times) {
        let (median, p99) = (percentile(list, 0.5), percentile(list, 0.99));
        let (added_median, added_p99) = (ms(median) - ms(base_median), ms(p99) - ms(base_p99));
        println!(
            "  {:<12} median {:.3}  p99 {:.3}  added median {:.3}  added p99 {:.3}",
            target.name,
            ms(median),
            ms(p99),
            added_median,
            added_p99
        );
        rows.push(json!({
            "target": target.name, "median_ms": ms(median), "p99_ms": ms(p99),
            "added_median_ms": added_median, "added_p99_ms": added_p99,
        }));
    }
    println!("throughput with {clients} concurrent clients, {secs} s each (req/s):");
    for (target, row) in targets.iter().zip(&mut rows) {
        let rate = throughput(target, &model, clients, secs).await;
        println!("  {:<12} {rate:.0}", target.name);
        row["req_per_s"] = json!(rate);
    }
    println!(
        "{}",
        json!({"sequential": n, "clients": clients, "secs": secs, "targets": rows})
    );
}
