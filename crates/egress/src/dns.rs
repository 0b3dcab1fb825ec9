//! The DNS guard: A/AAAA for allowed names, answered through the resolver and vetted; every
//! other query REFUSED without anything leaving the machine.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use portcullis_netpolicy::{DnsCheck, Host, check_dns_name, filter_answers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::deps::{DnsDeps, GateRequest, Surface};
use crate::reason::ProxyReason;
use crate::resolver::LookupError;

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
        return response.truncate().to_vec().ok();
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
    let name = query.name().to_ascii();
    let allowed = match check_dns_name(&policy, &name, &caller, &leases, now) {
        DnsCheck::Allow(allowed) => allowed,
        DnsCheck::Deny(reason) => {
            // INVARIANT (no-exfiltration): a refused name never reaches the resolver.
            tracing::debug!(reason = reason.as_str(), "dns guard refused");
            return (ResponseCode::Refused, Vec::new());
        }
    };
    // INVARIANT (gate-before-lookup): the policy engine (and the kill switch) decide as an
    // anonymous subject of the client's project before the name reaches the resolver.
    let keys = policy.gate_keys(&Host::Name(allowed.name.clone()), None);
    let gated = deps
        .gate
        .decide(GateRequest {
            surface: Surface::Dns,
            project: caller.project,
            keys: &keys,
            correlation_id: None,
        })
        .await;
    if let Err(code) = gated {
        tracing::debug!(reason = code.as_str(), "dns guard refused");
        return (ResponseCode::Refused, Vec::new());
    }
    let found = match deps.resolver.lookup(allowed.name.as_str()).await {
        Ok(found) => found,
        Err(LookupError::NxDomain) => return (ResponseCode::NXDomain, Vec::new()),
        Err(LookupError::Failed) => return (ResponseCode::ServFail, Vec::new()),
    };
    let of_type: Vec<IpAddr> = found
        .into_iter()
        .filter(|addr| match record_type {
            RecordType::A => addr.is_ipv4(),
            _ => addr.is_ipv6(),
        })
        .collect();
    let ttl = deps.limits.answer_ttl;
    let records = filter_answers(&policy, &allowed, &of_type)
        .into_iter()
        .map(|addr| {
            let rdata = match addr {
                IpAddr::V4(v4) => RData::A(A(v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
            };
            Record::from_rdata(query.name().clone(), ttl, rdata)
        })
        .collect();
    (ResponseCode::NoError, records)
}
