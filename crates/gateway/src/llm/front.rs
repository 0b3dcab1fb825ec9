//! Chat completions and embeddings on the road: the front's part of each stage
//! (`pipeline::road`).
//!
//! The handler identifies the caller (a call without a trusted session is in the agent's default
//! session of the day), reads the body, masks the model string and resolves it to a provider,
//! then describes the call as an [`Action`]: gate keys `llm:model:<model>`, `io:ingress:chat`
//! (chat only) and `io:egress:chat` in, `io:ingress:llm.<provider>` (the answer entering the
//! agent's context) out; the request's top-level fields as the policy's context; the model as the
//! resource. The front supplies validate (the request's shape, a known model), sanitize in,
//! the meter (input tokens of what will be sent, the worst-case output), execute (the provider
//! call, to the model the budget's grant names), sanitize out (restore and redact, or the stream
//! rewriter) and the `llm.call` record. The road runs them in order.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use portcullis_core::request::RequestContext;
use portcullis_core::{CorrelationId, Decision, ErrorCode, Event, GateKey};
use portcullis_llm::{ChatRequest, ChatStream, EmbeddingsRequest, Family, Usage};
use portcullis_sanitize::{EntityType, SanitizeError, Vault};
use serde_json::Value;

use super::provider::{Failure, Target};
use super::record::{CallRecord, Endpoint};
use super::stream::{self, Upstream};
use super::{LlmError, LlmRuntime, answer_key};
use crate::http::AppState;
use crate::identity::Identified;
use crate::pipeline::road::{self, Action, Front, Pass, Ran, Refusal, Stage};
use crate::pipeline::{self, Actual, Metered};

/// `POST /v1/chat/completions`.
pub(super) async fn chat(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    call(state, correlation, &headers, body, Endpoint::Chat).await
}

/// `POST /v1/embeddings`.
pub(super) async fn embeddings(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    call(state, correlation, &headers, body, Endpoint::Embeddings).await
}

/// The session of a call without a trusted one: the agent's default session of the UTC day (the
/// MCP front's stateless calls use the same), so session budgets count every LLM call.
fn default_session(agent: &str, now: jiff::Timestamp) -> String {
    format!("default:{agent}:{}", now.strftime("%Y-%m-%d"))
}

/// One call, from the request to the answer.
async fn call(
    state: AppState,
    correlation: CorrelationId,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
) -> Response {
    let started = tokio::time::Instant::now();
    let mut identified = match pipeline::identify(&state, headers, &correlation).await {
        Ok(identified) => identified,
        Err(err) => return LlmError::from(err).into_response(),
    };
    // INVARIANT (session-per-call): a session is trusted only from an agent that may assert
    // identity (identify refuses the header from any other); every other call is in the agent's
    // default session, never in one the caller chose.
    if identified.subject.session.is_none() {
        identified.subject.session = Some(default_session(&identified.agent.id, state.clock.now()));
    }
    let runtime = Arc::clone(&state.llm);
    let mut record = CallRecord::new(endpoint, &identified.agent.id, started);
    let described = read(&runtime, body).and_then(|(value, model)| {
        record.model.clone_from(&model);
        let target = runtime.resolve(&model);
        let action = describe(endpoint, &model, target.as_ref(), &value)?;
        Ok((action, target, value))
    });
    let (action, target, value) = match described {
        Ok(described) => described,
        Err((err, reason)) => {
            // Nothing was decided yet: the refusal is the call's only record.
            let event = record
                .event(&state.metrics, Decision::Deny, reason)
                .correlation(correlation.as_str());
            state.events.emit_best_effort(event).await;
            return err.into_response();
        }
    };
    let mut front = LlmCall {
        state: &state,
        identified: &identified,
        correlation: &correlation,
        runtime: &runtime,
        endpoint,
        target,
        body: Some(value),
        request: None,
        vault: Vault::new(),
        record,
        max_output: 0,
        priced_model: String::new(),
        answer: None,
    };
    match road::run(&state.core, &identified, action, &mut front, &correlation).await {
        Ok(Ran {
            output: Answer::Whole(answer),
            ..
        }) => axum::Json(answer).into_response(),
        Ok(Ran {
            output: Answer::Rewritten(rewritten),
            open: Some(open),
            ..
        }) => stream::respond(
            &state,
            Arc::clone(&runtime),
            &identified,
            &correlation,
            front.record,
            *rewritten,
            open,
        ),
        Ok(_) => {
            // INVARIANT (restored-before-agent): only a rewritten stream reaches the agent, and
            // only with the rest of its road.
            tracing::error!(correlation = %correlation, "a stream left the road unsanitized");
            LlmError::new(ErrorCode::Internal).into_response()
        }
        Err(stopped) => front.answer(&stopped.refusal).into_response(),
    }
}

/// Reads the body and its model (masked); `Err` is the answer and the reason recorded.
fn read(
    runtime: &LlmRuntime,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Value, String), (LlmError, &'static str)> {
    let invalid = || (LlmError::new(ErrorCode::BadRequest), "llm_request_invalid");
    let body = body.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            (
                LlmError::new(ErrorCode::PayloadTooLarge),
                ErrorCode::PayloadTooLarge.as_str(),
            )
        } else {
            invalid()
        }
    })?;
    let value: Value = serde_json::from_slice(&body).map_err(|_| invalid())?;
    let model = value
        .get("model")
        .and_then(Value::as_str)
        .filter(|model| model.len() <= portcullis_llm::request::MAX_MODEL_LEN)
        .ok_or_else(invalid)?;
    // INVARIANT (caller-strings-masked): the model is the agent's own string; what the gate, the
    // ledger and routing see has its secrets and personal data masked (a pasted key is then
    // simply an unknown model).
    let model = runtime.mask(model).ok_or_else(invalid)?;
    Ok((value, model))
}

/// The call as the road sees it.
fn describe(
    endpoint: Endpoint,
    model: &str,
    target: Option<&Target<'_>>,
    request: &Value,
) -> Result<Action, (LlmError, &'static str)> {
    let model_key = GateKey::parse(&format!("llm:model:{model}"))
        .map_err(|_| (LlmError::new(ErrorCode::BadRequest), "llm_request_invalid"))?;
    let internal = || (LlmError::new(ErrorCode::Internal), "internal");
    // Chat messages enter the model's context (`io:ingress:chat`, chat only) and leave through
    // the provider (`io:egress:chat`, chat and embeddings).
    let mut gates_in = vec![model_key];
    if endpoint == Endpoint::Chat {
        gates_in.push(GateKey::parse("io:ingress:chat").map_err(|_| internal())?);
    }
    gates_in.push(GateKey::parse("io:egress:chat").map_err(|_| internal())?);
    // The answer enters the agent's context from the provider resolved here; an unknown model
    // has none and is refused at validate.
    let gates_out = match target {
        Some(target) => vec![answer_key(&target.provider.name).ok_or_else(internal)?],
        None => Vec::new(),
    };
    Ok(Action {
        kind: endpoint.kind(),
        gates_in,
        gates_out,
        resource: model.to_owned(),
        context: RequestContext {
            arguments: policy_arguments(request),
            ..RequestContext::default()
        },
    })
}

/// What Cedar sees of an OpenAI request as `context.arguments`: its top-level fields (`model`,
/// `temperature`, `max_tokens`, `user`, `metadata`, ...) except the content ones (`messages`,
/// `input`, `tools`, `functions`), which the sanitizer, not the policy, looks into.
fn policy_arguments(request: &Value) -> Value {
    const CONTENT: [&str; 5] = ["messages", "input", "prompt", "tools", "functions"];
    match request {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(key, _)| !CONTENT.contains(&key.as_str()))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        ),
        _ => Value::Object(serde_json::Map::new()),
    }
}

/// A checked request.
enum Request {
    Chat(ChatRequest),
    Embeddings(EmbeddingsRequest),
}

/// What the executor produced.
pub(super) enum Answer {
    /// A whole JSON answer.
    Whole(Value),
    /// A provider stream, not yet rewritten (never sent as is).
    Stream(Box<Upstream>),
    /// A provider stream behind its rewriter (sanitize out).
    Rewritten(Box<stream::Rewritten>),
}

/// One call as the road sees it.
struct LlmCall<'a> {
    state: &'a AppState,
    identified: &'a Identified,
    correlation: &'a CorrelationId,
    runtime: &'a LlmRuntime,
    endpoint: Endpoint,
    /// Where the model asked for leads, resolved before the road (`None`: unknown model).
    target: Option<Target<'a>>,
    /// The body as received, until validate checks it.
    body: Option<Value>,
    /// The checked request: sanitized in place, then sent.
    request: Option<Request>,
    /// Synthetic stand-ins placed in the request, restored in the answer.
    vault: Vault,
    record: CallRecord,
    /// The most output tokens the call may produce (limit).
    max_output: u64,
    /// The model name the grant called (its price settles the call).
    priced_model: String,
    /// The answer of a refusal that says more than its code (blocked types, a provider's
    /// status), with the stage that refused.
    answer: Option<(Stage, LlmError)>,
}

impl<'a> LlmCall<'a> {
    /// The answer to a refusal.
    fn answer(&mut self, refusal: &Refusal) -> LlmError {
        match self.answer.take() {
            Some((stage, error)) if stage == refusal.stage => error,
            _ => LlmError::from(refusal.error.clone()),
        }
    }

    /// The provider call failed: nothing to settle.
    fn failed(&mut self, failure: &Failure) -> Refusal {
        tracing::warn!(correlation = %self.correlation, failure = ?failure, "provider call failed");
        self.record.settlement = "released";
        if let Failure::Status(status) = failure {
            self.record.upstream_status = Some(*status);
        }
        let error = failure.error();
        let refusal = Refusal::new(Stage::Execute, error.code(), failure.reason());
        self.answer = Some((Stage::Execute, error));
        refusal
    }

    /// The target the grant's model leads to: the one resolved before the road, or a budget
    /// downgrade's (whose `llm:model` key the road's limit stage decided).
    fn called(&mut self, pass: &Pass) -> Result<Target<'a>, Refusal> {
        let internal = |reason| Refusal::new(Stage::Execute, ErrorCode::Internal, reason);
        let asked = self
            .target
            .clone()
            .ok_or_else(|| internal("llm_model_unknown"))?;
        let name = pass.model().unwrap_or(&asked.model).to_owned();
        if name == asked.model {
            self.priced_model = name;
            return Ok(asked);
        }
        self.record.downgraded = true;
        let Some(downgrade) = self.runtime.resolve(&name) else {
            tracing::error!(correlation = %self.correlation, "budget downgrade names no routed model");
            return Err(internal("llm_model_unknown"));
        };
        // INVARIANT (answer-gated): the answer gate was asked about the provider resolved before
        // the road; an answer from another provider would enter the agent's context unasked.
        if !std::ptr::eq(downgrade.provider, asked.provider) {
            return Err(Refusal::new(
                Stage::Execute,
                ErrorCode::PolicyDenied,
                "llm_downgrade_provider",
            ));
        }
        self.priced_model = name;
        Ok(downgrade)
    }
}

impl Front for LlmCall<'_> {
    type Output = Answer;

    async fn validate(&mut self, _action: &Action) -> Result<(), Refusal> {
        let body = self.body.take().unwrap_or(Value::Null);
        let parsed = match self.endpoint {
            Endpoint::Chat => ChatRequest::parse(body).map(Request::Chat),
            Endpoint::Embeddings => EmbeddingsRequest::parse(body).map(Request::Embeddings),
        };
        let request = parsed
            .map_err(|err| Refusal::new(Stage::Validate, ErrorCode::BadRequest, err.reason()))?;
        if let Request::Chat(chat) = &request {
            self.record.stream = chat.stream();
        }
        self.request = Some(request);
        match &self.target {
            Some(_) => Ok(()),
            None => Err(Refusal::new(
                Stage::Validate,
                ErrorCode::NotFound,
                "llm_model_unknown",
            )),
        }
    }

    /// Redacts the secrets Portcullis holds (configured values, its tokens) everywhere in the
    /// body, then sanitizes every string, key and number except at the protocol paths (held
    /// secrets count as `secret`); then counts what will be sent.
    fn sanitize_in(&mut self) -> Result<(), Refusal> {
        let internal = || Refusal::new(Stage::SanitizeIn, ErrorCode::Internal, "internal");
        let runtime = self.runtime;
        let (Some(request), Some(target)) = (self.request.as_mut(), self.target.as_ref()) else {
            return Err(internal());
        };
        let (body, protocol) = match request {
            Request::Chat(chat) => (chat.body_mut(), &runtime.chat_paths),
            Request::Embeddings(embeddings) => (embeddings.body_mut(), &runtime.embeddings_paths),
        };
        let scope = pipeline::sanitize_scope(self.identified, self.correlation);
        let mut value = Value::Object(std::mem::take(body));
        let n_held = runtime.redactor.redact_held_value(&mut value);
        let sanitized =
            runtime
                .sanitizer
                .apply_value(&mut value, protocol, &scope, &mut self.vault);
        if let Value::Object(map) = value {
            *body = map;
        }
        let mut counts = match sanitized {
            Ok(counts) => counts,
            Err(err) => {
                let reason = err.reason();
                let error = match &err {
                    SanitizeError::Blocked { counts } => {
                        self.record.sanitized = *counts;
                        LlmError::pii_blocked(counts)
                    }
                    other => LlmError::new(other.code()),
                };
                let refusal = Refusal::new(Stage::SanitizeIn, error.code(), reason);
                self.answer = Some((Stage::SanitizeIn, error));
                return Err(refusal);
            }
        };
        for _ in 0..n_held {
            counts.add(EntityType::Secret);
        }
        self.record.sanitized = counts;
        let family = Family::of(&target.model);
        match request {
            Request::Chat(chat) => {
                self.record.input_tokens = runtime.tokens.chat_input(family, chat.body());
                // INVARIANT (worst-case-output): every choice may run to the largest limit present.
                self.max_output = chat.worst_case_output(runtime.default_max_tokens);
            }
            Request::Embeddings(embeddings) => {
                self.record.input_tokens = embeddings
                    .inputs()
                    .map(|text| runtime.tokens.count(family, text))
                    .sum();
            }
        }
        Ok(())
    }

    fn meter(&self) -> Option<Metered> {
        let target = self.target.as_ref()?;
        Some(Metered::Llm {
            model: target.model.clone(),
            input_tokens: portcullis_llm::tokens::reserved_input(self.record.input_tokens),
            max_output_tokens: self.max_output,
        })
    }

    async fn execute(&mut self, pass: Pass) -> Result<Answer, Refusal> {
        let target = self.called(&pass)?;
        let (provider, model) = (target.provider, target.model);
        self.record.provider = Some(provider.name.clone());
        self.record.upstream_model = Some(model.clone());
        let runtime = self.runtime;
        let family = Family::of(&model);
        let Some(request) = self.request.take() else {
            return Err(Refusal::new(
                Stage::Execute,
                ErrorCode::Internal,
                "internal",
            ));
        };
        let estimate = self.record.input_tokens;
        let (path, body, streams) = match request {
            Request::Chat(chat) => {
                let streams = chat.stream();
                let (body, _) = chat.into_upstream(&model, runtime.default_max_tokens);
                ("/chat/completions", body, streams)
            }
            Request::Embeddings(embeddings) => {
                ("/embeddings", embeddings.into_upstream(&model), false)
            }
        };
        if streams {
            let response = match provider.open_stream(path, &body).await {
                Ok(response) => response,
                Err(failure) => return Err(self.failed(&failure)),
            };
            // Until the stream says more, the input was sent and nothing came back.
            let usage = Usage {
                input_tokens: estimate,
                output_tokens: 0,
            };
            self.record
                .settled(self.state, &self.priced_model, usage, "settled");
            return Ok(Answer::Stream(Box::new(Upstream {
                response,
                family,
                idle: provider.idle_timeout,
                priced_model: self.priced_model.clone(),
            })));
        }
        let answer = match provider
            .fetch_json(path, &body, runtime.max_response_bytes)
            .await
        {
            Ok(answer) => answer,
            Err(failure) => return Err(self.failed(&failure)),
        };
        let reported = Usage::of(&answer);
        self.record.usage_reported = reported.is_some();
        let usage = match (self.endpoint, reported) {
            (Endpoint::Chat, Some(usage)) => usage,
            (Endpoint::Chat, None) => Usage {
                input_tokens: estimate,
                output_tokens: runtime
                    .tokens
                    .strings(family, answer.get("choices").unwrap_or(&Value::Null)),
            },
            (Endpoint::Embeddings, reported) => Usage {
                input_tokens: reported.map_or(estimate, |usage| usage.input_tokens),
                output_tokens: 0,
            },
        };
        self.record
            .settled(self.state, &self.priced_model, usage, "settled");
        Ok(Answer::Whole(answer))
    }

    fn sanitize_out(&mut self, output: Answer) -> Result<Answer, Refusal> {
        let runtime = self.runtime;
        match output {
            Answer::Whole(mut answer) => {
                let own = portcullis_llm::response::own_values(&self.vault);
                match portcullis_llm::restore_response(
                    &mut answer,
                    &self.vault,
                    &runtime.redactor,
                    &own,
                ) {
                    Ok(n_redacted) => {
                        self.record.redacted = n_redacted;
                        Ok(Answer::Whole(answer))
                    }
                    Err(err) => {
                        tracing::error!(correlation = %self.correlation, error = %err, "response withheld");
                        Err(Refusal::new(
                            Stage::SanitizeOut,
                            ErrorCode::Internal,
                            "llm_output_unscannable",
                        ))
                    }
                }
            }
            Answer::Stream(upstream) => {
                let vault = std::mem::take(&mut self.vault);
                let rewriter = ChatStream::new(vault, Arc::clone(&runtime.redactor));
                Ok(Answer::Rewritten(Box::new(upstream.rewritten(rewriter))))
            }
            rewritten @ Answer::Rewritten(_) => Ok(rewritten),
        }
    }

    fn ends_later(&self, output: &Answer) -> bool {
        matches!(output, Answer::Stream(_) | Answer::Rewritten(_))
    }

    fn actual(&self, _output: &Answer) -> Actual {
        self.record.actual()
    }

    fn record(&self, decision: Decision, reason: &str) -> Event {
        self.record.event(&self.state.metrics, decision, reason)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn policy_arguments_keep_top_level_fields_without_content() {
        let request = json!({
            "model": "fast", "temperature": 0.2, "user": "u1", "metadata": {"team": "a"},
            "messages": [{"role": "user", "content": "hi"}], "tools": [], "input": "x",
        });
        assert_eq!(
            policy_arguments(&request),
            json!({"model": "fast", "temperature": 0.2, "user": "u1", "metadata": {"team": "a"}})
        );
        assert_eq!(policy_arguments(&json!([1])), json!({}));
    }

    #[test]
    fn default_session_is_per_agent_and_utc_day() {
        let now: jiff::Timestamp = "2026-03-01T23:59:59Z".parse().unwrap();
        assert_eq!(default_session("coder", now), "default:coder:2026-03-01");
    }
}
