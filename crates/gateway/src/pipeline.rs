//! The pipeline's stages, in one place. Fronts translate their protocol into calls here and the
//! outcome back; they never reimplement a stage.
//!
//! Stages present so far: `identify`. Later stages (gate, validate, sanitize, limit, approve,
//! execute, gate out, settle) are added here as their issues land.

use axum::http::HeaderMap;
use portcullis_core::{CorrelationId, Decision, Event};

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
