//! The `[pii]` configuration section and its validation.

use serde::{Deserialize, Serialize};

use crate::entity::EntityType;

/// Default for [`PiiConfig::max_input_bytes`]: 1 MiB.
pub const DEFAULT_MAX_INPUT_BYTES: usize = 1 << 20;
/// Default for [`PiiConfig::max_findings`].
pub const DEFAULT_MAX_FINDINGS: usize = 10_000;
/// Upper bound accepted for [`PiiConfig::max_input_bytes`]: 64 MiB.
pub const MAX_INPUT_BYTES_CEILING: usize = 64 << 20;
/// Shortest HMAC key accepted by [`crate::Sanitizer::new`].
pub const MIN_KEY_BYTES: usize = 16;

/// The `[pii]` section: what to detect and what to do with each finding.
///
/// Every field has a default, so an empty section is valid. The HMAC key for `hash` and
/// `synthetic` is not configuration: the caller passes it to [`crate::Sanitizer::new`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiiConfig {
    /// Inputs longer than this many bytes are refused whole (`pii_input_too_large`).
    /// Default 1 MiB; at most 64 MiB.
    #[serde(default = "default_max_input_bytes")]
    pub max_input_bytes: usize,
    /// Inputs with more findings than this are refused whole (`pii_too_many_findings`).
    /// Default 10 000.
    #[serde(default = "default_max_findings")]
    pub max_findings: usize,
    /// The detectors that run. Default: all of them.
    #[serde(default = "default_detectors")]
    pub detectors: Vec<EntityType>,
    /// The strategy per entity type. Default: `redact` for every type.
    #[serde(default)]
    pub strategies: StrategyTable,
}

/// What happens to a finding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Replace with `[REDACTED_EMAIL]`.
    #[default]
    Redact,
    /// Replace with a format-preserving fake value, reversible through the request's vault.
    Synthetic,
    /// Replace with `[EMAIL:<8 hex of a keyed HMAC>]`, stable for the same value and key.
    Hash,
    /// Refuse the whole input (`pii_blocked`), listing types and counts.
    Block,
    /// Leave the value in place (it still counts in the stats).
    Allow,
}

/// One strategy per entity type; each key defaults to `redact`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyTable {
    #[serde(default)]
    pub email: Strategy,
    #[serde(default)]
    pub phone: Strategy,
    #[serde(default)]
    pub credit_card: Strategy,
    #[serde(default)]
    pub us_ssn: Strategy,
    #[serde(default)]
    pub iban: Strategy,
    #[serde(default)]
    pub ip: Strategy,
    #[serde(default)]
    pub secret: Strategy,
}

/// A configuration that [`crate::Sanitizer::new`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("pii.max_input_bytes must be between 1 and {ceiling}, got {value}")]
    MaxInputBytes { value: usize, ceiling: usize },
    #[error("pii.max_findings must be at least 1")]
    MaxFindings,
    #[error("pii.detectors lists `{0}` twice")]
    DuplicateDetector(EntityType),
    #[error("the pii key must be at least {min} bytes, got {len}")]
    KeyTooShort { len: usize, min: usize },
    #[error("a built-in pattern failed to compile")]
    Pattern(#[from] PatternError),
}

/// A built-in pattern that did not compile (a bug, reported rather than panicking).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("built-in pattern `{name}` failed to compile")]
pub struct PatternError {
    pub(crate) name: &'static str,
}

impl Default for PiiConfig {
    fn default() -> Self {
        PiiConfig {
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
            max_findings: DEFAULT_MAX_FINDINGS,
            detectors: default_detectors(),
            strategies: StrategyTable::default(),
        }
    }
}

impl PiiConfig {
    /// Checks the values without building anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_input_bytes == 0 || self.max_input_bytes > MAX_INPUT_BYTES_CEILING {
            return Err(ConfigError::MaxInputBytes {
                value: self.max_input_bytes,
                ceiling: MAX_INPUT_BYTES_CEILING,
            });
        }
        if self.max_findings == 0 {
            return Err(ConfigError::MaxFindings);
        }
        let mut seen = [false; 7];
        for ty in &self.detectors {
            match seen.get_mut(ty.index()) {
                Some(flag) if !*flag => *flag = true,
                _ => return Err(ConfigError::DuplicateDetector(*ty)),
            }
        }
        Ok(())
    }
}

impl StrategyTable {
    /// The same strategy for every type.
    pub fn uniform(strategy: Strategy) -> Self {
        StrategyTable {
            email: strategy,
            phone: strategy,
            credit_card: strategy,
            us_ssn: strategy,
            iban: strategy,
            ip: strategy,
            secret: strategy,
        }
    }

    /// The strategy for one type.
    pub fn get(&self, ty: EntityType) -> Strategy {
        match ty {
            EntityType::Email => self.email,
            EntityType::Phone => self.phone,
            EntityType::CreditCard => self.credit_card,
            EntityType::UsSsn => self.us_ssn,
            EntityType::Iban => self.iban,
            EntityType::Ip => self.ip,
            EntityType::Secret => self.secret,
        }
    }
}

fn default_max_input_bytes() -> usize {
    DEFAULT_MAX_INPUT_BYTES
}

fn default_max_findings() -> usize {
    DEFAULT_MAX_FINDINGS
}

fn default_detectors() -> Vec<EntityType> {
    EntityType::ALL.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(toml_text: &str, expected: Result<(), &str>) {
        let parsed: Result<PiiConfig, _> = toml::from_str(toml_text);
        let res = match parsed {
            Ok(config) => config.validate().map_err(|err| err.to_string()),
            Err(err) => Err(err.message().to_owned()),
        };
        match (res, expected) {
            (Ok(()), Ok(())) => {}
            (Err(got), Err(want)) => assert!(got.contains(want), "{got}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn empty_section_takes_defaults() {
        let config: PiiConfig = toml::from_str("").unwrap();
        assert_eq!(config, PiiConfig::default());
        assert_eq!(config.strategies.get(EntityType::Secret), Strategy::Redact);
    }

    #[test]
    fn validates_values() {
        check("max_input_bytes = 4096", Ok(()));
        check(
            "strategies = { email = \"synthetic\", secret = \"block\" }",
            Ok(()),
        );
        check("detectors = [\"email\", \"us_ssn\"]", Ok(()));
        check("max_input_bytes = 0", Err("max_input_bytes"));
        check("max_input_bytes = 1000000000", Err("max_input_bytes"));
        check("max_findings = 0", Err("max_findings"));
        check("detectors = [\"email\", \"email\"]", Err("twice"));
        check("detectors = [\"passport\"]", Err("unknown variant"));
        check("strategies = { email = \"shred\" }", Err("unknown variant"));
        check("strategies = { fax = \"redact\" }", Err("unknown field"));
        check("unknown = 1", Err("unknown field"));
    }
}
