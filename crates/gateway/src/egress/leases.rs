//! Egress leases: granted through the admin API, they widen the posture until they expire and
//! never override an explicit deny (netpolicy enforces both).

use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use jiff::SignedDuration;
use portcullis_core::{Clock, CorrelationId, Decision, ErrorCode, Event};
use portcullis_egress::LeaseSource;
use portcullis_netpolicy::{Lease, LeaseKey, LeaseSubject};
use serde::Deserialize;

use crate::admin::AdminCaller;
use crate::config::ConfigDuration;
use crate::error::{ApiError, ApiJson};
use crate::events::Events;
use crate::http::AppState;

/// Most leases held at once.
pub const MAX_LEASES: usize = 10_000;
/// Longest lease a grant may ask for.
pub const MAX_LEASE_TTL: SignedDuration = SignedDuration::from_hours(24 * 30);

/// Leases granted through the admin API. They widen the posture until they expire and never
/// override an explicit deny (netpolicy enforces both).
#[derive(Debug)]
pub struct LeaseBook {
    leases: RwLock<Vec<Lease>>,
    clock: Arc<dyn Clock>,
}

impl LeaseBook {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            leases: RwLock::new(Vec::new()),
            clock,
        }
    }

    /// The leases still running now.
    pub fn active(&self) -> Vec<Lease> {
        let now = self.clock.now();
        self.leases
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|lease| now < lease.expires_at)
            .cloned()
            .collect()
    }

    fn grant(&self, lease: Lease) -> Result<(), ErrorCode> {
        let mut leases = self.leases.write().unwrap_or_else(PoisonError::into_inner);
        if leases.len() >= MAX_LEASES {
            return Err(ErrorCode::Conflict);
        }
        leases.push(lease);
        Ok(())
    }

    fn revoke(&self, id: &str) -> Option<Lease> {
        let mut leases = self.leases.write().unwrap_or_else(PoisonError::into_inner);
        let idx = leases.iter().position(|lease| lease.id == id)?;
        Some(leases.remove(idx))
    }

    /// Removes and returns the leases that have expired.
    pub fn sweep(&self) -> Vec<Lease> {
        let now = self.clock.now();
        let mut leases = self.leases.write().unwrap_or_else(PoisonError::into_inner);
        let (expired, live): (Vec<Lease>, Vec<Lease>) =
            leases.drain(..).partition(|lease| now >= lease.expires_at);
        *leases = live;
        expired
    }
}

#[async_trait]
impl LeaseSource for LeaseBook {
    async fn leases(&self) -> Vec<Lease> {
        self.active()
    }
}

/// `POST /admin/leases` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GrantLease {
    /// `net:host:<h>`, `net:domain:<d>` or `net:port:<p>`.
    key: String,
    /// How long, e.g. `"15m"`.
    ttl: ConfigDuration,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    project: Option<String>,
}

fn lease_json(lease: &Lease) -> serde_json::Value {
    let (kind, who) = match &lease.subject {
        LeaseSubject::Agent(agent) => ("agent", agent),
        LeaseSubject::Project(project) => ("project", project),
    };
    serde_json::json!({
        "id": lease.id,
        "key": lease.key.to_string(),
        kind: who,
        "expires_at": lease.expires_at.to_string(),
    })
}

pub(super) async fn grant_lease(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Extension(correlation): Extension<CorrelationId>,
    ApiJson(body): ApiJson<GrantLease>,
) -> Result<Response, ApiError> {
    let key = LeaseKey::parse(&body.key).map_err(|_| ApiError::new(ErrorCode::BadRequest))?;
    let subject = match (body.agent, body.project) {
        (Some(agent), None) if crate::identity::is_valid_agent_id(&agent) => {
            LeaseSubject::Agent(agent)
        }
        (None, Some(project)) if !project.is_empty() && project.len() <= 128 => {
            LeaseSubject::Project(project)
        }
        _ => return Err(ApiError::new(ErrorCode::BadRequest)),
    };
    let ttl = SignedDuration::try_from(body.ttl.as_std())
        .ok()
        .filter(|ttl| !ttl.is_zero() && *ttl <= MAX_LEASE_TTL)
        .ok_or(ApiError::new(ErrorCode::BadRequest))?;
    let expires_at = state
        .clock
        .now()
        .checked_add(ttl)
        .map_err(|_| ApiError::new(ErrorCode::BadRequest))?;
    let lease = Lease {
        id: uuid_like(),
        key,
        subject,
        expires_at,
    };
    let json = lease_json(&lease);
    state
        .events
        .emit(
            Event::new("lease.granted", Decision::Info, "ok")
                .subject(crate::admin::routes::admin_subject(&caller))
                .correlation(correlation.as_str())
                .data(json.clone()),
        )
        .await
        .map_err(|_| ApiError::new(ErrorCode::StoreUnavailable))?;
    state.egress.leases.grant(lease).map_err(ApiError::new)?;
    Ok((StatusCode::CREATED, Json(json)).into_response())
}

pub(super) async fn list_leases(State(state): State<AppState>) -> Response {
    let leases: Vec<serde_json::Value> = state
        .egress
        .leases
        .active()
        .iter()
        .map(lease_json)
        .collect();
    Json(serde_json::json!({"leases": leases})).into_response()
}

pub(super) async fn revoke_lease(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Extension(correlation): Extension<CorrelationId>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let lease = state
        .egress
        .leases
        .revoke(&id)
        .ok_or(ApiError::new(ErrorCode::NotFound))?;
    state
        .events
        .emit_best_effort(
            Event::new("lease.revoked", Decision::Info, "ok")
                .subject(crate::admin::routes::admin_subject(&caller))
                .correlation(correlation.as_str())
                .data(lease_json(&lease)),
        )
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Expires leases every second and records each expiry.
pub async fn sweep_leases(leases: Arc<LeaseBook>, events: Events) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        for lease in leases.sweep() {
            events
                .emit_best_effort(
                    Event::new("lease.expired", Decision::Info, "ok").data(lease_json(&lease)),
                )
                .await;
        }
    }
}

fn uuid_like() -> String {
    format!(
        "lease-{}",
        crate::tokens::generate("").get(..16).unwrap_or("x")
    )
}
