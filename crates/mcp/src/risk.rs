//! Risk tiers of tools: configured by tool pattern, raised (never lowered) by the tool's MCP
//! annotations.
//!
//! Mapping: no entry names the tool -> `low`; several do -> the highest; then
//! `openWorldHint: true` raises to at least `medium` and `destructiveHint: true` to at least
//! `high`. Only hints set to `true` count: an absent hint raises nothing (the MCP defaults would
//! make every unannotated tool `high`), and no hint lowers a configured tier (annotations come
//! from the upstream, which is not trusted to judge itself).

use portcullis_core::request::RiskTier;
use serde_json::Value;

/// One configured entry, before compilation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiskSpec {
    /// Tools as `<upstream>.<tool>` with the upstream's own tool name: exact, or a prefix
    /// ending in `*`.
    pub tools: Vec<String>,
    pub tier: RiskTier,
}

/// Why an entry does not compile.
#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    #[error("risk entry {index}: `tools` must list at least one tool pattern")]
    NoTools { index: usize },
    #[error(
        "risk entry {index}: pattern `{pattern}` may hold `*` only at its end, and tools are named `<upstream>.<tool>`"
    )]
    BadPattern { index: usize, pattern: String },
}

/// Compiled risk entries.
#[derive(Debug, Default)]
pub struct RiskTiers {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    exact: Vec<String>,
    prefixes: Vec<String>,
    tier: RiskTier,
}

impl RiskTiers {
    pub fn compile(specs: &[RiskSpec]) -> Result<Self, RiskError> {
        let mut entries = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            if spec.tools.is_empty() {
                return Err(RiskError::NoTools { index });
            }
            let mut entry = Entry {
                exact: Vec::new(),
                prefixes: Vec::new(),
                tier: spec.tier,
            };
            for pattern in &spec.tools {
                let bad = || RiskError::BadPattern {
                    index,
                    pattern: pattern.clone(),
                };
                match (pattern.matches('*').count(), pattern.strip_suffix('*')) {
                    (0, _) => {
                        let dotted = pattern.split_once('.').is_some_and(|(upstream, tool)| {
                            !upstream.is_empty() && !tool.is_empty()
                        });
                        if !dotted {
                            return Err(bad());
                        }
                        entry.exact.push(pattern.clone());
                    }
                    (1, Some(prefix)) => entry.prefixes.push(prefix.to_owned()),
                    _ => return Err(bad()),
                }
            }
            entries.push(entry);
        }
        Ok(Self { entries })
    }

    /// The tier of `tool` (the upstream's own name) of `upstream`, given the `annotations`
    /// object of its pinned definition.
    pub fn tier(&self, upstream: &str, tool: &str, annotations: Option<&Value>) -> RiskTier {
        let key = format!("{upstream}.{tool}");
        let configured = self
            .entries
            .iter()
            .filter(|entry| {
                entry.exact.contains(&key)
                    || entry
                        .prefixes
                        .iter()
                        .any(|prefix| key.starts_with(prefix.as_str()))
            })
            .map(|entry| entry.tier)
            .max()
            .unwrap_or(RiskTier::Low);
        configured.max(annotated_floor(annotations))
    }
}

/// The least tier the annotations ask for.
fn annotated_floor(annotations: Option<&Value>) -> RiskTier {
    let hint = |name: &str| {
        annotations
            .and_then(|annotations| annotations.get(name))
            .and_then(Value::as_bool)
            == Some(true)
    };
    if hint("destructiveHint") {
        RiskTier::High
    } else if hint("openWorldHint") {
        RiskTier::Medium
    } else {
        RiskTier::Low
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn tiers() -> RiskTiers {
        RiskTiers::compile(&[
            RiskSpec {
                tools: vec!["fx.*".into()],
                tier: RiskTier::Medium,
            },
            RiskSpec {
                tools: vec!["fx.crash".into(), "db.drop_table".into()],
                tier: RiskTier::Critical,
            },
            RiskSpec {
                tools: vec!["fx.echo".into()],
                tier: RiskTier::Low,
            },
        ])
        .unwrap()
    }

    #[track_caller]
    fn check(key: &str, annotations: Value, expected: RiskTier) {
        let (upstream, tool) = key.split_once('.').unwrap();
        let annotations = (!annotations.is_null()).then_some(&annotations);
        assert_eq!(tiers().tier(upstream, tool, annotations), expected);
    }

    #[test]
    fn configured_tiers_take_the_highest_entry() {
        check("other.tool", Value::Null, RiskTier::Low);
        check("fx.add", Value::Null, RiskTier::Medium);
        check("fx.crash", Value::Null, RiskTier::Critical);
        check("db.drop_table", Value::Null, RiskTier::Critical);
        // A narrower entry with a lower tier does not lower a wider one.
        check("fx.echo", Value::Null, RiskTier::Medium);
    }

    #[test]
    fn annotations_raise_and_never_lower() {
        check("other.t", json!({"openWorldHint": true}), RiskTier::Medium);
        check("other.t", json!({"destructiveHint": true}), RiskTier::High);
        check(
            "other.t",
            json!({"destructiveHint": true, "openWorldHint": true}),
            RiskTier::High,
        );
        check("other.t", json!({"destructiveHint": "yes"}), RiskTier::Low);
        check(
            "other.t",
            json!({"readOnlyHint": true, "destructiveHint": false, "openWorldHint": false}),
            RiskTier::Low,
        );
        check(
            "fx.crash",
            json!({"readOnlyHint": true, "destructiveHint": false}),
            RiskTier::Critical,
        );
        check("fx.add", json!({"destructiveHint": true}), RiskTier::High);
        check("other.t", json!({}), RiskTier::Low);
    }

    #[test]
    fn bad_entries_are_refused() {
        let compile = |tools: &[&str]| {
            RiskTiers::compile(&[RiskSpec {
                tools: tools.iter().map(|t| (*t).to_owned()).collect(),
                tier: RiskTier::High,
            }])
        };
        assert!(matches!(compile(&[]), Err(RiskError::NoTools { index: 0 })));
        for pattern in ["echo", "a*b", "**", "fx."] {
            assert!(
                matches!(compile(&[pattern]), Err(RiskError::BadPattern { .. })),
                "{pattern}"
            );
        }
        compile(&["*", "fx*", "fx.echo"]).unwrap();
    }
}
