//! Preview: the egress decision exactly as the proxy would make it, as a dry run (nothing is
//! dialed, quota hits are read, never counted), for `POST /egress/preview`, `POST
//! /admin/egress/preview` and `portcullis egress preview`. A preview is no action: it does not
//! cross the road, and its `policy.decision` events are recorded best effort.
//!
//! Previews without an agent decide as the anonymous subject [`ANONYMOUS`] of a project, like
//! the DNS guard, which no agent can be, so the allowlist layer never admits it and only a Cedar
//! `permit` naming it does.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use jiff::Timestamp;
use portcullis_core::request::RequestContext;
use portcullis_core::{CorrelationId, ErrorCode, Event, GateKey, GatePattern, Request, Subject};
use portcullis_egress::{LookupError, Resolver};
use portcullis_netpolicy::{
    EgressPolicy, GateKeys, Host, Lease, LookupAnswer, Phase1, Reason, TargetRequest,
};
use portcullis_policy::explain::{layer, reason};
use portcullis_policy::{Explanation, PolicyEngine, PolicyState, Verdict};
use serde::Deserialize;

use crate::error::{ApiError, ApiJson};
use crate::http::AppState;
use crate::pipeline;

pub use portcullis_egress::ANONYMOUS;

/// Longest target accepted by preview.
const MAX_TARGET_LEN: usize = 2048;

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
/// name: the policy engine on the parsed target's `net:*` keys (a dry run: quota hits are read,
/// not counted), then the posture and the lookup. Shared by `/egress/preview` and `portcullis egress
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
        // The road's gate comes before the posture's verdict, so it decides a target the
        // posture denies too.
        Phase1::Deny(denial) => denial.target.as_ref().map(|target| {
            (
                policy.gate_keys(&target.host, Some(target.port)),
                target.port,
            )
        }),
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

/// The anonymous subject of `project`.
pub fn anonymous_subject(project: Option<String>) -> Subject {
    Subject {
        agent: ANONYMOUS.to_owned(),
        project,
        ..Subject::default()
    }
}

fn keyed(keys: &GateKeys, surface: &str) -> Option<Vec<(GateKey, String, RequestContext)>> {
    keys.keys
        .iter()
        .map(|key| {
            GateKey::parse(key).ok().map(|key| {
                let context = RequestContext {
                    arguments: serde_json::json!({ "surface": surface }),
                    ..RequestContext::default()
                };
                (key, keys.host.clone(), context)
            })
        })
        .collect()
}

/// The policy engine as a preview asks it: a dry run (quota hits read, never counted).
#[derive(Debug)]
pub struct PreviewGate<'a> {
    pub engine: &'a PolicyEngine,
    pub state: &'a PolicyState,
    /// The agent previewed for, or the anonymous subject.
    pub subject: Subject,
    /// That agent's allowlist (empty for the anonymous subject).
    pub allow: &'a [GatePattern],
}

/// What a preview's policy gate answered: the explanations in key order (up to the first deny)
/// and the `policy.decision` events to record.
#[derive(Debug, Default)]
pub struct PreviewGated {
    pub denied: Option<Explanation>,
    pub events: Vec<Event>,
}

impl PreviewGate<'_> {
    /// Decides every key (dry run) up to the first deny.
    pub fn decide(&self, keys: &GateKeys, now: jiff::Timestamp) -> PreviewGated {
        let mut res = PreviewGated::default();
        let Some(gates) = keyed(keys, "preview") else {
            res.denied = Some(Explanation {
                decision: Verdict::Deny,
                layer: layer::DEFAULT,
                rule: None,
                reason: reason::POLICY_ERROR,
                report: None,
            });
            return res;
        };
        for (action, resource, context) in gates {
            let request = Request {
                subject: self.subject.clone(),
                action,
                resource,
                context,
            };
            let explanation =
                crate::policy::explain(self.engine, self.state, &request, self.allow, now);
            res.events
                .push(pipeline::decision_event(&request, &explanation));
            if !explanation.is_allow() {
                res.denied = Some(explanation);
                break;
            }
        }
        res
    }
}

/// Policy state for an offline preview (`portcullis egress preview`): no capsules, in-memory
/// quota counters.
pub fn offline_policy_state() -> PolicyState {
    PolicyState::in_memory()
}

pub(super) async fn agent_preview(
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
pub(super) async fn admin_preview(
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
