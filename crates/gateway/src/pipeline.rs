//! The pipeline's stages, in one place. Fronts translate their protocol into calls here and the
//! outcome back; they never reimplement a stage.
//!
//! Stages present so far: `identify` (with the kill switch), `gate`, `limit`, `settle` and
//! `release`. Later stages (validate, sanitize, approve, execute, gate out) are added here as their
//! issues land.
//!
//! # How a front uses the stages
//!
//! ```text
//! let identified = pipeline::identify(&state, &headers, &correlation).await?; // 401, 503 killswitch_engaged
//! pipeline::gate(&state, &identified, action, resource, context, &correlation).await?;
//! // or gate_all for several keys that must all allow (their events share one group commit),
//! // or decide + Decided::record to record a decision together with the front's own event.
//! let grant = pipeline::limit(&state, &identified, &Metered::Tool { name }, &correlation).await?;
//! // or Metered::Llm { model, input_tokens, max_output_tokens }; for LLM calls, call the model
//! // `grant.model()` names: the soft throttle may have downgraded it.
//! match execute(...).await {
//!     Ok(result) => pipeline::settle(&state, grant, &Actual::Llm { input_tokens, output_tokens }, &correlation).await,
//!     Err(_) => pipeline::release(&state, grant, &correlation).await,
//! }
//! ```
//!
//! `limit` answers 429 `rate_limited` (with `Retry-After`) or a budget refusal (`budget_exceeded`,
//! `budget_paused`, `budget_unpriced_model`, `budget_unpriced_tool`, `approval_required`) as an
//! [`ApiError`]; each front carries its code in its own envelope. A grant that is neither settled
//! nor released (a dropped request) holds its reservation until the reservation expires
//! ([`expire_reservations`] releases it, one `budget.expired` event each).

mod budget;
mod limit;
pub mod road;

pub use budget::{EXPIRY_INTERVAL, expire_reservations, release_expired};
pub use limit::{Actual, Grant, Metered, limit, release, settle};

use axum::http::HeaderMap;
use portcullis_core::request::RequestContext;
use portcullis_core::{CorrelationId, Decision, ErrorCode, Event, GateKey, Request};
use portcullis_policy::Explanation;

use crate::error::ApiError;
use crate::identity::{Identified, IdentifyError};

/// What the pipeline uses, and nothing of the fronts: configuration, the store and its events,
/// identity, the policy engine, secrets and the guardrails. Fronts hold it (through
/// `http::AppState`) and hand it to the stages; the pipeline imports no front.
#[derive(Debug)]
pub struct Core {
    pub config: std::sync::Arc<crate::config::Config>,
    pub store: std::sync::Arc<dyn portcullis_store::Store>,
    pub events: crate::events::Events,
    pub identity: crate::identity::Identity,
    pub metrics: crate::metrics::Metrics,
    pub clock: std::sync::Arc<dyn portcullis_core::Clock>,
    /// The policy engine in service and its sources.
    pub policy: std::sync::Arc<crate::policy::PolicyRuntime>,
    /// Secrets held for upstreams and providers.
    pub secrets: std::sync::Arc<crate::secrets::Secrets>,
    /// The kill switch, budgets and rate limits.
    pub guardrails: std::sync::Arc<crate::guardrails::Guardrails>,
}

/// The sanitizer scope of a caller (stages sanitize in and out): its agent and session, or
/// without a session this request, so synthetic stand-ins are stable within a session and never
/// shared across agents.
pub fn sanitize_scope(
    identified: &Identified,
    correlation: &CorrelationId,
) -> portcullis_sanitize::Scope {
    portcullis_sanitize::Scope::new(format!(
        "{}\0{}",
        identified.agent.id,
        identified
            .subject
            .session
            .as_deref()
            .unwrap_or(correlation.as_str())
    ))
}

/// Stage 1, identify: authenticates the agent and reads the identity headers, then refuses the
/// request while a kill switch covering the agent (globally, the agent, or its project) is
/// engaged. A refusal is an event (`agent.auth` or `killswitch.refused`, deny) and an error for
/// the front to answer (401, 400, or 503 `killswitch_engaged`).
pub async fn identify(
    state: &Core,
    headers: &HeaderMap,
    correlation: &CorrelationId,
) -> Result<Identified, ApiError> {
    match state.identity.identify(headers).await {
        Ok(identified) => {
            killswitch_check(state, &identified, correlation).await?;
            Ok(identified)
        }
        Err(err) => {
            let code = err.code();
            let mut event = Event::new("agent.auth", Decision::Deny, code.as_str())
                .correlation(correlation.as_str());
            if let IdentifyError::IdentityHeaderRefused { agent } = &err {
                event = event.subject(agent.clone());
            }
            tracing::info!(correlation = %correlation, error = %err, "agent refused");
            state.events.emit_best_effort(event).await;
            Err(ApiError::new(code))
        }
    }
}

/// Refuses `identified` with 503 `killswitch_engaged` while a kill switch covers it; the refusal
/// is a `killswitch.refused` event. Fronts that identify callers on their own (the forward proxy)
/// call this, or [`crate::guardrails::killswitch::KillSwitch::engaged_for`], right after.
pub async fn killswitch_check(
    state: &Core,
    identified: &Identified,
    correlation: &CorrelationId,
) -> Result<(), ApiError> {
    let Some(scope) = state
        .guardrails
        .killswitch
        .engaged_for(&identified.agent.id, identified.subject.project.as_deref())
    else {
        return Ok(());
    };
    let code = ErrorCode::KillswitchEngaged;
    state
        .events
        .emit_best_effort(
            Event::new("killswitch.refused", Decision::Deny, code.as_str())
                .subject(identified.agent.id.clone())
                .correlation(correlation.as_str())
                .data(serde_json::json!({"scope": scope.to_string()})),
        )
        .await;
    Err(ApiError::new(code))
}

/// Stage 2, gate: asks the policy engine about `action` on `resource` for the identified caller.
/// Every decision is a `policy.decision` event (decision, reason, layer, rule; never arguments).
/// A deny answers the explanation's registry code (`policy_denied`, `rate_limited` for a used-up
/// quota, `policy_error`); an allow that cannot be recorded is refused (`store_unavailable`).
pub async fn gate(
    state: &Core,
    identified: &Identified,
    action: GateKey,
    resource: String,
    context: RequestContext,
    correlation: &CorrelationId,
) -> Result<Explanation, ApiError> {
    decide(state, identified, action, resource, context, correlation)
        .record(state)
        .await
}

/// [`gate`] for several keys that must all allow, decided in order up to the first deny. The
/// decisions made are recorded together (their appends share one group commit, so a request
/// pays for one durable write rather than one per key); the first deny answers its code.
pub async fn gate_all(
    state: &Core,
    identified: &Identified,
    gates: impl IntoIterator<Item = (GateKey, String, RequestContext)>,
    correlation: &CorrelationId,
) -> Result<(), ApiError> {
    let mut decided = Vec::new();
    let mut denied = None;
    for (action, resource, context) in gates {
        let decision = decide(state, identified, action, resource, context, correlation);
        denied = decision.refusal();
        decided.push(decision);
        if denied.is_some() {
            break;
        }
    }
    let recorded = futures::future::join_all(decided.into_iter().map(|d| d.record(state))).await;
    match denied {
        Some(err) => Err(err),
        None => recorded.into_iter().try_for_each(|r| r.map(drop)),
    }
}

/// The gate's decision before it is recorded: [`gate`] in two steps, for a front that records
/// the decision together with another event (one group commit). Quota use is counted when
/// deciding.
pub fn decide(
    state: &Core,
    identified: &Identified,
    action: GateKey,
    resource: String,
    context: RequestContext,
    correlation: &CorrelationId,
) -> Decided {
    let request = Request {
        subject: identified.subject.clone(),
        action,
        resource,
        context,
    };
    let explanation = state
        .policy
        .decide(&request, &identified.agent.allow, state.clock.now());
    let event = decision_event(&request, &explanation).correlation(correlation.as_str());
    Decided { explanation, event }
}

/// One decision of the gate and its `policy.decision` event, from [`decide`].
#[derive(Debug)]
pub struct Decided {
    /// What the policy engine answered.
    pub explanation: Explanation,
    event: Event,
}

impl Decided {
    /// `None` for an allow; for a deny, the error to answer (the explanation's registry code).
    pub fn refusal(&self) -> Option<ApiError> {
        (!self.explanation.is_allow()).then(|| {
            ApiError::new(
                self.explanation
                    .error_code()
                    .unwrap_or(ErrorCode::PolicyDenied),
            )
        })
    }

    /// The decision's `policy.decision` event, for a caller that appends it itself.
    pub fn into_event(self) -> Event {
        self.event
    }

    /// Appends the decision's event and answers the gate's outcome: the explanation for an allow,
    /// `store_unavailable` for an allow that cannot be recorded (fail closed), the refusal for a
    /// deny (whose failed append is only logged: the request is refused anyway).
    pub async fn record(self, state: &Core) -> Result<Explanation, ApiError> {
        let refusal = self.refusal();
        let appended = state.events.emit(self.event).await;
        match refusal {
            Some(err) => Err(err),
            None => appended
                .map(|_| self.explanation)
                .map_err(|_| ApiError::new(ErrorCode::StoreUnavailable)),
        }
    }
}

/// The `policy.decision` event of one explanation: the gate key, layer, rule and any reported
/// deny. The resource and the arguments stay out of the ledger.
pub fn decision_event(request: &Request, explanation: &Explanation) -> Event {
    Event::new(
        "policy.decision",
        explanation.event_decision(),
        explanation.reason,
    )
    .subject(request.subject.agent.clone())
    .data(serde_json::json!({
        "action": request.action.as_str(),
        "layer": explanation.layer,
        "rule": explanation.rule,
        "report": explanation.report,
    }))
}
