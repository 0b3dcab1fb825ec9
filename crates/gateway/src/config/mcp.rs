//! `[[upstreams]]` and `[tools]`: the MCP upstream registry, the catalog's naming and pin mode,
//! and argument rules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    /// Exposed tool names the rule applies to: exact, or a prefix ending in `*` (`files.*`).
    pub tools: Vec<String>,
    /// `path`, `url` or `deny`.
    pub kind: RuleKindConfig,
    /// Top-level argument names the rule checks (for `deny`, empty means every argument).
    #[serde(default)]
    pub arguments: Vec<String>,
    /// `path`: absolute roots the paths must lie within (relative paths are taken from the
    /// first root).
    #[serde(default)]
    pub roots: Vec<PathBuf>,
    /// `path`: the roots are on this machine, so symbolic links are resolved and must stay
    /// inside.
    #[serde(default = "default_true")]
    pub local: bool,
    /// `url`: allowed hosts, as egress host rules (`host`, `*.suffix`, `domain:reg`, `:port`).
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// `deny`: a regular expression no string in the arguments may match.
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
}
