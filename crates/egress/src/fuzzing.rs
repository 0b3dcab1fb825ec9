//! The properties the `dns_packet` and `proxy_head` fuzz targets check, shared with the corpus
//! replay test (`crates/egress/tests/fuzz_corpus.rs`).
//!
//! Both run the real code with fakes of the gateway's parts: the DNS guard's parse-and-answer
//! step on a packet, and the forward proxy ([`run_proxy`] on a loopback listener) on the bytes
//! of a client connection. Nothing leaves the machine: names resolve from a fixture, and the
//! fake road never makes an admission durable, so the proxy refuses every connection it would
//! dial (`store_unavailable`) after the attempt; it executes only the DNS guard's lookups.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, RecordType};
use jiff::Timestamp;
use portcullis_core::CorrelationId;
use portcullis_core::clock::Clock;
use portcullis_core::error::ErrorCode;
use portcullis_netpolicy::{
    DnsCheck, DnsFixture, EgressConfig, EgressPolicy, Host, LookupAnswer, Phase1, Posture,
    ProjectEgressConfig, TargetRequest, check_dns_name, decide, filter_answers,
};
use tokio::runtime::Runtime;

use crate::deps::{
    Caller, CloseRecord, Credential, DecisionRecord, DnsDeps, DnsLimits, EgressEvents, LeaseSource,
    PolicyHandle, ProxyAuth, ProxyDeps, ProxyLimits, RecordError, StaticLeases, Surface,
};
use crate::live::LiveConnections;
use crate::proxy::MAX_RECORDED_TARGET;
use crate::reason::ProxyReason;
use crate::resolver::{LookupError, MAX_ANSWERS, Resolver};
use crate::road::{EgressAction, EgressRecord, EgressRoad, EgressSteps, Leave, OpenEnd, Refused};
use crate::run_proxy;

/// The one agent the fake credential check knows: Basic `fuzz-agent:fuzz-token` (no project),
/// or Bearer `fuzz-bearer` (project `open`, posture `off`).
pub const FUZZ_AGENT: &str = "fuzz-agent";
pub const FUZZ_TOKEN: &str = "fuzz-token";
pub const FUZZ_BEARER: &str = "fuzz-bearer";
/// The gate key the fake road's policy engine denies.
pub const GATE_DENIED: &str = "net:domain:gate-denied.test";
/// DNS clients in this network are decided as project `open`.
pub const OPEN_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 5));

/// Longest wait for the proxy to answer and close one connection.
const PROXY_WAIT: Duration = Duration::from_secs(10);
/// Largest UDP answer without EDNS, and the guard's cap with it (see `dns.rs`).
const PLAIN_UDP_PAYLOAD: usize = 512;
const MAX_UDP_PAYLOAD: usize = 1232;

/// The names the fixture resolver knows. `many.example.com` has more A records than fit in a
/// plain UDP answer.
fn dns_fixture_json() -> String {
    let many: Vec<String> = (1..=60).map(|n| format!("\"93.184.216.{n}\"")).collect();
    format!(
        r#"{{
        "example.com": {{"A": ["93.184.216.34"], "AAAA": ["2606:2800:220:1::1"]}},
        "www.example.com": {{
            "A": ["10.0.0.1", "93.184.216.35", "169.254.169.254"],
            "AAAA": ["::1", "2606:2800:220:1::2"]
        }},
        "api.example.org": {{"A": ["93.184.216.36"]}},
        "private.test": {{"A": ["127.0.0.1", "192.168.1.1"]}},
        "gate-denied.test": {{"A": ["93.184.216.37"]}},
        "secret.example.com": {{"A": ["93.184.216.38"]}},
        "gone.example.com": {{"rcode": "NXDOMAIN"}},
        "broken.example.com": {{"rcode": "SERVFAIL"}},
        "many.example.com": {{"A": [{}]}}
    }}"#,
        many.join(",")
    )
}

/// Allowlist posture with name, wildcard, port and registrable-domain rules and deny rules;
/// project `open` (DNS clients in 10.1.0.0/24, Bearer callers) has posture `off`.
fn fuzz_policy() -> Result<EgressPolicy, String> {
    let mut config = EgressConfig {
        posture: Posture::Allowlist,
        allow: [
            "example.com",
            "*.example.com",
            "api.example.org:8443",
            "domain:example.co.uk",
            "gate-denied.test",
            "private.test",
        ]
        .map(str::to_owned)
        .to_vec(),
        deny: ["secret.example.com", "*.evil.example.com"]
            .map(str::to_owned)
            .to_vec(),
        ..EgressConfig::default()
    };
    config.projects.insert(
        "open".to_owned(),
        ProjectEgressConfig {
            posture: Some(Posture::Off),
            ..ProjectEgressConfig::default()
        },
    );
    config
        .dns_clients
        .insert("10.1.0.0/24".to_owned(), "open".to_owned());
    EgressPolicy::from_config(&config).map_err(|err| format!("fuzz policy: {err}"))
}

/// What the fakes saw, shared by both targets.
struct Fixture {
    /// Held by each check: the fakes' records are shared, so checks run one at a time.
    serial: Mutex<()>,
    runtime: Runtime,
    policy: Arc<PolicyHandle>,
    resolver: Arc<RecordingResolver>,
    events: Arc<RecordingEvents>,
    dns: DnsDeps,
    proxy_addr: SocketAddr,
}

static FIXTURE: LazyLock<Result<Fixture, String>> = LazyLock::new(build_fixture);

fn fixture() -> Result<&'static Fixture, String> {
    FIXTURE.as_ref().map_err(Clone::clone)
}

fn build_fixture() -> Result<Fixture, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|err| format!("runtime: {err}"))?;
    let dns_fixture = DnsFixture::parse(&dns_fixture_json()).map_err(|err| err.to_string())?;
    let policy = Arc::new(PolicyHandle::new(fuzz_policy()?));
    let resolver = Arc::new(RecordingResolver {
        fixture: dns_fixture,
        names: Mutex::new(Vec::new()),
    });
    let events = Arc::new(RecordingEvents::default());
    let road: Arc<dyn EgressRoad> = Arc::new(FuzzRoad {
        events: Arc::clone(&events),
    });
    let clock: Arc<dyn Clock> = Arc::new(FixedClock);
    let leases: Arc<dyn LeaseSource> = Arc::new(StaticLeases::default());
    let dns = DnsDeps {
        policy: Arc::clone(&policy),
        resolver: Arc::clone(&resolver) as Arc<dyn Resolver>,
        leases: Arc::clone(&leases),
        clock: Arc::clone(&clock),
        road: Arc::clone(&road),
        limits: DnsLimits::default(),
    };
    let proxy = ProxyDeps {
        policy: Arc::clone(&policy),
        auth: Arc::new(FuzzAuth { road }),
        events: Arc::clone(&events) as Arc<dyn EgressEvents>,
        resolver: Arc::clone(&resolver) as Arc<dyn Resolver>,
        leases,
        clock,
        limits: ProxyLimits {
            connect_timeout: Duration::from_millis(100),
            header_read_timeout: Duration::from_secs(5),
            max_header_bytes: 8192,
            max_headers: 32,
            ..ProxyLimits::default()
        },
        live: Arc::new(LiveConnections::default()),
    };
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|err| format!("bind: {err}"))?;
    let proxy_addr = listener
        .local_addr()
        .map_err(|err| format!("bind: {err}"))?;
    runtime.spawn(run_proxy(listener, proxy, std::future::pending()));
    Ok(Fixture {
        serial: Mutex::new(()),
        runtime,
        policy,
        resolver,
        events,
        dns,
        proxy_addr,
    })
}

/// Checks one DNS packet, from a plain and from an `open` client, over UDP and TCP: a query
/// gets a well-formed answer or a clean refusal (within the UDP size limit), a refused name
/// never reaches the resolver, and every answer is an address the fixture gave for the name
/// that vetting keeps.
pub fn check_dns_packet(data: &[u8]) -> Result<(), String> {
    let fixture = fixture()?;
    let _serial = fixture
        .serial
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for peer in [IpAddr::V4(Ipv4Addr::LOCALHOST), OPEN_CLIENT] {
        for udp in [true, false] {
            fixture.resolver.take_names();
            let reply = fixture
                .runtime
                .block_on(crate::dns::answer(&fixture.dns, data, peer, udp));
            let looked_up = fixture.resolver.take_names();
            check_dns_reply(fixture, data, peer, udp, reply.as_deref(), &looked_up)
                .map_err(|problem| format!("peer {peer}, udp {udp}: {problem}"))?;
        }
    }
    Ok(())
}

fn check_dns_reply(
    fixture: &Fixture,
    data: &[u8],
    peer: IpAddr,
    udp: bool,
    reply: Option<&[u8]>,
    looked_up: &[String],
) -> Result<(), String> {
    let request = Message::from_vec(data).ok();
    let Some(reply) = reply else {
        return match &request {
            Some(request) if request.metadata.message_type == MessageType::Response => Ok(()),
            None if data.len() < 2 => Ok(()),
            _ => Err("a query got no reply".into()),
        };
    };
    let limit = match &request {
        Some(request) if request.edns.is_some() => {
            usize::from(request.max_payload()).clamp(PLAIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD)
        }
        _ => PLAIN_UDP_PAYLOAD,
    };
    if udp && reply.len() > limit {
        return Err(format!(
            "a UDP reply of {} bytes (limit {limit})",
            reply.len()
        ));
    }
    let answer =
        Message::from_vec(reply).map_err(|err| format!("the reply does not parse: {err}"))?;
    if answer.metadata.message_type != MessageType::Response {
        return Err("the reply is not a response".into());
    }
    let expected_id = match &request {
        Some(request) => request.metadata.id,
        None => data
            .get(..2)
            .and_then(|id| <[u8; 2]>::try_from(id).ok())
            .map(u16::from_be_bytes)
            .ok_or("an id-less packet got a reply")?,
    };
    if answer.metadata.id != expected_id {
        return Err("the reply's id is not the query's".into());
    }
    let rcode = answer.metadata.response_code;
    if rcode != ResponseCode::NoError && !answer.answers.is_empty() {
        return Err(format!("{rcode:?} carries answers"));
    }
    let Some(request) = request else {
        if rcode != ResponseCode::FormErr || !looked_up.is_empty() {
            return Err("an unparsable packet was not answered FORMERR alone".into());
        }
        return Ok(());
    };
    // INVARIANT (no-exfiltration): only a single A/AAAA question for a name the policy and the
    // gate allow reaches the resolver, once.
    let policy = fixture.policy.current();
    let caller = portcullis_netpolicy::Caller {
        agent: None,
        project: policy.dns_project(peer),
    };
    let allowed = match request.queries.as_slice() {
        [query]
            if request.metadata.op_code == OpCode::Query
                && query.query_class() == DNSClass::IN
                && matches!(query.query_type(), RecordType::A | RecordType::AAAA) =>
        {
            match check_dns_name(
                &policy,
                &query.name().to_ascii(),
                &caller,
                &[],
                FixedClock.now(),
            ) {
                DnsCheck::Allow(allowed) => {
                    let keys = policy.gate_keys(&Host::Name(allowed.name.clone()), None);
                    (!keys.keys.iter().any(|key| key == GATE_DENIED)).then_some((query, allowed))
                }
                DnsCheck::Deny(_) => None,
            }
        }
        _ => None,
    };
    let Some((query, allowed)) = allowed else {
        if !looked_up.is_empty() {
            return Err(format!(
                "a refused query reached the resolver: {looked_up:?}"
            ));
        }
        if !answer.answers.is_empty() || rcode == ResponseCode::NoError {
            return Err(format!("a refused query was answered {rcode:?}"));
        }
        return Ok(());
    };
    if looked_up != [allowed.name.as_str()] {
        return Err(format!(
            "an allowed name was looked up as {looked_up:?}, not once as {}",
            allowed.name.as_str()
        ));
    }
    let known = match fixture.resolver.fixture.lookup(allowed.name.as_str()) {
        LookupAnswer::Addrs(addrs) => addrs,
        LookupAnswer::NxDomain | LookupAnswer::Failed => Vec::new(),
    };
    let of_type: Vec<IpAddr> = known
        .into_iter()
        .take(MAX_ANSWERS)
        .filter(|addr| addr.is_ipv4() == (query.query_type() == RecordType::A))
        .collect();
    let vetted = filter_answers(&policy, &allowed, &of_type);
    for record in &answer.answers {
        let addr = match &record.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
            other => return Err(format!("an answer of type {:?}", other.record_type())),
        };
        if !vetted.contains(&addr) {
            return Err(format!("answered {addr}, which vetting does not keep"));
        }
        if record.name != *query.name() {
            return Err("an answer names another name".into());
        }
    }
    Ok(())
}

/// Checks the bytes of one proxy client connection: the proxy answers every request with a
/// refusal or closes, asks for credentials without recording anything, records exactly one
/// denial per request it refuses after authentication, asks to admit only a target the policy
/// allows, to the address vetting picked, looks up only names it may, and executes nothing
/// without an admission (no close record).
pub fn check_proxy_head(data: &[u8]) -> Result<(), String> {
    let fixture = fixture()?;
    let _serial = fixture
        .serial
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    fixture.events.take();
    fixture.resolver.take_names();
    let (reply, complete) = exchange(fixture.proxy_addr, data)?;
    let records = fixture.events.take();
    let looked_up = fixture.resolver.take_names();
    if !records.closes.is_empty() || records.unadmitted > 0 {
        return Err(format!(
            "the proxy executed without an admission: {:?}",
            records.closes
        ));
    }
    let decisions = records.decisions;
    let responses = match parse_responses(&reply) {
        Ok(responses) => responses,
        Err(_) if !complete => Vec::new(),
        Err(problem) => return Err(format!("{problem}: {:?}", String::from_utf8_lossy(&reply))),
    };
    let auth_required = ProxyReason::AuthRequired.as_str();
    let mut n_refused_after_auth = 0usize;
    for response in &responses {
        if (200..300).contains(&response.status) {
            return Err(format!(
                "a {} answer, though nothing may be dialed",
                response.status
            ));
        }
        let asks_credentials = response.error.as_deref() == Some(auth_required);
        if asks_credentials && (response.status != 407 || !response.proxy_authenticate) {
            return Err("a credential request without 407 and Proxy-Authenticate".into());
        }
        if response.error.is_some() && !asks_credentials {
            n_refused_after_auth += 1;
        }
    }
    if complete && n_refused_after_auth != decisions.len() {
        return Err(format!(
            "{n_refused_after_auth} refusals after authentication but {} decision records",
            decisions.len()
        ));
    }
    if let Some(record) = decisions.iter().find(|record| record.allow) {
        return Err(format!(
            "an allow recorded though nothing was admitted: {record:?}"
        ));
    }
    if records.admissions.len() > decisions.len() {
        return Err("more admissions asked than requests refused".into());
    }
    let policy = fixture.policy.current();
    for record in decisions.iter().chain(&records.admissions) {
        check_decision(&policy, record)?;
    }
    for name in &looked_up {
        let may = [None, Some("open")].into_iter().any(|project| {
            let caller = portcullis_netpolicy::Caller {
                agent: Some(FUZZ_AGENT),
                project,
            };
            [80, 443, 8443].into_iter().any(|port| {
                let target = format!("{name}:{port}");
                matches!(
                    decide(
                        &policy,
                        TargetRequest::connect(&target),
                        &caller,
                        &[],
                        FixedClock.now()
                    ),
                    Phase1::Resolve(_)
                )
            })
        });
        if !may {
            return Err(format!("looked up `{name}`, which no caller may reach"));
        }
    }
    Ok(())
}

fn check_decision(policy: &EgressPolicy, record: &DecisionRecord) -> Result<(), String> {
    if record.head.agent != FUZZ_AGENT {
        return Err(format!("a record for agent `{}`", record.head.agent));
    }
    // A host name of 253 bytes and a port: the longest authority recorded after parsing.
    if record.head.target.len() > MAX_RECORDED_TARGET.max(253 + 6) {
        return Err(format!(
            "a recorded target of {} bytes",
            record.head.target.len()
        ));
    }
    if let Some(id) = &record.head.correlation_id
        && CorrelationId::parse(id).is_none()
    {
        return Err("a malformed correlation id was recorded".into());
    }
    if !record.allow {
        return Ok(());
    }
    let Some(dialed) = record.dialed else {
        return Err("an allow record without the address to dial".into());
    };
    let caller = portcullis_netpolicy::Caller {
        agent: Some(FUZZ_AGENT),
        project: record.head.project.as_deref(),
    };
    let request = TargetRequest::connect(&record.head.target);
    match decide(policy, request, &caller, &[], FixedClock.now()) {
        Phase1::Deny(denial) => Err(format!(
            "an allow record for `{}`, which the policy denies ({})",
            record.head.target,
            denial.reason.as_str()
        )),
        Phase1::DialLiteral { addr, .. } if addr != dialed => {
            Err(format!("literal {addr} allowed but {dialed} to be dialed"))
        }
        Phase1::Resolve(_) if !record.resolved.contains(&dialed.ip()) => {
            Err(format!("{dialed} to be dialed was not among the answers"))
        }
        Phase1::DialLiteral { .. } | Phase1::Resolve(_) => Ok(()),
    }
}

/// Writes `data` to the proxy, half-closes, and reads until the proxy closes. Answers what was
/// read and whether the connection ended cleanly (not reset, so nothing read was lost).
fn exchange(addr: SocketAddr, data: &[u8]) -> Result<(Vec<u8>, bool), String> {
    let mut stream =
        std::net::TcpStream::connect(addr).map_err(|err| format!("connect to the proxy: {err}"))?;
    let _ = stream.set_read_timeout(Some(PROXY_WAIT));
    let _ = stream.set_write_timeout(Some(PROXY_WAIT));
    // The proxy may answer and close before reading everything (a head over its limits).
    let written = stream.write_all(data).is_ok();
    let _ = stream.shutdown(Shutdown::Write);
    let mut reply = Vec::new();
    match stream.read_to_end(&mut reply) {
        Ok(_) => Ok((reply, written)),
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(format!(
                "the proxy neither answered nor closed within {PROXY_WAIT:?}"
            ))
        }
        Err(_) => Ok((reply, false)),
    }
}

/// One response head as the client reads it.
#[derive(Debug)]
struct ResponseHead {
    status: u16,
    /// `X-Portcullis-Error`.
    error: Option<String>,
    proxy_authenticate: bool,
}

/// Splits what the proxy wrote into responses (HTTP/1.1, or 1.0 to a 1.0 client). A body is
/// skipped by its `Content-Length`, unless the next response starts right after the head (an
/// answer to `HEAD`).
fn parse_responses(mut reply: &[u8]) -> Result<Vec<ResponseHead>, String> {
    let mut res = Vec::new();
    while !reply.is_empty() {
        let rest = reply
            .strip_prefix(b"HTTP/1.1 ")
            .or_else(|| reply.strip_prefix(b"HTTP/1.0 "))
            .ok_or("a response does not start with `HTTP/1.x `")?;
        let head_len = rest
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .ok_or("a response head does not end")?;
        let (head, after) = rest.split_at(head_len);
        let after = after.get(4..).unwrap_or_default();
        let head = std::str::from_utf8(head).map_err(|_| "a response head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.get(..3))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or("a response has no status code")?;
        let mut error = None;
        let mut proxy_authenticate = false;
        let mut content_length = 0usize;
        for line in lines {
            let (name, value) = line.split_once(':').ok_or("a header line without `:`")?;
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "x-portcullis-error" => error = Some(value.to_owned()),
                "proxy-authenticate" => proxy_authenticate = true,
                "content-length" => {
                    content_length = value.parse().map_err(|_| "a bad Content-Length")?;
                }
                _ => {}
            }
        }
        let starts_response = |bytes: &[u8]| bytes.starts_with(b"HTTP/1.");
        reply = match after.get(content_length..) {
            Some(next) if next.is_empty() || starts_response(next) => next,
            // No body after the head: an answer to `HEAD`, the last or followed by the next.
            _ if after.is_empty() || starts_response(after) => after,
            _ => return Err("a response body is cut short".into()),
        };
        res.push(ResponseHead {
            status,
            error,
            proxy_authenticate,
        });
    }
    Ok(res)
}

/// The fixed instant the fakes live at.
#[derive(Debug)]
struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_second(1_767_225_600).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// Answers from the fixture and keeps every name it was asked.
#[derive(Debug)]
struct RecordingResolver {
    fixture: DnsFixture,
    names: Mutex<Vec<String>>,
}

impl RecordingResolver {
    fn take_names(&self) -> Vec<String> {
        std::mem::take(&mut *self.names.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[async_trait]
impl Resolver for RecordingResolver {
    async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(name.to_owned());
        match self.fixture.lookup(name) {
            LookupAnswer::Addrs(addrs) => Ok(addrs.into_iter().take(MAX_ANSWERS).collect()),
            LookupAnswer::NxDomain => Err(LookupError::NxDomain),
            LookupAnswer::Failed => Err(LookupError::Failed),
        }
    }
}

/// Keeps every record the proxy and the fake road write, and every admission the road was
/// asked to make durable.
#[derive(Debug, Default)]
struct RecordingEvents {
    records: Mutex<Records>,
}

#[derive(Debug, Default)]
struct Records {
    decisions: Vec<DecisionRecord>,
    closes: Vec<CloseRecord>,
    admissions: Vec<DecisionRecord>,
    /// Actions of the proxy the road was asked to execute without an admission record.
    unadmitted: usize,
}

impl RecordingEvents {
    fn take(&self) -> Records {
        std::mem::take(&mut *self.records.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn with(&self, change: impl FnOnce(&mut Records)) {
        change(&mut self.records.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

#[async_trait]
impl EgressEvents for RecordingEvents {
    async fn decision(&self, record: DecisionRecord) -> Result<(), RecordError> {
        let allow = record.allow;
        self.with(|records| records.decisions.push(record));
        if allow { Err(RecordError) } else { Ok(()) }
    }

    async fn close(&self, record: CloseRecord) {
        self.with(|records| records.closes.push(record));
    }
}

/// The gateway's road for the fakes: gate in denies [`GATE_DENIED`], then the front's validate;
/// an admission is never durable (`store_unavailable`), so only the DNS guard's lookup (which
/// asks none) is executed; every refusal is recorded.
#[derive(Debug)]
struct FuzzRoad {
    events: Arc<RecordingEvents>,
}

#[async_trait]
impl EgressRoad for FuzzRoad {
    async fn run(
        &self,
        action: EgressAction<'_>,
        steps: &mut dyn EgressSteps,
    ) -> Result<Option<Box<dyn OpenEnd>>, Refused> {
        let refused = if action.keys.keys.iter().any(|key| key == GATE_DENIED) {
            Refused::code(ErrorCode::PolicyDenied)
        } else if let Err(refused) = steps.validate().await {
            refused
        } else if let Some(admission) = steps.admission() {
            // INVARIANT (fuzz-no-dial): no admission is durable, so the proxy never dials.
            self.events
                .with(|records| records.admissions.push(admission));
            Refused::code(ErrorCode::StoreUnavailable)
        } else if action.surface != Surface::Dns {
            self.events.with(|records| records.unadmitted += 1);
            Refused::code(ErrorCode::StoreUnavailable)
        } else {
            match steps.execute(Leave::admitted()).await {
                Ok(()) => {
                    let record = steps.record(true, "ok");
                    self.write(record);
                    return Ok(None);
                }
                Err(refused) => refused,
            }
        };
        let record = steps.record(false, &refused.reason);
        self.write(record);
        Err(refused)
    }
}

impl FuzzRoad {
    fn write(&self, record: EgressRecord) {
        self.events.with(|records| match record {
            EgressRecord::Decision(record) => records.decisions.push(record),
            EgressRecord::Close(record) => records.closes.push(record),
        });
    }
}

/// Knows [`FUZZ_AGENT`] by its Basic and its Bearer credential.
#[derive(Debug)]
struct FuzzAuth {
    road: Arc<dyn EgressRoad>,
}

#[async_trait]
impl ProxyAuth for FuzzAuth {
    async fn authenticate(&self, credential: Credential<'_>) -> Option<Caller> {
        let project = match credential {
            Credential::Basic { agent, token } if agent == FUZZ_AGENT && token == FUZZ_TOKEN => {
                None
            }
            Credential::Bearer { token } if token == FUZZ_BEARER => Some("open".to_owned()),
            Credential::Basic { .. } | Credential::Bearer { .. } => return None,
        };
        Some(Caller {
            agent: FUZZ_AGENT.to_owned(),
            project,
            road: Arc::clone(&self.road),
        })
    }
}
