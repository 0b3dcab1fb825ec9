//! Tool pins: the SHA-256 of a tool definition's RFC 8785 canonical JSON, and what changed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The fields of a tool definition a pin covers. Anything else an upstream sends (`icons`,
/// `_meta`) is neither pinned nor forwarded.
pub const PINNED_FIELDS: &[&str] = &[
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

/// A recorded pin: the whole-definition hash and one hash per pinned field, so a drift event
/// can name the fields that changed without carrying their text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// Hex SHA-256 of the canonical JSON of the pinned fields.
    pub hash: String,
    /// Hex SHA-256 of each pinned field's canonical JSON; absent fields are left out.
    pub fields: BTreeMap<String, String>,
}

/// One field that differs between a pin and what an upstream offers now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: String,
    /// The pinned field's hash; `None` when the pin lacked the field.
    pub old: Option<String>,
    /// The offered field's hash; `None` when the field disappeared.
    pub new: Option<String>,
}

/// The pinned part of `definition`: only [`PINNED_FIELDS`], in a JSON object.
pub fn pinned_part(definition: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    let mut res = serde_json::Map::new();
    if let Some(object) = definition.as_object() {
        for field in PINNED_FIELDS {
            if let Some(value) = object.get(*field) {
                res.insert((*field).to_owned(), value.clone());
            }
        }
    }
    res
}

/// The pin of `definition` (a tool as its upstream lists it).
///
/// Fails only when the definition holds a value RFC 8785 cannot encode; the caller then hides
/// the tool (fail closed).
pub fn pin_of(definition: &serde_json::Value) -> Result<Pin, serde_json::Error> {
    let part = pinned_part(definition);
    let hash = canonical_hash(&serde_json::Value::Object(part.clone()))?;
    let mut fields = BTreeMap::new();
    for (field, value) in &part {
        fields.insert(field.clone(), canonical_hash(value)?);
    }
    Ok(Pin { hash, fields })
}

/// The fields whose hashes differ between `pinned` and `offered`, in field order.
pub fn changes(pinned: &Pin, offered: &Pin) -> Vec<FieldChange> {
    PINNED_FIELDS
        .iter()
        .filter_map(|field| {
            let old = pinned.fields.get(*field);
            let new = offered.fields.get(*field);
            (old != new).then(|| FieldChange {
                field: (*field).to_owned(),
                old: old.cloned(),
                new: new.cloned(),
            })
        })
        .collect()
}

/// Hex SHA-256 of the RFC 8785 canonical JSON of `value`.
pub fn canonical_hash(value: &serde_json::Value) -> Result<String, serde_json::Error> {
    let bytes = serde_jcs::to_vec(value)?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use serde_json::json;

    use super::*;

    #[test]
    fn key_order_and_unpinned_fields_do_not_change_the_pin() {
        let a = json!({"name": "echo", "description": "d", "inputSchema": {"type": "object", "properties": {"a": {}, "b": {}}}});
        let b = json!({"inputSchema": {"properties": {"b": {}, "a": {}}, "type": "object"}, "_meta": {"x": 1}, "icons": [], "description": "d", "name": "echo"});
        assert_eq!(pin_of(&a).unwrap(), pin_of(&b).unwrap());
    }

    #[test]
    fn a_changed_description_is_named() {
        let a = pin_of(&json!({"name": "echo", "description": "d", "inputSchema": {}})).unwrap();
        let b = pin_of(&json!({"name": "echo", "description": "evil", "inputSchema": {}})).unwrap();
        assert_ne!(a.hash, b.hash);
        let changed = changes(&a, &b);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].field, "description");
        assert_eq!(
            changed[0].old.as_deref(),
            a.fields.get("description").map(String::as_str)
        );
    }

    #[test]
    fn an_added_field_is_a_change() {
        let a = pin_of(&json!({"name": "echo", "inputSchema": {}})).unwrap();
        let b = pin_of(
            &json!({"name": "echo", "inputSchema": {}, "annotations": {"readOnlyHint": true}}),
        )
        .unwrap();
        let changed = changes(&a, &b);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].field, "annotations");
        assert!(changed[0].old.is_none());
    }
}
