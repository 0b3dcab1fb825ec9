//! Sanitizing every string of a JSON value in place, with one vault for the whole value.

use serde_json::Value;

use crate::vault::{Scope, Vault};
use crate::{Counts, SanitizeError, Sanitizer};

impl Sanitizer {
    /// Applies [`Sanitizer::apply`] to every string in `value` (object keys are structure and
    /// stay), sharing `vault`, so one original gets one synthetic value across the whole
    /// document. Strings under an object key for which `skip` answers true are left as they are
    /// (a model name, a role). Returns the counts of all strings together. On error the value may
    /// be partly sanitized: the caller must refuse it whole (fail closed).
    pub fn apply_value(
        &self,
        value: &mut Value,
        skip: &dyn Fn(&str) -> bool,
        scope: &Scope,
        vault: &mut Vault,
    ) -> Result<Counts, SanitizeError> {
        let mut counts = Counts::default();
        let mut stack = vec![value];
        while let Some(value) = stack.pop() {
            match value {
                Value::String(text) => {
                    let sanitized = self.apply(text, scope, vault)?;
                    if sanitized.stats.total() > 0 {
                        counts.merge(&sanitized.stats);
                        *text = sanitized.text;
                    }
                }
                Value::Array(items) => stack.extend(items.iter_mut()),
                Value::Object(object) => stack.extend(
                    object
                        .iter_mut()
                        .filter(|(key, _)| !skip(key))
                        .map(|(_, item)| item),
                ),
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use crate::{EntityType, PiiConfig, Scope, Strategy, StrategyTable, Vault, restore};

    use super::*;

    #[test]
    fn every_string_is_sanitized_with_one_vault_and_skipped_keys_stay() {
        let config = PiiConfig {
            strategies: StrategyTable::uniform(Strategy::Synthetic),
            ..PiiConfig::default()
        };
        let sanitizer = Sanitizer::new(config, &[9; 32]).unwrap();
        let mut value = json!({
            "model": "bob@example.com",
            "messages": [
                {"role": "user", "content": "mail bob@example.com"},
                {"role": "tool", "content": [{"type": "text", "text": "again bob@example.com"}]}
            ],
            "n": 1
        });
        let original = value.clone();
        let mut vault = Vault::new();
        let counts = sanitizer
            .apply_value(
                &mut value,
                &|key| key == "model",
                &Scope::new("s"),
                &mut vault,
            )
            .unwrap();
        assert_eq!(counts.get(EntityType::Email), 2);
        assert_eq!(vault.len(), 1);
        assert_eq!(value["model"], "bob@example.com");
        let text = value["messages"].to_string();
        assert!(!text.contains("bob@example.com"), "{text}");
        assert_eq!(restore(&vault, &value.to_string()), original.to_string());
    }
}
