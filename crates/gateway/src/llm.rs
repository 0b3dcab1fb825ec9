//! The OpenAI-compatible front: `POST /v1/chat/completions` (whole and streamed),
//! `POST /v1/embeddings` and `GET /v1/models`, in front of the providers of `[llm]`.
//!
//! A call runs identify -> gate (`llm:model:<model>`, `io:ingress:chat` for chat, `io:egress:chat`) -> sanitize (every
//! string of the request, one vault) -> limit (input tokens estimated, plus the output limit) ->
//! execute (the provider's key injected; the agent's token never forwarded) -> restore synthetic
//! values and redact secrets the agent did not send -> settle (reported usage) or release ->
//! one `llm.call` ledger event with model, tokens and redaction counts, never content. Errors use
//! OpenAI's envelope with the registry's codes ([`LlmError`]).

mod error;
mod stream;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt as _;
use portcullis_core::request::RequestContext;
use portcullis_core::{CorrelationId, Decision, ErrorCode, Event, GateKey, MicroUsd};
use portcullis_llm::{ChatRequest, EmbeddingsRequest, Family, TokenCounter, Usage};
use portcullis_sanitize::redact::Redactor;
use portcullis_sanitize::{Counts, EntityType, ProtocolPaths, Sanitizer, Vault};
use serde_json::{Value, json};

pub use error::LlmError;

use crate::config::Config;
use crate::config::llm::{ProviderConfig, model_matches};
use crate::http::AppState;
use crate::identity::Identified;
use crate::pipeline::{self, Actual, Grant, Metered};
use crate::secrets::Secrets;

/// The LLM runtime: providers with their clients and keys, routes, the sanitizer, the output
/// redactor and the tokenizers.
#[derive(Debug)]
pub struct LlmRuntime {
    providers: Vec<Provider>,
    routes: BTreeMap<String, (usize, String)>,
    sanitizer: Sanitizer,
    redactor: Arc<Redactor>,
    chat_paths: ProtocolPaths,
    embeddings_paths: ProtocolPaths,
    tokens: TokenCounter,
    default_max_tokens: u64,
    max_response_bytes: usize,
}

/// One provider, ready to call.
struct Provider {
    name: String,
    base_url: String,
    key: Option<String>,
    models: Vec<String>,
    client: reqwest::Client,
    timeout: Duration,
    idle_timeout: Duration,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("key", &self.key.as_ref().map(|_| "<secret>"))
            .finish_non_exhaustive()
    }
}

/// Where a model name leads: the provider and the provider's model name.
#[derive(Clone, Debug)]
struct Target<'a> {
    provider: &'a Provider,
    model: String,
}

/// Why the LLM runtime did not start.
#[derive(Debug, thiserror::Error)]
pub enum LlmStartError {
    #[error("llm provider `{provider}`: {source}")]
    Secret {
        provider: String,
        source: crate::secrets::SecretsError,
    },
    #[error("pii.key_secret: {0}")]
    PiiKey(crate::secrets::SecretsError),
    #[error("the sanitizer could not be built: {0}")]
    Sanitizer(#[from] portcullis_sanitize::ConfigError),
    #[error("the output redactor could not be built: {0}")]
    Redactor(#[from] portcullis_sanitize::redact::RedactError),
    #[error("llm provider `{provider}`: the HTTP client could not be built")]
    Client { provider: String },
}

impl LlmRuntime {
    /// Builds the runtime from `config`, resolving provider keys and the sanitizer key.
    pub fn start(config: &Config, secrets: &Secrets) -> Result<Self, LlmStartError> {
        let key = crate::secrets::pii_key(secrets, config.pii.key_secret.as_deref())
            .map_err(LlmStartError::PiiKey)?;
        let sanitizer = Sanitizer::new(config.pii.sanitizer_config(), &key)?;
        let values: Vec<String> = secrets
            .names()
            .filter_map(|name| secrets.get(name).map(|v| v.expose().to_owned()))
            .collect();
        let redactor = Arc::new(
            Redactor::new(values)?.with_token_hashes(crate::tokens::configured_hashes(config)),
        );
        let mut providers = Vec::new();
        for provider in &config.llm.providers {
            providers.push(Provider::build(provider, secrets)?);
        }
        let routes = config
            .llm
            .routes
            .iter()
            .filter_map(|route| {
                let idx = providers.iter().position(|p| p.name == route.provider)?;
                Some((route.alias.clone(), (idx, route.model.clone())))
            })
            .collect();
        Ok(Self {
            providers,
            routes,
            sanitizer,
            redactor,
            chat_paths: portcullis_llm::request::chat_protocol_paths(),
            embeddings_paths: portcullis_llm::request::embeddings_protocol_paths(),
            tokens: TokenCounter::new(),
            default_max_tokens: config.llm.default_max_tokens,
            max_response_bytes: usize::try_from(config.llm.max_response_bytes)
                .unwrap_or(usize::MAX),
        })
    }

    /// A runtime with no providers (tests and gateways without `[llm]`).
    pub fn empty() -> Result<Self, LlmStartError> {
        Self::start(&Config::default(), &Secrets::default())
    }

    /// `text` (a string from a caller) with secrets and personal data masked, fit for records;
    /// `None` when it cannot be scanned.
    fn mask(&self, text: &str) -> Option<String> {
        let text = self.redactor.redact_str(text).ok()?;
        self.sanitizer.mask(&text).ok()
    }

    /// Loads the tokenizers now, so the first request does not pay for it.
    pub fn preload(&self) {
        self.tokens.preload();
    }

    /// What `name` (an alias, else a provider model) leads to.
    fn resolve(&self, name: &str) -> Option<Target<'_>> {
        if let Some((idx, model)) = self.routes.get(name) {
            let provider = self.providers.get(*idx)?;
            return Some(Target {
                provider,
                model: model.clone(),
            });
        }
        self.providers
            .iter()
            .find(|p| p.models.iter().any(|pattern| model_matches(pattern, name)))
            .map(|provider| Target {
                provider,
                model: name.to_owned(),
            })
    }

    /// Every name agents can ask for: aliases, then exact provider models.
    fn names(&self) -> Vec<(String, String)> {
        let mut names: Vec<(String, String)> = self
            .routes
            .iter()
            .filter_map(|(alias, (idx, _))| {
                Some((alias.clone(), self.providers.get(*idx)?.name.clone()))
            })
            .collect();
        for provider in &self.providers {
            for model in &provider.models {
                if !model.ends_with('*') && !names.iter().any(|(name, _)| name == model) {
                    names.push((model.clone(), provider.name.clone()));
                }
            }
        }
        names
    }
}

impl Provider {
    fn build(config: &ProviderConfig, secrets: &Secrets) -> Result<Self, LlmStartError> {
        let key = match &config.api_key_secret {
            Some(name) => Some(
                secrets
                    .require(name)
                    .map_err(|source| LlmStartError::Secret {
                        provider: config.name.clone(),
                        source,
                    })?
                    .expose()
                    .to_owned(),
            ),
            None => None,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout.as_std())
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(|_| LlmStartError::Client {
                provider: config.name.clone(),
            })?;
        Ok(Self {
            name: config.name.clone(),
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            key,
            models: config.models.clone(),
            client,
            timeout: config.timeout.as_std(),
            idle_timeout: config.idle_timeout.as_std(),
        })
    }

    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        let request = self
            .client
            .post(format!("{}{path}", self.base_url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }
}

/// `/v1/*`.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
}

/// What the ledger keeps of one call: never content.
#[derive(Debug, Default)]
struct CallRecord {
    endpoint: &'static str,
    model: String,
    provider: Option<String>,
    upstream_model: Option<String>,
    stream: bool,
    downgraded: bool,
    input_tokens: u64,
    output_tokens: u64,
    usage_reported: bool,
    sanitized: Counts,
    redacted: usize,
    settlement: &'static str,
    /// What the settled usage cost by the price table, when the model has a price.
    cost: Option<MicroUsd>,
    upstream_status: Option<u16>,
}

impl CallRecord {
    fn event(
        &self,
        identified: &Identified,
        correlation: &CorrelationId,
        decision: Decision,
        reason: &str,
        started: tokio::time::Instant,
    ) -> Event {
        Event::new("llm.call", decision, reason)
            .subject(identified.agent.id.clone())
            .correlation(correlation.as_str())
            .data(json!({
                "endpoint": self.endpoint,
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
                "latency_us": u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            }))
    }
}

/// Records the call off the response path: the call already happened, so a ledger failure can
/// no longer change its outcome; it is logged and counted by `Events`.
fn record(state: &AppState, event: Event) {
    let events = state.events.clone();
    tokio::spawn(async move { events.emit_best_effort(event).await });
}

/// The request's parts a front needs after identify.
struct Call {
    state: AppState,
    identified: Identified,
    correlation: CorrelationId,
    started: tokio::time::Instant,
    record: CallRecord,
}

impl Call {
    /// Settles `grant` to `usage` (stage 9) and records the usage, its cost and `settlement`.
    async fn settle(&mut self, grant: Grant, usage: Usage, settlement: &'static str) {
        self.record.input_tokens = usage.input_tokens;
        self.record.output_tokens = usage.output_tokens;
        self.record.settlement = settlement;
        let actual = Actual::Llm {
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
        };
        self.record.cost = pipeline::settle(&self.state, grant, &actual, &self.correlation).await;
    }

    /// Ends the call with `err`: records the refusal and answers it.
    fn refuse(mut self, err: LlmError, reason: &str) -> Response {
        if self.record.settlement.is_empty() {
            self.record.settlement = "none";
        }
        self.state.metrics.increment(
            "portcullis_llm_calls_total",
            &[
                ("endpoint", self.record.endpoint.to_owned()),
                ("outcome", reason.to_owned()),
            ],
        );
        let event = self.record.event(
            &self.identified,
            &self.correlation,
            Decision::Deny,
            reason,
            self.started,
        );
        record(&self.state, event);
        err.into_response()
    }

    /// Records a completed call.
    fn done(&self) {
        self.state.metrics.increment(
            "portcullis_llm_calls_total",
            &[
                ("endpoint", self.record.endpoint.to_owned()),
                ("outcome", "ok".to_owned()),
            ],
        );
        let event = self.record.event(
            &self.identified,
            &self.correlation,
            Decision::Allow,
            "ok",
            self.started,
        );
        record(&self.state, event);
    }
}

/// Identify, read the body, gate both keys (their ledger appends share one group commit), then
/// open the call's record for `endpoint`; `Err` is the answer.
async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    correlation: CorrelationId,
    body: Result<Bytes, BytesRejection>,
    endpoint: &'static str,
) -> Result<(Call, Value), LlmError> {
    let started = tokio::time::Instant::now();
    let identified = pipeline::identify(state, headers, &correlation).await?;
    let body = body.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            LlmError::new(ErrorCode::PayloadTooLarge)
        } else {
            LlmError::new(ErrorCode::BadRequest)
        }
    })?;
    let value: Value =
        serde_json::from_slice(&body).map_err(|_| LlmError::new(ErrorCode::BadRequest))?;
    let model = value
        .get("model")
        .and_then(Value::as_str)
        .filter(|model| model.len() <= portcullis_llm::request::MAX_MODEL_LEN)
        .ok_or_else(|| LlmError::new(ErrorCode::BadRequest))?;
    // INVARIANT (caller-strings-masked): the model is the agent's own string; what the gate, the
    // ledger and routing see has its secrets and personal data masked (a pasted key is then
    // simply an unknown model).
    let model = state
        .llm
        .mask(model)
        .ok_or_else(|| LlmError::new(ErrorCode::BadRequest))?;
    let model_key = GateKey::parse(&format!("llm:model:{model}"))
        .map_err(|_| LlmError::new(ErrorCode::BadRequest))?;
    // Chat messages enter the model's context (`io:ingress:chat`, chat only) and leave through
    // the provider (`io:egress:chat`, chat and embeddings).
    let chat_keys: &[&str] = match endpoint {
        "chat" => &["io:ingress:chat", "io:egress:chat"],
        _ => &["io:egress:chat"],
    };
    let mut keys = vec![model_key];
    for key in chat_keys {
        keys.push(GateKey::parse(key).map_err(|_| LlmError::new(ErrorCode::Internal))?);
    }
    let context = RequestContext {
        arguments: policy_arguments(&value),
        ..RequestContext::default()
    };
    let gates = keys
        .into_iter()
        .map(|action| (action, model.clone(), context.clone()));
    pipeline::gate_all(state, &identified, gates, &correlation).await?;
    let call = Call {
        state: state.clone(),
        identified,
        correlation,
        started,
        record: CallRecord {
            endpoint,
            model,
            ..CallRecord::default()
        },
    };
    Ok((call, value))
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

/// Redacts the secrets Portcullis holds (configured values, its tokens) everywhere in `body`,
/// then sanitizes every string, key and number except at the `protocol` paths, and records the
/// counts (held secrets count as `secret`); `Err` is the answer to give.
fn sanitize(
    call: &mut Call,
    runtime: &LlmRuntime,
    protocol: &ProtocolPaths,
    body: &mut serde_json::Map<String, Value>,
) -> Result<Vault, (LlmError, &'static str)> {
    let scope = pipeline::sanitize_scope(&call.identified, &call.correlation);
    let mut vault = Vault::new();
    let mut value = Value::Object(std::mem::take(body));
    let n_held = runtime.redactor.redact_held_value(&mut value);
    let mut counts = runtime
        .sanitizer
        .apply_value(&mut value, protocol, &scope, &mut vault)
        .map_err(|err| {
            let reason = err.reason();
            let error = match &err {
                portcullis_sanitize::SanitizeError::Blocked { counts } => {
                    LlmError::pii_blocked(counts)
                }
                other => LlmError::new(other.code()),
            };
            (error, reason)
        })?;
    if let Value::Object(map) = value {
        *body = map;
    }
    for _ in 0..n_held {
        counts.add(EntityType::Secret);
    }
    call.record.sanitized = counts;
    Ok(vault)
}

/// Limit, then the target to call (the grant's model after a possible downgrade).
async fn reserve<'r>(
    call: &mut Call,
    runtime: &'r LlmRuntime,
    target: Target<'r>,
    input_tokens: u64,
    max_output_tokens: u64,
) -> Result<(Grant, Target<'r>), (LlmError, &'static str)> {
    let metered = Metered::Llm {
        model: target.model.clone(),
        input_tokens: portcullis_llm::tokens::reserved_input(input_tokens),
        max_output_tokens,
    };
    let grant = pipeline::limit(&call.state, &call.identified, &metered, &call.correlation)
        .await
        .map_err(|err| {
            let reason = err.code.as_str();
            (LlmError::from(err), reason)
        })?;
    if !grant.downgraded() {
        return Ok((grant, target));
    }
    call.record.downgraded = true;
    let name = grant.model().unwrap_or_default().to_owned();
    let Some(downgraded) = runtime.resolve(&name) else {
        tracing::error!(correlation = %call.correlation, "budget downgrade names no routed model");
        pipeline::release(&call.state, grant, &call.correlation).await;
        return Err((LlmError::new(ErrorCode::Internal), "llm_model_unknown"));
    };
    // INVARIANT (downgrade-gated): the model a budget downgrades to is called only when the
    // policy allows it to this agent, like the model asked for (`llm:model:<target>`).
    let gated = match GateKey::parse(&format!("llm:model:{name}")) {
        Ok(key) => pipeline::gate(
            &call.state,
            &call.identified,
            key,
            name,
            RequestContext::default(),
            &call.correlation,
        )
        .await
        .map(drop)
        .map_err(|err| {
            let reason = err.code.as_str();
            (LlmError::from(err), reason)
        }),
        Err(_) => Err((LlmError::new(ErrorCode::Internal), "llm_model_unknown")),
    };
    if let Err(refusal) = gated {
        pipeline::release(&call.state, grant, &call.correlation).await;
        return Err(refusal);
    }
    Ok((grant, downgraded))
}

async fn chat(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (mut call, value) = match admit(&state, &headers, correlation, body, "chat").await {
        Ok(admitted) => admitted,
        Err(err) => return err.into_response(),
    };
    let runtime = Arc::clone(&state.llm);
    let mut request = match ChatRequest::parse(value) {
        Ok(request) => request,
        Err(err) => return call.refuse(LlmError::new(ErrorCode::BadRequest), err.reason()),
    };
    call.record.stream = request.stream();
    let Some(target) = runtime.resolve(&call.record.model) else {
        return call.refuse(LlmError::new(ErrorCode::NotFound), "llm_model_unknown");
    };
    let vault = match sanitize(&mut call, &runtime, &runtime.chat_paths, request.body_mut()) {
        Ok(vault) => vault,
        Err((err, reason)) => return call.refuse(err, reason),
    };
    let family = Family::of(&target.model);
    let input_tokens = runtime.tokens.chat_input(family, request.body());
    // INVARIANT (worst-case-output): every choice may run to the largest limit present.
    let max_output = request.worst_case_output(runtime.default_max_tokens);
    let (grant, target) = match reserve(&mut call, &runtime, target, input_tokens, max_output).await
    {
        Ok(reserved) => reserved,
        Err((err, reason)) => return call.refuse(err, reason),
    };
    call.record.provider = Some(target.provider.name.clone());
    call.record.upstream_model = Some(target.model.clone());
    call.record.input_tokens = input_tokens;
    let (upstream_body, _) = request.into_upstream(&target.model, runtime.default_max_tokens);
    if call.record.stream {
        return stream::chat(call, &runtime, target, grant, upstream_body, vault).await;
    }
    let answer = match fetch_json(&runtime, &target, "/chat/completions", &upstream_body).await {
        Ok(answer) => answer,
        Err(failure) => return fail(call, grant, failure).await,
    };
    let mut answer = answer;
    let own = portcullis_llm::response::own_values(&vault);
    let restored = portcullis_llm::restore_response(&mut answer, &vault, &runtime.redactor, &own);
    let usage = Usage::of(&answer);
    call.record.usage_reported = usage.is_some();
    let usage = usage.unwrap_or_else(|| Usage {
        input_tokens,
        output_tokens: runtime
            .tokens
            .strings(family, answer.get("choices").unwrap_or(&Value::Null)),
    });
    call.settle(grant, usage, "settled").await;
    match restored {
        Ok(n_redacted) => {
            call.record.redacted = n_redacted;
            call.done();
            axum::Json(answer).into_response()
        }
        Err(err) => {
            tracing::error!(correlation = %call.correlation, error = %err, "response withheld");
            call.refuse(LlmError::new(ErrorCode::Internal), "llm_output_unscannable")
        }
    }
}

async fn embeddings(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (mut call, value) = match admit(&state, &headers, correlation, body, "embeddings").await {
        Ok(admitted) => admitted,
        Err(err) => return err.into_response(),
    };
    let runtime = Arc::clone(&state.llm);
    let mut request = match EmbeddingsRequest::parse(value) {
        Ok(request) => request,
        Err(err) => return call.refuse(LlmError::new(ErrorCode::BadRequest), err.reason()),
    };
    let Some(target) = runtime.resolve(&call.record.model) else {
        return call.refuse(LlmError::new(ErrorCode::NotFound), "llm_model_unknown");
    };
    if let Err((err, reason)) = sanitize(
        &mut call,
        &runtime,
        &runtime.embeddings_paths,
        request.body_mut(),
    ) {
        return call.refuse(err, reason);
    }
    let family = Family::of(&target.model);
    let input_tokens: u64 = request
        .inputs()
        .map(|text| runtime.tokens.count(family, text))
        .sum();
    let (grant, target) = match reserve(&mut call, &runtime, target, input_tokens, 0).await {
        Ok(reserved) => reserved,
        Err((err, reason)) => return call.refuse(err, reason),
    };
    call.record.provider = Some(target.provider.name.clone());
    call.record.upstream_model = Some(target.model.clone());
    let upstream_body = request.into_upstream(&target.model);
    let answer = match fetch_json(&runtime, &target, "/embeddings", &upstream_body).await {
        Ok(answer) => answer,
        Err(failure) => return fail(call, grant, failure).await,
    };
    let usage = Usage::of(&answer);
    call.record.usage_reported = usage.is_some();
    let input_tokens = usage.map_or(input_tokens, |u| u.input_tokens);
    let usage = Usage {
        input_tokens,
        output_tokens: 0,
    };
    call.settle(grant, usage, "settled").await;
    call.done();
    axum::Json(answer).into_response()
}

/// `GET /v1/models`: the names the caller may use (a policy dry run: no events, no quota).
async fn models(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
) -> Response {
    let identified = match pipeline::identify(&state, &headers, &correlation).await {
        Ok(identified) => identified,
        Err(err) => return LlmError::from(err).into_response(),
    };
    let engine = state.policy.engine();
    let now = state.clock.now();
    let allowed = |key: &str, resource: &str| {
        let Ok(action) = GateKey::parse(key) else {
            return false;
        };
        let request = portcullis_core::Request {
            subject: identified.subject.clone(),
            action,
            resource: resource.to_owned(),
            context: RequestContext::default(),
        };
        crate::policy::explain(
            &engine,
            state.policy.state(),
            &request,
            &identified.agent.allow,
            now,
        )
        .is_allow()
    };
    let data: Vec<Value> = state
        .llm
        .names()
        .into_iter()
        .filter(|(name, _)| {
            allowed(&format!("llm:model:{name}"), name) && allowed("io:egress:chat", name)
        })
        .map(|(name, provider)| {
            json!({"id": name, "object": "model", "created": 0, "owned_by": provider})
        })
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// Why a provider call did not produce an answer.
#[derive(Debug)]
enum Failure {
    Timeout,
    Unreachable,
    Status(u16),
    Invalid,
}

impl Failure {
    fn reason(&self) -> &'static str {
        match self {
            Failure::Timeout => "llm_upstream_timeout",
            Failure::Unreachable => "llm_upstream_unreachable",
            Failure::Status(_) => "llm_upstream_status",
            Failure::Invalid => "llm_upstream_invalid",
        }
    }

    fn error(&self) -> LlmError {
        match self {
            Failure::Timeout => LlmError::new(ErrorCode::UpstreamTimeout),
            Failure::Unreachable | Failure::Invalid => LlmError::new(ErrorCode::UpstreamFailed),
            Failure::Status(status) => LlmError::upstream_status(*status),
        }
    }
}

/// Releases the grant and answers the failure.
async fn fail(mut call: Call, grant: Grant, failure: Failure) -> Response {
    tracing::warn!(correlation = %call.correlation, failure = ?failure, "provider call failed");
    pipeline::release(&call.state, grant, &call.correlation).await;
    call.record.settlement = "released";
    if let Failure::Status(status) = failure {
        call.record.upstream_status = Some(status);
    }
    let reason = failure.reason();
    call.refuse(failure.error(), reason)
}

/// Sends `body` and reads the whole JSON answer within the provider's timeout.
async fn fetch_json(
    runtime: &LlmRuntime,
    target: &Target<'_>,
    path: &str,
    body: &Value,
) -> Result<Value, Failure> {
    let provider = target.provider;
    let exchange = async {
        let response = provider
            .post(path, body)
            .send()
            .await
            .map_err(|_| Failure::Unreachable)?;
        let status = response.status();
        if !status.is_success() {
            return Err(Failure::Status(status.as_u16()));
        }
        let mut bytes = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| Failure::Unreachable)?;
            if bytes.len() + chunk.len() > runtime.max_response_bytes {
                return Err(Failure::Invalid);
            }
            bytes.extend_from_slice(&chunk);
        }
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(Value::is_object)
            .ok_or(Failure::Invalid)
    };
    match tokio::time::timeout(provider.timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Timeout),
    }
}
