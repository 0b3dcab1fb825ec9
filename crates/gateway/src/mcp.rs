//! The MCP front: `/mcp` (rmcp Streamable HTTP) in front of the configured upstreams.
//!
//! Every request is identified (no token: 401 with `WWW-Authenticate`, nothing reaches an
//! upstream) and its `Origin` checked (foreign: 403) before rmcp sees it; rmcp validates the
//! protocol headers and body. `tools/list` is built per agent from the live catalog filtered by
//! policy; `tools/call` runs identify -> gate in -> validate -> limit -> execute -> gate out
//! (secret redaction) -> ledger. A tool an agent may not call answers exactly like a missing one.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use portcullis_core::request::RequestContext;
use portcullis_core::{CorrelationId, Decision, ErrorCode, Event, GateKey};
use portcullis_mcp::{
    ArgumentRules, Backoff, Catalog, CatalogTool, Pin, PinMode, PrefixMode, Redactor,
    TransportSpec, Upstream, UpstreamSpec,
};
use portcullis_store::PolicyRecordKind;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, GetPromptRequestParams,
    GetPromptResponse, Implementation, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext as McpContext;
use rmcp::transport::streamable_http_server::StreamableHttpService;
use rmcp::transport::streamable_http_server::tower::StreamableHttpServerConfig;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use tokio::sync::Mutex;

use crate::config::mcp::{PinModeConfig, PrefixConfig, rule_specs};
use crate::config::{CatalogView, Config};
use crate::error::ApiError;
use crate::http::AppState;
use crate::identity::Identified;
use crate::secrets::Secrets;
use sessions::Sessions;

pub use catalog::{REFRESH_INTERVAL, pin_current, rebuild, refresh, spawn_watchers};

pub mod admin;
pub mod broker;
mod call;
mod catalog;
mod clean;
mod content;
pub mod sessions;

/// The message of the one error both a missing and a denied tool answer with.
pub const UNKNOWN_TOOL: &str = "Unknown tool.";

/// The MCP runtime: upstreams, their last listings, pins and the catalog in service.
#[derive(Debug)]
pub struct McpRuntime {
    upstreams: Vec<Arc<Upstream>>,
    prefix: PrefixMode,
    pin_mode: PinMode,
    rules: ArgumentRules,
    risk: portcullis_mcp::RiskTiers,
    /// Each upstream's sanitizers for arguments and results (`[upstreams.pii]`).
    pii: BTreeMap<String, Arc<UpstreamPii>>,
    redactor: Arc<Redactor>,
    /// The last tool listing of each upstream (kept while it is down, so calls fail with
    /// `upstream_failed` rather than as unknown tools).
    listings: Mutex<BTreeMap<String, Vec<serde_json::Value>>>,
    pins: Mutex<BTreeMap<String, Pin>>,
    catalog: RwLock<Arc<Catalog>>,
    /// The MCP sessions of `/mcp` and their owners.
    sessions: Arc<Sessions>,
}

/// Why the MCP runtime did not start.
#[derive(Debug, thiserror::Error)]
pub enum McpStartError {
    #[error("upstream `{upstream}`: {source}")]
    Secret {
        upstream: String,
        source: crate::secrets::SecretsError,
    },
    #[error("tools.rules: {0}")]
    Rules(#[from] portcullis_mcp::rules::RuleError),
    #[error("the secret redactor could not be built: {0}")]
    Redactor(#[from] portcullis_mcp::redact::RedactError),
    #[error("tools.risk: {0}")]
    Risk(#[from] portcullis_mcp::RiskError),
    #[error("pii.key_secret: {0}")]
    PiiKey(crate::secrets::SecretsError),
    #[error("upstreams.pii: {0}")]
    Sanitizer(#[from] portcullis_sanitize::ConfigError),
    #[error("cannot read stored tool pins: {0}")]
    Store(#[from] portcullis_store::StoreError),
    #[error("stored tool pin `{0}` is not valid JSON")]
    BadPin(String),
}

impl McpRuntime {
    /// A runtime with no upstreams (tests and gateways without `[[upstreams]]`).
    pub fn empty() -> Self {
        Self {
            upstreams: Vec::new(),
            prefix: PrefixMode::Always,
            pin_mode: PinMode::Strict,
            rules: ArgumentRules::default(),
            risk: portcullis_mcp::RiskTiers::default(),
            pii: BTreeMap::new(),
            redactor: Arc::new(Redactor::new(Vec::<String>::new()).unwrap_or_else(|_| {
                // INVARIANT (redactor-builds): an empty matcher with the built-in detectors
                // always builds; this branch is unreachable in practice.
                unreachable_redactor()
            })),
            listings: Mutex::new(BTreeMap::new()),
            pins: Mutex::new(BTreeMap::new()),
            catalog: RwLock::new(Arc::new(Catalog::default())),
            sessions: Arc::new(Sessions::new()),
        }
    }

    /// Builds the runtime from `config`, resolving each upstream's secrets, loading the stored
    /// pins and starting one supervisor per enabled upstream.
    pub async fn start(
        config: &Config,
        secrets: &Secrets,
        store: &dyn portcullis_store::Store,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, McpStartError> {
        let rules = ArgumentRules::compile(&rule_specs(&config.tools))?;
        let risk =
            portcullis_mcp::RiskTiers::compile(&crate::config::mcp::risk_specs(&config.tools))?;
        let key = crate::secrets::pii_key(secrets, config.pii.key_secret.as_deref())
            .map_err(McpStartError::PiiKey)?;
        let mut pii = BTreeMap::new();
        for upstream in config.upstreams.iter().filter(|u| u.enabled) {
            let sanitizers = UpstreamPii {
                arguments: portcullis_sanitize::Sanitizer::new(
                    upstream.pii.arguments_config(&config.pii),
                    &key,
                )?,
                results: portcullis_sanitize::Sanitizer::new(
                    upstream.pii.results_config(&config.pii),
                    &key,
                )?,
            };
            pii.insert(upstream.name.clone(), Arc::new(sanitizers));
        }
        for warning in crate::config::mcp::rule_warnings(config) {
            tracing::warn!("{warning}");
        }
        let values: Vec<String> = secrets
            .names()
            .filter_map(|name| secrets.get(name).map(|v| v.expose().to_owned()))
            .collect();
        let redactor = Arc::new(
            Redactor::new(values)?.with_token_hashes(crate::tokens::configured_hashes(config)),
        );
        let mut pins = BTreeMap::new();
        for (key, body) in store.list_policy_records(PolicyRecordKind::ToolPin).await? {
            let pin: Pin =
                serde_json::from_str(&body).map_err(|_| McpStartError::BadPin(key.clone()))?;
            pins.insert(key, pin);
        }
        let mut specs = Vec::new();
        for upstream in config.upstreams.iter().filter(|u| u.enabled) {
            let secret = |name: &str| {
                secrets
                    .require(name)
                    .map(|value| value.expose().to_owned())
                    .map_err(|source| McpStartError::Secret {
                        upstream: upstream.name.clone(),
                        source,
                    })
            };
            let transport = match (&upstream.stdio, &upstream.http) {
                (Some(stdio), _) => {
                    let mut child_env = Vec::new();
                    for name in &stdio.env_allow {
                        if let Some(value) = env(name) {
                            child_env.push((name.clone(), value));
                        }
                    }
                    for (var, name) in &stdio.secrets {
                        child_env.push((var.clone(), secret(name)?));
                    }
                    TransportSpec::Stdio {
                        command: stdio.command.clone(),
                        args: stdio.args.clone(),
                        env: child_env,
                        cwd: stdio.cwd.clone(),
                    }
                }
                (None, Some(http)) => {
                    let mut headers = Vec::new();
                    for (header, name) in &http.headers_from_secrets {
                        headers.push((header.clone(), secret(name)?));
                    }
                    TransportSpec::Http {
                        url: http.url.clone(),
                        headers,
                    }
                }
                (None, None) => continue,
            };
            specs.push(UpstreamSpec {
                name: upstream.name.clone(),
                version: upstream.version.clone(),
                transport,
                call_timeout: upstream.call_timeout.as_std(),
                connect_timeout: Duration::from_secs(30),
                max_concurrent: usize::try_from(upstream.max_concurrent).unwrap_or(16),
                backoff: Backoff::default(),
            });
        }
        let upstreams = specs
            .into_iter()
            .map(|spec| Upstream::start(spec, Some(Arc::clone(&redactor))))
            .collect();
        Ok(Self {
            upstreams,
            prefix: match config.tools.prefix {
                PrefixConfig::Always => PrefixMode::Always,
                PrefixConfig::Never => PrefixMode::Never,
            },
            pin_mode: match config.tools.pin_mode {
                PinModeConfig::Strict => PinMode::Strict,
                PinModeConfig::Open => PinMode::Open,
            },
            rules,
            risk,
            pii,
            redactor,
            listings: Mutex::new(BTreeMap::new()),
            pins: Mutex::new(pins),
            catalog: RwLock::new(Arc::new(Catalog::default())),
            sessions: Arc::new(Sessions::new()),
        })
    }

    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.iter().find(|u| u.name() == name)
    }

    pub fn pin_mode(&self) -> PinMode {
        self.pin_mode
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// The catalog in service.
    pub fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.catalog.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The MCP sessions of `/mcp` and their owners.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// Stops every supervisor (stdio children are killed).
    pub fn shutdown(&self) {
        for upstream in &self.upstreams {
            upstream.shutdown();
        }
    }

    /// The current pins.
    pub async fn pins(&self) -> BTreeMap<String, Pin> {
        self.pins.lock().await.clone()
    }
}

/// One upstream's sanitizers: for the arguments it receives and the results it answers.
#[derive(Debug)]
pub struct UpstreamPii {
    pub arguments: portcullis_sanitize::Sanitizer,
    pub results: portcullis_sanitize::Sanitizer,
}

fn unreachable_redactor() -> Redactor {
    // Built-in detectors with no values; if even this fails there is nothing safer to do than
    // retry, which fails the same way: fall back to a second attempt and then abort the process.
    match Redactor::new(["portcullis-unreachable-secret"]) {
        Ok(redactor) => redactor,
        Err(_) => std::process::abort(),
    }
}

/// `/mcp`: identity and Origin checks, then rmcp's Streamable HTTP service.
pub fn router(state: AppState) -> axum::Router<AppState> {
    let config = &state.config;
    let mut rmcp_config = StreamableHttpServerConfig::default()
        .with_max_request_body_bytes(
            usize::try_from(config.server.max_body_bytes).unwrap_or(usize::MAX),
        )
        .with_sse_keep_alive(Some(Duration::from_secs(15)));
    let loopback = config
        .server
        .bind
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|addr| addr.ip().is_loopback());
    if !loopback {
        // Host names of a public deployment are the reverse proxy's business; Origin is still
        // checked below.
        rmcp_config = rmcp_config.disable_allowed_hosts();
    }
    let handler_state = state.clone();
    let sessions = Arc::clone(state.mcp.sessions());
    let service = StreamableHttpService::new(
        move || {
            Ok(McpHandler {
                state: handler_state.clone(),
            })
        },
        sessions.manager(),
        rmcp_config,
    );
    axum::Router::new()
        .route_service("/mcp", service)
        .layer(middleware::from_fn_with_state((state, sessions), guard))
}

/// Identify, then Origin, then the session's owner: nothing reaches rmcp (or an upstream)
/// without all three.
async fn guard(
    State((state, sessions)): State<(AppState, Arc<Sessions>)>,
    mut req: Request,
    next: Next,
) -> Response {
    let correlation = req
        .extensions()
        .get::<CorrelationId>()
        .cloned()
        .unwrap_or_else(CorrelationId::generate);
    let mut identified = match crate::pipeline::identify(&state, req.headers(), &correlation).await
    {
        Ok(identified) => identified,
        Err(err) => return err.into_response(),
    };
    // A session is served only to the agent that opened it; any other answers as unknown.
    let asked = match req.headers().get(sessions::SESSION_HEADER) {
        None => None,
        Some(value) => match value.to_str() {
            Ok(id) if sessions.owned_by(id, &identified.agent.id) => Some(id.to_owned()),
            _ => return sessions::unknown_session(),
        },
    };
    // Without `X-Portcullis-Session`, the session is the MCP session the gateway issued to this
    // agent, else (stateless protocol) the agent's default session of the day: budgets count
    // per session, and no caller-chosen id is ever trusted as one.
    if identified.subject.session.is_none() {
        identified.subject.session = Some(match &asked {
            Some(id) => format!("mcp:{id}"),
            None => default_session(&identified.agent.id, state.clock.now()),
        });
    }
    if !origin_allowed(&state, req.headers()) {
        state
            .events
            .emit_best_effort(
                Event::new("mcp.origin", Decision::Deny, ErrorCode::Forbidden.as_str())
                    .subject(identified.agent.id.clone())
                    .correlation(correlation.as_str()),
            )
            .await;
        return ApiError::new(ErrorCode::Forbidden).into_response();
    }
    let agent = identified.agent.id.clone();
    let project = identified.subject.project.clone();
    let method = req.method().clone();
    req.extensions_mut().insert(identified);
    let response = next.run(req).await;
    let ended = sessions::ended(asked.as_deref(), &method, &response);
    let issued = sessions::issued(asked.as_deref(), &response);
    sessions
        .after(&state, (&agent, project), ended, issued, &correlation)
        .await;
    response
}

/// The session of a request that is in no MCP session: one per agent and UTC day.
pub fn default_session(agent: &str, now: jiff::Timestamp) -> String {
    format!("default:{agent}:{}", now.strftime("%Y-%m-%d"))
}

/// No `Origin` (non-browser clients) is fine; otherwise it must be the server's own origin or
/// one of `server.cors_allowed_origins`.
fn origin_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if state
        .config
        .server
        .cors_allowed_origins
        .iter()
        .any(|allowed| allowed == origin)
    {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match host {
        Some(host) => origin == format!("http://{host}") || origin == format!("https://{host}"),
        None => false,
    }
}

/// One rmcp server handler per MCP session; every request reads its caller from the HTTP
/// request that carried it.
#[derive(Clone, Debug)]
pub struct McpHandler {
    state: AppState,
}

/// The caller and correlation id of one MCP request.
struct Caller {
    identified: Identified,
    correlation: CorrelationId,
}

fn caller_of(context: &McpContext<RoleServer>) -> Result<Caller, ErrorData> {
    let parts = context
        .extensions
        .get::<axum::http::request::Parts>()
        .ok_or_else(|| ErrorData::internal_error("no request context", None))?;
    let identified = parts
        .extensions
        .get::<Identified>()
        .cloned()
        // INVARIANT (guarded): `guard` inserts the caller before rmcp runs; without it, refuse.
        .ok_or_else(|| ErrorData::invalid_request(ErrorCode::Unauthorized.message(), None))?;
    let correlation = parts
        .extensions
        .get::<CorrelationId>()
        .cloned()
        .unwrap_or_else(CorrelationId::generate);
    Ok(Caller {
        identified,
        correlation,
    })
}

/// The JSON-RPC error for a missing and for a denied tool alike.
pub fn unknown_tool() -> ErrorData {
    ErrorData::invalid_params(UNKNOWN_TOOL, None)
}

/// A refused call as a tool result: `isError`, the code in the text and in `_meta`.
fn tool_error(code: ErrorCode, reason: &str, message: &str) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!(
        "{message} ({})",
        code.as_str()
    ))]);
    let mut meta = rmcp::model::MetaObject::new();
    meta.insert(
        "portcullis/error".to_owned(),
        serde_json::json!({"code": code.as_str(), "reason": reason}),
    );
    result.meta = Some(meta);
    result
}

impl McpHandler {
    /// Whether the caller may see and call `tool`: both gate keys through the policy, dry run
    /// (no event, no quota use).
    fn visible(&self, caller: &Identified, tool: &CatalogTool) -> bool {
        if !tool.is_available(self.state.mcp.pin_mode) {
            return false;
        }
        let Ok(ingress) = GateKey::parse(&format!("io:ingress:tools.{}", tool.upstream)) else {
            return false;
        };
        [ingress, tool.gate_key.clone()]
            .into_iter()
            .all(|action| self.may(caller, action, &tool.pin_key))
    }

    /// Whether policy allows `action` on `resource` for the caller: a dry run (no event, no
    /// quota use), for deciding what lists show.
    fn may(&self, caller: &Identified, action: GateKey, resource: &str) -> bool {
        let request = portcullis_core::Request {
            subject: caller.subject.clone(),
            action,
            resource: resource.to_owned(),
            context: RequestContext::default(),
        };
        crate::policy::explain(
            &self.state.policy.engine(),
            self.state.policy.state(),
            &request,
            &caller.agent.allow,
            self.state.clock.now(),
        )
        .is_allow()
    }

    /// A meta-catalog agent's call: one of the broker verbs, nothing else.
    async fn broker(
        &self,
        caller: &Caller,
        request: &CallToolRequestParams,
    ) -> Result<CallToolResult, ErrorData> {
        let Some(verb) = broker::parse(&request.name, request.arguments.as_ref())? else {
            return Err(unknown_tool());
        };
        let mut catalog = self.state.mcp.catalog();
        if catalog.is_empty() {
            catalog = refresh(&self.state).await;
        }
        let visible = |id: &str| {
            catalog
                .get(id)
                .filter(|tool| self.visible(&caller.identified, tool))
                .map(|tool| tool.exposed.clone())
        };
        match verb {
            broker::Verb::Search { query, max_results } => {
                let tools: Vec<&serde_json::Value> = catalog
                    .tools()
                    .iter()
                    .filter(|tool| self.visible(&caller.identified, tool))
                    .map(|tool| &tool.exposed)
                    .collect();
                let hits = broker::search(tools.into_iter(), &query, max_results);
                Ok(CallToolResult::structured(
                    serde_json::json!({ "tools": hits }),
                ))
            }
            broker::Verb::Describe { tool_id } => visible(&tool_id)
                .map(CallToolResult::structured)
                .ok_or_else(unknown_tool),
            broker::Verb::Load { tool_ids } => {
                let tools = tool_ids
                    .iter()
                    .map(|id| visible(id).ok_or_else(unknown_tool))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(CallToolResult::structured(
                    serde_json::json!({ "tools": tools }),
                ))
            }
            broker::Verb::Call { tool_id, arguments } => {
                let mut params = CallToolRequestParams::new(tool_id);
                params.arguments = Some(arguments);
                self.call(caller, params).await
            }
        }
    }
}

impl ServerHandler for McpHandler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("portcullis", env!("CARGO_PKG_VERSION")))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: McpContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = caller_of(&context)?;
        if caller.identified.agent.catalog == CatalogView::Meta {
            return Ok(ListToolsResult::with_all_items(broker::tools()));
        }
        let catalog = refresh(&self.state).await;
        let tools: Vec<Tool> = catalog
            .tools()
            .iter()
            .filter(|tool| self.visible(&caller.identified, tool))
            .filter_map(|tool| serde_json::from_value(tool.exposed.clone()).ok())
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: McpContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = caller_of(&context)?;
        let result = if caller.identified.agent.catalog == CatalogView::Meta {
            self.broker(&caller, &request).await
        } else {
            self.call(&caller, request).await
        };
        result.map(CallToolResponse::from)
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: McpContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let caller = caller_of(&context)?;
        Ok(self.list_prompts_for(&caller).await)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: McpContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let caller = caller_of(&context)?;
        self.get_prompt_for(&caller, request)
            .await
            .map(GetPromptResponse::from)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: McpContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let caller = caller_of(&context)?;
        Ok(self.list_resources_for(&caller).await)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: McpContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let caller = caller_of(&context)?;
        Ok(self.list_resource_templates_for(&caller).await)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: McpContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let caller = caller_of(&context)?;
        self.read_resource_for(&caller, request)
            .await
            .map(ReadResourceResponse::from)
    }
}
