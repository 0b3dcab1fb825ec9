//! `[[upstreams]]` and `[tools]`: the MCP upstream registry with each upstream's PII strategies,
//! the catalog's naming and pin mode, argument rules and risk tiers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use portcullis_core::request::RiskTier;
use portcullis_sanitize::{PiiConfig, Strategy, StrategyTable};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::llm::PiiSection;
use crate::config::{Config, ConfigDuration};

/// Most upstreams in one configuration.
pub const MAX_UPSTREAMS: usize = 64;

/// `[[upstreams]]`: one MCP server Portcullis fronts. Only configured upstreams exist.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Unique name, 1-32 characters of `[a-z0-9_-]`; tools are exposed as `<name>.<tool>`.
    pub name: String,
    /// The version the operator approved (shown in `portcullis tools list`).
    #[serde(default)]
    pub version: Option<String>,
    /// A disabled upstream is neither started nor listed.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A child process speaking MCP over stdio. Set exactly one of `stdio` and `http`.
    #[serde(default)]
    pub stdio: Option<StdioUpstreamConfig>,
    /// A Streamable HTTP MCP server. Set exactly one of `stdio` and `http`.
    #[serde(default)]
    pub http: Option<HttpUpstreamConfig>,
    /// Longest a tool call may take before it fails with `upstream_timeout`.
    #[serde(default = "default_call_timeout")]
    pub call_timeout: ConfigDuration,
    /// Calls in flight to this upstream at once (1-1024).
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: u32,
    /// What the sanitizer does with personal data and secrets in this upstream's traffic.
    #[serde(default)]
    pub pii: UpstreamPiiConfig,
}

/// `[upstreams.pii]`: per-upstream sanitize strategies (docs/MCP.md). The limits and detectors
/// are `[pii]`'s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamPiiConfig {
    /// Strategies for tool and prompt arguments, before the upstream sees them.
    pub arguments: UpstreamStrategies,
    /// Strategies for tool results, prompts and resources, before the agent sees them.
    pub results: UpstreamStrategies,
}

/// One strategy per entity type: `allow` (detected and counted in the record, passed on),
/// `redact`, `synthetic` (restored in results for the same agent and session), `hash` or `block`
/// (the call is refused, `pii_blocked`). Personal data defaults to `allow`; `secret` defaults to
/// `redact` and may only be `redact`, `hash` or `block`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamStrategies {
    #[schemars(with = "String")]
    pub email: Strategy,
    #[schemars(with = "String")]
    pub phone: Strategy,
    #[schemars(with = "String")]
    pub credit_card: Strategy,
    #[schemars(with = "String")]
    pub us_ssn: Strategy,
    #[schemars(with = "String")]
    pub iban: Strategy,
    #[schemars(with = "String")]
    pub ip: Strategy,
    /// Secret formats and configured secret values: agents never hand secrets to tools, and
    /// tools never hand them to agents.
    #[schemars(with = "String")]
    pub secret: Strategy,
}

impl Default for UpstreamStrategies {
    fn default() -> Self {
        Self {
            email: Strategy::Allow,
            phone: Strategy::Allow,
            credit_card: Strategy::Allow,
            us_ssn: Strategy::Allow,
            iban: Strategy::Allow,
            ip: Strategy::Allow,
            secret: Strategy::Redact,
        }
    }
}

impl UpstreamStrategies {
    /// The sanitizer's strategy table.
    pub fn table(&self) -> StrategyTable {
        StrategyTable {
            email: self.email,
            phone: self.phone,
            credit_card: self.credit_card,
            us_ssn: self.us_ssn,
            iban: self.iban,
            ip: self.ip,
            secret: self.secret,
        }
    }
}

impl UpstreamPiiConfig {
    /// The sanitizer configuration for the upstream's arguments: `[pii]`'s limits and
    /// detectors with this upstream's strategies.
    pub fn arguments_config(&self, global: &PiiSection) -> PiiConfig {
        PiiConfig {
            strategies: self.arguments.table(),
            ..global.sanitizer_config()
        }
    }

    /// The sanitizer configuration for what the upstream answers.
    pub fn results_config(&self, global: &PiiSection) -> PiiConfig {
        PiiConfig {
            strategies: self.results.table(),
            ..global.sanitizer_config()
        }
    }
}

/// `[upstreams.stdio]`
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdioUpstreamConfig {
    /// The program to run (a path, or a name looked up in `PATH`).
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Names of the gateway's environment variables the child may see. The child's environment
    /// is otherwise empty.
    #[serde(default)]
    pub env_allow: Vec<String>,
    /// Secrets injected into the child's environment: `ENV_VAR = "secret name"` (see `[secrets]`).
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Working directory of the child; the gateway's when unset.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
}

/// `[upstreams.http]`
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpUpstreamConfig {
    /// The MCP endpoint, e.g. `http://127.0.0.1:9000/mcp`.
    pub url: String,
    /// Request headers whose values are secrets: `Header-Name = "secret name"`.
    #[serde(default)]
    pub headers_from_secrets: BTreeMap<String, String>,
}

/// `[tools]`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ToolsConfig {
    /// `always`: tools are named `<upstream>.<tool>`; `never`: bare names (one upstream only).
    pub prefix: PrefixConfig,
    /// `strict`: tools without a pin are hidden until `portcullis tools pin`; `open`: they are
    /// visible. Drifted tools are quarantined in both modes.
    pub pin_mode: PinModeConfig,
    /// Argument rules, checked after the pinned input schema, in order.
    pub rules: Vec<ArgumentRuleConfig>,
    /// Risk tiers by tool pattern; a tool takes the highest tier of every entry that names it
    /// (`low` when none does), raised by its MCP annotations.
    pub risk: Vec<RiskRuleConfig>,
}

/// `[[tools.risk]]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RiskRuleConfig {
    /// Tools as `<upstream>.<tool>` with the upstream's own tool name: exact, or a prefix
    /// ending in `*` (`files.*`).
    pub tools: Vec<String>,
    /// `low`, `medium`, `high` or `critical`.
    pub tier: RiskTierConfig,
}

/// Risk tiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RiskTierConfig {
    Low,
    Medium,
    High,
    Critical,
}

impl RiskTierConfig {
    pub fn tier(self) -> RiskTier {
        match self {
            RiskTierConfig::Low => RiskTier::Low,
            RiskTierConfig::Medium => RiskTier::Medium,
            RiskTierConfig::High => RiskTier::High,
            RiskTierConfig::Critical => RiskTier::Critical,
        }
    }
}

/// Tool naming.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrefixConfig {
    #[default]
    Always,
    Never,
}

/// What unpinned tools do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PinModeConfig {
    #[default]
    Strict,
    Open,
}

/// `[[tools.rules]]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArgumentRuleConfig {
    /// The rule's name, quoted in the error the agent sees.
    pub name: String,
    /// Tools whose arguments the rule checks, as `<upstream>.<tool>` with the upstream's own
    /// tool name whatever `tools.prefix` is: exact, or a prefix ending in `*` (`files.*`).
    #[serde(default)]
    pub tools: Vec<String>,
    /// Prompts whose arguments the rule checks, as `<upstream>.<prompt>`: exact, or a prefix
    /// ending in `*`.
    #[serde(default)]
    pub prompts: Vec<String>,
    /// Upstreams whose resource URIs the rule checks (`files`, or a prefix ending in `*`):
    /// `path` needs a `file://` URI within `roots`, `url` an allowed http(s) URL, `deny` a URI
    /// that does not match.
    #[serde(default)]
    pub resources: Vec<String>,
    /// `path`, `url` or `deny`.
    pub kind: RuleKindConfig,
    /// Top-level argument names the rule checks (for `deny`, empty means every argument).
    #[serde(default)]
    pub arguments: Vec<String>,
    /// `path`: absolute roots the paths must lie within. A relative path is taken from the first
    /// root and forwarded as the absolute path that was checked.
    #[serde(default)]
    pub roots: Vec<PathBuf>,
    /// `path`: the roots are on this machine, so symbolic links are resolved and must stay
    /// inside.
    #[serde(default = "default_true")]
    pub local: bool,
    /// `url`: allowed hosts, as egress host rules (`host`, `*.suffix`, `domain:reg`, `:port`);
    /// an entry without a port admits ports 80 and 443 only.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// `deny`: a regular expression no string in the arguments may match, as written or
    /// normalized (NFKC, invisible and control characters removed, whitespace runs as one space).
    #[serde(default)]
    pub pattern: Option<String>,
}

/// Argument rule kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKindConfig {
    Path,
    Url,
    Deny,
}

fn default_true() -> bool {
    true
}

fn default_call_timeout() -> ConfigDuration {
    ConfigDuration::from_secs(30)
}

fn default_max_concurrent() -> u32 {
    16
}

/// Upstream names: 1-32 characters of `[a-z0-9_-]` (no `.`, which separates the tool name).
pub fn is_valid_upstream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

/// The rule specs of `[tools]`, in the adapter's form.
pub fn rule_specs(tools: &ToolsConfig) -> Vec<portcullis_mcp::RuleSpec> {
    tools
        .rules
        .iter()
        .map(|rule| portcullis_mcp::RuleSpec {
            name: rule.name.clone(),
            tools: rule.tools.clone(),
            prompts: rule.prompts.clone(),
            resources: rule.resources.clone(),
            kind: match rule.kind {
                RuleKindConfig::Path => portcullis_mcp::RuleKindSpec::Path {
                    arguments: rule.arguments.clone(),
                    roots: rule.roots.clone(),
                    local: rule.local,
                },
                RuleKindConfig::Url => portcullis_mcp::RuleKindSpec::Url {
                    arguments: rule.arguments.clone(),
                    allow_hosts: rule.allow_hosts.clone(),
                },
                RuleKindConfig::Deny => portcullis_mcp::RuleKindSpec::Deny {
                    arguments: rule.arguments.clone(),
                    pattern: rule.pattern.clone().unwrap_or_default(),
                },
            },
        })
        .collect()
}

/// The risk entries of `[tools]`, in the adapter's form.
pub fn risk_specs(tools: &ToolsConfig) -> Vec<portcullis_mcp::RiskSpec> {
    tools
        .risk
        .iter()
        .map(|entry| portcullis_mcp::RiskSpec {
            tools: entry.tools.clone(),
            tier: entry.tier.tier(),
        })
        .collect()
}

/// Argument rules and risk entries that name no enabled upstream, so match no tool: one
/// sentence each, for the start-up log and `portcullis doctor`.
pub fn rule_warnings(config: &Config) -> Vec<String> {
    let upstreams: Vec<&str> = config
        .upstreams
        .iter()
        .filter(|u| u.enabled)
        .map(|u| u.name.as_str())
        .collect();
    // `<upstream>.<name>` patterns: an exact one names its upstream before the dot; a prefix
    // may stop inside the upstream's name or after its dot.
    let names_upstream = |pattern: &str| match pattern.strip_suffix('*') {
        Some(prefix) => upstreams.iter().any(|upstream| {
            let dotted = format!("{upstream}.");
            dotted.starts_with(prefix) || prefix.starts_with(&dotted)
        }),
        None => pattern
            .split_once('.')
            .is_some_and(|(upstream, _)| upstreams.contains(&upstream)),
    };
    let names_resource_upstream = |pattern: &str| match pattern.strip_suffix('*') {
        Some(prefix) => upstreams
            .iter()
            .any(|upstream| upstream.starts_with(prefix)),
        None => upstreams.contains(&pattern),
    };
    let mut res = Vec::new();
    for rule in &config.tools.rules {
        let matches_some = rule.tools.iter().any(|p| names_upstream(p))
            || rule.prompts.iter().any(|p| names_upstream(p))
            || rule.resources.iter().any(|p| names_resource_upstream(p));
        if !matches_some {
            res.push(format!(
                "argument rule `{}` names no enabled upstream, so it matches nothing",
                rule.name
            ));
        }
    }
    for (idx, entry) in config.tools.risk.iter().enumerate() {
        if !entry.tools.iter().any(|p| names_upstream(p)) {
            res.push(format!(
                "risk entry tools.risk[{idx}] names no enabled upstream, so it matches nothing"
            ));
        }
    }
    res
}

/// Checks `[[upstreams]]` and `[tools]`.
pub fn validate(config: &Config, issue: &mut dyn FnMut(String, String)) {
    if config.upstreams.len() > MAX_UPSTREAMS {
        issue(
            "upstreams".into(),
            format!("at most {MAX_UPSTREAMS} upstreams are allowed"),
        );
    }
    let mut names = BTreeSet::new();
    for (idx, upstream) in config.upstreams.iter().enumerate() {
        let at = |key: &str| format!("upstreams[{idx}].{key}");
        if !is_valid_upstream_name(&upstream.name) {
            issue(
                at("name"),
                format!(
                    "`{}` is not a valid upstream name (1-32 characters of a-z 0-9 _ -)",
                    upstream.name
                ),
            );
        } else if !names.insert(upstream.name.as_str()) {
            issue(
                at("name"),
                format!("upstream `{}` is declared twice", upstream.name),
            );
        }
        match (&upstream.stdio, &upstream.http) {
            (Some(stdio), None) => {
                if stdio.command.is_empty() {
                    issue(at("stdio.command"), "must not be empty".into());
                }
            }
            (None, Some(http)) => {
                if http.url.starts_with("https://") {
                    // Refused rather than accepted and never reachable: the MCP client is built
                    // without TLS.
                    issue(
                        at("http.url"),
                        "HTTPS upstreams are not supported yet; use http:// on loopback or stdio"
                            .into(),
                    );
                } else if !(http.url.starts_with("http://")
                    && http.url.parse::<axum::http::Uri>().is_ok())
                {
                    issue(at("http.url"), format!("`{}` is not an http URL", http.url));
                }
                for header in http.headers_from_secrets.keys() {
                    if axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                        issue(
                            at("http.headers_from_secrets"),
                            format!("`{header}` is not a header name"),
                        );
                    }
                }
            }
            _ => issue(at("stdio"), "set exactly one of `stdio` and `http`".into()),
        }
        if upstream.call_timeout.as_std().is_zero() {
            issue(at("call_timeout"), "must be longer than zero".into());
        }
        if !(1..=1024).contains(&upstream.max_concurrent) {
            issue(at("max_concurrent"), "must be between 1 and 1024".into());
        }
        for (side, strategies) in [
            ("arguments", &upstream.pii.arguments),
            ("results", &upstream.pii.results),
        ] {
            if matches!(strategies.secret, Strategy::Allow | Strategy::Synthetic) {
                issue(
                    at(&format!("pii.{side}.secret")),
                    "secrets may only be `redact`, `hash` or `block`".into(),
                );
            }
        }
    }
    let enabled = config.upstreams.iter().filter(|u| u.enabled).count();
    if config.tools.prefix == PrefixConfig::Never && enabled > 1 {
        issue(
            "tools.prefix".into(),
            "`never` is allowed only with a single enabled upstream".into(),
        );
    }
    for (idx, rule) in config.tools.rules.iter().enumerate() {
        if rule.kind == RuleKindConfig::Deny && rule.pattern.is_none() {
            issue(
                format!("tools.rules[{idx}].pattern"),
                "a `deny` rule needs a pattern".into(),
            );
        }
    }
    if let Err(err) = portcullis_mcp::ArgumentRules::compile(&rule_specs(&config.tools)) {
        issue("tools.rules".into(), err.to_string());
    }
    if let Err(err) = portcullis_mcp::RiskTiers::compile(&risk_specs(&config.tools)) {
        issue("tools.risk".into(), err.to_string());
    }
}

#[cfg(test)]
mod tests;
