//! What the ledger keeps of one LLM call (the `llm.call` event): model, provider, tokens,
//! redaction counts, settlement and cost; never content, never keys.

use portcullis_core::{Decision, Event, MicroUsd};
use portcullis_llm::Usage;
use portcullis_sanitize::Counts;
use serde_json::json;

use crate::http::AppState;
use crate::metrics::Metrics;
use crate::pipeline::Actual;
use crate::pipeline::road::Kind;

/// The endpoint a call came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Endpoint {
    Chat,
    Embeddings,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Embeddings => "embeddings",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Endpoint::Chat => Kind::LlmChat,
            Endpoint::Embeddings => Kind::LlmEmbed,
        }
    }
}

/// What the ledger keeps of one call: never content.
#[derive(Debug)]
pub(super) struct CallRecord {
    endpoint: Endpoint,
    agent: String,
    pub model: String,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub stream: bool,
    pub downgraded: bool,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub usage_reported: bool,
    pub sanitized: Counts,
    pub redacted: usize,
    pub settlement: &'static str,
    /// What the settled usage cost by the price table, when the model has a price.
    pub cost: Option<MicroUsd>,
    pub upstream_status: Option<u16>,
    started: tokio::time::Instant,
}

impl CallRecord {
    pub fn new(endpoint: Endpoint, agent: &str, started: tokio::time::Instant) -> Self {
        Self {
            endpoint,
            agent: agent.to_owned(),
            model: String::new(),
            provider: None,
            upstream_model: None,
            stream: false,
            downgraded: false,
            input_tokens: 0,
            output_tokens: 0,
            usage_reported: false,
            sanitized: Counts::default(),
            redacted: 0,
            settlement: "none",
            cost: None,
            upstream_status: None,
            started,
        }
    }

    /// Settled to `usage` at the price of `model` (the name the budget's grant called).
    pub fn settled(
        &mut self,
        state: &AppState,
        model: &str,
        usage: Usage,
        settlement: &'static str,
    ) {
        self.input_tokens = usage.input_tokens;
        self.output_tokens = usage.output_tokens;
        self.settlement = settlement;
        let plan = state.guardrails.budgets.plan();
        self.cost = portcullis_budget::actual_llm(
            &plan.prices,
            model,
            usage.input_tokens,
            usage.output_tokens,
        )
        .ok();
    }

    /// What the call consumed, for settle.
    pub fn actual(&self) -> Actual {
        Actual::Llm {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
        }
    }

    /// The `llm.call` event with this outcome (and its metric).
    pub fn event(&self, metrics: &Metrics, decision: Decision, reason: &str) -> Event {
        metrics.increment(
            "portcullis_llm_calls_total",
            &[
                ("endpoint", self.endpoint.as_str().to_owned()),
                ("outcome", reason.to_owned()),
            ],
        );
        Event::new("llm.call", decision, reason)
            .subject(self.agent.clone())
            .data(json!({
                "endpoint": self.endpoint.as_str(),
                "model": self.model,
                "provider": self.provider,
                "upstream_model": self.upstream_model,
                "stream": self.stream,
                "downgraded": self.downgraded,
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "usage": if self.usage_reported { "reported" } else { "estimated" },
                "sanitized": self.sanitized.to_json(),
                "redacted_secrets": self.redacted,
                "settlement": self.settlement,
                "cost_micro_usd": self.cost.map(|cost| cost.0),
                "upstream_status": self.upstream_status,
                "latency_us": u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            }))
    }
}
