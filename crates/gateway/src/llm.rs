//! The OpenAI-compatible front: `POST /v1/chat/completions` (whole and streamed),
//! `POST /v1/embeddings` and `GET /v1/models`, in front of the providers of `[llm]`.
//!
//! Chat completions and embeddings cross the pipeline's one road (`pipeline::road`) as the kinds
//! `llm.chat` and `llm.embeddings`; [`front`] translates a request into the road's action and
//! supplies the front's part of each stage: validate (the request's shape), sanitize in (held
//! secrets, tokens and personal data), what the call consumes (input tokens and the worst-case
//! output), execute (the provider call, with the provider's key; the agent's token is never
//! forwarded), sanitize out (synthetic values restored, foreign secrets redacted) and the
//! `llm.call` record (model, tokens and redaction counts, never content). Streams end later
//! ([`stream`]); the open streams of an agent that a kill switch covers or that was revoked are
//! cut ([`cutoff`]). Errors use OpenAI's envelope with the registry's codes ([`LlmError`]).

mod cutoff;
mod error;
mod front;
mod provider;
mod record;
mod stream;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use portcullis_core::request::RequestContext;
use portcullis_core::{CorrelationId, GateKey};
use portcullis_llm::TokenCounter;
use portcullis_sanitize::redact::Redactor;
use portcullis_sanitize::{ProtocolPaths, Sanitizer};
use serde_json::{Value, json};

pub use error::LlmError;

use crate::config::Config;
use crate::config::llm::model_matches;
use crate::http::AppState;
use crate::pipeline;
use crate::secrets::Secrets;
use cutoff::LiveStreams;
use provider::{Provider, Target};

/// The LLM runtime: providers with their clients and keys, routes, the sanitizer, the output
/// redactor, the tokenizers and the open streams.
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
    live: Arc<LiveStreams>,
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
            live: Arc::new(LiveStreams::default()),
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

    /// Every name agents can ask for, with its provider: aliases, then exact provider models.
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

/// `/v1/*`.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/v1/chat/completions", post(front::chat))
        .route("/v1/embeddings", post(front::embeddings))
        .route("/v1/models", get(models))
}

/// The gate key of a provider's answers entering the agent's context (gate out).
fn answer_key(provider: &str) -> Option<GateKey> {
    GateKey::parse(&format!("io:ingress:llm.{provider}")).ok()
}

/// `GET /v1/models`: the names the caller may use: the model's key, `io:egress:chat` and its
/// provider's answer key all allow (a policy dry run: no events, no quota).
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
        .filter(|(name, provider)| {
            allowed(&format!("llm:model:{name}"), name)
                && allowed("io:egress:chat", name)
                && allowed(&format!("io:ingress:llm.{provider}"), name)
        })
        .map(|(name, provider)| {
            json!({"id": name, "object": "model", "created": 0, "owned_by": provider})
        })
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}
