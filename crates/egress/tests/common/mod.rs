//! Shared harness for the proxy and DNS guard tests: fakes for the gateway's traits, a
//! loopback HTTP server, an echo server, and `curl`.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use portcullis_core::ErrorCode;
use portcullis_egress::{
    Caller, CloseRecord, Credential, DecisionRecord, EgressAction, EgressEvents, EgressRecord,
    EgressRoad, EgressSteps, Leave, LiveConnections, LookupError, OpenEnd, PolicyHandle, ProxyAuth,
    ProxyDeps, ProxyLimits, RecordError, Refused, Resolver, StaticLeases, run_proxy,
};
use portcullis_netpolicy::{EgressConfig, EgressPolicy, Lease};
use portcullis_test_support::ManualClock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc, oneshot};

pub const AGENT: &str = "agent-1";
pub const TOKEN: &str = "secret-1";
pub const BEARER: &str = "bearer-2";

pub fn policy(toml_text: &str) -> EgressPolicy {
    let config: EgressConfig = toml::from_str(toml_text).unwrap();
    EgressPolicy::from_config(&config).unwrap()
}

/// The gateway's road for tests: the stages in road order (gate in, validate, the admission
/// record, execute, the records), its gate denying the keys it lists and keeping every key it
/// was asked about. Records go to the proxy's events (the gateway's ledger in the tests).
#[derive(Debug)]
pub struct TestRoad {
    pub deny: Vec<String>,
    pub asked: std::sync::Mutex<Vec<String>>,
    pub events: Arc<dyn EgressEvents>,
}

/// The keys every test caller's gate denies.
pub const POLICY_DENIED_DOMAIN: &str = "net:domain:policy-denied.test";
/// The key whose allow every test caller's road cannot record (a store failing at commit).
pub const UNRECORDED_DOMAIN: &str = "net:domain:unrecorded.test";

pub fn test_road(events: Arc<dyn EgressEvents>) -> Arc<TestRoad> {
    Arc::new(TestRoad {
        deny: vec![POLICY_DENIED_DOMAIN.to_owned()],
        asked: std::sync::Mutex::new(Vec::new()),
        events,
    })
}

impl TestRoad {
    async fn write(&self, record: EgressRecord) -> bool {
        match record {
            EgressRecord::Decision(record) => self.events.decision(record).await.is_ok(),
            EgressRecord::Close(record) => {
                self.events.close(record).await;
                true
            }
        }
    }

    async fn refuse(&self, steps: &dyn EgressSteps, refused: Refused) -> Refused {
        self.write(steps.record(false, &refused.reason)).await;
        refused
    }
}

#[async_trait]
impl EgressRoad for TestRoad {
    async fn run(
        &self,
        action: EgressAction<'_>,
        steps: &mut dyn EgressSteps,
    ) -> Result<Option<Box<dyn OpenEnd>>, Refused> {
        self.asked
            .lock()
            .unwrap()
            .extend(action.keys.keys.iter().cloned());
        if action.keys.keys.iter().any(|key| self.deny.contains(key)) {
            let refused = Refused::code(ErrorCode::PolicyDenied);
            return Err(self.refuse(steps, refused).await);
        }
        if let Err(refused) = steps.validate().await {
            return Err(self.refuse(steps, refused).await);
        }
        let unrecorded = action.keys.keys.iter().any(|key| key == UNRECORDED_DOMAIN);
        let admitted = match steps.admission() {
            Some(record) => self.events.decision(record).await.is_ok(),
            None => true,
        };
        if unrecorded || !admitted {
            let refused = Refused::code(ErrorCode::StoreUnavailable);
            return Err(self.refuse(steps, refused).await);
        }
        if let Err(refused) = steps.execute(Leave::admitted()).await {
            return Err(self.refuse(steps, refused).await);
        }
        if steps.ends_later() {
            return Ok(Some(Box::new(TestEnd(Arc::clone(&self.events)))));
        }
        self.write(steps.record(true, "ok")).await;
        Ok(None)
    }
}

/// The road's end of a test connection: the close record goes to the events.
#[derive(Debug)]
struct TestEnd(Arc<dyn EgressEvents>);

#[async_trait]
impl OpenEnd for TestEnd {
    async fn finish(self: Box<Self>, record: CloseRecord) {
        self.0.close(record).await;
    }
}

/// Accepts agent-1/secret-1 (project `proj`) and the bearer token of agent-2.
#[derive(Debug)]
pub struct Auth {
    pub road: Arc<TestRoad>,
}

#[async_trait]
impl ProxyAuth for Auth {
    async fn authenticate(&self, credential: Credential<'_>) -> Option<Caller> {
        match credential {
            Credential::Basic { agent, token } if agent == AGENT && token == TOKEN => {
                Some(Caller {
                    agent: AGENT.into(),
                    project: Some("proj".into()),
                    road: self.road.clone(),
                })
            }
            Credential::Bearer { token } if token == BEARER => Some(Caller {
                agent: "agent-2".into(),
                project: None,
                road: self.road.clone(),
            }),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub enum Rec {
    Decision(DecisionRecord),
    Close(CloseRecord),
}

/// Records into a channel; while `fail` is set, every decision record "cannot be made durable".
#[derive(Debug)]
pub struct Events(mpsc::UnboundedSender<Rec>, Arc<AtomicBool>);

#[async_trait]
impl EgressEvents for Events {
    async fn decision(&self, record: DecisionRecord) -> Result<(), RecordError> {
        if self.1.load(Ordering::SeqCst) {
            return Err(RecordError);
        }
        let _ = self.0.send(Rec::Decision(record));
        Ok(())
    }

    async fn close(&self, record: CloseRecord) {
        let _ = self.0.send(Rec::Close(record));
    }
}

/// Drops every record (the DNS guard's tests look at answers only).
#[derive(Debug)]
pub struct NoEvents;

#[async_trait]
impl EgressEvents for NoEvents {
    async fn decision(&self, _record: DecisionRecord) -> Result<(), RecordError> {
        Ok(())
    }

    async fn close(&self, _record: CloseRecord) {}
}

/// Answers from a list, one entry per query (the last one repeats), and counts queries.
#[derive(Debug)]
pub struct SequenceResolver {
    answers: Vec<Vec<IpAddr>>,
    pub queries: AtomicU64,
}

impl SequenceResolver {
    pub fn new(answers: &[&[&str]]) -> Self {
        Self {
            answers: answers
                .iter()
                .map(|list| list.iter().map(|a| a.parse().unwrap()).collect())
                .collect(),
            queries: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl Resolver for SequenceResolver {
    async fn lookup(&self, _name: &str) -> Result<Vec<IpAddr>, LookupError> {
        let n = self.queries.fetch_add(1, Ordering::SeqCst) as usize;
        let index = n.min(self.answers.len() - 1);
        Ok(self.answers[index].clone())
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    pub events: mpsc::UnboundedReceiver<Rec>,
    pub clock: Arc<ManualClock>,
    pub policy: Arc<PolicyHandle>,
    /// Set to make the proxy's decision records fail (a store that cannot append).
    pub fail_records: Arc<AtomicBool>,
    pub live: Arc<LiveConnections>,
    stop: Option<oneshot::Sender<()>>,
}

impl Proxy {
    pub async fn start(
        policy: EgressPolicy,
        resolver: Arc<dyn Resolver>,
        leases: Vec<Lease>,
        limits: ProxyLimits,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, records) = mpsc::unbounded_channel();
        let clock = Arc::new(ManualClock::at_epoch_2026());
        let policy = Arc::new(PolicyHandle::new(policy));
        let fail_records = Arc::new(AtomicBool::new(false));
        let live = Arc::new(LiveConnections::default());
        let events: Arc<dyn EgressEvents> = Arc::new(Events(tx, Arc::clone(&fail_records)));
        let deps = ProxyDeps {
            policy: Arc::clone(&policy),
            auth: Arc::new(Auth {
                road: test_road(Arc::clone(&events)),
            }),
            events,
            resolver,
            leases: Arc::new(StaticLeases(leases)),
            clock: clock.clone(),
            limits,
            live: Arc::clone(&live),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(run_proxy(listener, deps, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            events: records,
            clock,
            policy,
            fail_records,
            live,
            stop: Some(stop),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn decision(&mut self) -> DecisionRecord {
        match self.events.recv().await.unwrap() {
            Rec::Decision(record) => record,
            Rec::Close(record) => panic!("expected a decision record, got {record:?}"),
        }
    }

    /// The next record of either kind (a pooled connection's close record may come after the
    /// next request's decision record).
    pub async fn record(&mut self) -> Rec {
        self.events.recv().await.unwrap()
    }

    pub async fn close(&mut self) -> CloseRecord {
        match self.events.recv().await.unwrap() {
            Rec::Close(record) => record,
            Rec::Decision(record) => panic!("expected a close record, got {record:?}"),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// What the HTTP server saw on one connection: bytes read and the request head.
#[derive(Debug)]
pub struct Seen {
    pub bytes_read: usize,
    pub head: String,
}

pub struct HttpServer {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    pub seen: Mutex<mpsc::UnboundedReceiver<Seen>>,
}

pub const BODY: &[u8] = b"hello from the target\n";

pub fn response_bytes() -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        BODY.len()
    )
    .into_bytes();
    out.extend_from_slice(BODY);
    out
}

/// A one-request-per-connection HTTP server on `ip` (any port).
pub async fn http_server(ip: &str) -> HttpServer {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&chunk[..n]);
                }
                stream.write_all(&response_bytes()).await.unwrap();
                stream.shutdown().await.unwrap();
                let _ = tx.send(Seen {
                    bytes_read: head.len(),
                    head: String::from_utf8_lossy(&head).into_owned(),
                });
            });
        }
    });
    HttpServer {
        addr,
        accepted,
        seen: Mutex::new(rx),
    }
}

/// A TCP echo server on `ip`.
pub async fn echo_server(ip: &str) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// What curl reported: the final status, the CONNECT status, the headers and body on stdout.
#[derive(Debug)]
pub struct CurlOutcome {
    pub code: u16,
    pub connect_code: u16,
    pub output: String,
}

impl CurlOutcome {
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.output.lines().find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix(&prefix)
                .map(|value| value.trim().to_owned())
        })
    }
}

pub async fn curl(args: &[&str]) -> CurlOutcome {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "-D", "-"])
        .args(["-w", "%{stderr}CODES %{http_code} %{http_connect}\n"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let codes = stderr
        .lines()
        .find_map(|line| line.strip_prefix("CODES "))
        .unwrap_or_else(|| panic!("no codes in curl stderr: {stderr}"));
    let mut parts = codes.split(' ');
    let code = parts.next().unwrap().parse().unwrap();
    let connect_code = parts.next().unwrap().parse().unwrap();
    CurlOutcome {
        code,
        connect_code,
        output: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// A keep-alive HTTP/1.1 server (hyper) on `ip`, counting accepted connections.
pub async fn keepalive_server(ip: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(BODY)),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, accepted)
}
