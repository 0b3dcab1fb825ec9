//! The egress front: plugs the forward proxy and the DNS guard (`portcullis-egress`) into
//! identity, events and leases, and serves preview, leases and settings over HTTP.
//!
//! Every posture decision is `portcullis_netpolicy`'s; after it, the policy engine decides the
//! target's `net:*` keys (`gate`). This module only translates.

mod cutoff;
mod gate;
mod leases;
#[cfg(test)]
mod tests;

pub use gate::{
    ANONYMOUS, AgentGate, AnonymousGate, PreviewGate, PreviewGated, anonymous_subject,
    offline_policy_state,
};
pub use leases::{LeaseBook, MAX_LEASE_TTL, MAX_LEASES, sweep_leases};

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use jiff::Timestamp;
use portcullis_core::{Clock, CorrelationId, Decision, ErrorCode, Event};
use portcullis_egress::{
    Caller, CloseRecord, Credential, DecisionRecord, EgressEvents, LookupError, PolicyHandle,
    ProxyAuth, RecordError, RecordHead, Resolver,
};
use portcullis_netpolicy::{
    EgressConfig, EgressPolicy, Host, Lease, LookupAnswer, Phase1, Reason, TargetRequest,
};
use serde::Deserialize;

use crate::admin::AdminCaller;
use crate::error::{ApiError, ApiJson};
use crate::events::Events;
use crate::http::AppState;
use crate::identity::Identity;

/// Longest target accepted by preview.
const MAX_TARGET_LEN: usize = 2048;

/// Egress state shared by the proxy, the DNS guard and the HTTP routes.
#[derive(Debug)]
pub struct EgressState {
    pub policy: Arc<PolicyHandle>,
    settings: RwLock<EgressConfig>,
    pub leases: Arc<LeaseBook>,
    pub resolver: Arc<dyn Resolver>,
    /// The proxy's open tunnels and in-flight requests, cut by `cutoff`.
    pub live: Arc<portcullis_egress::LiveConnections>,
}

impl EgressState {
    pub fn new(
        settings: EgressConfig,
        policy: EgressPolicy,
        resolver: Arc<dyn Resolver>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            policy: Arc::new(PolicyHandle::new(policy)),
            settings: RwLock::new(settings),
            leases: Arc::new(LeaseBook::new(clock)),
            resolver,
            live: Arc::default(),
        }
    }

    pub fn settings(&self) -> EgressConfig {
        self.settings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Proxy authentication through the identity registry.
#[derive(Debug)]
pub struct IdentityProxyAuth(pub AppState);

#[async_trait]
impl ProxyAuth for IdentityProxyAuth {
    async fn authenticate(&self, credential: Credential<'_>) -> Option<Caller> {
        let identity: &Identity = &self.0.identity;
        let (token, claimed) = match credential {
            Credential::Basic { agent, token } => (token, Some(agent)),
            Credential::Bearer { token } => (token, None),
        };
        let identified = identity
            .identify_token(token, &HeaderMap::new())
            .await
            .ok()?;
        if claimed.is_some_and(|agent| agent != identified.agent.id) {
            return None;
        }
        Some(Caller {
            agent: identified.agent.id.clone(),
            project: identified.agent.project.clone(),
            gate: Arc::new(AgentGate {
                state: self.0.clone(),
                identified,
            }),
        })
    }

    /// The kill switch: 503 `killswitch_engaged` while it covers the caller.
    async fn refusal(&self, caller: &Caller) -> Option<ErrorCode> {
        self.0
            .guardrails
            .killswitch
            .engaged_for(&caller.agent, caller.project.as_deref())
            .map(|_| ErrorCode::KillswitchEngaged)
    }
}

/// The egress ledger: a decision record and a close record per connection, as events.
#[derive(Debug)]
pub struct EgressLedger(pub Events);

#[async_trait]
impl EgressEvents for EgressLedger {
    async fn decision(&self, record: DecisionRecord) -> Result<(), RecordError> {
        let allow = record.allow;
        let decision = if allow {
            Decision::Allow
        } else {
            Decision::Deny
        };
        let extra = serde_json::json!({
            "rule": record.rule,
            "lease": record.lease,
            "resolved": record.resolved.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "dialed": record.dialed.map(|addr| addr.to_string()),
        });
        let event = Self::event(
            "egress.decision",
            decision,
            record.reason,
            record.head,
            extra,
        );
        if allow {
            // INVARIANT (durable-allow): the proxy dials only once this allow is durable.
            self.0.emit(event).await.map(drop).map_err(|_| RecordError)
        } else {
            self.0.emit_best_effort(event).await;
            Ok(())
        }
    }

    async fn close(&self, record: CloseRecord) {
        let extra = serde_json::json!({
            "dialed": record.dialed.to_string(),
            "bytes_up": record.bytes_up,
            "bytes_down": record.bytes_down,
            "duration_ms": record.duration_ms,
        });
        let event = Self::event(
            "egress.close",
            Decision::Info,
            record.reason,
            record.head,
            extra,
        );
        self.0.emit_best_effort(event).await;
    }
}

impl EgressLedger {
    /// One egress event: the connection's head fields plus `extra`, under its correlation id.
    fn event(
        kind: &str,
        decision: Decision,
        reason: &str,
        head: RecordHead,
        extra: serde_json::Value,
    ) -> Event {
        let mut data = serde_json::json!({
            "connection": head.connection,
            "surface": head.surface.as_str(),
            "project": head.project,
            "target": head.target,
        });
        if let (Some(data), serde_json::Value::Object(extra)) = (data.as_object_mut(), extra) {
            data.extend(extra);
        }
        let mut event = Event::new(kind, decision, reason)
            .subject(head.agent)
            .data(data);
        if let Some(id) = head.correlation_id {
            event = event.correlation(id);
        }
        event
    }
}

/// `POST /egress/preview` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    pub target: String,
    #[serde(default)]
    pub connect: bool,
    #[serde(default)]
    pub project: Option<String>,
}

/// Runs the decision exactly as the proxy would, resolving at most once and never for a denied
/// name: the posture, then the policy engine on the target's `net:*` keys (a dry run: quota hits
/// are read, not counted), then the lookup. Shared by `/egress/preview` and `portcullis egress
/// preview`. Answers the preview and the `policy.decision` events to record.
pub async fn preview(
    policy: &EgressPolicy,
    request: &PreviewRequest,
    gate: &PreviewGate<'_>,
    leases: &[Lease],
    now: Timestamp,
    resolver: &dyn Resolver,
) -> (portcullis_netpolicy::Preview, Vec<Event>) {
    let target = if request.connect {
        TargetRequest::connect(&request.target)
    } else {
        TargetRequest::url(&request.target)
    };
    let agent = (gate.subject.agent != ANONYMOUS).then_some(gate.subject.agent.as_str());
    let caller = portcullis_netpolicy::Caller {
        agent,
        project: request.project.as_deref(),
    };
    let phase1 = portcullis_netpolicy::decide(policy, target, &caller, leases, now);
    let keyed = match &phase1 {
        Phase1::Resolve(plan) => Some((
            policy.gate_keys(&Host::Name(plan.name.clone()), Some(plan.port)),
            plan.port,
        )),
        Phase1::DialLiteral { target, .. } => Some((
            policy.gate_keys(&target.host, Some(target.port)),
            target.port,
        )),
        Phase1::Deny(_) => None,
    };
    let gated = keyed
        .as_ref()
        .map(|(keys, _)| gate.decide(keys, now))
        .unwrap_or_default();
    if let (Some(denied), Some((keys, port))) = (gated.denied, keyed) {
        // INVARIANT (gate-before-lookup): a target the policy engine denies is never looked up.
        let preview = portcullis_netpolicy::Preview {
            allow: false,
            reason: Reason::PolicyDenied,
            host: Some(keys.host),
            port: Some(port),
            rule: denied.rule,
            lease: None,
            lookups: 0,
            resolved: Vec::new(),
            dialed: None,
        };
        return (preview, gated.events);
    }
    let answer = match &phase1 {
        Phase1::Resolve(plan) => Some(match resolver.lookup(plan.name.as_str()).await {
            Ok(addrs) => LookupAnswer::Addrs(addrs),
            Err(LookupError::NxDomain) => LookupAnswer::NxDomain,
            Err(LookupError::Failed) => LookupAnswer::Failed,
        }),
        Phase1::Deny(_) | Phase1::DialLiteral { .. } => None,
    };
    let mut lookup = |_: &str| answer.clone().unwrap_or(LookupAnswer::Failed);
    let preview = portcullis_netpolicy::preview(policy, target, &caller, leases, now, &mut lookup);
    (preview, gated.events)
}

/// `/egress/preview` (agents) — mounted at the top level.
pub fn agent_router() -> Router<AppState> {
    Router::new().route("/egress/preview", post(agent_preview))
}

/// `/admin/egress/*` and `/admin/leases` — mounted under the admin router.
pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/egress/settings", get(get_settings).post(set_settings))
        .route("/egress/preview", post(admin_preview))
        .route(
            "/leases",
            get(leases::list_leases).post(leases::grant_lease),
        )
        .route("/leases/{id}", delete(leases::revoke_lease))
}

async fn agent_preview(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    ApiJson(mut body): ApiJson<PreviewRequest>,
) -> Result<Response, ApiError> {
    let identified = crate::pipeline::identify(&state, &headers, &correlation).await?;
    match (&body.project, &identified.agent.project) {
        (Some(asked), Some(own)) if asked != own => {
            return Err(ApiError::new(ErrorCode::Forbidden));
        }
        (Some(_), None) => return Err(ApiError::new(ErrorCode::Forbidden)),
        _ => body.project = identified.agent.project.clone(),
    }
    run_preview(
        &state,
        &body,
        identified.subject.clone(),
        &identified.agent.allow,
        &correlation,
    )
    .await
}

/// The admin preview decides for the anonymous subject of the body's project.
async fn admin_preview(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    ApiJson(body): ApiJson<PreviewRequest>,
) -> Result<Response, ApiError> {
    let subject = anonymous_subject(body.project.clone());
    run_preview(&state, &body, subject, &[], &correlation).await
}

async fn run_preview(
    state: &AppState,
    body: &PreviewRequest,
    subject: portcullis_core::Subject,
    allow: &[portcullis_core::GatePattern],
    correlation: &CorrelationId,
) -> Result<Response, ApiError> {
    if body.target.is_empty() || body.target.len() > MAX_TARGET_LEN {
        return Err(ApiError::new(ErrorCode::BadRequest));
    }
    let egress = &state.egress;
    let policy = egress.policy.current();
    let engine = state.policy.engine();
    let gate = PreviewGate {
        engine: &engine,
        state: state.policy.state(),
        subject,
        allow,
    };
    let (result, events) = preview(
        &policy,
        body,
        &gate,
        &egress.leases.active(),
        state.clock.now(),
        egress.resolver.as_ref(),
    )
    .await;
    // A preview lets nothing through, so its decisions are recorded best effort.
    for event in events {
        state
            .events
            .emit_best_effort(event.correlation(correlation.as_str()))
            .await;
    }
    Ok(Json(result).into_response())
}

async fn get_settings(State(state): State<AppState>) -> Response {
    Json(state.egress.settings()).into_response()
}

/// Replaces the egress settings; listener addresses and the proxy's limits cannot change at run
/// time (`conflict`).
async fn set_settings(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Extension(correlation): Extension<CorrelationId>,
    ApiJson(settings): ApiJson<EgressConfig>,
) -> Result<Response, ApiError> {
    let current = state.egress.settings();
    if settings.proxy_bind != current.proxy_bind
        || settings.dns_bind != current.dns_bind
        || settings.proxy_limits().ok() != current.proxy_limits().ok()
    {
        return Err(ApiError::new(ErrorCode::Conflict));
    }
    let policy = EgressPolicy::from_config(&settings).map_err(|err| {
        tracing::info!(error = %err, "egress settings refused");
        ApiError::new(ErrorCode::ConfigInvalid)
    })?;
    state
        .events
        .emit(
            Event::new("egress.settings", Decision::Info, "ok")
                .subject(crate::admin::routes::admin_subject(&caller))
                .correlation(correlation.as_str())
                .data(serde_json::json!({"posture": settings.posture})),
        )
        .await
        .map_err(|_| ApiError::new(ErrorCode::StoreUnavailable))?;
    state.egress.policy.replace(policy);
    *state
        .egress
        .settings
        .write()
        .unwrap_or_else(PoisonError::into_inner) = settings.clone();
    Ok(Json(settings).into_response())
}

/// The addresses the egress listeners actually bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EgressListeners {
    pub proxy: Option<SocketAddr>,
    pub dns: Option<SocketAddr>,
}

/// Why the egress listeners did not start.
#[derive(Debug, thiserror::Error)]
pub enum EgressStartError {
    #[error("egress settings are invalid: {0}")]
    Policy(#[from] portcullis_netpolicy::ConfigError),
    #[error("cannot read the DNS fixture {path}: {source}")]
    FixtureRead {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the DNS fixture {path} is invalid: {source}")]
    Fixture {
        path: std::path::PathBuf,
        source: portcullis_netpolicy::FixtureError,
    },
    #[error("cannot read the system resolver configuration: {0}")]
    Resolver(#[from] portcullis_egress::SystemResolverError),
    #[error("`{key}` = `{value}` is not a socket address")]
    BadBind { key: &'static str, value: String },
    #[error("cannot listen on {bind} for {what}: {source}")]
    Bind {
        what: &'static str,
        bind: SocketAddr,
        source: std::io::Error,
    },
}

/// Builds the egress state from configuration; `dns_fixture` replaces the system resolver (tests).
pub fn build_state(
    config: &EgressConfig,
    dns_fixture: Option<&std::path::Path>,
    clock: Arc<dyn Clock>,
) -> Result<EgressState, EgressStartError> {
    let policy = EgressPolicy::from_config(config)?;
    let resolver: Arc<dyn Resolver> = match dns_fixture {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| EgressStartError::FixtureRead {
                    path: path.to_path_buf(),
                    source,
                })?;
            let fixture = portcullis_netpolicy::DnsFixture::parse(&text).map_err(|source| {
                EgressStartError::Fixture {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
            Arc::new(portcullis_egress::FixtureResolver::new(fixture))
        }
        None => Arc::new(portcullis_egress::SystemResolver::from_system()?),
    };
    Ok(EgressState::new(config.clone(), policy, resolver, clock))
}

fn parse_bind(key: &'static str, value: &str) -> Result<Option<SocketAddr>, EgressStartError> {
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|_| EgressStartError::BadBind {
            key,
            value: value.to_owned(),
        })
}

/// The forward proxy's limits from `[egress]` (checked again here; `config check` checks them).
fn proxy_limits(
    settings: &EgressConfig,
) -> Result<portcullis_egress::ProxyLimits, EgressStartError> {
    let limits = settings
        .proxy_limits()
        .map_err(|err| EgressStartError::Policy(err.into()))?;
    Ok(portcullis_egress::ProxyLimits {
        header_read_timeout: limits.header_read_timeout,
        idle_timeout: limits.idle_timeout,
        max_connections: limits.max_connections,
        max_connections_per_ip: limits.max_connections_per_ip,
        tunnels_per_agent: limits.tunnels_per_agent,
        ..portcullis_egress::ProxyLimits::default()
    })
}

/// Binds and starts the forward proxy and the DNS guard (each unless its bind is empty), and the
/// lease sweeper. They stop when `stop` turns true.
pub async fn start(
    state: &AppState,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<EgressListeners, EgressStartError> {
    let settings = state.egress.settings();
    let mut listeners = EgressListeners::default();
    let stopped = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };

    if let Some(bind) = parse_bind("egress.proxy_bind", &settings.proxy_bind)? {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|source| EgressStartError::Bind {
                what: "the forward proxy",
                bind,
                source,
            })?;
        listeners.proxy = listener.local_addr().ok();
        let deps = portcullis_egress::ProxyDeps {
            policy: Arc::clone(&state.egress.policy),
            auth: Arc::new(IdentityProxyAuth(state.clone())),
            events: Arc::new(EgressLedger(state.events.clone())),
            resolver: Arc::clone(&state.egress.resolver),
            leases: state.egress.leases.clone(),
            clock: Arc::clone(&state.clock),
            limits: proxy_limits(&settings)?,
            live: Arc::clone(&state.egress.live),
        };
        tokio::spawn(portcullis_egress::run_proxy(
            listener,
            deps,
            stopped(stop.clone()),
        ));
        let cut = cutoff::cut_off(state.clone(), Arc::clone(&state.egress.live));
        let cut_stop = stopped(stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = cut => {},
                () = cut_stop => {},
            }
        });
    }

    if let Some(bind) = parse_bind("egress.dns_bind", &settings.dns_bind)? {
        let udp =
            tokio::net::UdpSocket::bind(bind)
                .await
                .map_err(|source| EgressStartError::Bind {
                    what: "the DNS guard (UDP)",
                    bind,
                    source,
                })?;
        let bound = udp.local_addr().map_err(|source| EgressStartError::Bind {
            what: "the DNS guard (UDP)",
            bind,
            source,
        })?;
        // Port 0 picks the UDP port; TCP takes the same one.
        let tcp = tokio::net::TcpListener::bind(bound)
            .await
            .map_err(|source| EgressStartError::Bind {
                what: "the DNS guard (TCP)",
                bind: bound,
                source,
            })?;
        listeners.dns = Some(bound);
        let deps = portcullis_egress::DnsDeps {
            policy: Arc::clone(&state.egress.policy),
            resolver: Arc::clone(&state.egress.resolver),
            leases: state.egress.leases.clone(),
            clock: Arc::clone(&state.clock),
            gate: Arc::new(AnonymousGate {
                state: state.clone(),
            }),
            limits: portcullis_egress::DnsLimits::default(),
        };
        tokio::spawn(portcullis_egress::run_dns_guard(
            udp,
            tcp,
            deps,
            stopped(stop.clone()),
        ));
    }

    let leases = Arc::clone(&state.egress.leases);
    let events = state.events.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = sweep_leases(leases, events) => {},
            () = stopped(stop) => {},
        }
    });
    Ok(listeners)
}
