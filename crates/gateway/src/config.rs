//! `portcullis.toml`: the configuration model, loading with environment overrides, and validation.
//!
//! Loading is two-stage (ripgrep's habit): [`load_str`] parses and validates without I/O beyond
//! reading the environment map it is given; the server then builds its parts from a valid
//! [`Config`]. Unknown keys are errors everywhere, and every error names its key path and, when the
//! key came from the file, its line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod cluster;
mod duration;
mod env;
pub mod limits;
pub mod llm;
mod locate;
pub mod mcp;
pub mod policy;
mod reference;

pub use duration::ConfigDuration;
pub use policy::CapsulesConfig;
pub use reference::render_reference;

/// The whole configuration. Every section and key has a default, so an empty file is valid.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP listener shared by agents, operators and probes.
    pub server: ServerConfig,
    /// Operator authentication and the admin rate limit.
    pub admin: AdminConfig,
    /// Where state lives.
    pub store: StoreConfig,
    /// The hash-chained ledger of events.
    pub ledger: LedgerConfig,
    /// Agents declared in configuration. Agents can also be created at run time through the
    /// admin API; those live in the store.
    pub agents: Vec<AgentConfig>,
    /// Logs and metrics.
    pub observability: ObservabilityConfig,
    /// The policy engine: immutable denies, Cedar files and the mode of each layer.
    #[schemars(with = "policy::schema::Policy")]
    pub policy: portcullis_policy::PolicyConfig,
    /// Deny contracts declared in configuration. Contracts can also be added at run time through
    /// the admin API (`/admin/contracts`); those live in the store.
    #[schemars(with = "Vec<policy::schema::Contract>")]
    pub contracts: Vec<portcullis_policy::Contract>,
    /// Signed policy capsules: the trust store and verification limits.
    pub capsules: CapsulesConfig,
    /// This node and its neighbours, for relaying capsules (docs/CAPSULES.md "Propagation").
    pub cluster: cluster::ClusterConfig,
    /// Network egress: posture, rules, the forward proxy and the DNS guard (docs/EGRESS.md).
    pub egress: portcullis_netpolicy::EgressConfig,
    /// Secrets for upstreams and providers, referenced by name elsewhere in the configuration.
    pub secrets: crate::secrets::SecretsConfig,
    /// Call-rate limits per agent, project, tool or model (docs/BUDGETS.md).
    pub limits: limits::LimitsConfig,
    /// Where budget alerts are posted besides the ledger (docs/BUDGETS.md).
    pub alerts: limits::AlertsConfig,
    /// Budgets: money, token and call limits per session, agent, user, room, project or
    /// everything together; prices; thresholds; the reservation lifetime (docs/BUDGETS.md).
    /// Default: the starter budgets (each session $0.50 over its lifetime, each user $5.00 a
    /// day, everything together $120.00 a month).
    pub budgets: portcullis_budget::BudgetsConfig,
    /// MCP servers Portcullis fronts at `/mcp` (docs/MCP.md). Only configured upstreams exist.
    pub upstreams: Vec<mcp::UpstreamConfig>,
    /// The MCP catalog: tool naming, pin mode and argument rules.
    pub tools: mcp::ToolsConfig,
    /// The OpenAI-compatible front: providers, routes and defaults (docs/LLM.md).
    pub llm: llm::LlmConfig,
    /// PII and secret sanitization of what agents send to providers (docs/PII.md).
    pub pii: llm::PiiSection,
    /// The file this configuration was read from (not a key: set by [`load`]).
    #[serde(skip)]
    #[schemars(skip)]
    pub origin: Option<PathBuf>,
}

/// `[server]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the HTTP listener (MCP, OpenAI-compatible, admin, health and metrics). Port 0
    /// picks a free port; the chosen address is printed in the `listening` line. Binding anything
    /// but loopback requires an admin token.
    pub bind: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: u64,
    /// Largest total size of request headers accepted, in bytes.
    pub max_header_bytes: u64,
    /// Time a request may take before it is answered with an error.
    pub request_timeout: ConfigDuration,
    /// On SIGTERM/SIGINT, how long in-flight requests may still run before they are cut.
    pub shutdown_grace: ConfigDuration,
    /// Origins allowed to call the HTTP API from a browser. Empty: no CORS headers at all.
    pub cors_allowed_origins: Vec<String>,
    /// Set when a TLS-terminating reverse proxy fronts a non-loopback bind; `portcullis doctor`
    /// fails a non-loopback bind without it.
    pub behind_tls_proxy: bool,
    /// Time a client has to send a complete request head, from its first byte (from the accept
    /// for a new connection); past it the connection is closed (1s to 5m).
    pub header_read_timeout: ConfigDuration,
    /// A connection with no request in flight and no bytes moving for this long is closed:
    /// kept-alive connections between requests, clients that stopped reading (1s to 1h).
    pub idle_timeout: ConfigDuration,
    /// Most connections the HTTP listener keeps open. At the cap the connection idle the longest
    /// is closed to make room; when every one is busy the new one is refused. Lowered at start to
    /// three quarters of the open-file limit when that is smaller (1 to 1000000).
    pub max_connections: u32,
    /// Most connections one client address keeps open, with the same rule (1 to
    /// `max_connections`). Behind a reverse proxy every client shares the proxy's address.
    pub max_connections_per_ip: u32,
    /// Length of the listen queue of connections not yet accepted (1 to 65535; the system may cap
    /// it, see `net.core.somaxconn`).
    pub listen_backlog: u32,
    /// Failed authentications (401 on any surface: agent token, admin token, metrics token) one
    /// client address may make per window; past it, its requests without a valid credential are
    /// refused with 429 and recorded as one `auth.refused` event per address and window.
    pub auth_failures_per_peer: u32,
    /// Failed authentications from all addresses together per window, with the same rule for
    /// every address once reached. A valid credential is never refused by either limit.
    pub auth_failures_global: u32,
    /// The window of both failed-authentication limits (1s to 1h).
    pub auth_failure_window: ConfigDuration,
}

/// Default of `server.auth_failures_per_peer`.
pub const DEFAULT_AUTH_FAILURES_PER_PEER: u32 = 30;
/// Default of `server.auth_failures_global`.
pub const DEFAULT_AUTH_FAILURES_GLOBAL: u32 = 300;
/// Default of `server.auth_failure_window`.
pub const DEFAULT_AUTH_FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// `[admin]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The admin token in clear. Prefer `token_sha256` or the `PORTCULLIS_ADMIN_TOKEN`
    /// environment variable. When no token is set and the bind is loopback, one is generated on
    /// first start, stored 0600 in the data dir and printed once.
    pub token: Option<String>,
    /// SHA-256 of the admin token, as 64 hex digits.
    pub token_sha256: Option<String>,
    /// Admin requests with the admin token allowed per window, as `limit/window_secs`, counted
    /// per token; over it, 429 with `Retry-After`. Failed attempts never use it up: they count
    /// against `server.auth_failures_per_peer` and `server.auth_failures_global`. A pair whose
    /// period rounds to zero (more than one request per nanosecond) is refused.
    pub rate_limit: String,
}

/// `[store]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Storage engine. `sqlite` keeps everything in `<data dir>/portcullis.db` (WAL).
    pub backend: StoreBackend,
}

/// Storage engines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    /// Embedded SQLite in the data dir.
    #[default]
    Sqlite,
}

/// `[ledger]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// Write a signed checkpoint after this many records.
    pub checkpoint_every: u64,
    /// Write a signed checkpoint at least this often while records arrive.
    pub checkpoint_interval: ConfigDuration,
}

/// `[[agents]]`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Unique agent id, 1-64 characters of `[A-Za-z0-9._-]`.
    pub id: String,
    /// SHA-256 of the agent's bearer token, as 64 hex digits. The token itself is never stored.
    pub token_sha256: String,
    /// Roles, for policy subjects.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Tags, for policy subjects.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The project the agent belongs to (egress posture, budgets).
    #[serde(default)]
    pub project: Option<String>,
    /// Gate-key patterns this agent may use (the policy's allowlist layer).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Whether the agent may state whom it acts for with `X-Portcullis-User`,
    /// `X-Portcullis-Room` and `X-Portcullis-Session` (chat bridges).
    #[serde(default)]
    pub may_assert_identity: bool,
    /// How the agent sees the MCP catalog: `full` (every tool it may call) or `meta` (only the
    /// broker verbs `search_tools`, `describe_tool`, `load_tools` and `call_tool`).
    #[serde(default)]
    pub catalog: CatalogView,
}

/// How an agent sees the MCP catalog (docs/MCP.md, "Broker verbs").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatalogView {
    /// `tools/list` shows every tool the agent may call.
    #[default]
    Full,
    /// `tools/list` shows only the broker verbs, for clients whose catalog would be too large.
    Meta,
}

impl CatalogView {
    pub fn as_str(self) -> &'static str {
        match self {
            CatalogView::Full => "full",
            CatalogView::Meta => "meta",
        }
    }

    /// Parses a stored or requested value (`full`, `meta`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "full" => Some(CatalogView::Full),
            "meta" => Some(CatalogView::Meta),
            _ => None,
        }
    }
}

/// `[observability]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilityConfig {
    /// Log filter in `tracing` syntax, e.g. `info` or `portcullis_gateway=debug`.
    pub log_level: String,
    /// `auto` (JSON lines unless stderr is a terminal), `json` or `human`.
    pub log_format: LogFormat,
    /// When set, `/metrics` answers only `Authorization: Bearer <this token>` (at least 32
    /// characters; prefer the `PORTCULLIS_OBSERVABILITY_METRICS_TOKEN` environment variable).
    /// Unset: `/metrics` is open, and `portcullis doctor` warns when the bind is not loopback.
    pub metrics_token: Option<String>,
}

/// Log output formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Auto,
    Json,
    Human,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8090".to_owned(),
            max_body_bytes: 1024 * 1024,
            max_header_bytes: 16 * 1024,
            request_timeout: ConfigDuration::from_secs(30),
            shutdown_grace: ConfigDuration::from_secs(10),
            cors_allowed_origins: Vec::new(),
            behind_tls_proxy: false,
            header_read_timeout: ConfigDuration::from_secs(10),
            idle_timeout: ConfigDuration::from_secs(60),
            max_connections: 8192,
            max_connections_per_ip: 1024,
            listen_backlog: 1024,
            auth_failures_per_peer: DEFAULT_AUTH_FAILURES_PER_PEER,
            auth_failures_global: DEFAULT_AUTH_FAILURES_GLOBAL,
            auth_failure_window: ConfigDuration::from_secs(DEFAULT_AUTH_FAILURE_WINDOW.as_secs()),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            token: None,
            token_sha256: None,
            rate_limit: "60/60".to_owned(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Sqlite,
        }
    }
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            checkpoint_interval: ConfigDuration::from_secs(60),
        }
    }
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        Self {
            log_level: "info".to_owned(),
            log_format: LogFormat::Auto,
            metrics_token: None,
        }
    }
}

/// One configuration problem, with where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConfigIssue {
    /// Dotted key path, e.g. `agents[1].token_sha256`; empty for the whole file.
    pub path: String,
    /// 1-based line in the file, when the key came from the file.
    pub line: Option<usize>,
    /// What is wrong, one sentence.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.path.is_empty()) {
            (Some(line), false) => write!(f, "line {line}: `{}`: {}", self.path, self.message),
            (Some(line), true) => write!(f, "line {line}: {}", self.message),
            (None, false) => write!(f, "`{}`: {}", self.path, self.message),
            (None, true) => f.write_str(&self.message),
        }
    }
}

/// A configuration that failed to load: every problem found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_issues(.source_name, .issues))]
pub struct ConfigError {
    pub source_name: String,
    pub issues: Vec<ConfigIssue>,
}

fn render_issues(source_name: &str, issues: &[ConfigIssue]) -> String {
    let mut out = format!("invalid configuration in {source_name}:");
    for issue in issues {
        out.push_str(&format!("\n  {issue}"));
    }
    out
}

/// Where the configuration came from, for messages and for `doctor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    Defaults,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::Defaults => f.write_str("built-in defaults"),
        }
    }
}

/// Environment variables that are not `<SECTION>_<KEY>` overrides.
pub const SPECIAL_ENV: &[&str] = &[
    "PORTCULLIS_DEBUG",
    "PORTCULLIS_DATA_DIR",
    "PORTCULLIS_CONFIG",
    "PORTCULLIS_LOG",
];

/// Picks the config file: `--config`, else `PORTCULLIS_CONFIG`, else `./portcullis.toml` when
/// present, else built-in defaults.
pub fn resolve_source(flag: Option<&Path>, env: &BTreeMap<String, String>) -> ConfigSource {
    if let Some(path) = flag {
        return ConfigSource::File(path.to_owned());
    }
    if let Some(path) = env.get("PORTCULLIS_CONFIG").filter(|p| !p.is_empty()) {
        return ConfigSource::File(PathBuf::from(path));
    }
    let local = PathBuf::from("portcullis.toml");
    if local.is_file() {
        ConfigSource::File(local)
    } else {
        ConfigSource::Defaults
    }
}

/// Reads and validates the configuration from `source`, applying `PORTCULLIS_<SECTION>_<KEY>`
/// overrides from `env`.
pub fn load(source: &ConfigSource, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
    match source {
        ConfigSource::Defaults => load_str("", &source.to_string(), env),
        ConfigSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
                source_name: path.display().to_string(),
                issues: vec![ConfigIssue {
                    path: String::new(),
                    line: None,
                    message: format!("cannot read the file: {err}"),
                }],
            })?;
            let mut config = load_str(&text, &path.display().to_string(), env)?;
            config.origin = Some(path.clone());
            Ok(config)
        }
    }
}

/// Whether every `PORTCULLIS_<SECTION>_<KEY>` variable in `env` names a known section.
pub fn env_overrides_valid(env: &BTreeMap<String, String>) -> bool {
    env::overrides(env).is_ok()
}

/// Longest configuration file accepted.
pub const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// Parses `text`, applies environment overrides and validates. No file or network I/O.
pub fn load_str(
    text: &str,
    source_name: &str,
    env: &BTreeMap<String, String>,
) -> Result<Config, ConfigError> {
    let fail = |issues: Vec<ConfigIssue>| ConfigError {
        source_name: source_name.to_owned(),
        issues,
    };
    if text.len() > MAX_CONFIG_BYTES {
        return Err(fail(vec![ConfigIssue {
            path: String::new(),
            line: None,
            message: format!("the file is larger than {MAX_CONFIG_BYTES} bytes"),
        }]));
    }
    let overrides = env::overrides(env).map_err(fail)?;
    let config = if overrides.is_empty() {
        deserialize_text(text)
    } else {
        deserialize_with_overrides(text, &overrides)
    }
    .map_err(|issue| fail(vec![issue]))?;
    let issues = validate(&config);
    if issues.is_empty() {
        Ok(config)
    } else {
        let located = issues
            .into_iter()
            .map(|mut issue| {
                if !env::is_overridden(&overrides, &issue.path) {
                    issue.line = locate::line_of(text, &issue.path);
                }
                issue
            })
            .collect();
        Err(fail(located))
    }
}

fn deserialize_text(text: &str) -> Result<Config, ConfigIssue> {
    let deserializer = toml::de::Deserializer::parse(text).map_err(|err| ConfigIssue {
        path: String::new(),
        line: err.span().map(|span| locate::line_at(text, span.start)),
        message: err.message().to_owned(),
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        ConfigIssue {
            line: inner
                .span()
                .map(|span| locate::line_at(text, span.start))
                .or_else(|| locate::line_of(text, &path)),
            path: if path == "." { String::new() } else { path },
            message: inner.message().to_owned(),
        }
    })
}

fn deserialize_with_overrides(
    text: &str,
    overrides: &[env::Override],
) -> Result<Config, ConfigIssue> {
    let mut table: toml::Table =
        toml::from_str(text).map_err(|err: toml::de::Error| ConfigIssue {
            path: String::new(),
            line: err.span().map(|span| locate::line_at(text, span.start)),
            message: err.message().to_owned(),
        })?;
    env::apply(&mut table, overrides)?;
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|err| {
        let path = err.path().to_string();
        let origin = env::origin_of(overrides, &path);
        let message = err.into_inner().message().to_owned();
        ConfigIssue {
            line: if origin.is_some() {
                None
            } else {
                locate::line_of(text, &path)
            },
            path,
            message: match origin {
                Some(var) => format!("{message} (from environment variable `{var}`)"),
                None => message,
            },
        }
    })
}

/// Semantic checks serde cannot express.
pub fn validate(config: &Config) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    let mut issue = |path: String, message: String| {
        issues.push(ConfigIssue {
            path,
            line: None,
            message,
        })
    };

    for name in config.secrets.env.keys() {
        if !crate::secrets::is_valid_name(name) {
            issue(
                format!("secrets.env.{name}"),
                "a secret name has 1-64 characters among letters, digits, `_`, `-` and `.`".into(),
            );
        }
    }
    if config.server.bind.parse::<SocketAddr>().is_err() {
        issue(
            "server.bind".into(),
            format!(
                "`{}` is not an `ip:port` socket address",
                config.server.bind
            ),
        );
    }
    if config.server.max_body_bytes == 0 || config.server.max_body_bytes > 64 * 1024 * 1024 {
        issue(
            "server.max_body_bytes".into(),
            "must be between 1 and 67108864".into(),
        );
    }
    if !(1024..=1024 * 1024).contains(&config.server.max_header_bytes) {
        issue(
            "server.max_header_bytes".into(),
            "must be between 1024 and 1048576".into(),
        );
    }
    let server = &config.server;
    let secs = |duration: &ConfigDuration| duration.as_std().as_secs_f64();
    if !(1.0..=300.0).contains(&secs(&server.header_read_timeout)) {
        issue(
            "server.header_read_timeout".into(),
            "must be between 1s and 5m".into(),
        );
    }
    if !(1.0..=3600.0).contains(&secs(&server.idle_timeout)) {
        issue(
            "server.idle_timeout".into(),
            "must be between 1s and 1h".into(),
        );
    }
    if !(1..=1_000_000).contains(&server.max_connections) {
        issue(
            "server.max_connections".into(),
            "must be between 1 and 1000000".into(),
        );
    }
    if server.max_connections_per_ip == 0 || server.max_connections_per_ip > server.max_connections
    {
        issue(
            "server.max_connections_per_ip".into(),
            "must be between 1 and `server.max_connections`".into(),
        );
    }
    if !(1..=65_535).contains(&server.listen_backlog) {
        issue(
            "server.listen_backlog".into(),
            "must be between 1 and 65535".into(),
        );
    }
    if !(1..=1_000_000).contains(&server.auth_failures_per_peer) {
        issue(
            "server.auth_failures_per_peer".into(),
            "must be between 1 and 1000000".into(),
        );
    }
    if server.auth_failures_global < server.auth_failures_per_peer
        || server.auth_failures_global > 10_000_000
    {
        issue(
            "server.auth_failures_global".into(),
            "must be between `server.auth_failures_per_peer` and 10000000".into(),
        );
    }
    if !(1.0..=3600.0).contains(&secs(&server.auth_failure_window)) {
        issue(
            "server.auth_failure_window".into(),
            "must be between 1s and 1h".into(),
        );
    }
    for (idx, origin) in config.server.cors_allowed_origins.iter().enumerate() {
        let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
            && origin.parse::<axum::http::HeaderValue>().is_ok()
            && !origin.ends_with('/');
        if !valid {
            issue(
                format!("server.cors_allowed_origins[{idx}]"),
                format!("`{origin}` is not an origin like `https://example.com`"),
            );
        }
    }
    if let Err(message) = crate::admin::RateLimit::parse(&config.admin.rate_limit) {
        issue("admin.rate_limit".into(), message);
    }
    if let Some(hash) = &config.admin.token_sha256 {
        if parse_sha256_hex(hash).is_none() {
            issue(
                "admin.token_sha256".into(),
                "must be 64 hex digits (the SHA-256 of the token)".into(),
            );
        }
    }
    if let Some(token) = &config.admin.token {
        if token.len() < crate::tokens::MIN_ADMIN_TOKEN_LEN {
            issue(
                "admin.token".into(),
                format!(
                    "must be at least {} characters",
                    crate::tokens::MIN_ADMIN_TOKEN_LEN
                ),
            );
        }
    }
    if config.admin.token.is_some() && config.admin.token_sha256.is_some() {
        issue(
            "admin.token_sha256".into(),
            "set either `admin.token` or `admin.token_sha256`, not both".into(),
        );
    }
    if config.ledger.checkpoint_every == 0 {
        issue(
            "ledger.checkpoint_every".into(),
            "must be at least 1".into(),
        );
    }
    if config.ledger.checkpoint_interval.as_std().is_zero() {
        issue(
            "ledger.checkpoint_interval".into(),
            "must be longer than zero".into(),
        );
    }
    if let Some(token) = &config.observability.metrics_token {
        let valid = token.len() >= crate::tokens::MIN_ADMIN_TOKEN_LEN
            && token.len() <= crate::tokens::MAX_TOKEN_LEN
            && token.bytes().all(|b| b.is_ascii_graphic());
        if !valid {
            issue(
                "observability.metrics_token".into(),
                format!(
                    "must be {}-{} printable characters without spaces",
                    crate::tokens::MIN_ADMIN_TOKEN_LEN,
                    crate::tokens::MAX_TOKEN_LEN
                ),
            );
        }
    }
    if tracing_subscriber::EnvFilter::try_new(&config.observability.log_level).is_err() {
        issue(
            "observability.log_level".into(),
            format!(
                "`{}` is not a valid log filter",
                config.observability.log_level
            ),
        );
    }

    if let Err(err) = portcullis_netpolicy::EgressPolicy::from_config(&config.egress) {
        issue("egress".into(), err.to_string());
    }
    for (key, value) in [
        ("egress.proxy_bind", &config.egress.proxy_bind),
        ("egress.dns_bind", &config.egress.dns_bind),
    ] {
        if !value.is_empty() && value.parse::<SocketAddr>().is_err() {
            issue(
                key.into(),
                format!("`{value}` is not an `ip:port` socket address (empty disables it)"),
            );
        }
    }

    let mut ids = BTreeSet::new();
    let mut hashes = BTreeSet::new();
    for (idx, agent) in config.agents.iter().enumerate() {
        if !crate::identity::is_valid_agent_id(&agent.id) {
            issue(
                format!("agents[{idx}].id"),
                format!(
                    "`{}` is not a valid agent id (1-64 characters of A-Z a-z 0-9 . _ -)",
                    agent.id
                ),
            );
        } else if !ids.insert(agent.id.as_str()) {
            issue(
                format!("agents[{idx}].id"),
                format!("agent `{}` is declared twice", agent.id),
            );
        }
        match parse_sha256_hex(&agent.token_sha256) {
            None => issue(
                format!("agents[{idx}].token_sha256"),
                "must be 64 hex digits (the SHA-256 of the token)".into(),
            ),
            Some(hash) => {
                if !hashes.insert(hash) {
                    issue(
                        format!("agents[{idx}].token_sha256"),
                        "two agents share one token".into(),
                    );
                }
            }
        }
        for (pattern_idx, pattern) in agent.allow.iter().enumerate() {
            if let Err(err) = portcullis_core::GatePattern::parse(pattern) {
                issue(
                    format!("agents[{idx}].allow[{pattern_idx}]"),
                    format!("`{pattern}` is not a gate-key pattern: {err}"),
                );
            }
        }
    }
    policy::validate(config, &mut issue);
    cluster::validate(config, &mut issue);
    limits::validate(config, &mut issue);
    if let Err(found) = config.budgets.compile() {
        for found in found {
            issue(format!("budgets.{}", found.key), found.message);
        }
    }
    mcp::validate(config, &mut issue);
    llm::validate(config, &mut issue);
    issues
}

/// `raw` as an `http` or `https` URL with a host and no credentials; `None` otherwise.
pub(crate) fn http_url(raw: &str) -> Option<reqwest::Url> {
    reqwest::Url::parse(raw).ok().filter(|url| {
        matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some()
            && url.username().is_empty()
            && url.password().is_none()
    })
}

/// Parses 64 hex digits (either case) into 32 bytes.
pub fn parse_sha256_hex(hex_digits: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut out).ok()?;
    Some(out)
}

/// The JSON Schema of the configuration file.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Config)).unwrap_or(serde_json::Value::Null)
}

/// The fully commented example configuration (`portcullis config example`).
pub const EXAMPLE: &str = include_str!("../../../docs/portcullis.example.toml");

#[cfg(test)]
mod tests;
