//! The policy runtime: the compiled engine behind an atomic swap, the sources it was built from,
//! loading (config, Cedar files, stored contracts) and the explain path shared with the CLI.
//!
//! INVARIANT (whole-swap): an engine is built completely from one set of sources and then swapped
//! in with one atomic store; a decision loads the `Arc` once, so it finishes on the engine it
//! started with, and a failed build leaves the serving engine untouched.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use jiff::Timestamp;
use portcullis_core::{Decision, ErrorCode, Event, GatePattern, Request};
use portcullis_policy::{
    Contract, Explanation, PolicyConfig, PolicyEngine, PolicyLoadError, PolicyState, QuotaCounters,
    QuotaKey, QuotaStoreError,
};
use serde::Serialize;

use crate::config::{Config, policy::resolve_path};

pub mod capsules;
pub mod immutable;
mod quota;

/// Largest Cedar file read.
pub const MAX_CEDAR_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Largest explain request body (`POST /admin/policy/explain`, `portcullis policy eval`).
pub const MAX_EXPLAIN_BYTES: usize = 256 * 1024;

/// One reason a policy did not load: the file (or section) and what is wrong. Never a secret:
/// Cedar diagnostics name policies and attributes, not values from requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoadIssue {
    /// The Cedar file as listed in `policy.cedar_files`, or the config section.
    pub file: String,
    pub message: String,
}

impl std::fmt::Display for LoadIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

/// What an engine is built from. Kept so that a contract change rebuilds without re-reading
/// files, and a reload replaces only the configuration part.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub policy: PolicyConfig,
    pub config_contracts: Vec<Contract>,
    /// `(name as listed, text)` per Cedar file.
    pub cedar: Vec<(String, String)>,
    /// Contracts added through the admin API (persisted in the store).
    pub admin_contracts: Vec<Contract>,
}

impl Sources {
    /// Reads the Cedar files named in `config`; the admin contracts start empty.
    pub fn from_config(config: &Config) -> Result<Self, Vec<LoadIssue>> {
        Ok(Self {
            policy: config.policy.clone(),
            config_contracts: config.contracts.clone(),
            cedar: read_cedar_files(config)?,
            admin_contracts: Vec::new(),
        })
    }

    /// Compiles an engine from these sources; every problem found on failure.
    pub fn build(&self) -> Result<PolicyEngine, Vec<LoadIssue>> {
        let contracts: Vec<Contract> = self
            .config_contracts
            .iter()
            .chain(&self.admin_contracts)
            .cloned()
            .collect();
        PolicyEngine::build(&self.policy, &contracts, &self.cedar)
            .map_err(|errors| errors.iter().map(load_issue).collect())
    }
}

fn load_issue(err: &PolicyLoadError) -> LoadIssue {
    let file = match err {
        PolicyLoadError::CedarSourceMissing(name)
        | PolicyLoadError::CedarSourceUnlisted(name)
        | PolicyLoadError::CedarTemplate(name)
        | PolicyLoadError::CedarTooLarge { name, .. }
        | PolicyLoadError::CedarParse(name, _) => name.clone(),
        PolicyLoadError::CedarValidation(_) | PolicyLoadError::CedarDuplicateId(_) => {
            "policy.cedar_files".to_owned()
        }
        PolicyLoadError::Contract { .. } | PolicyLoadError::DuplicateContract(_) => {
            "contracts".to_owned()
        }
        _ => "policy".to_owned(),
    };
    LoadIssue {
        file,
        message: err.to_string(),
    }
}

/// Reads every file of `policy.cedar_files` (relative to the configuration file's directory),
/// naming each source exactly as listed.
pub fn read_cedar_files(config: &Config) -> Result<Vec<(String, String)>, Vec<LoadIssue>> {
    let mut sources = Vec::new();
    let mut issues = Vec::new();
    for listed in &config.policy.cedar_files {
        let name = listed.to_string_lossy().into_owned();
        match read_limited(&resolve_path(config, listed)) {
            Ok(text) => sources.push((name, text)),
            Err(message) => issues.push(LoadIssue {
                file: name,
                message,
            }),
        }
    }
    if issues.is_empty() {
        Ok(sources)
    } else {
        Err(issues)
    }
}

fn read_limited(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|err| format!("cannot read the file: {err}"))?;
    let mut text = String::new();
    file.take(MAX_CEDAR_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|err| format!("cannot read the file: {err}"))?;
    if text.len() as u64 > MAX_CEDAR_FILE_BYTES {
        return Err(format!("larger than {MAX_CEDAR_FILE_BYTES} bytes"));
    }
    Ok(text)
}

/// Reads the Cedar files and compiles the policy of `config` alone (no stored contracts): what
/// start-up checks first and what `portcullis config check` and `policy eval` run.
pub fn build_from_config(config: &Config) -> Result<(Sources, PolicyEngine), Vec<LoadIssue>> {
    let sources = Sources::from_config(config)?;
    let engine = sources.build()?;
    Ok((sources, engine))
}

/// The engine in service and the state decisions share across reloads.
#[derive(Debug)]
pub struct PolicyRuntime {
    engine: ArcSwap<PolicyEngine>,
    state: PolicyState,
    /// The trust store and the adopted capsules feeding `state`'s capsule layer.
    pub capsules: capsules::CapsuleRuntime,
    // INVARIANT (one-writer): every rebuild holds this lock from reading the sources to the swap,
    // so two concurrent changes cannot each swap in an engine missing the other's change.
    sources: tokio::sync::Mutex<Sources>,
}

impl PolicyRuntime {
    pub fn new(
        sources: Sources,
        engine: PolicyEngine,
        state: PolicyState,
        capsules: capsules::CapsuleRuntime,
    ) -> Self {
        Self {
            engine: ArcSwap::from_pointee(engine),
            state,
            capsules,
            sources: tokio::sync::Mutex::new(sources),
        }
    }

    /// The engine in service now. Hold the `Arc` for the whole decision.
    pub fn engine(&self) -> Arc<PolicyEngine> {
        self.engine.load_full()
    }

    pub fn state(&self) -> &PolicyState {
        &self.state
    }

    /// Locks the sources for a change; build from the guard, then [`Self::swap`] before unlocking.
    pub async fn lock_sources(&self) -> tokio::sync::MutexGuard<'_, Sources> {
        self.sources.lock().await
    }

    /// Puts `engine` in service.
    pub fn swap(&self, engine: PolicyEngine) {
        self.engine.store(Arc::new(engine));
    }

    /// Decides `request` and counts quota hits: the gate stage.
    pub fn decide(&self, request: &Request, allow: &[GatePattern], now: Timestamp) -> Explanation {
        self.engine().decide(request, allow, now, &self.state)
    }
}

/// The run-time policy state for a gateway on `store`: no capsules yet (they are re-verified
/// after start), quota counters loaded from the store and kept there.
pub async fn stored_state(
    store: &Arc<dyn portcullis_store::Store>,
) -> Result<PolicyState, portcullis_store::StoreError> {
    let quotas = quota::StoreQuotaCounters::load(Arc::clone(store)).await?;
    Ok(PolicyState {
        capsules: Arc::new(portcullis_policy::CapsuleLayer::new()),
        quotas: Arc::new(quotas),
    })
}

/// Quota counters that read but never count: explaining a request must not use up a quota.
#[derive(Debug)]
struct DryRunQuotas(Arc<dyn QuotaCounters>);

impl QuotaCounters for DryRunQuotas {
    fn used(&self, key: &QuotaKey) -> Result<u64, QuotaStoreError> {
        self.0.used(key)
    }

    fn try_hit(&self, key: &QuotaKey, limit: u64) -> Result<bool, QuotaStoreError> {
        Ok(self.0.used(key)? < limit)
    }
}

/// An explain request: the pipeline request plus an optional instant.
#[derive(Clone, Debug, PartialEq)]
pub struct ExplainRequest {
    pub request: Request,
    pub at: Option<Timestamp>,
}

/// Why an explain request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("the request is larger than {MAX_EXPLAIN_BYTES} bytes")]
    TooLarge,
    #[error(
        "the request is not valid JSON of the shape {{subject, action, resource, context}}: {0}"
    )]
    Malformed(String),
}

/// Parses `{subject, action, resource, context[, at]}`; `at` is RFC 3339.
pub fn parse_explain_request(body: &[u8]) -> Result<ExplainRequest, ExplainError> {
    if body.len() > MAX_EXPLAIN_BYTES {
        return Err(ExplainError::TooLarge);
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|err| ExplainError::Malformed(err.to_string()))?;
    let at = match value.as_object_mut().and_then(|object| object.remove("at")) {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(text)) => Some(
            text.parse::<Timestamp>()
                .map_err(|_| ExplainError::Malformed("`at` is not an RFC 3339 instant".into()))?,
        ),
        Some(_) => {
            return Err(ExplainError::Malformed(
                "`at` is not an RFC 3339 instant".into(),
            ));
        }
    };
    let request: Request =
        serde_json::from_value(value).map_err(|err| ExplainError::Malformed(err.to_string()))?;
    Ok(ExplainRequest { request, at })
}

/// The explanation of `request` at `at`, without side effects (quota hits are read, not
/// counted). The one function behind both `POST /admin/policy/explain` and `portcullis policy
/// eval`.
pub fn explain(
    engine: &PolicyEngine,
    state: &PolicyState,
    request: &Request,
    allow: &[GatePattern],
    at: Timestamp,
) -> Explanation {
    let dry = PolicyState {
        capsules: Arc::clone(&state.capsules),
        quotas: Arc::new(DryRunQuotas(Arc::clone(&state.quotas))),
    };
    engine.decide(request, allow, at, &dry)
}

/// The allowlists of the agents declared in configuration, by id.
pub fn config_allowlists(config: &Config) -> HashMap<String, Vec<GatePattern>> {
    config
        .agents
        .iter()
        .map(|agent| {
            let allow = agent
                .allow
                .iter()
                .filter_map(|raw| GatePattern::parse(raw).ok())
                .collect();
            (agent.id.clone(), allow)
        })
        .collect()
}

/// Why `portcullis policy eval` could not answer.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("the policy does not load:{}", render(.0))]
    Load(Vec<LoadIssue>),
    #[error(transparent)]
    Request(#[from] ExplainError),
}

fn render(issues: &[LoadIssue]) -> String {
    issues.iter().map(|issue| format!("\n  {issue}")).collect()
}

/// `portcullis policy eval`: builds the policy of `config` offline and explains `body` at `at`
/// (or `now`), with the allowlist of the subject's agent when it is declared in configuration.
pub fn eval_offline(
    config: &Config,
    body: &[u8],
    now: Timestamp,
) -> Result<Explanation, EvalError> {
    let (_, engine) = build_from_config(config).map_err(EvalError::Load)?;
    let parsed = parse_explain_request(body)?;
    let allow = config_allowlists(config)
        .remove(&parsed.request.subject.agent)
        .unwrap_or_default();
    Ok(explain(
        &engine,
        &PolicyState::in_memory(),
        &parsed.request,
        &allow,
        parsed.at.unwrap_or(now),
    ))
}

/// Re-reads the configuration file's policy sections and the Cedar files, builds completely and
/// swaps the new engine in; on any problem the serving engine stays and the problems are returned.
/// Either way a ledger event records the outcome. Stored contracts and adopted capsules carry over.
/// A reload that would drop or narrow an immutable deny, or drop or weaken an active immutable
/// contract, is refused with one issue per item ([`immutable::reload_issues`]).
pub async fn reload(
    state: &crate::http::AppState,
) -> Result<(usize, usize, usize), Vec<LoadIssue>> {
    let outcome = reload_inner(state).await;
    let event = match &outcome {
        Ok((denies, contracts, cedar)) => Event::new("policy.reloaded", Decision::Info, "ok").data(
            serde_json::json!({"denies": denies, "contracts": contracts, "cedar_policies": cedar}),
        ),
        Err(issues) => Event::new(
            "policy.reload_failed",
            Decision::Deny,
            ErrorCode::ConfigInvalid.as_str(),
        )
        .data(serde_json::json!({ "errors": issues })),
    };
    state.events.emit_best_effort(event).await;
    outcome
}

async fn reload_inner(
    state: &crate::http::AppState,
) -> Result<(usize, usize, usize), Vec<LoadIssue>> {
    let fresh = reread_config(&state.config)?;
    let mut sources = state.policy.lock_sources().await;
    let mut next = Sources::from_config(&fresh)?;
    next.admin_contracts = sources.admin_contracts.clone();
    // INVARIANT (immutable-holds): checked against the serving sources under the sources lock,
    // so no other change slips between the check and the swap.
    let mut issues = immutable::reload_issues(
        &sources,
        &next,
        &state.policy.state().capsules.contracts(),
        state.clock.now(),
    );
    let engine = match next.build() {
        Ok(engine) => engine,
        Err(build_issues) => {
            issues.extend(build_issues);
            return Err(issues);
        }
    };
    if !issues.is_empty() {
        return Err(issues);
    }
    let sizes = engine.sizes();
    state.policy.swap(engine);
    *sources = next;
    Ok(sizes)
}

/// The configuration file `config` came from, read again with the process environment (for
/// reloads); `config` itself when it came from built-in defaults.
pub fn reread_config(config: &Config) -> Result<Config, Vec<LoadIssue>> {
    let Some(path) = &config.origin else {
        return Ok(config.clone());
    };
    crate::config::load(
        &crate::config::ConfigSource::File(path.clone()),
        &process_env(),
    )
    .map_err(|err| {
        err.issues
            .iter()
            .map(|issue| LoadIssue {
                file: err.source_name.clone(),
                message: issue.to_string(),
            })
            .collect()
    })
}

/// The process environment for a reload: the same variables the start-up load accepted (the
/// environment of a running process does not change), minus any that are not overrides.
pub fn process_env() -> std::collections::BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(key, value)| {
            let one = std::collections::BTreeMap::from([(key.clone(), value.clone())]);
            crate::config::env_overrides_valid(&one)
        })
        .collect()
}

#[cfg(test)]
mod tests;
