//! The egress front: plugs the forward proxy and the DNS guard (`portcullis-egress`) into
//! identity, the road, events and leases, and serves preview, leases and settings over HTTP
//! (its own routes: [`agent_router`], [`admin_router`]).
//!
//! Every proxied request, tunnel and DNS answer crosses the pipeline's road (`road`): the
//! policy engine decides the target's `net:*` keys, then `portcullis_netpolicy`'s posture, then
//! the dial or lookup. This module only translates.

mod cutoff;
mod leases;
mod preview;
mod road;
#[cfg(test)]
mod tests;

pub use leases::{LeaseBook, MAX_LEASE_TTL, MAX_LEASES, sweep_leases};
pub use preview::{
    ANONYMOUS, PreviewGate, PreviewGated, PreviewRequest, anonymous_subject, offline_policy_state,
    preview,
};
pub use road::{AgentRoad, AnonymousRoad, close_event, decision_event, kind_of, surface_context};

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use portcullis_core::{Clock, CorrelationId, Decision, ErrorCode, Event};
use portcullis_egress::{
    Caller, CloseRecord, Credential, DecisionRecord, EgressEvents, PolicyHandle, ProxyAuth,
    RecordError, Resolver,
};
use portcullis_netpolicy::{EgressConfig, EgressPolicy};

use crate::admin::AdminCaller;
use crate::error::{ApiError, ApiJson};
use crate::events::Events;
use crate::http::AppState;
use crate::identity::Identity;

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
            road: Arc::new(AgentRoad {
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

/// The egress ledger for the records the road does not write: refusals before it (the kill
/// switch, a malformed request) and the close record of a connection whose road was dropped
/// while it was dialed.
#[derive(Debug)]
pub struct EgressLedger(pub Events);

#[async_trait]
impl EgressEvents for EgressLedger {
    async fn decision(&self, record: DecisionRecord) -> Result<(), RecordError> {
        let allow = record.allow;
        let event = road::decision_event(record);
        if allow {
            self.0.emit(event).await.map(drop).map_err(|_| RecordError)
        } else {
            self.0.emit_best_effort(event).await;
            Ok(())
        }
    }

    async fn close(&self, record: CloseRecord) {
        self.0.emit_best_effort(road::close_event(record)).await;
    }
}

/// `/egress/preview` (agents) — mounted at the top level.
pub fn agent_router() -> Router<AppState> {
    Router::new().route("/egress/preview", post(preview::agent_preview))
}

/// `/admin/egress/*` and `/admin/leases` — mounted under the admin router.
pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/egress/settings", get(get_settings).post(set_settings))
        .route("/egress/preview", post(preview::admin_preview))
        .route(
            "/leases",
            get(leases::list_leases).post(leases::grant_lease),
        )
        .route("/leases/{id}", delete(leases::revoke_lease))
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
            road: Arc::new(AnonymousRoad {
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
