//! The forward proxy: absolute-form HTTP/1.1 forwarded in origin-form, and CONNECT tunnels.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use portcullis_core::CorrelationId;
use portcullis_core::error::ErrorCode;
use portcullis_netpolicy::{
    GateKeys, Grant, Host, Phase1, Phase2, Reason, TargetRequest, decide, vet,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::deps::{
    Caller, CloseRecord, Credential, DecisionRecord, GateRequest, PendingRecords, ProxyDeps,
    RecordError, RecordHead, Surface,
};
use crate::io::{Admitted, ConnectionCounts, Counted, Counters, TunnelSlots, idle_watch};
use crate::live::{Cut, LiveCaller};
use crate::reason::ProxyReason;
use crate::upstream::{CloseOnDrop, Pool, PoolKey, Tracked, Upstream};

/// Longest target kept in a record when it did not parse.
pub const MAX_RECORDED_TARGET: usize = 256;
/// Longest `Proxy-Authorization` value looked at.
pub const MAX_AUTH_LEN: usize = 4096;
/// Most header names a `Connection` header may list for removal.
const MAX_CONNECTION_TOKENS: usize = 32;
/// Copy buffer per direction of a tunnel.
const TUNNEL_BUFFER: usize = 64 * 1024;
/// First and longest wait after a failed accept.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Longest time spent writing the refusal to a connection over the caps.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) type ProxyBody = BoxBody<Bytes, hyper::Error>;

#[derive(Debug)]
struct Shared {
    deps: ProxyDeps,
    slots: Arc<TunnelSlots>,
    pool: Arc<Pool>,
    closing: watch::Receiver<bool>,
}

/// Serves the forward proxy on `listener` until `shutdown` completes; then stops accepting,
/// drops the open client connections and tells the open tunnels to close.
pub async fn run_proxy(listener: TcpListener, deps: ProxyDeps, shutdown: impl Future<Output = ()>) {
    let (close_tx, closing) = watch::channel(false);
    let shared = Arc::new(Shared {
        deps,
        slots: Arc::new(TunnelSlots::default()),
        pool: Arc::new(Pool::default()),
        closing,
    });
    let mut connections = JoinSet::new();
    let counts = Arc::new(ConnectionCounts::default());
    let mut backoff = ACCEPT_BACKOFF_MIN;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    let limits = &shared.deps.limits;
                    match counts.admit(peer.ip(), limits.max_connections, limits.max_connections_per_ip) {
                        Some(admitted) => {
                            connections.spawn(serve_connection(Arc::clone(&shared), stream, admitted));
                        }
                        None => {
                            connections.spawn(refuse_connection(stream));
                        }
                    }
                }
                Err(error) => {
                    // Out of descriptors, typically: back off (doubling, at most 1 s) so the
                    // open connections can finish instead of spinning on accept.
                    tracing::warn!(%error, backoff_ms = backoff.as_millis(), "egress proxy accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2).min(ACCEPT_BACKOFF_MAX);
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    let _ = close_tx.send(true);
}

/// Answers a connection over the caps with 429 `egress_connection_limit` (best effort, bounded
/// in time) and closes it.
async fn refuse_connection(mut stream: TcpStream) {
    let reason = ProxyReason::ConnectionLimit;
    let answer = format!(
        "HTTP/1.1 {} Too Many Requests\r\nX-Portcullis-Error: {}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
        reason.http_status(),
        reason.as_str(),
        refusal_text(reason).len(),
        refusal_text(reason),
    );
    let write = tokio::io::AsyncWriteExt::write_all(&mut stream, answer.as_bytes());
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, write).await;
}

fn refusal_text(reason: ProxyReason) -> String {
    format!("{} ({})\n", reason.error_code().message(), reason.as_str())
}

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, admitted: Admitted) {
    // A tunnel holds the connection's place until it closes, though the upgrade ends this task.
    let admitted = Arc::new(admitted);
    // Cut when the agent of a request in flight on this connection is killed or revoked:
    // dropping the connection closes the client socket and the request's target connection.
    let cut = Arc::new(Cut::default());
    let _ = stream.set_nodelay(true);
    let limits = &shared.deps.limits;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    let service = {
        let shared = Arc::clone(&shared);
        let cut = Arc::clone(&cut);
        service_fn(move |req| {
            let shared = Arc::clone(&shared);
            let cut = Arc::clone(&cut);
            let admitted = Arc::clone(&admitted);
            async move { Ok::<_, Infallible>(handle(shared, req, cut, admitted).await) }
        })
    };
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::select! {
        served = connection => if let Err(error) = served {
            tracing::debug!(%error, "egress proxy client connection ended with an error");
        },
        reason = cut.cut() => {
            tracing::info!(reason = reason.as_str(), "egress proxy connection cut");
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
    connection_cut: Arc<Cut>,
    admitted: Arc<Admitted>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let Some(caller) = authenticate(&shared, req.headers()).await else {
        let mut response = refusal(
            ProxyReason::AuthRequired.http_status(),
            ProxyReason::AuthRequired.as_str(),
            ProxyReason::AuthRequired.error_code().message(),
        );
        response.headers_mut().insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"portcullis\""),
        );
        return response;
    };
    let surface = if req.method() == Method::CONNECT {
        Surface::Connect
    } else {
        Surface::Http
    };
    let raw = req.uri().to_string();
    let refused = shared.deps.auth.refusal(&caller).await;
    let mut head = RecordHead {
        connection: uuid::Uuid::new_v4().to_string(),
        surface,
        agent: caller.agent.clone(),
        project: caller.project.clone(),
        correlation_id: req
            .headers()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .and_then(CorrelationId::parse)
            .map(|id| id.as_str().to_owned()),
        target: cut(&raw),
    };
    if let Some(code) = refused {
        // The gateway's refusal (kill switch) comes before any parsing or lookup.
        record_denial(&shared, head, code.as_str(), Vec::new()).await;
        return refusal(code.http_status(), code.as_str(), code.message());
    }
    if surface == Surface::Http {
        let refused = match req.uri().scheme_str() {
            None => Some(ProxyReason::NotAProxyRequest),
            Some(scheme) if scheme.eq_ignore_ascii_case("https") => Some(ProxyReason::HttpsForward),
            Some(_) => None,
        };
        if let Some(reason) = refused {
            record_denial(&shared, head, reason.as_str(), Vec::new()).await;
            return refusal(
                reason.http_status(),
                reason.as_str(),
                reason.error_code().message(),
            );
        }
    }

    let policy = shared.deps.policy.current();
    let leases = shared.deps.leases.leases().await;
    let now = shared.deps.clock.now();
    let request = match surface {
        Surface::Connect => TargetRequest::connect(&raw),
        Surface::Http | Surface::Dns => TargetRequest::url(&raw),
    };
    let (dialed, grant, authority, resolved, pending) =
        match decide(&policy, request, &caller.as_policy(), &leases, now) {
            Phase1::Deny(denial) => {
                if let Some(target) = &denial.target {
                    head.target = authority_of(&target.host.to_string(), target.port);
                }
                return deny(&shared, head, denial.reason, Vec::new()).await;
            }
            Phase1::DialLiteral {
                target,
                addr,
                grant,
            } => {
                let authority = authority_of(&target.host.to_string(), target.port);
                head.target = authority.clone();
                let keys = policy.gate_keys(&target.host, Some(target.port));
                let (gated, pending) = ask_gate(&caller, &head, &keys).await;
                if let Err(code) = gated {
                    let _ = pending.commit().await;
                    return refuse(&shared, head, code).await;
                }
                (addr, grant, authority, Vec::new(), pending)
            }
            Phase1::Resolve(plan) => {
                let authority = authority_of(plan.name.as_str(), plan.port);
                head.target = authority.clone();
                // INVARIANT (gate-before-lookup): the policy engine decides before the lookup,
                // so a name it denies is never resolved.
                let keys = policy.gate_keys(&Host::Name(plan.name.clone()), Some(plan.port));
                let (gated, pending) = ask_gate(&caller, &head, &keys).await;
                if let Err(code) = gated {
                    let _ = pending.commit().await;
                    return refuse(&shared, head, code).await;
                }
                // INVARIANT (one-lookup): the only lookup for this request; the dialed address
                // is the one `vet` picked from this answer.
                let resolved = shared
                    .deps
                    .resolver
                    .lookup(plan.name.as_str())
                    .await
                    .unwrap_or_default();
                match vet(&policy, &plan, &resolved) {
                    Phase2::Dial(addr) => (addr, plan.grant, authority, resolved, pending),
                    Phase2::Deny(reason) => {
                        let _ = pending.commit().await;
                        return deny(&shared, head, reason, resolved).await;
                    }
                }
            }
        };
    head.target = authority.clone();

    let slot = match surface {
        Surface::Connect => {
            let limit = shared.deps.limits.tunnels_per_agent;
            match shared.slots.acquire(&caller.agent, limit) {
                Some(slot) => Some(slot),
                None => {
                    let reason = ProxyReason::TunnelLimit;
                    let _ = pending.commit().await;
                    record_denial(&shared, head, reason.as_str(), resolved).await;
                    return refusal(
                        reason.http_status(),
                        reason.as_str(),
                        reason.error_code().message(),
                    );
                }
            }
        }
        Surface::Http | Surface::Dns => None,
    };
    // INVARIANT (durable-allow): nothing is dialed unless its allow records (the policy
    // decisions and the egress decision, written together in one group commit) are durable.
    let (allowed, decided) = tokio::join!(
        record_allow(&shared, head.clone(), &grant, resolved, dialed),
        pending.commit(),
    );
    if allowed.is_err() || decided.is_err() {
        let code = ErrorCode::StoreUnavailable;
        return refusal(code.http_status(), code.as_str(), code.message());
    }

    let live_caller = LiveCaller {
        agent: caller.agent.clone(),
        project: caller.project.clone(),
    };
    // A tunnel outlives its client connection (the upgrade), so it has a cut of its own.
    let cut = match surface {
        Surface::Connect => Arc::new(Cut::default()),
        Surface::Http | Surface::Dns => connection_cut,
    };
    let live = shared.deps.live.register(live_caller, Arc::clone(&cut));
    let close = CloseOnDrop {
        events: Arc::clone(&shared.deps.events),
        live: Some((live, Arc::clone(&cut))),
        record: Some(CloseRecord {
            head,
            dialed,
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0,
            reason: ProxyReason::Closed.as_str(),
        }),
        counters: Arc::new(Counters::default()),
        base: (0, 0),
        started,
    };
    match surface {
        Surface::Connect => {
            let stream = match dial(&shared, dialed).await {
                Ok(stream) => stream,
                Err(reason) => return close.fail(reason),
            };
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(run_tunnel(
                shared,
                upgrade,
                stream,
                close,
                (slot, admitted),
                cut,
            ));
            Response::new(empty())
        }
        Surface::Http | Surface::Dns => {
            let key = PoolKey {
                agent: caller.agent,
                dialed,
                authority,
            };
            forward(&shared, req, key, close).await
        }
    }
}

async fn authenticate(shared: &Shared, headers: &HeaderMap) -> Option<Caller> {
    let mut values = headers.get_all(header::PROXY_AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() || value.len() > MAX_AUTH_LEN {
        return None;
    }
    let value = value.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (agent, token) = text.split_once(':')?;
        if agent.is_empty() || token.is_empty() {
            return None;
        }
        shared
            .deps
            .auth
            .authenticate(Credential::Basic { agent, token })
            .await
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        shared
            .deps
            .auth
            .authenticate(Credential::Bearer { token: rest })
            .await
    } else {
        None
    }
}

/// Dials exactly the vetted address.
async fn dial(shared: &Shared, addr: SocketAddr) -> Result<TcpStream, ProxyReason> {
    match tokio::time::timeout(shared.deps.limits.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(_)) => Err(ProxyReason::ConnectFailed),
        Err(_) => Err(ProxyReason::ConnectTimeout),
    }
}

async fn run_tunnel(
    shared: Arc<Shared>,
    upgrade: hyper::upgrade::OnUpgrade,
    stream: TcpStream,
    mut close: CloseOnDrop,
    _places: (Option<crate::io::TunnelSlot>, Arc<Admitted>),
    cut: Arc<Cut>,
) {
    let Ok(upgraded) = upgrade.await else {
        close.set_reason(ProxyReason::UpstreamFailed);
        return;
    };
    let mut closing = shared.closing.clone();
    let idle = shared.deps.limits.idle_timeout;
    let counters = Arc::clone(&close.counters);
    let splice = shared.deps.limits.splice_tunnels;
    let reason = tokio::select! {
        result = copy_tunnel(upgraded, stream, &counters, splice) => match result {
            Ok(()) => ProxyReason::Closed,
            Err(_) => ProxyReason::UpstreamFailed,
        },
        () = idle_watch(&close.counters, idle) => ProxyReason::IdleTimeout,
        reason = cut.cut() => reason,
        _ = closing.wait_for(|closing| *closing) => ProxyReason::Closed,
    };
    close.set_reason(reason);
}

/// Copies a tunnel both ways: with splice(2) on Linux when the client is a plain TCP stream,
/// else through user-space buffers.
async fn copy_tunnel(
    upgraded: hyper::upgrade::Upgraded,
    stream: TcpStream,
    counters: &Arc<Counters>,
    splice: bool,
) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    let upgraded = if splice {
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let client = parts.io.into_inner();
                return crate::splice::splice_bidirectional(
                    &client,
                    &stream,
                    &parts.read_buf,
                    counters,
                )
                .await;
            }
            Err(upgraded) => upgraded,
        }
    } else {
        upgraded
    };
    #[cfg(not(target_os = "linux"))]
    let _ = splice;
    let mut client = TokioIo::new(upgraded);
    let mut server = Counted::new(stream, Arc::clone(counters));
    tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, TUNNEL_BUFFER, TUNNEL_BUFFER)
        .await
        .map(|_| ())
}

async fn forward(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    key: PoolKey,
    mut close: CloseOnDrop,
) -> Response<ProxyBody> {
    let Ok(host) = HeaderValue::from_str(&key.authority) else {
        return close.fail(ProxyReason::UpstreamFailed);
    };
    // INVARIANT (vetted-dial): a pooled connection was dialed to exactly `key.dialed`, the
    // address this request's own decision vetted, for the same agent and authority.
    let pooled = match shared.pool.take(&key, shared.deps.limits.idle_timeout) {
        Some(mut upstream) => match upstream.sender.ready().await {
            Ok(()) => Some(upstream),
            Err(_) => None,
        },
        None => None,
    };
    let mut upstream = match pooled {
        Some(upstream) => upstream,
        None => {
            let stream = match dial(shared, key.dialed).await {
                Ok(stream) => stream,
                Err(reason) => return close.fail(reason),
            };
            let counters = Arc::new(Counters::default());
            let io = TokioIo::new(Counted::new(stream, Arc::clone(&counters)));
            let Ok((sender, connection)) = hyper::client::conn::http1::handshake(io).await else {
                return close.fail(ProxyReason::UpstreamFailed);
            };
            tokio::spawn(connection);
            Upstream {
                sender,
                counters,
                idle_since: Instant::now(),
            }
        }
    };
    close.measure(&upstream.counters);
    let (mut parts, body) = req.into_parts();
    let origin_form = parts
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    parts.uri = origin_form;
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.insert(header::HOST, host);
    let request = Request::from_parts(parts, body);
    let idle = shared.deps.limits.idle_timeout;
    match tokio::time::timeout(idle, upstream.sender.send_request(request)).await {
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            close.set_reason(ProxyReason::Closed);
            let body = Tracked {
                inner: body,
                close,
                reuse: Some((Arc::clone(&shared.pool), key, upstream)),
            };
            Response::from_parts(parts, body.boxed())
        }
        Ok(Err(_)) => close.fail(ProxyReason::UpstreamFailed),
        Err(_) => close.fail(ProxyReason::UpstreamTimeout),
    }
}

/// Removes hop-by-hop headers, the ones `Connection` names, and every `Proxy-*` header, so
/// `Proxy-Authorization` never reaches a target.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .take(MAX_CONNECTION_TOKENS)
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
}

/// Asks the caller's policy gate about the target's `net:*` keys.
async fn ask_gate(
    caller: &Caller,
    head: &RecordHead,
    keys: &GateKeys,
) -> (Result<(), ErrorCode>, PendingRecords) {
    caller
        .gate
        .decide_deferred(GateRequest {
            surface: head.surface,
            project: caller.project.as_deref(),
            keys,
            correlation_id: head.correlation_id.as_deref(),
        })
        .await
}

/// A refusal with a registry code (the policy gate's, or the kill switch's), recorded.
async fn refuse(shared: &Shared, head: RecordHead, code: ErrorCode) -> Response<ProxyBody> {
    record_denial(shared, head, code.as_str(), Vec::new()).await;
    refusal(code.http_status(), code.as_str(), code.message())
}

async fn deny(
    shared: &Shared,
    head: RecordHead,
    reason: Reason,
    resolved: Vec<IpAddr>,
) -> Response<ProxyBody> {
    record_denial(shared, head, reason.as_str(), resolved).await;
    let code = reason.error_code();
    refusal(code.http_status(), reason.as_str(), code.message())
}

async fn record_denial(
    shared: &Shared,
    head: RecordHead,
    reason: &'static str,
    resolved: Vec<IpAddr>,
) {
    let record = DecisionRecord {
        head,
        allow: false,
        reason,
        rule: None,
        lease: None,
        resolved,
        dialed: None,
    };
    // The request is refused either way; the gateway logs a failed append.
    let _ = shared.deps.events.decision(record).await;
}

async fn record_allow(
    shared: &Shared,
    head: RecordHead,
    grant: &Grant,
    resolved: Vec<IpAddr>,
    dialed: SocketAddr,
) -> Result<(), RecordError> {
    let record = DecisionRecord {
        head,
        allow: true,
        reason: grant.reason.as_str(),
        rule: grant.rule.as_ref().map(|rule| rule.to_string()),
        lease: grant.lease.clone(),
        resolved,
        dialed: Some(dialed),
    };
    shared.deps.events.decision(record).await
}

/// A refusal: the status, `X-Portcullis-Error: <code>` and a one-line body.
pub(crate) fn refusal(status: u16, code: &'static str, message: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full(format!("{message} ({code})\n")));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    let headers = response.headers_mut();
    headers.insert("x-portcullis-error", HeaderValue::from_static(code));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn full(text: String) -> ProxyBody {
    Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed()
}

fn empty() -> ProxyBody {
    full(String::new())
}

/// `host:port`, the host already canonical (IPv6 in brackets).
fn authority_of(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// The first [`MAX_RECORDED_TARGET`] bytes, cut on a character boundary.
fn cut(raw: &str) -> String {
    let mut end = raw.len().min(MAX_RECORDED_TARGET);
    while !raw.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    raw.get(..end).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &[(&str, &str)], kept: &[&str]) {
        let mut headers = HeaderMap::new();
        for (name, value) in input {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        strip_hop_by_hop(&mut headers);
        let mut got: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        got.sort_unstable();
        assert_eq!(got, kept);
    }

    #[test]
    fn hop_by_hop_and_proxy_headers_are_removed() {
        check(
            &[
                ("host", "a"),
                ("accept", "*/*"),
                ("proxy-authorization", "Basic x"),
                ("proxy-connection", "keep-alive"),
                ("connection", "x-secret, keep-alive"),
                ("x-secret", "1"),
                ("keep-alive", "5"),
                ("te", "trailers"),
                ("transfer-encoding", "chunked"),
                ("upgrade", "websocket"),
                ("x-request-id", "r1"),
            ],
            &["accept", "host", "x-request-id"],
        );
    }

    #[test]
    fn cut_respects_char_boundaries() {
        assert_eq!(cut("abc"), "abc");
        let long = "é".repeat(200);
        let got = cut(&long);
        assert!(got.len() <= MAX_RECORDED_TARGET);
        assert_eq!(got.len(), 256);
    }
}
