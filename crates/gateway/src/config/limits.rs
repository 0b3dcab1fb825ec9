//! `[limits]`: call-rate rules (GCRA) per agent, project, tool or model.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigDuration};

/// Most rate rules.
pub const MAX_RATE_RULES: usize = 256;
/// Longest window a rate rule may have.
pub const MAX_RATE_WINDOW_SECS: u64 = 31 * 86_400;
/// Most calls per window a rule may allow.
pub const MAX_RATE_CALLS: u32 = 1_000_000;

/// `[limits]`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// `enforce` refuses a call over a rate with 429 `rate_limited` and `Retry-After`; `report`
    /// lets it through and records the would-be refusal as an event (decision `report`).
    pub mode: LimitMode,
    /// Rate rules (`[[limits.rates]]`). A call passes only when every rule that applies to it
    /// has room. None by default.
    pub rates: Vec<RateRule>,
}

/// Enforcement modes of a control.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitMode {
    /// Refuse.
    #[default]
    Enforce,
    /// Record the would-be refusal as an event and let the call through.
    Report,
}

/// `[[limits.rates]]`: at most `calls` per `window` for each counter the rule keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateRule {
    /// Unique id, named in events, e.g. `agent-calls`.
    pub id: String,
    /// Which calls the rule counts: `all`, `tools` (MCP tool calls) or `models` (LLM calls).
    #[serde(default)]
    pub applies_to: RateTarget,
    /// Tool or model name pattern: exact, or ending in `*` for a prefix. `*` matches every name.
    #[serde(default = "match_all")]
    pub pattern: String,
    /// What each counter is kept per: any of `agent`, `project` and `name` (the tool or model
    /// name). `[]` keeps one counter shared by every caller.
    #[serde(default = "per_agent")]
    pub per: Vec<RateKey>,
    /// Calls allowed per window; also the largest burst.
    pub calls: u32,
    /// The window, e.g. `"1m"` (at least one second, at most 31 days).
    pub window: ConfigDuration,
}

/// Which calls a rate rule counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RateTarget {
    #[default]
    All,
    Tools,
    Models,
}

/// A dimension a rate rule keeps its counters per.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RateKey {
    Agent,
    Project,
    Name,
}

fn match_all() -> String {
    "*".to_owned()
}

fn per_agent() -> Vec<RateKey> {
    vec![RateKey::Agent]
}

/// A tool or model name pattern: exact, or a prefix ending in `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern {
    prefix: String,
    wildcard: bool,
}

impl NamePattern {
    /// Parses `raw`; `*` may only be the last character.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (prefix, wildcard) = match raw.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (raw, false),
        };
        if prefix.contains('*') {
            return Err(format!("`{raw}` may only end in `*`"));
        }
        if (!wildcard && prefix.is_empty()) || raw.len() > 256 {
            return Err(format!("`{raw}` must be 1-256 characters"));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            wildcard,
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        if self.wildcard {
            name.starts_with(&self.prefix)
        } else {
            name == self.prefix
        }
    }
}

/// `[alerts]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// URL that budget alerts (70% info, 85% warning, 95% critical) are POSTed to as JSON,
    /// signed with `X-Portcullis-Signature: sha256=<hex HMAC-SHA256 of the body>`. Empty: alerts
    /// are only ledger events.
    pub webhook_url: String,
    /// Name of the secret (`[secrets]`) holding the webhook's HMAC key; required with
    /// `webhook_url` (an undefined name refuses start-up).
    pub webhook_secret: String,
    /// Time one delivery attempt may take.
    pub webhook_timeout: ConfigDuration,
    /// Attempts per alert (1-10); failures are retried with exponential backoff.
    pub webhook_attempts: u32,
    /// Pause before the second attempt; it doubles for each further one (at most 60s).
    pub webhook_backoff: ConfigDuration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook_url: String::new(),
            webhook_secret: String::new(),
            webhook_timeout: ConfigDuration::from_secs(5),
            webhook_attempts: 5,
            webhook_backoff: ConfigDuration::from_secs(1),
        }
    }
}

/// Checks `[limits]` and `[alerts]`.
pub(crate) fn validate(config: &Config, issue: &mut impl FnMut(String, String)) {
    let alerts = &config.alerts;
    if !alerts.webhook_url.is_empty() {
        if crate::config::http_url(&alerts.webhook_url).is_none() {
            issue(
                "alerts.webhook_url".into(),
                format!(
                    "`{}` is not an http(s) URL without credentials",
                    alerts.webhook_url
                ),
            );
        }
        if alerts.webhook_secret.is_empty() {
            issue(
                "alerts.webhook_secret".into(),
                "name the secret (`[secrets]`) holding the webhook's HMAC key".into(),
            );
        }
    }
    if !alerts.webhook_secret.is_empty() && !crate::secrets::is_valid_name(&alerts.webhook_secret) {
        issue(
            "alerts.webhook_secret".into(),
            "a secret name has 1-64 characters among letters, digits, `_`, `-` and `.`".into(),
        );
    }
    if !(1..=10).contains(&alerts.webhook_attempts) {
        issue(
            "alerts.webhook_attempts".into(),
            "must be between 1 and 10".into(),
        );
    }
    if alerts.webhook_timeout.as_std().is_zero() || alerts.webhook_timeout.as_std().as_secs() > 60 {
        issue(
            "alerts.webhook_timeout".into(),
            "must be longer than zero and at most 60s".into(),
        );
    }
    if alerts.webhook_backoff.as_std().as_secs() > 60 {
        issue(
            "alerts.webhook_backoff".into(),
            "must be at most 60s".into(),
        );
    }

    let rates = &config.limits.rates;
    if rates.len() > MAX_RATE_RULES {
        issue(
            "limits.rates".into(),
            format!("at most {MAX_RATE_RULES} rules"),
        );
    }
    let mut ids = BTreeSet::new();
    for (idx, rule) in rates.iter().enumerate() {
        let at = |key: &str| format!("limits.rates[{idx}].{key}");
        if !crate::identity::is_valid_agent_id(&rule.id) {
            issue(
                at("id"),
                format!(
                    "`{}` is not a valid id (1-64 characters of A-Z a-z 0-9 . _ -)",
                    rule.id
                ),
            );
        } else if !ids.insert(rule.id.as_str()) {
            issue(at("id"), format!("rule `{}` is declared twice", rule.id));
        }
        if let Err(message) = NamePattern::parse(&rule.pattern) {
            issue(at("pattern"), message);
        }
        if rule.calls == 0 || rule.calls > MAX_RATE_CALLS {
            issue(
                at("calls"),
                format!("must be between 1 and {MAX_RATE_CALLS}"),
            );
        }
        let window = rule.window.as_std();
        if window < std::time::Duration::from_secs(1) || window.as_secs() > MAX_RATE_WINDOW_SECS {
            issue(at("window"), "must be between 1 second and 31 days".into());
        }
        let distinct: BTreeSet<_> = rule.per.iter().collect();
        if distinct.len() != rule.per.len() {
            issue(at("per"), "lists a dimension twice".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(pattern: &str, name: &str, expected: bool) {
        assert_eq!(NamePattern::parse(pattern).unwrap().matches(name), expected);
    }

    #[test]
    fn name_patterns() {
        check("*", "anything", true);
        check("*", "", true);
        check("github.*", "github.create_issue", true);
        check("github.*", "gitlab.x", false);
        check("gpt-4o", "gpt-4o", true);
        check("gpt-4o", "gpt-4o-mini", false);
        assert!(NamePattern::parse("a*b").is_err());
        assert!(NamePattern::parse("**").is_err());
        assert!(NamePattern::parse("").is_err());
    }
}
