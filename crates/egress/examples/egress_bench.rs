//! Load generator and fixtures for `bench/egress/run.sh`: an origin, a standalone proxy, a
//! CONNECT throughput test and an HTTP forward load client. Never run from CI.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use portcullis_core::{ErrorCode, SystemClock};
use portcullis_egress::{
    Caller, CloseRecord, Credential, DecisionRecord, EgressAction, EgressEvents, EgressRoad,
    EgressSteps, FixtureResolver, Leave, OpenEnd, PolicyHandle, ProxyAuth, ProxyDeps, ProxyLimits,
    RecordError, Refused, StaticLeases, run_proxy,
};
use portcullis_netpolicy::{DnsFixture, EgressConfig, EgressPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const AGENT: &str = "bench";
const TOKEN: &str = "bench-token";
const BODY: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn args() -> (String, HashMap<String, String>) {
    let mut it = std::env::args().skip(1);
    let command = it.next().unwrap_or_default();
    let mut flags = HashMap::new();
    while let Some(key) = it.next() {
        let value = it.next().unwrap_or_default();
        flags.insert(key.trim_start_matches('-').to_owned(), value);
    }
    (command, flags)
}

fn flag<'a>(flags: &'a HashMap<String, String>, key: &str) -> &'a str {
    flags
        .get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("--{key} is required"))
}

#[tokio::main]
async fn main() {
    let (command, flags) = args();
    match command.as_str() {
        "origin" => origin(&flags).await,
        "proxy" => proxy(&flags).await,
        "tunnel" => tunnel(&flags).await,
        "load" => load(&flags).await,
        _ => eprintln!("usage: egress_bench origin|proxy|tunnel|load --flag value ..."),
    }
}

/// `origin --http ADDR --sink ADDR`: a keep-alive HTTP server answering 64 bytes, and a sink
/// that reads the announced number of bytes and answers the count.
async fn origin(flags: &HashMap<String, String>) {
    let http = TcpListener::bind(flag(flags, "http")).await.unwrap();
    let sink = TcpListener::bind(flag(flags, "sink")).await.unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = sink.accept().await.unwrap();
            tokio::spawn(async move {
                // The client announces the length first: proxies differ on half-close.
                let Ok(expected) = stream.read_u64().await else {
                    return;
                };
                let mut buf = vec![0u8; 256 * 1024];
                let mut total: u64 = 0;
                while total < expected {
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                let _ = stream.write_all(&total.to_be_bytes()).await;
            });
        }
    });
    loop {
        let (stream, _) = http.accept().await.unwrap();
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BODY))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[derive(Debug)]
struct BenchAuth {
    road: Arc<OpenRoad>,
}

#[async_trait]
impl ProxyAuth for BenchAuth {
    async fn authenticate(&self, credential: Credential<'_>) -> Option<Caller> {
        match credential {
            Credential::Basic { agent, token } if agent == AGENT && token == TOKEN => {
                Some(Caller {
                    agent: AGENT.into(),
                    project: None,
                    road: self.road.clone(),
                })
            }
            _ => None,
        }
    }
}

/// The bench measures the proxy alone: its road allows every key and writes the records to
/// the counting events (the gateway's road adds the policy engine and the ledger).
#[derive(Debug)]
struct OpenRoad {
    events: Arc<CountingEvents>,
}

#[async_trait]
impl EgressRoad for OpenRoad {
    async fn run(
        &self,
        _action: EgressAction<'_>,
        steps: &mut dyn EgressSteps,
    ) -> Result<Option<Box<dyn OpenEnd>>, Refused> {
        steps.validate().await?;
        if let Some(record) = steps.admission() {
            self.events
                .decision(record)
                .await
                .map_err(|_| Refused::code(ErrorCode::StoreUnavailable))?;
        }
        steps.execute(Leave::admitted()).await?;
        Ok(Some(Box::new(CountedEnd(Arc::clone(&self.events)))))
    }
}

#[derive(Debug)]
struct CountedEnd(Arc<CountingEvents>);

#[async_trait]
impl OpenEnd for CountedEnd {
    async fn finish(self: Box<Self>, record: CloseRecord) {
        self.0.close(record).await;
    }
}

#[derive(Debug, Default)]
struct CountingEvents {
    decisions: AtomicU64,
    closes: AtomicU64,
}

#[async_trait]
impl EgressEvents for CountingEvents {
    async fn decision(&self, _record: DecisionRecord) -> Result<(), RecordError> {
        self.decisions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn close(&self, _record: CloseRecord) {
        self.closes.fetch_add(1, Ordering::Relaxed);
    }
}

/// `proxy --bind ADDR --allow RULE,RULE --fixture JSON --cidr CIDR`: the Portcullis proxy alone.
async fn proxy(flags: &HashMap<String, String>) {
    let config = EgressConfig {
        allow: flag(flags, "allow").split(',').map(str::to_owned).collect(),
        allow_cidrs: vec![flag(flags, "cidr").to_owned()],
        ..EgressConfig::default()
    };
    let policy = EgressPolicy::from_config(&config).unwrap();
    let fixture = DnsFixture::parse(flag(flags, "fixture")).unwrap();
    let listener = TcpListener::bind(flag(flags, "bind")).await.unwrap();
    let events = Arc::new(CountingEvents::default());
    let deps = ProxyDeps {
        policy: Arc::new(PolicyHandle::new(policy)),
        auth: Arc::new(BenchAuth {
            road: Arc::new(OpenRoad {
                events: Arc::clone(&events),
            }),
        }),
        events,
        resolver: Arc::new(FixtureResolver::new(fixture)),
        leases: Arc::new(StaticLeases::default()),
        clock: Arc::new(SystemClock),
        limits: ProxyLimits {
            tunnels_per_agent: 4096,
            ..ProxyLimits::default()
        },
        live: Default::default(),
    };
    run_proxy(listener, deps, std::future::pending()).await;
}

fn basic() -> String {
    let credential = base64::engine::general_purpose::STANDARD.encode(format!("{AGENT}:{TOKEN}"));
    format!("Basic {credential}")
}

/// `tunnel --via ADDR|direct --target HOST:PORT --addr IP:PORT --bytes N`: sends N bytes to the
/// sink through a CONNECT tunnel (or directly) and prints the throughput.
async fn tunnel(flags: &HashMap<String, String>) {
    let via = flag(flags, "via");
    let bytes: u64 = flag(flags, "bytes").parse().unwrap();
    let started = Instant::now();
    let mut stream = if via == "direct" {
        TcpStream::connect(flag(flags, "addr")).await.unwrap()
    } else {
        let mut stream = TcpStream::connect(via).await.unwrap();
        let target = flag(flags, "target");
        let request = format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {}\r\n\r\n",
            basic()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        stream
    };
    stream.write_u64(bytes).await.unwrap();
    let chunk = vec![0x5au8; 256 * 1024];
    let mut sent = 0u64;
    while sent < bytes {
        let n = chunk.len().min(usize::try_from(bytes - sent).unwrap());
        stream.write_all(&chunk[..n]).await.unwrap();
        sent += n as u64;
    }
    let received = stream.read_u64().await.unwrap();
    assert_eq!(received, bytes);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "tunnel via={via} bytes={bytes} secs={secs:.3} MiB/s={:.1}",
        bytes as f64 / secs / (1024.0 * 1024.0)
    );
}

/// `load --via ADDR|direct --url http://HOST:PORT/ --addr IP:PORT --conns N --secs S`:
/// keep-alive GETs on N connections for S seconds; prints requests/s and latency percentiles.
async fn load(flags: &HashMap<String, String>) {
    let via = flag(flags, "via").to_owned();
    let url = flag(flags, "url").to_owned();
    let addr: SocketAddr = flag(flags, "addr").parse().unwrap();
    let conns: usize = flag(flags, "conns").parse().unwrap();
    let secs: u64 = flag(flags, "secs").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (via, url) = (via.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let direct = via == "direct";
            let dial = if direct {
                addr.to_string()
            } else {
                via.clone()
            };
            let stream = TcpStream::connect(dial).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let uri: hyper::Uri = url.parse().unwrap();
            let host = uri.authority().unwrap().to_string();
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let mut builder = Request::get(if direct {
                    uri.path_and_query()
                        .unwrap()
                        .as_str()
                        .parse::<hyper::Uri>()
                        .unwrap()
                } else {
                    uri.clone()
                })
                .header("host", &host);
                if !direct {
                    builder = builder.header("proxy-authorization", basic());
                }
                let req = builder.body(Empty::<Bytes>::new()).unwrap();
                let started = Instant::now();
                if sender.ready().await.is_err() {
                    errors += 1;
                    break;
                }
                match sender.send_request(req).await {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        let _ = response.into_body().collect().await;
                        if ok {
                            latencies.push(started.elapsed());
                        } else {
                            errors += 1;
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, errs) = task.await.unwrap();
        all.extend(latencies);
        errors += errs;
    }
    all.sort_unstable();
    let pct = |p: f64| {
        let index = ((all.len() as f64 * p).ceil() as usize).saturating_sub(1);
        all.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "load via={via} conns={conns} requests={} errors={errors} rps={:.0} p50_ms={:.3} p99_ms={:.3}",
        all.len(),
        all.len() as f64 / secs as f64,
        pct(0.50),
        pct(0.99)
    );
}
