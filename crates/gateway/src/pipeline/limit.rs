//! Stage 5, limit (rate limits, then budget reservation), and stage 9, settle or release.

use portcullis_core::{CorrelationId, Decision, ErrorCode, Event, MicroUsd};

use super::Core;
use super::budget::{self, Held};
use crate::config::limits::LimitMode;
use crate::error::ApiError;
use crate::guardrails::rates::CallName;
use crate::identity::Identified;

/// What a call is about to consume, as the `limit` stage sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Metered {
    /// An MCP tool call, by tool name.
    Tool { name: String },
    /// An LLM call: the model asked for, the prompt's (estimated) input tokens and the most
    /// output tokens the call may produce.
    Llm {
        model: String,
        input_tokens: u64,
        max_output_tokens: u64,
    },
}

impl Metered {
    fn call_name(&self) -> CallName<'_> {
        match self {
            Metered::Tool { name } => CallName::Tool(name),
            Metered::Llm { model, .. } => CallName::Model(model),
        }
    }
}

/// What a call actually consumed, for `settle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actual {
    /// A tool call that ran (one call).
    Tool,
    /// An LLM call and the provider's token counts.
    Llm {
        input_tokens: u64,
        output_tokens: u64,
    },
}

/// Leave to run one call, from [`limit`]. Settle it with [`settle`] once the call ran, or give it
/// back with [`release`] when it did not.
#[derive(Debug)]
#[must_use = "settle or release the grant"]
pub struct Grant {
    metered: Metered,
    model: Option<String>,
    agent: String,
    /// The budget reservation, when a budget applies.
    held: Option<Held>,
}

impl Grant {
    /// For LLM calls, the model to call: the one asked for, or the budget's `downgrade_to`
    /// when the soft throttle downgraded the call. `None` for tool calls.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The budget reservation's id, when a budget applies to the call.
    pub fn reservation(&self) -> Option<portcullis_budget::ReservationId> {
        self.held.as_ref().map(|held| held.id)
    }

    /// Whether the soft throttle replaced the model asked for.
    pub fn downgraded(&self) -> bool {
        match &self.metered {
            Metered::Llm { model, .. } => self.model.as_deref() != Some(model.as_str()),
            Metered::Tool { .. } => false,
        }
    }
}

/// Stage 5, limit: applies the rate rules (429 `rate_limited` with `Retry-After`, or in report
/// mode a `limit.rate` report event and no refusal), then reserves the call's estimate in every
/// budget that applies (429 `budget_exceeded`, `budget_paused`, 403 `budget_unpriced_model`,
/// `budget_unpriced_tool`, `approval_required`; see docs/BUDGETS.md). The soft throttle may
/// delay the call or downgrade its model ([`Grant::model`]).
pub async fn limit(
    state: &Core,
    identified: &Identified,
    metered: &Metered,
    correlation: &CorrelationId,
) -> Result<Grant, ApiError> {
    let rates = &state.guardrails.rates;
    let agent = identified.agent.id.as_str();
    if let Err(hit) = rates.check(
        agent,
        identified.subject.project.as_deref(),
        metered.call_name(),
    ) {
        let (kind, name) = match metered.call_name() {
            CallName::Tool(name) => ("tool", name),
            CallName::Model(name) => ("model", name),
        };
        let report = rates.mode() == LimitMode::Report;
        let decision = if report {
            Decision::Report
        } else {
            Decision::Deny
        };
        state
            .events
            .emit_best_effort(
                Event::new("limit.rate", decision, ErrorCode::RateLimited.as_str())
                    .subject(agent)
                    .correlation(correlation.as_str())
                    .data(serde_json::json!({
                        "rule": hit.rule,
                        "call": kind,
                        "name": name,
                        "retry_after_secs": hit.retry_after_secs,
                    })),
            )
            .await;
        if !report {
            return Err(ApiError::rate_limited(hit.retry_after_secs));
        }
    }
    let admitted = budget::admit(state, identified, metered, correlation).await?;
    let model = match metered {
        Metered::Llm { model, .. } => Some(admitted.downgrade.unwrap_or_else(|| model.clone())),
        Metered::Tool { .. } => None,
    };
    Ok(Grant {
        metered: metered.clone(),
        model,
        agent: agent.to_owned(),
        held: admitted.held,
    })
}

/// Stage 9, settle: replaces the grant's reservation with what the call consumed (recorded in
/// full, even past the estimate; the overage is a `budget.overage` event). Returns what the call
/// cost by the price table, `None` when its model or tool has no price.
pub async fn settle(
    state: &Core,
    grant: Grant,
    actual: &Actual,
    correlation: &CorrelationId,
) -> Option<MicroUsd> {
    let Grant {
        metered,
        model,
        agent,
        held,
    } = grant;
    let cost = budget::cost(state, &metered, model.as_deref(), actual);
    if let Some(held) = held {
        budget::settle(state, held, cost, actual, &agent, correlation).await;
    }
    cost
}

/// Gives a grant back unused (the call did not run): its reservation is dropped.
pub async fn release(state: &Core, grant: Grant, correlation: &CorrelationId) {
    if let Some(held) = grant.held {
        budget::release_held(state, held, correlation).await;
    }
}
