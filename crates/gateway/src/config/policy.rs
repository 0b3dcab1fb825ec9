//! `[policy]`, `[[contracts]]` and `[capsules]`: their schema, defaults and load-time checks.

use std::path::{Path, PathBuf};

use portcullis_capsule::CapsuleLimits;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// `[capsules]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CapsulesConfig {
    /// Trust store (JSON: issuers and nodes with their public keys). Relative paths are read from
    /// the configuration file's directory. Unset: every capsule is refused.
    pub trust_store: Option<PathBuf>,
    /// Longest `ttl` a capsule may carry, as `<n>s`, `<n>m`, `<n>h` or `<n>d`.
    pub max_ttl: String,
    /// Oldest `iat` accepted, measured from now.
    pub max_age: String,
    /// How far in the future `iat` may lie (clock skew between nodes).
    pub skew: String,
}

impl Default for CapsulesConfig {
    fn default() -> Self {
        Self {
            trust_store: None,
            max_ttl: "7d".to_owned(),
            max_age: "30d".to_owned(),
            skew: "60s".to_owned(),
        }
    }
}

impl CapsulesConfig {
    /// The verification limits; `Err` names the first bad key.
    pub fn limits(&self) -> Result<CapsuleLimits, (&'static str, String)> {
        let mut limits = CapsuleLimits::default();
        for (key, raw, slot) in [
            ("max_ttl", &self.max_ttl, &mut limits.max_ttl_secs),
            ("max_age", &self.max_age, &mut limits.max_age_secs),
            ("skew", &self.skew, &mut limits.skew_secs),
        ] {
            let parsed: Result<CapsuleLimits, _> =
                serde_json::from_value(serde_json::json!({ key: raw }));
            let secs = match (key, parsed) {
                ("max_ttl", Ok(one)) => one.max_ttl_secs,
                ("max_age", Ok(one)) => one.max_age_secs,
                (_, Ok(one)) => one.skew_secs,
                (_, Err(err)) => return Err((key, err.to_string())),
            };
            *slot = secs;
        }
        if limits.max_ttl_secs == 0 {
            return Err(("max_ttl", "must be longer than zero".to_owned()));
        }
        Ok(limits)
    }
}

/// Resolves a path from the configuration against the configuration file's directory.
pub fn resolve_path(config: &Config, path: &Path) -> PathBuf {
    match config.origin.as_deref().and_then(Path::parent) {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_owned(),
    }
}

/// Checks of the policy sections that need no file I/O (patterns, contracts, limits). Cedar
/// files are read and compiled by [`crate::policy::build_engine`] at start-up and by
/// `config check`.
pub fn validate(config: &Config, issue: &mut dyn FnMut(String, String)) {
    if config.policy.mode.immutable == portcullis_policy::Mode::Report {
        issue(
            "policy.mode.immutable".to_owned(),
            portcullis_policy::PolicyLoadError::ImmutableReport.to_string(),
        );
    }
    for (idx, pattern) in config.policy.deny.iter().enumerate() {
        if let Err(err) = portcullis_policy::catalog::check_pattern(pattern) {
            issue(format!("policy.deny[{idx}]"), err.to_string());
        }
    }
    for (idx, agent) in config.agents.iter().enumerate() {
        for (pattern_idx, raw) in agent.allow.iter().enumerate() {
            let Ok(pattern) = portcullis_core::GatePattern::parse(raw) else {
                continue;
            };
            if let Err(err) = portcullis_policy::catalog::check_pattern(&pattern) {
                issue(
                    format!("agents[{idx}].allow[{pattern_idx}]"),
                    err.to_string(),
                );
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (idx, contract) in config.contracts.iter().enumerate() {
        for err in contract.validate() {
            issue(format!("contracts[{idx}]"), err.to_string());
        }
        if !seen.insert(contract.id.as_str()) {
            issue(
                format!("contracts[{idx}].id"),
                format!("contract `{}` is declared twice", contract.id),
            );
        }
    }
    if let Err((key, message)) = config.capsules.limits() {
        issue(format!("capsules.{key}"), message);
    }
}

/// Schema-only mirrors of the policy crate's config types (that crate stays free of schemars).
pub mod schema {
    #![expect(
        dead_code,
        reason = "these types only describe the TOML shape to schemars; serde uses the policy crate's"
    )]

    use schemars::JsonSchema;

    /// `[policy]`
    #[derive(Debug, JsonSchema)]
    #[schemars(rename = "PolicyConfig")]
    pub struct Policy {
        /// Immutable denies (layer `immutable`): gate-key patterns that nothing can allow. Each
        /// must match some key of the catalog (`docs/GATE_KEYS.md`).
        #[schemars(default)]
        deny: Vec<String>,
        /// Cedar policy files (layer `cedar`), validated in strict mode at start-up and on
        /// reload. Relative paths are read from the configuration file's directory.
        #[schemars(default)]
        cedar_files: Vec<String>,
        /// `enforce` or `report` per layer.
        mode: LayerModes,
    }

    /// `[policy.mode]`
    #[derive(Debug, JsonSchema)]
    pub struct LayerModes {
        /// Mode of the `immutable` layer: always `enforce` (`report` is refused at load; roll a
        /// deny out as a contract in report mode instead).
        #[schemars(default)]
        immutable: Mode,
        /// Mode of the `contract` layer.
        #[schemars(default)]
        contract: Mode,
        /// Mode of the `capsule` layer.
        #[schemars(default)]
        capsule: Mode,
        /// Mode of the `cedar` layer.
        #[schemars(default)]
        cedar: Mode,
        /// Mode of the `default` layer; `report` allows what nothing allows (rollout aid).
        #[schemars(default)]
        default: Mode,
    }

    /// Enforce a layer's denies, or only report them.
    #[derive(Debug, JsonSchema, Default)]
    #[schemars(rename_all = "snake_case")]
    pub enum Mode {
        #[default]
        Enforce,
        Report,
    }

    /// `[[contracts]]`
    #[derive(Debug, JsonSchema)]
    pub struct Contract {
        /// Unique contract id (printable ASCII, at most 256 bytes).
        id: String,
        /// Gate-key patterns the contract denies.
        patterns: Vec<String>,
        /// Whom it applies to; empty lists match everyone.
        subject: Option<SubjectFilter>,
        /// Start of the window (RFC 3339, inclusive); unset: since always.
        valid_from: Option<String>,
        /// End of the window (RFC 3339, exclusive); unset: for ever.
        valid_to: Option<String>,
        /// After `valid_to`, re-arm for terms of this many seconds.
        auto_renew_secs: Option<u64>,
        /// While active, the contract cannot be deleted, shortened or weakened.
        #[schemars(default)]
        immutable: bool,
        /// Allow `limit` hits per `window_secs` instead of denying outright.
        quota: Option<Quota>,
    }

    /// A contract's subject filter: fields combine with AND, entries with OR.
    #[derive(Debug, JsonSchema)]
    pub struct SubjectFilter {
        /// Agent ids.
        agents: Vec<String>,
        /// Agent roles.
        roles: Vec<String>,
        /// Node ids.
        nodes: Vec<String>,
        /// Agent tags.
        tags: Vec<String>,
    }

    /// A contract's quota.
    #[derive(Debug, JsonSchema)]
    pub struct Quota {
        /// Hits allowed per window.
        limit: u64,
        /// Window length in seconds (windows aligned to the Unix epoch).
        window_secs: u64,
    }
}
