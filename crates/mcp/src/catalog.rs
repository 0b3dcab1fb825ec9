//! The catalog: every tool the upstreams offer, named `<upstream>.<tool>` (or bare with prefix
//! mode `never`), with its pin state and compiled input schema.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use portcullis_core::GateKey;
use serde::Serialize;
use serde_json::Value;

use crate::pin::{FieldChange, Pin, changes, pin_of, pinned_part};

/// How exposed tool names are formed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PrefixMode {
    /// `<upstream>.<tool>` always.
    #[default]
    Always,
    /// The upstream's own name; allowed only with a single upstream.
    Never,
}

/// What happens to tools that have no pin yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PinMode {
    /// Unpinned tools are hidden and denied until an admin pins them.
    #[default]
    Strict,
    /// Unpinned tools are visible and callable; drifted ones are still quarantined.
    Open,
}

/// A tool's standing against its pin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PinState {
    /// The offered definition matches the pin.
    Pinned,
    /// No pin yet.
    Unpinned,
    /// The offered definition differs from the pin: quarantined (hidden and denied).
    Drifted { changes: Vec<FieldChange> },
    /// The definition cannot be pinned or its input schema does not compile: hidden.
    Invalid,
}

/// One tool in the catalog.
#[derive(Clone, Debug)]
pub struct CatalogTool {
    /// The exposed name agents call.
    pub id: String,
    /// `<upstream>.<tool>`, the key pins are stored under whatever the prefix mode.
    pub pin_key: String,
    pub upstream: String,
    /// The upstream's own name for the tool.
    pub name: String,
    /// The pinned fields as offered, with `name` replaced by [`Self::id`].
    pub exposed: Value,
    pub offered: Pin,
    pub state: PinState,
    /// `tools:call:<upstream>.<tool>`, whatever the prefix mode.
    pub gate_key: GateKey,
    pub validator: Option<Arc<jsonschema::Validator>>,
}

impl CatalogTool {
    /// Whether agents may see and call the tool (policy still decides per agent).
    pub fn is_available(&self, mode: PinMode) -> bool {
        match self.state {
            PinState::Pinned => true,
            PinState::Unpinned => mode == PinMode::Open,
            PinState::Drifted { .. } | PinState::Invalid => false,
        }
    }
}

/// A tool that newly drifted in a rebuild: the gateway records a `tool.drift` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    pub pin_key: String,
    pub upstream: String,
    pub old_hash: String,
    pub new_hash: String,
    pub changes: Vec<FieldChange>,
}

/// The tools of every upstream, in upstream then listing order.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    tools: Vec<CatalogTool>,
    by_id: HashMap<String, usize>,
}

impl Catalog {
    /// Builds the catalog from each upstream's listing. `pins` maps pin keys to pins; `previous`
    /// is the catalog in service, so that only new drifts are reported.
    pub fn build(
        listings: &[(String, Vec<Value>)],
        pins: &BTreeMap<String, Pin>,
        prefix: PrefixMode,
        previous: Option<&Catalog>,
    ) -> (Catalog, Vec<Drift>) {
        let mut res = Catalog::default();
        let mut drifts = Vec::new();
        for (upstream, tools) in listings {
            for definition in tools {
                let Some(name) = definition.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let pin_key = format!("{upstream}.{name}");
                let id = match prefix {
                    PrefixMode::Always => pin_key.clone(),
                    PrefixMode::Never => name.to_owned(),
                };
                if res.by_id.contains_key(&id) {
                    tracing::warn!(upstream = %upstream, "an upstream lists one tool name twice; the second is hidden");
                    continue;
                }
                let Ok(gate_key) = GateKey::parse(&format!("tools:call:{pin_key}")) else {
                    tracing::warn!(upstream = %upstream, "a tool name cannot form a gate key; hidden");
                    continue;
                };
                let mut exposed = pinned_part(definition);
                exposed.insert("name".to_owned(), Value::String(id.clone()));
                let exposed = Value::Object(exposed);
                let (offered, mut state) = match pin_of(definition) {
                    Ok(offered) => {
                        let state = match pins.get(&pin_key) {
                            None => PinState::Unpinned,
                            Some(pin) if pin.hash == offered.hash => PinState::Pinned,
                            Some(pin) => {
                                let changed = changes(pin, &offered);
                                let already = previous
                                    .and_then(|catalog| catalog.get(&id))
                                    .is_some_and(|tool| {
                                        tool.offered.hash == offered.hash
                                            && matches!(tool.state, PinState::Drifted { .. })
                                    });
                                if !already {
                                    drifts.push(Drift {
                                        pin_key: pin_key.clone(),
                                        upstream: upstream.clone(),
                                        old_hash: pin.hash.clone(),
                                        new_hash: offered.hash.clone(),
                                        changes: changed.clone(),
                                    });
                                }
                                PinState::Drifted { changes: changed }
                            }
                        };
                        (offered, state)
                    }
                    Err(_) => (
                        Pin {
                            hash: String::new(),
                            fields: BTreeMap::new(),
                        },
                        PinState::Invalid,
                    ),
                };
                let validator = match definition.get("inputSchema") {
                    Some(schema) => match jsonschema::validator_for(schema) {
                        Ok(validator) => Some(Arc::new(validator)),
                        Err(_) => {
                            state = PinState::Invalid;
                            None
                        }
                    },
                    None => None,
                };
                res.by_id.insert(id.clone(), res.tools.len());
                res.tools.push(CatalogTool {
                    id,
                    pin_key,
                    upstream: upstream.clone(),
                    name: name.to_owned(),
                    exposed,
                    offered,
                    state,
                    gate_key,
                    validator,
                });
            }
        }
        (res, drifts)
    }

    pub fn get(&self, id: &str) -> Option<&CatalogTool> {
        self.by_id.get(id).and_then(|idx| self.tools.get(*idx))
    }

    pub fn tools(&self) -> &[CatalogTool] {
        &self.tools
    }

    pub fn len(&self) -> usize {
        self.tools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use serde_json::json;

    use super::*;

    fn listing(description: &str) -> Vec<(String, Vec<Value>)> {
        vec![(
            "fx".to_owned(),
            vec![
                json!({"name": "echo", "description": description, "inputSchema": {"type": "object"}}),
            ],
        )]
    }

    #[test]
    fn pins_drift_and_repin() {
        let (catalog, drifts) =
            Catalog::build(&listing("Echo"), &BTreeMap::new(), PrefixMode::Always, None);
        assert!(drifts.is_empty());
        let tool = catalog.get("fx.echo").unwrap();
        assert_eq!(tool.state, PinState::Unpinned);
        assert!(!tool.is_available(PinMode::Strict));
        assert!(tool.is_available(PinMode::Open));
        assert_eq!(tool.exposed["name"], "fx.echo");
        assert_eq!(tool.gate_key.as_str(), "tools:call:fx.echo");

        let mut pins = BTreeMap::new();
        pins.insert("fx.echo".to_owned(), tool.offered.clone());
        let (pinned, _) = Catalog::build(&listing("Echo"), &pins, PrefixMode::Always, None);
        assert_eq!(pinned.get("fx.echo").unwrap().state, PinState::Pinned);

        let (drifted, drifts) =
            Catalog::build(&listing("Evil"), &pins, PrefixMode::Always, Some(&pinned));
        assert_eq!(drifts.len(), 1);
        assert_eq!(drifts[0].changes[0].field, "description");
        let tool = drifted.get("fx.echo").unwrap();
        assert!(!tool.is_available(PinMode::Open));
        // The same drift is reported once.
        let (_, again) =
            Catalog::build(&listing("Evil"), &pins, PrefixMode::Always, Some(&drifted));
        assert!(again.is_empty());
    }

    #[test]
    fn prefix_never_keeps_bare_names() {
        let (catalog, _) =
            Catalog::build(&listing("Echo"), &BTreeMap::new(), PrefixMode::Never, None);
        let tool = catalog.get("echo").unwrap();
        assert_eq!(tool.pin_key, "fx.echo");
        assert_eq!(tool.gate_key.as_str(), "tools:call:fx.echo");
    }
}
