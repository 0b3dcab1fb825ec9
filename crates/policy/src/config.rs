//! `[policy]` configuration: immutable denies, Cedar files and the mode of each layer.

use std::path::PathBuf;

use portcullis_core::GatePattern;
use serde::{Deserialize, Serialize};

/// The `[policy]` section of `portcullis.toml`. Every field has a default: no denies, no Cedar
/// files, every layer enforcing.
///
/// ```toml
/// [policy]
/// deny = ["net:host:169.254.169.254", "tools:call:shell.*"]
/// cedar_files = ["policies/base.cedar"]
/// [policy.mode]
/// cedar = "report"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Immutable denies (layer `immutable`); each must match some key of the catalog.
    #[serde(default)]
    pub deny: Vec<GatePattern>,
    /// Cedar policy files; the gateway reads them and passes `(path, text)` pairs to
    /// [`crate::PolicyEngine::build`], naming each source exactly as it is listed here.
    #[serde(default)]
    pub cedar_files: Vec<PathBuf>,
    /// `enforce` or `report` per layer.
    #[serde(default)]
    pub mode: LayerModes,
}

/// The mode of each layer that can deny. `allowlist` only allows, so it has no mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerModes {
    #[serde(default)]
    pub immutable: Mode,
    #[serde(default)]
    pub contract: Mode,
    #[serde(default)]
    pub capsule: Mode,
    #[serde(default)]
    pub cedar: Mode,
    /// Report mode here allows what nothing allows (a rollout aid): the explanation says so.
    #[serde(default)]
    pub default: Mode,
}

/// Enforce a layer's denies, or only report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    /// A deny from the layer is recorded in the explanation's `report` and evaluation carries on.
    Report,
}

impl LayerModes {
    /// The mode of a layer by name; unknown names and `allowlist` enforce.
    pub fn of(&self, layer: &str) -> Mode {
        match layer {
            crate::explain::layer::IMMUTABLE => self.immutable,
            crate::explain::layer::CONTRACT => self.contract,
            crate::explain::layer::CAPSULE => self.capsule,
            crate::explain::layer::CEDAR => self.cedar,
            crate::explain::layer::DEFAULT => self.default,
            _ => Mode::Enforce,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(toml_text: &str, expected: Result<PolicyConfig, ()>) {
        let parsed: Result<PolicyConfig, _> = toml::from_str(toml_text);
        assert_eq!(parsed.map_err(|_| ()), expected, "{toml_text}");
    }

    #[test]
    fn parses_with_defaults() {
        check("", Ok(PolicyConfig::default()));
        check(
            "deny = [\"tools:*\"]\n[mode]\ncedar = \"report\"",
            Ok(PolicyConfig {
                deny: vec![GatePattern::parse("tools:*").unwrap()],
                cedar_files: vec![],
                mode: LayerModes {
                    cedar: Mode::Report,
                    ..LayerModes::default()
                },
            }),
        );
        check("denies = []", Err(()));
        check("deny = [\"to*ls\"]", Err(()));
        check("[mode]\ncedar = \"off\"", Err(()));
        check("[mode]\nallowlist = \"report\"", Err(()));
    }
}
