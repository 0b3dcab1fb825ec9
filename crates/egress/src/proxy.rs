//! The forward proxy: absolute-form HTTP/1.1 forwarded in origin-form, and CONNECT tunnels.
//!
//! This module reads a request's head (credentials, the kill switch, the target) and hands the
//! action to the gateway's road ([`crate::EgressRoad`]) with its steps ([`steps`]): the road
//! decides the target's `net:*` keys, the steps check the posture and look the name up once,
//! and only with the road's leave do they dial and forward ([`forward`]) or open the tunnel
//! ([`tunnel`]).

mod forward;
mod steps;
mod tunnel;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use portcullis_core::CorrelationId;
use portcullis_core::error::ErrorCode;
use portcullis_netpolicy::{Host, Phase1, Reason, TargetRequest, decide};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::deps::{Caller, Credential, DecisionRecord, ProxyDeps, RecordHead, Surface};
use crate::io::{Admitted, ConnectionCounts, TunnelSlots};
use crate::live::Cut;
use crate::reason::ProxyReason;
use crate::road::{EgressAction, Refused};
use crate::upstream::Pool;

use self::steps::{Asked, ProxySteps};

/// Longest target kept in a record when it did not parse.
pub const MAX_RECORDED_TARGET: usize = 256;
/// Longest `Proxy-Authorization` value looked at.
pub const MAX_AUTH_LEN: usize = 4096;
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

/// One request: identify (the credential, the kill switch), parse the target, then the road.
async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
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
        record_denial(&shared, head, code.as_str()).await;
        return refusal(code.http_status(), code.as_str(), code.message());
    }
    if surface == Surface::Http {
        let refused = match req.uri().scheme_str() {
            None => Some(ProxyReason::NotAProxyRequest),
            Some(scheme) if scheme.eq_ignore_ascii_case("https") => Some(ProxyReason::HttpsForward),
            Some(_) => None,
        };
        if let Some(reason) = refused {
            record_denial(&shared, head, reason.as_str()).await;
            return refusal(
                reason.http_status(),
                reason.as_str(),
                reason.error_code().message(),
            );
        }
    }

    // Phase one of the posture, before the road: it parses the target, whose keys the road's
    // gate decides; its verdict is the road's to apply, at validate.
    let policy = shared.deps.policy.current();
    let leases = shared.deps.leases.leases().await;
    let now = shared.deps.clock.now();
    let request = match surface {
        Surface::Connect => TargetRequest::connect(&raw),
        Surface::Http | Surface::Dns => TargetRequest::url(&raw),
    };
    let phase1 = decide(&policy, request, &caller.as_policy(), &leases, now);
    let (host, port) = match &phase1 {
        Phase1::Deny(denial) => match &denial.target {
            Some(target) => (target.host.clone(), target.port),
            // No target to describe: refused as a malformed request, before the road.
            None => return deny_unparsed(&shared, head, denial.reason).await,
        },
        Phase1::DialLiteral { target, .. } => (target.host.clone(), target.port),
        Phase1::Resolve(plan) => (Host::Name(plan.name.clone()), plan.port),
    };
    head.target = authority_of(&host.to_string(), port);
    // INVARIANT (gate-before-lookup): the keys come from the parsed target; the road decides
    // them at gate in, before validate makes the one lookup.
    let keys = policy.gate_keys(&host, Some(port));
    let road = Arc::clone(&caller.road);
    // The action's own copies: the road takes the steps (which own the head) mutably.
    let project = caller.project.clone();
    let correlation_id = head.correlation_id.clone();
    let asked = Asked {
        caller,
        head,
        policy,
        phase1,
        req,
        started,
    };
    let mut steps = ProxySteps::new(Arc::clone(&shared), asked, connection_cut);
    let action = EgressAction {
        surface,
        project: project.as_deref(),
        keys: &keys,
        correlation_id: correlation_id.as_deref(),
    };
    let ran = road.run(action, &mut steps).await;
    match ran {
        Ok(end) => steps.respond(end, admitted),
        Err(refused) => refusal_of(&refused),
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

/// A target that does not parse: recorded and refused with the posture's reason.
async fn deny_unparsed(shared: &Shared, head: RecordHead, reason: Reason) -> Response<ProxyBody> {
    record_denial(shared, head, reason.as_str()).await;
    refusal_of(&Refused::posture(reason))
}

/// Records a refusal made before the road (the road records its own).
async fn record_denial(shared: &Shared, head: RecordHead, reason: &'static str) {
    let record = DecisionRecord {
        head,
        allow: false,
        reason: reason.into(),
        rule: None,
        lease: None,
        resolved: Vec::<IpAddr>::new(),
        dialed: None,
    };
    // The request is refused either way; the gateway logs a failed append.
    let _ = shared.deps.events.decision(record).await;
}

/// The answer to a refused action: its code's status, the reason in `X-Portcullis-Error`.
fn refusal_of(refused: &Refused) -> Response<ProxyBody> {
    refusal(
        refused.code.http_status(),
        &refused.reason,
        refused.code.message(),
    )
}

/// A refusal: the status, `X-Portcullis-Error: <code>` and a one-line body.
pub(crate) fn refusal(status: u16, code: &str, message: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full(format!("{message} ({code})\n")));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    let headers = response.headers_mut();
    let code = HeaderValue::from_str(code)
        .unwrap_or_else(|_| HeaderValue::from_static(ErrorCode::Internal.as_str()));
    headers.insert("x-portcullis-error", code);
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

    #[test]
    fn cut_respects_char_boundaries() {
        assert_eq!(cut("abc"), "abc");
        let long = "é".repeat(200);
        let got = cut(&long);
        assert!(got.len() <= MAX_RECORDED_TARGET);
        assert_eq!(got.len(), 256);
    }
}
