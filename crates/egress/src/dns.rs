//! The DNS guard: A/AAAA for allowed names, answered through the resolver and vetted; every
//! other query REFUSED without anything leaving the machine.
//!
//! A well-formed question crosses the gateway's road as the anonymous subject of the client's
//! project: the gate decides the name's `net:host:` and `net:domain:` keys, validate applies the
//! posture, execute is the one lookup, and the answer's decision record is its outcome.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use portcullis_core::error::ErrorCode;
use portcullis_netpolicy::{
    DnsAllowed, DnsCheck, EgressPolicy, Host, Name, Reason, check_dns_name, filter_answers,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::deps::{ANONYMOUS, DecisionRecord, DnsDeps, RecordHead, Surface};
use crate::reason::ProxyReason;
use crate::resolver::LookupError;
use crate::road::{EgressAction, EgressRecord, EgressSteps, Leave, Refused};

/// Largest UDP query read; longer datagrams are cut and fail to parse (FORMERR).
pub const MAX_UDP_QUERY: usize = 4096;
/// Largest UDP answer without EDNS (RFC 1035).
const PLAIN_UDP_PAYLOAD: usize = 512;
/// Largest UDP answer the guard sends even when EDNS offers more.
const MAX_UDP_PAYLOAD: usize = 1232;

/// Serves the DNS guard on `udp` and `tcp` until `shutdown` completes.
pub async fn run_dns_guard(
    udp: UdpSocket,
    tcp: TcpListener,
    deps: DnsDeps,
    shutdown: impl Future<Output = ()>,
) {
    let deps = Arc::new(deps);
    tokio::select! {
        () = shutdown => {}
        () = serve_udp(Arc::clone(&deps), Arc::new(udp)) => {}
        () = serve_tcp(Arc::clone(&deps), tcp) => {}
    }
}

async fn serve_udp(deps: Arc<DnsDeps>, socket: Arc<UdpSocket>) {
    let in_flight = Arc::new(Semaphore::new(deps.limits.max_udp_in_flight.max(1)));
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; MAX_UDP_QUERY];
    loop {
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        let (len, peer) = tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(error) => {
                    tracing::debug!(%error, "dns guard udp receive failed");
                    continue;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let packet = buf.get(..len).unwrap_or_default().to_vec();
        let deps = Arc::clone(&deps);
        let socket = Arc::clone(&socket);
        tasks.spawn(async move {
            let _permit = permit;
            if let Some(reply) = answer(&deps, &packet, peer.ip(), true).await {
                let _ = socket.send_to(&reply, peer).await;
            }
        });
    }
}

async fn serve_tcp(deps: Arc<DnsDeps>, listener: TcpListener) {
    let clients = Arc::new(Semaphore::new(deps.limits.max_tcp_clients.max(1)));
    let mut tasks = JoinSet::new();
    loop {
        let Ok(permit) = Arc::clone(&clients).acquire_owned().await else {
            return;
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%error, "dns guard tcp accept failed");
                    continue;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let deps = Arc::clone(&deps);
        tasks.spawn(async move {
            let _permit = permit;
            serve_tcp_client(&deps, stream, peer.ip()).await;
        });
    }
}

/// Length-prefixed messages (RFC 1035 4.2.2) until the client goes quiet or away.
async fn serve_tcp_client(deps: &DnsDeps, mut stream: TcpStream, peer: IpAddr) {
    let idle = deps.limits.tcp_idle_timeout;
    loop {
        let Ok(Ok(len)) = tokio::time::timeout(idle, stream.read_u16()).await else {
            return;
        };
        let mut packet = vec![0u8; usize::from(len)];
        let Ok(Ok(_)) = tokio::time::timeout(idle, stream.read_exact(&mut packet)).await else {
            return;
        };
        let Some(reply) = answer(deps, &packet, peer, false).await else {
            return;
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(reply.len().saturating_add(2));
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

/// The reply to one query from `peer`, or `None` for a message that gets no reply (a response,
/// say).
pub(crate) async fn answer(
    deps: &DnsDeps,
    packet: &[u8],
    peer: IpAddr,
    udp: bool,
) -> Option<Vec<u8>> {
    let request = match Message::from_vec(packet) {
        Ok(request) => request,
        Err(_) => {
            let id = packet
                .get(..2)
                .and_then(|id| <[u8; 2]>::try_from(id).ok())
                .map(u16::from_be_bytes)?;
            return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
                .to_vec()
                .ok();
        }
    };
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(u16::try_from(MAX_UDP_PAYLOAD).unwrap_or(u16::MAX));
        response.set_edns(edns);
    }
    let (rcode, answers) = resolve(deps, &request, peer).await;
    response.metadata.response_code = rcode;
    response.add_queries(request.queries.iter().cloned());
    response.add_answers(answers);
    let bytes = response.to_vec().ok()?;
    let limit = if request.edns.is_some() {
        usize::from(request.max_payload()).clamp(PLAIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD)
    } else {
        PLAIN_UDP_PAYLOAD
    };
    if udp && bytes.len() > limit {
        // RFC 1035 4.2.1: cut to the header and the questions, TC set; when even the questions
        // do not fit (a query of many, echoed), to the header alone, so no UDP answer is ever
        // larger than the limit.
        let truncated = response.truncate().to_vec().ok()?;
        if truncated.len() <= limit {
            return Some(truncated);
        }
        let mut header = Message::response(request.metadata.id, request.metadata.op_code);
        header.metadata = response.metadata;
        header.metadata.truncation = true;
        return header.to_vec().ok();
    }
    Some(bytes)
}

/// The decision for one message: the response code and the answer records.
async fn resolve(deps: &DnsDeps, request: &Message, peer: IpAddr) -> (ResponseCode, Vec<Record>) {
    if request.metadata.op_code != OpCode::Query {
        return (ResponseCode::NotImp, Vec::new());
    }
    let [query] = request.queries.as_slice() else {
        tracing::debug!(
            reason = ProxyReason::DnsBadQuery.as_str(),
            "dns guard refused"
        );
        return (ResponseCode::FormErr, Vec::new());
    };
    let record_type = query.query_type();
    if query.query_class() != DNSClass::IN
        || !matches!(record_type, RecordType::A | RecordType::AAAA)
    {
        tracing::debug!(
            reason = ProxyReason::DnsTypeRefused.as_str(),
            "dns guard refused"
        );
        return (ResponseCode::Refused, Vec::new());
    }
    let policy = deps.policy.current();
    let leases = deps.leases.leases().await;
    let now = deps.clock.now();
    let caller = portcullis_netpolicy::Caller {
        agent: None,
        project: policy.dns_project(peer),
    };
    let project = caller.project.map(str::to_owned);
    let asked = query.name().to_ascii();
    // The name the road's gate decides, canonical, before the posture and any lookup.
    let Some(name) = canonical_name(&asked) else {
        tracing::debug!(reason = Reason::BadHost.as_str(), "dns guard refused");
        return (ResponseCode::Refused, Vec::new());
    };
    let keys = policy.gate_keys(&Host::Name(name), None);
    let check = check_dns_name(&policy, &asked, &caller, &leases, now);
    drop(leases);
    let mut steps = DnsSteps {
        resolver: Arc::clone(&deps.resolver),
        policy: Arc::clone(&policy),
        record_type,
        head: RecordHead {
            connection: uuid::Uuid::new_v4().to_string(),
            surface: Surface::Dns,
            agent: ANONYMOUS.to_owned(),
            project: project.clone(),
            correlation_id: None,
            target: keys.host.clone(),
        },
        check: Some(check),
        allowed: None,
        resolved: Vec::new(),
        answers: Vec::new(),
        failed: None,
    };
    let action = EgressAction {
        surface: Surface::Dns,
        project: project.as_deref(),
        keys: &keys,
        correlation_id: None,
    };
    match deps.road.run(action, &mut steps).await {
        Ok(_) => {
            let ttl = deps.limits.answer_ttl;
            let records = steps
                .answers
                .iter()
                .map(|addr| {
                    let rdata = match addr {
                        IpAddr::V4(v4) => RData::A(A(*v4)),
                        IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                    };
                    Record::from_rdata(query.name().clone(), ttl, rdata)
                })
                .collect();
            (ResponseCode::NoError, records)
        }
        Err(refused) => {
            tracing::debug!(reason = %refused.reason, "dns guard refused");
            (steps.failed.unwrap_or(ResponseCode::Refused), Vec::new())
        }
    }
}

/// The canonical form of a queried name, as the posture reads it; `None` when it is not a
/// host name.
fn canonical_name(name: &str) -> Option<Name> {
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    Name::parse(name).ok()
}

/// The DNS guard's steps on the road: the posture's verdict on the name, the lookup, the
/// vetted answers, and the decision record of the answer.
#[derive(Debug)]
struct DnsSteps {
    resolver: Arc<dyn crate::resolver::Resolver>,
    policy: Arc<EgressPolicy>,
    record_type: RecordType,
    head: RecordHead,
    /// The posture's verdict, applied at validate.
    check: Option<DnsCheck>,
    allowed: Option<DnsAllowed>,
    /// The lookup's answers of the asked type, and those vetting keeps.
    resolved: Vec<IpAddr>,
    answers: Vec<IpAddr>,
    /// The response code of a lookup that failed (NXDOMAIN, SERVFAIL).
    failed: Option<ResponseCode>,
}

#[async_trait]
impl EgressSteps for DnsSteps {
    async fn validate(&mut self) -> Result<(), Refused> {
        match self.check.take() {
            Some(DnsCheck::Allow(allowed)) => {
                self.allowed = Some(allowed);
                Ok(())
            }
            // INVARIANT (no-exfiltration): a refused name never reaches the resolver.
            Some(DnsCheck::Deny(reason)) => Err(Refused::posture(reason)),
            None => Err(Refused::code(ErrorCode::Internal)),
        }
    }

    fn admission(&self) -> Option<DecisionRecord> {
        None
    }

    async fn execute(&mut self, _leave: Leave) -> Result<(), Refused> {
        let Some(allowed) = &self.allowed else {
            return Err(Refused::code(ErrorCode::Internal));
        };
        let found = match self.resolver.lookup(allowed.name.as_str()).await {
            Ok(found) => found,
            Err(error) => {
                self.failed = Some(match error {
                    LookupError::NxDomain => ResponseCode::NXDomain,
                    LookupError::Failed => ResponseCode::ServFail,
                });
                return Err(Refused::posture(Reason::DnsFailed));
            }
        };
        let record_type = self.record_type;
        self.resolved = found
            .into_iter()
            .filter(|addr| match record_type {
                RecordType::A => addr.is_ipv4(),
                _ => addr.is_ipv6(),
            })
            .collect();
        self.answers = filter_answers(&self.policy, allowed, &self.resolved);
        Ok(())
    }

    fn ends_later(&self) -> bool {
        false
    }

    fn record(&self, allow: bool, reason: &str) -> EgressRecord {
        let grant = self.allowed.as_ref().map(|a| &a.grant).filter(|_| allow);
        EgressRecord::Decision(DecisionRecord {
            head: self.head.clone(),
            allow,
            reason: match grant {
                Some(grant) => grant.reason.as_str().into(),
                None => reason.to_owned().into(),
            },
            rule: grant.and_then(|g| g.rule.as_ref().map(|rule| rule.to_string())),
            lease: grant.and_then(|g| g.lease.clone()),
            resolved: self.resolved.clone(),
            dialed: None,
        })
    }
}
