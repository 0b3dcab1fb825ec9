//! The proxy's steps on the road: validate (the posture, the one lookup, the tunnel slot),
//! its admission record, execute (the dial, and for HTTP the forwarded request), the records.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use hyper::Request;
use hyper::Response;
use hyper::body::Incoming;
use portcullis_core::error::ErrorCode;
use portcullis_netpolicy::{EgressPolicy, Grant, Phase1, Phase2, vet};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::forward::{self, Forwarded};
use super::tunnel;
use super::{ProxyBody, Shared, empty, refusal_of};
use crate::deps::{Caller, CloseRecord, DecisionRecord, RecordHead, Surface};
use crate::io::{Admitted, Counters, TunnelSlot};
use crate::live::{Cut, LiveCaller};
use crate::reason::ProxyReason;
use crate::road::{EgressRecord, EgressSteps, Leave, OpenEnd, Refused};
use crate::upstream::{CloseOnDrop, PoolKey};

/// What a request asked, as the head handling parsed it.
#[derive(Debug)]
pub(super) struct Asked {
    pub(super) caller: Caller,
    pub(super) head: RecordHead,
    pub(super) policy: Arc<EgressPolicy>,
    /// The posture's first phase on the target; validate applies its verdict.
    pub(super) phase1: Phase1,
    /// The request itself: forwarded (HTTP) or upgraded to a tunnel (CONNECT).
    pub(super) req: Request<Incoming>,
    /// When the request arrived (close records measure from here).
    pub(super) started: Instant,
}

/// One proxied request's steps and what they found.
#[derive(Debug)]
pub(super) struct ProxySteps {
    shared: Arc<Shared>,
    caller: Caller,
    head: RecordHead,
    policy: Arc<EgressPolicy>,
    phase1: Option<Phase1>,
    req: Option<Request<Incoming>>,
    started: Instant,
    /// Cuts the client connection (and so an HTTP request in flight on it).
    connection_cut: Arc<Cut>,
    /// Found by validate: why the posture allows, the lookup's answers, the vetted address and
    /// (for CONNECT) the tunnel's slot.
    grant: Option<Grant>,
    resolved: Vec<IpAddr>,
    dialed: Option<SocketAddr>,
    slot: Option<TunnelSlot>,
    /// Opened by execute.
    opened: Option<Opened>,
    /// The close record of an execute that failed, for the road to write.
    failed: Option<CloseRecord>,
}

/// What execute opened, handed to the client once the road ends.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per request, held in its future and moved once: boxing would only add an allocation"
)]
enum Opened {
    Tunnel {
        stream: TcpStream,
        close: CloseOnDrop,
        cut: Arc<Cut>,
    },
    Forwarded(Forwarded),
}

impl ProxySteps {
    pub(super) fn new(shared: Arc<Shared>, asked: Asked, connection_cut: Arc<Cut>) -> Self {
        Self {
            shared,
            caller: asked.caller,
            head: asked.head,
            policy: asked.policy,
            phase1: Some(asked.phase1),
            req: Some(asked.req),
            started: asked.started,
            connection_cut,
            grant: None,
            resolved: Vec::new(),
            dialed: None,
            slot: None,
            opened: None,
            failed: None,
        }
    }

    /// The answer once the road let the action through: the forwarded response, or 200 with
    /// the tunnel started. `end` is the rest of the road, finished by the close record.
    pub(super) fn respond(
        mut self,
        end: Option<Box<dyn OpenEnd>>,
        admitted: Arc<Admitted>,
    ) -> Response<ProxyBody> {
        match self.opened.take() {
            Some(Opened::Tunnel {
                stream,
                mut close,
                cut,
            }) => {
                close.end = end;
                let Some(mut req) = self.req.take() else {
                    return refusal_of(&Refused::code(ErrorCode::Internal));
                };
                let upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(tunnel::run_tunnel(
                    Arc::clone(&self.shared),
                    upgrade,
                    stream,
                    close,
                    (self.slot.take(), admitted),
                    cut,
                ));
                Response::new(empty())
            }
            Some(Opened::Forwarded(forwarded)) => forwarded.respond(end),
            None => refusal_of(&Refused::code(ErrorCode::Internal)),
        }
    }

    /// Ends an execute that failed: its close record waits for the road's record.
    fn fail(&mut self, close: CloseOnDrop, reason: ProxyReason) -> Refused {
        self.failed = close.failed(reason);
        Refused::proxy(reason)
    }

    fn decision(&self, allow: bool, reason: &str) -> DecisionRecord {
        let grant = self.grant.as_ref().filter(|_| allow);
        DecisionRecord {
            head: self.head.clone(),
            allow,
            reason: match grant {
                Some(grant) => grant.reason.as_str().into(),
                None => reason.to_owned().into(),
            },
            rule: grant.and_then(|g| g.rule.as_ref().map(|rule| rule.to_string())),
            lease: grant.and_then(|g| g.lease.clone()),
            resolved: self.resolved.clone(),
            dialed: self.dialed.filter(|_| allow),
        }
    }
}

#[async_trait]
impl EgressSteps for ProxySteps {
    async fn validate(&mut self) -> Result<(), Refused> {
        let Some(phase1) = self.phase1.take() else {
            return Err(Refused::code(ErrorCode::Internal));
        };
        let (dialed, grant) = match phase1 {
            Phase1::Deny(denial) => return Err(Refused::posture(denial.reason)),
            Phase1::DialLiteral { addr, grant, .. } => (addr, grant),
            Phase1::Resolve(plan) => {
                // INVARIANT (one-lookup): the only lookup for this request; the dialed address
                // is the one `vet` picked from this answer.
                self.resolved = self
                    .shared
                    .deps
                    .resolver
                    .lookup(plan.name.as_str())
                    .await
                    .unwrap_or_default();
                match vet(&self.policy, &plan, &self.resolved) {
                    Phase2::Dial(addr) => (addr, plan.grant),
                    Phase2::Deny(reason) => return Err(Refused::posture(reason)),
                }
            }
        };
        if self.head.surface == Surface::Connect {
            let limit = self.shared.deps.limits.tunnels_per_agent;
            self.slot = Some(
                self.shared
                    .slots
                    .acquire(&self.caller.agent, limit)
                    .ok_or(Refused::proxy(ProxyReason::TunnelLimit))?,
            );
        }
        self.dialed = Some(dialed);
        self.grant = Some(grant);
        Ok(())
    }

    fn admission(&self) -> Option<DecisionRecord> {
        self.grant.as_ref()?;
        self.dialed?;
        Some(self.decision(true, ""))
    }

    async fn execute(&mut self, leave: Leave) -> Result<(), Refused> {
        let (Some(dialed), Some(_)) = (self.dialed, &self.grant) else {
            return Err(Refused::code(ErrorCode::Internal));
        };
        let surface = self.head.surface;
        // A tunnel outlives its client connection (the upgrade), so it has a cut of its own.
        let cut = match surface {
            Surface::Connect => Arc::new(Cut::default()),
            Surface::Http | Surface::Dns => Arc::clone(&self.connection_cut),
        };
        let live_caller = LiveCaller {
            agent: self.caller.agent.clone(),
            project: self.caller.project.clone(),
        };
        let live = self
            .shared
            .deps
            .live
            .register(live_caller, Arc::clone(&cut));
        let close = CloseOnDrop {
            events: Arc::clone(&self.shared.deps.events),
            end: None,
            live: Some((live, Arc::clone(&cut))),
            record: Some(CloseRecord {
                head: self.head.clone(),
                dialed,
                bytes_up: 0,
                bytes_down: 0,
                duration_ms: 0,
                reason: ProxyReason::Closed.as_str(),
            }),
            counters: Arc::new(Counters::default()),
            base: (0, 0),
            started: self.started,
        };
        match surface {
            Surface::Connect => match tunnel::dial(&self.shared, dialed, &leave).await {
                Ok(stream) => {
                    self.opened = Some(Opened::Tunnel { stream, close, cut });
                    Ok(())
                }
                Err(reason) => Err(self.fail(close, reason)),
            },
            Surface::Http | Surface::Dns => {
                let Some(req) = self.req.take() else {
                    return Err(self.fail(close, ProxyReason::UpstreamFailed));
                };
                let key = PoolKey {
                    agent: self.caller.agent.clone(),
                    dialed,
                    authority: self.head.target.clone(),
                };
                match forward::forward(&self.shared, req, key, close, &leave).await {
                    Ok(forwarded) => {
                        self.opened = Some(Opened::Forwarded(forwarded));
                        Ok(())
                    }
                    Err((close, reason)) => Err(self.fail(close, reason)),
                }
            }
        }
    }

    fn ends_later(&self) -> bool {
        self.opened.is_some()
    }

    fn record(&self, allow: bool, reason: &str) -> EgressRecord {
        match &self.failed {
            Some(close) => EgressRecord::Close(close.clone()),
            None => EgressRecord::Decision(self.decision(allow, reason)),
        }
    }
}
