//! The pipeline's stages, in one place. Fronts translate their protocol into calls here and the
//! outcome back; they never reimplement a stage.
//!
//! Stages present so far: `identify`, `gate`. Later stages (gate, validate, sanitize, limit, approve,
//! execute, gate out, settle) are added here as their issues land.

use axum::http::HeaderMap;
use portcullis_core::request::RequestContext;
use portcullis_core::{CorrelationId, Decision, ErrorCode, Event, GateKey, Request};
use portcullis_policy::Explanation;

use crate::error::ApiError;
use crate::http::AppState;
use crate::identity::{Identified, IdentifyError};

/// Stage 1, identify: authenticates the agent and reads the identity headers. A refusal is an
/// event (`agent.auth`, deny) and an error for the front to answer.
pub async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    correlation: &CorrelationId,
) -> Result<Identified, ApiError> {
    match state.identity.identify(headers).await {
        Ok(identified) => Ok(identified),
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

/// Stage 2, gate: asks the policy engine about `action` on `resource` for the identified caller.
/// Every decision is a `policy.decision` event (decision, reason, layer, rule; never arguments).
/// A deny answers the explanation's registry code (`policy_denied`, `rate_limited` for a used-up
/// quota, `policy_error`); an allow that cannot be recorded is refused (`store_unavailable`).
pub async fn gate(
    state: &AppState,
    identified: &Identified,
    action: GateKey,
    resource: String,
    context: RequestContext,
    correlation: &CorrelationId,
) -> Result<Explanation, ApiError> {
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
    if explanation.is_allow() {
        state
            .events
            .emit(event)
            .await
            .map_err(|_| ApiError::new(ErrorCode::StoreUnavailable))?;
        Ok(explanation)
    } else {
        state.events.emit_best_effort(event).await;
        Err(ApiError::new(
            explanation.error_code().unwrap_or(ErrorCode::PolicyDenied),
        ))
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
