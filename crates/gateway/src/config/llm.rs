//! `[llm]` (providers, routes, defaults of the OpenAI-compatible front) and `[pii]` (the
//! sanitizer's section, plus the name of its key secret).

use std::collections::{BTreeMap, BTreeSet};

use portcullis_sanitize::{EntityType, PiiConfig, Strategy, StrategyTable};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigDuration};

/// Most providers, and most routes, in one configuration.
pub const MAX_PROVIDERS: usize = 64;
pub const MAX_ROUTES: usize = 1024;

/// `[llm]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// Output token limit added as `max_tokens` when a chat request sets none; it bounds both
    /// the call and the budget reservation (1-1000000).
    pub default_max_tokens: u64,
    /// Largest provider answer read: a whole response body, or one streamed event.
    pub max_response_bytes: u64,
    /// Providers: OpenAI-compatible APIs, each with its base URL, key and models.
    pub providers: Vec<ProviderConfig>,
    /// Aliases agents may ask for, each mapped to one provider's model. Budget `downgrade_to`
    /// may name an alias or a provider model.
    pub routes: Vec<RouteConfig>,
}

/// `[[llm.providers]]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Unique name, 1-32 characters of `[a-z0-9_-]`.
    pub name: String,
    /// The API's base URL, ending before `/chat/completions` (e.g. `https://api.openai.com/v1`).
    pub base_url: String,
    /// Name of the secret (see `[secrets]`) sent as `Authorization: Bearer <key>`. Unset: no
    /// key is sent (local models). The agent's own token is never forwarded.
    #[serde(default)]
    pub api_key_secret: Option<String>,
    /// Models this provider serves, called by their own names: exact names, or a prefix ending
    /// in `*`.
    #[serde(default)]
    pub models: Vec<String>,
    /// Longest wait for the TCP (and TLS) connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: ConfigDuration,
    /// Longest wait for a whole answer, or for the first byte of a stream (`upstream_timeout`,
    /// 504).
    #[serde(default = "default_timeout")]
    pub timeout: ConfigDuration,
    /// Longest silence between two chunks of a stream.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: ConfigDuration,
}

/// `[[llm.routes]]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// What agents ask for (`model` in their requests); the gate key is `llm:model:<alias>`.
    pub alias: String,
    /// The provider that serves it.
    pub provider: String,
    /// The provider's model name.
    pub model: String,
}

/// `[pii]`: what the sanitize stage detects and what it does with each finding (docs/PII.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PiiSection {
    /// A text longer than this many bytes is refused unscanned (`payload_too_large`).
    pub max_input_bytes: usize,
    /// A text with more findings than this is refused (`pii_blocked`).
    pub max_findings: usize,
    /// The detectors that run: `secret`, `email`, `credit_card`, `iban`, `us_ssn`, `ip`, `phone`.
    #[schemars(with = "Vec<String>")]
    pub detectors: Vec<EntityType>,
    /// Strategy per entity type (`redact`, `synthetic`, `hash`, `block`, `allow`); each type
    /// defaults to `redact`.
    #[schemars(with = "BTreeMap<String, String>")]
    pub strategies: StrategyTable,
    /// Name of the secret (see `[secrets]`, at least 16 bytes) keying the `hash` and
    /// `synthetic` strategies. Unset: a random key per process, so hashes and synthetic values
    /// change at each start.
    pub key_secret: Option<String>,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            default_max_tokens: 1024,
            max_response_bytes: 16 * 1024 * 1024,
            providers: Vec::new(),
            routes: Vec::new(),
        }
    }
}

impl Default for PiiSection {
    fn default() -> Self {
        let defaults = PiiConfig::default();
        Self {
            max_input_bytes: defaults.max_input_bytes,
            max_findings: defaults.max_findings,
            detectors: defaults.detectors,
            strategies: StrategyTable::uniform(Strategy::Redact),
            key_secret: None,
        }
    }
}

impl PiiSection {
    /// The sanitizer's configuration.
    pub fn sanitizer_config(&self) -> PiiConfig {
        PiiConfig {
            max_input_bytes: self.max_input_bytes,
            max_findings: self.max_findings,
            detectors: self.detectors.clone(),
            strategies: self.strategies,
        }
    }
}

fn default_connect_timeout() -> ConfigDuration {
    ConfigDuration::from_secs(5)
}

fn default_timeout() -> ConfigDuration {
    ConfigDuration::from_secs(120)
}

fn default_idle_timeout() -> ConfigDuration {
    ConfigDuration::from_secs(60)
}

/// Whether `name` is a valid provider name.
pub fn is_valid_provider_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Whether `pattern` (an exact name or a prefix ending in `*`) covers `model`.
pub fn model_matches(pattern: &str, model: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => model.starts_with(prefix),
        None => pattern == model,
    }
}

/// Checks `[llm]` and `[pii]`.
pub fn validate(config: &Config, issue: &mut dyn FnMut(String, String)) {
    let llm = &config.llm;
    if !(1..=1_000_000).contains(&llm.default_max_tokens) {
        issue(
            "llm.default_max_tokens".into(),
            "must be between 1 and 1000000".into(),
        );
    }
    if !(1024..=256 * 1024 * 1024).contains(&llm.max_response_bytes) {
        issue(
            "llm.max_response_bytes".into(),
            "must be between 1024 and 268435456".into(),
        );
    }
    if llm.providers.len() > MAX_PROVIDERS {
        issue(
            "llm.providers".into(),
            format!("at most {MAX_PROVIDERS} providers are allowed"),
        );
    }
    if llm.routes.len() > MAX_ROUTES {
        issue(
            "llm.routes".into(),
            format!("at most {MAX_ROUTES} routes are allowed"),
        );
    }
    let mut names = BTreeSet::new();
    for (idx, provider) in llm.providers.iter().enumerate() {
        let at = |key: &str| format!("llm.providers[{idx}].{key}");
        if !is_valid_provider_name(&provider.name) {
            issue(
                at("name"),
                format!(
                    "`{}` is not a valid provider name (1-32 characters of a-z 0-9 _ -)",
                    provider.name
                ),
            );
        } else if !names.insert(provider.name.as_str()) {
            issue(
                at("name"),
                format!("provider `{}` is declared twice", provider.name),
            );
        }
        let valid_url = (provider.base_url.starts_with("http://")
            || provider.base_url.starts_with("https://"))
            && provider.base_url.parse::<axum::http::Uri>().is_ok()
            && !provider.base_url.contains('?')
            && !provider.base_url.contains('#');
        if !valid_url {
            issue(
                at("base_url"),
                format!("`{}` is not an http(s) base URL", provider.base_url),
            );
        }
        if let Some(secret) = &provider.api_key_secret {
            if !crate::secrets::is_valid_name(secret) {
                issue(
                    at("api_key_secret"),
                    format!("`{secret}` is not a secret name"),
                );
            }
        }
        for (key, duration) in [
            ("connect_timeout", &provider.connect_timeout),
            ("timeout", &provider.timeout),
            ("idle_timeout", &provider.idle_timeout),
        ] {
            if duration.as_std().is_zero() {
                issue(at(key), "must be longer than zero".into());
            }
        }
        for (model_idx, model) in provider.models.iter().enumerate() {
            let star = model.find('*');
            if model.is_empty() || star.is_some_and(|pos| pos + 1 != model.len()) {
                issue(
                    at(&format!("models[{model_idx}]")),
                    format!("`{model}` is not a model name or a prefix ending in `*`"),
                );
            }
        }
    }
    let mut aliases = BTreeSet::new();
    for (idx, route) in llm.routes.iter().enumerate() {
        let at = |key: &str| format!("llm.routes[{idx}].{key}");
        let valid_alias = !route.alias.is_empty()
            && route.alias.len() <= portcullis_llm::request::MAX_MODEL_LEN
            && portcullis_core::GateKey::parse(&format!("llm:model:{}", route.alias)).is_ok();
        if !valid_alias {
            issue(
                at("alias"),
                format!("`{}` cannot be a gate-key segment", route.alias),
            );
        } else if !aliases.insert(route.alias.as_str()) {
            issue(
                at("alias"),
                format!("alias `{}` is declared twice", route.alias),
            );
        }
        if !llm.providers.iter().any(|p| p.name == route.provider) {
            issue(
                at("provider"),
                format!("no provider is named `{}`", route.provider),
            );
        }
        if route.model.is_empty() {
            issue(at("model"), "must not be empty".into());
        }
    }
    if let Err(err) = config.pii.sanitizer_config().validate() {
        issue("pii".into(), err.to_string());
    }
    if let Some(secret) = &config.pii.key_secret {
        if !crate::secrets::is_valid_name(secret) {
            issue(
                "pii.key_secret".into(),
                format!("`{secret}` is not a secret name"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(toml_text: &str, expected: &[&str]) {
        let config: Config = match toml::from_str(toml_text) {
            Ok(config) => config,
            Err(err) => panic!("{err}"),
        };
        let mut paths = Vec::new();
        validate(&config, &mut |path, _| paths.push(path));
        assert_eq!(paths, expected);
    }

    #[test]
    fn providers_routes_and_pii_are_checked() {
        check(
            r#"
            [llm]
            default_max_tokens = 256
            [[llm.providers]]
            name = "fx"
            base_url = "http://127.0.0.1:9/v1"
            api_key_secret = "fx_key"
            models = ["gpt-4o*", "echo"]
            [[llm.routes]]
            alias = "fast"
            provider = "fx"
            model = "gpt-4o-mini"
            [pii]
            key_secret = "pii_key"
            strategies = { email = "synthetic", credit_card = "block" }
            "#,
            &[],
        );
        check(
            r#"
            [llm]
            default_max_tokens = 0
            [[llm.providers]]
            name = "FX"
            base_url = "ftp://x"
            models = ["a*b"]
            [[llm.routes]]
            alias = "a b"
            provider = "nope"
            model = ""
            [pii]
            max_findings = 0
            "#,
            &[
                "llm.default_max_tokens",
                "llm.providers[0].name",
                "llm.providers[0].base_url",
                "llm.providers[0].models[0]",
                "llm.routes[0].alias",
                "llm.routes[0].provider",
                "llm.routes[0].model",
                "pii",
            ],
        );
        assert!(model_matches("gpt-4o*", "gpt-4o-mini"));
        assert!(!model_matches("gpt-4o", "gpt-4o-mini"));
    }
}
